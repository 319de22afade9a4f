"""The layers that look across the batch, for a batch split over ranks: batch norm and dropout.

Every other layer treats the examples of a batch independently, so a rank computes on its shard exactly what one
process computes on those rows of the global batch. These two do not:

    batch norm  normalises with the batch's mean and variance. By default each rank uses its shard's (as PyTorch's
                DDP does): R ranks then take the step one process takes when it accumulates the gradients of the
                R shards, each normalised by its own statistics. SyncBatchNorm uses the global batch's statistics:
                R ranks take the step of one process on the global batch, up to rounding.
    dropout     draws a mask per example from fastgan's generator. Drawn per shard, every rank would draw the same
                numbers (their generators are in step) and the shards would share their masks. ShardedDropout draws
                the global batch's mask on every rank and keeps its own rows: the masks of one process.

to_data_parallel(module, comm, sync_bn) swaps them into a model in place, keeping its Parameter objects (so the
optimisers built on them stay valid) and the names of its state (so checkpoints load either way).
"""
import numpy as np

from .. import backend, dispatch
from .. import functional as F
from ..nn.layers import Dropout, _BatchNorm
from ..tensor import Tensor, _result


# --- batch norm over the global batch ------------------------------------------------------------------------------

# Forward. Each rank sums x and x² per channel over its rows (and H, W); one all-reduce of [Σx, Σx², m] gives the
# global count M, mean μ = Σx/M and biased variance σ² = Σx²/M − μ². The squares and sums are float64 (x² of a
# float32 x is exact there), so the cancellation in Σx²/M − μ² costs (μ/σ)² ulps of float64: invisible in a float32
# result unless |μ| > 10⁴σ. The fused kernel then normalises with (μ, σ²) in its eval mode, which takes the
# statistics as given: y = act(γ·(x − μ)·rstd + β).
#
# Backward. The fused backward in eval mode returns the local  x̄ = g·γ·rstd,  Σg·x̂,  Σg  (g: the gradient after the
# activation's mask). μ and rstd depend on every rank's x, and the batch norm backward (kernels/reference.py)
# subtracts g's global mean and its x̂ component:  x̄ = γ·rstd·(g − Σg/M − x̂·Σ(g·x̂)/M)  with both sums global, so
# they go through one all-reduce. This x̄ is rank r's share of the gradient of Σ_s L_s (the sum of the ranks'
# losses), γ̄ and β̄ stay local: after the gradient all-reduce averages them, every parameter has the gradient of
# (1/R)·Σ_s L_s, the loss of the global batch.
def sync_batch_norm(x, running_mean, running_var, weight, bias, comm, momentum=0.1, eps=1e-5, activation=None,
                    negative_slope=0.2):
    """Training-mode batch norm (+ activation) with statistics over the batch of every rank of `comm`."""
    F._check_ndim("sync_batch_norm", "input", x, (2, 4))
    F._check_same_dtype("sync_batch_norm", x, weight, bias)
    xp, dtype, channels = backend.xp(x.data), x.dtype, x.shape[1]
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    count = x.data.size // channels
    squares = xp.square(x.data, dtype=np.float64)
    sums = xp.concatenate([x.data.sum(axis=axes, dtype=np.float64), squares.sum(axis=axes),
                           xp.asarray([count], dtype=np.float64)])
    del squares
    comm.allreduce(sums, "sync_bn")
    total = int(sums[-1])
    if total < 2:
        raise ValueError(f"sync_batch_norm: expected more than 1 value per channel over all ranks, got {total} "
                         f"(input {x.shape} on rank {comm.rank})")
    mean = sums[:channels] / total
    var = xp.maximum(sums[channels:2 * channels] / total - mean * mean, 0.0)
    if running_mean is not None:  # as the kernels' training mode: the mean, and the unbiased variance
        running_mean.data *= 1 - momentum
        running_mean.data += (momentum * mean).astype(running_mean.dtype)
    if running_var is not None:
        running_var.data *= 1 - momentum
        running_var.data += (momentum * var * total / (total - 1)).astype(running_var.dtype)

    w, b = (None if t is None else t.data for t in (weight, bias))
    forward = dispatch.kernel("batch_norm_act_forward", x.device)
    backward_kernel = dispatch.kernel("batch_norm_act_backward", x.device)
    out, mean_x, rstd = forward(x.data, w, b, mean.astype(dtype), var.astype(dtype), False, momentum, eps,
                                activation, negative_slope)

    def backward(g):
        dx, dweight, dbias = backward_kernel(g, x.data, w, b, mean_x, rstd, False, activation, negative_slope)
        global_sums = comm.allreduce(xp.concatenate([dbias, dweight]).astype(np.float64), "sync_bn")
        gamma_rstd = rstd.astype(np.float64) * (1.0 if w is None else w.astype(np.float64))
        shift = (gamma_rstd * global_sums[:channels] / total).astype(dtype)           # γ·rstd·Σg/M
        slope = (gamma_rstd * rstd * global_sums[channels:] / total).astype(dtype)    # γ·rstd·Σ(g·x̂)/M, per (x − μ)
        view = (1, channels) + (1,) * (x.ndim - 2)
        dx -= (x.data - mean_x.reshape(view)) * slope.reshape(view)
        dx -= shift.reshape(view)
        return dx, dweight, dbias

    return _result(out, (x, weight, bias), backward, "sync_batch_norm")


class SyncBatchNorm(_BatchNorm):
    """Batch norm (+ activation) whose training-mode statistics are those of the global batch of all ranks; in
    eval mode it is a plain batch norm on the running statistics (no communication)."""

    def __init__(self, num_features, comm, expected_ndim=4, **kwargs):
        super().__init__(num_features, **kwargs)
        self.comm, self.expected_ndim = comm, expected_ndim

    @classmethod
    def replacing(cls, bn, comm):
        """A SyncBatchNorm with bn's settings, Parameters and running statistics (the same objects)."""
        sync = cls(bn.num_features, comm, bn.expected_ndim, eps=bn.eps, momentum=bn.momentum,
                   affine=bn.weight is not None, track_running_stats=bn.running_mean is not None,
                   activation=bn.activation, negative_slope=bn.negative_slope)
        if bn.weight is not None:
            sync.weight, sync.bias = bn.weight, bn.bias
        if bn.running_mean is not None:
            sync.register_buffer("running_mean", bn.running_mean)
            sync.register_buffer("running_var", bn.running_var)
        return sync.train(bn.training)

    def forward(self, x):
        if not self.training and self.running_mean is not None:
            return super().forward(x)
        if x.ndim != self.expected_ndim:
            raise ValueError(f"{type(self).__name__} expects {self.expected_ndim}-D input, got shape {x.shape}")
        return sync_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.comm,
                               self.momentum, self.eps, self.activation, self.negative_slope)


class ShardedDropout(Dropout):
    """Dropout whose mask is this rank's rows of the mask one process would draw for the global batch."""

    def __init__(self, p, comm):
        super().__init__(p)
        self.comm = comm

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        rows = x.shape[0]
        # F.dropout draws the mask (one rule, one place); applied to ones, it is the mask itself
        ones = Tensor(backend.xp(x.data).ones((rows * self.comm.size,) + x.shape[1:], dtype=x.dtype))
        mask = F.dropout(ones, self.p, True).data[self.comm.rank * rows:(self.comm.rank + 1) * rows]
        return F.mul(x, Tensor(mask))


def to_data_parallel(module, comm, sync_bn=False):
    """Swap, in place, every Dropout of `module` for a ShardedDropout and (with sync_bn) every batch norm for a
    SyncBatchNorm. Returns the module."""
    for _, parent in list(module.named_modules()):
        for name, child in list(parent._modules.items()):
            if sync_bn and isinstance(child, _BatchNorm) and not isinstance(child, SyncBatchNorm):
                _replace(parent, name, SyncBatchNorm.replacing(child, comm))
            elif type(child) is Dropout:
                _replace(parent, name, ShardedDropout(child.p, comm).train(child.training))
    return module


def _replace(parent, name, child):
    parent._modules[name] = child  # the existing key keeps its place: a Sequential keeps its order
    object.__setattr__(parent, name, child)
