"""Many arrays through one collective: gradients averaged, weights broadcast, via one flat buffer per dtype.

After backward, rank r holds ∇L_r, the gradient of the mean loss over its shard of B/R examples. The global batch's
loss is L = (1/R)·Σ_r L_r (equal shards), so ∇L = (1/R)·Σ_r ∇L_r: one all-reduce sum and one division. A message
per parameter would pay the collective's latency per parameter (the DCGAN has 7 in G, 5 in D); copying
them into one flat buffer pays it once. `bucket_bytes` splits the buffer into messages of at most that size (some
MPI libraries and networks do better with a few MiB at a time; nothing here overlaps communication with the
backward pass, whose gradients are all ready only at its end).
"""
from collections import OrderedDict

from .. import backend
from ..tensor import Tensor


def _groups_by_dtype(arrays):
    """{dtype: indices of the arrays of that dtype}, in order (a model is normally all one dtype)."""
    groups = OrderedDict()
    for i, a in enumerate(arrays):
        groups.setdefault(a.dtype, []).append(i)
    return groups


def _flatten(arrays, indices):
    return backend.xp(arrays[indices[0]]).concatenate([arrays[i].ravel() for i in indices])


def _unflatten(flat, arrays, indices, out):
    """Views of `flat` shaped like arrays[i], stored in out[i]."""
    offset = 0
    for i in indices:
        n = arrays[i].size
        out[i] = flat[offset:offset + n].reshape(arrays[i].shape)
        offset += n


def _buckets(flat, bucket_bytes):
    """Contiguous pieces of `flat` of at most bucket_bytes bytes each (at least one element)."""
    if bucket_bytes is None:
        return [flat]
    step = max(1, int(bucket_bytes) // flat.itemsize)
    return [flat[i:i + step] for i in range(0, flat.size, step)]


def allreduce_arrays(comm, arrays, tag, average=False, bucket_bytes=None):
    """The sums (or means) over the ranks of `arrays`, as new arrays in the same order (views of one flat buffer
    per dtype). Every rank must pass arrays of the same shapes and dtypes in the same order."""
    if bucket_bytes is not None and bucket_bytes <= 0:
        raise ValueError(f"allreduce_arrays: bucket_bytes must be positive (None: one buffer), got {bucket_bytes}")
    out = list(arrays)
    if comm.size == 1 or not arrays:
        return out
    for indices in _groups_by_dtype(arrays).values():
        flat = _flatten(arrays, indices)
        for bucket in _buckets(flat, bucket_bytes):
            comm.allreduce(bucket, tag)
        if average:
            flat /= comm.size
        _unflatten(flat, arrays, indices, out)
    return out


def broadcast_arrays(comm, arrays, root=0, tag="broadcast"):
    """Overwrite every array in place with rank `root`'s values."""
    if comm.size == 1 or not arrays:
        return
    for indices in _groups_by_dtype(arrays).values():
        flat = comm.broadcast(_flatten(arrays, indices), root, tag)
        received = [None] * len(arrays)
        _unflatten(flat, arrays, indices, received)
        for i in indices:
            arrays[i][...] = received[i]


class GradientAverager:
    """Replaces each parameter's gradient by its mean over the ranks. An optimiser calls it with its parameters
    right before its update (Optimizer.before_step), so every rank then takes the same step.

    A parameter without a gradient is left out (the same ones on every rank: they run the same graph); which
    gradients take part is checked once across the ranks, and again whenever it changes, so a rank that went
    another way fails with a message instead of reducing mismatched buffers.
    """

    def __init__(self, comm, bucket_bytes=None, tag="gradients"):
        self.comm, self.bucket_bytes, self.tag = comm, bucket_bytes, tag
        self._agreed_layout = None

    def __call__(self, params):
        if self.comm.size == 1:
            return
        params = [p for p in params if p.grad is not None]
        self._check_layout(params)
        grads = [p.grad.data for p in params]
        for p, mean in zip(params, allreduce_arrays(self.comm, grads, self.tag, True, self.bucket_bytes)):
            p.grad = Tensor(mean)

    def _check_layout(self, params):
        layout = [(p.shape, str(p.grad.dtype)) for p in params]
        if layout == self._agreed_layout:
            return
        layouts = self.comm.allgather_object(layout)
        differing = [r for r, other in enumerate(layouts) if other != layout]
        if differing:
            raise RuntimeError(f"{self.tag}: rank {self.comm.rank} has gradients for {len(layout)} parameters "
                               f"({layout}), rank {differing[0]} for {len(layouts[differing[0]])} "
                               f"({layouts[differing[0]]}): the ranks ran different graphs")
        self._agreed_layout = layout
