"""Data-parallel GAN training: R ranks train one model, each on its shard of every global batch.

The rule that makes a run the same for every R (and, with sync BN or without batch norm, the same as one process's
up to rounding):
  * every rank draws every random number one process would draw, from fastgan's generator seeded alike: the
    epoch's permutation, the noise of the whole global batch, dropout masks for the whole global batch
    (layers.ShardedDropout). The ranks' generators stay in step;
  * rank r takes rows [r·B/R, (r+1)·B/R) of each global batch of images and of its noise (`shard`);
  * each optimiser averages the gradients over the ranks right before its update (GradientAverager, as
    Optimizer.before_step), so every rank takes the identical step; fastgan.gan's step functions run unchanged
    (D's step, then G's);
  * the few floats a step returns (losses, D's outputs) are averaged: the global batch's values (`step`).
All ranks therefore hold the same model, optimiser state and generator state: rank 0's checkpoint is the run's,
and a resumed run may use another number of ranks, one that divides B.
"""
import hashlib

import numpy as np

from .. import backend
from ..random import get_rng_state
from .flat import GradientAverager, allreduce_arrays, broadcast_arrays
from .layers import to_data_parallel


def module_arrays(module):
    return [t.data for _, t in list(module.named_parameters()) + list(module.named_buffers())]


def broadcast_module(comm, module, root=0):
    """Every parameter and buffer of `module` set to rank `root`'s values, in place."""
    broadcast_arrays(comm, module_arrays(module), root, tag="weights")


class DataParallel:
    """Makes `models` (G and D) and `optimizers` train data-parallel over the ranks of `comm`, in place:

        dp = DataParallel(comm, (G, D), (opt_g, opt_d), sync_bn=True)   # after loading a checkpoint, if any
        rows = dp.shard(order[i * B:(i + 1) * B])                       # this rank's images of the global batch
        z = dp.shard(recipe.sample_noise(B, nz))                        # and their noise
        stats = dp.step(train_step, G, D, opt_g, opt_d, real, z, ...)   # the global batch's losses

    Construction swaps in the data-parallel layers (layers.to_data_parallel), broadcasts rank 0's weights and
    installs the gradient averaging in the optimisers. Without sync_bn each rank normalises with its shard's
    statistics; the running statistics are then averaged over the ranks after every step, so that every rank holds
    the same model: the running mean is then that of the global batches, while the running variance is the mean
    of the shards' variances (it misses the spread between the shards' means).
    """

    def __init__(self, comm, models, optimizers, sync_bn=False, bucket_bytes=None):
        self.comm, self.models, self.sync_bn = comm, tuple(models), sync_bn
        for model in self.models:
            to_data_parallel(model, comm, sync_bn)
            broadcast_module(comm, model)
        for opt in optimizers:
            opt.before_step = GradientAverager(comm, bucket_bytes)

    def shard(self, batch):
        """This rank's rows of a global batch (an array or a Tensor, split along its first axis)."""
        total, size = batch.shape[0], self.comm.size
        if total % size:
            raise ValueError(f"a global batch of {total} does not split evenly over {size} ranks; choose a batch "
                             f"size that {size} divides")
        rows = total // size
        return batch[self.comm.rank * rows:(self.comm.rank + 1) * rows]

    def step(self, play, *args, **kwargs):
        """play(*args, **kwargs): one step of fastgan.gan on this rank's shards; returns its floats averaged over
        the ranks."""
        stats = play(*args, **kwargs)
        if not self.sync_bn:
            self.average_buffers()
        return self.average(stats)

    def average(self, stats):
        """{name: float} averaged over the ranks (means over equal shards: the global batch's mean)."""
        names = sorted(stats)
        values = np.array([stats[k] for k in names], dtype=np.float64)
        self.comm.allreduce(values, "metrics")
        return {k: float(v) / self.comm.size for k, v in zip(names, values)}

    def average_buffers(self):
        """Each floating buffer (batch norm's running statistics) replaced by its mean over the ranks."""
        buffers = [t for model in self.models for _, t in model.named_buffers() if t.dtype.kind == "f"]
        for t, mean in zip(buffers, allreduce_arrays(self.comm, [t.data for t in buffers], "buffers", True)):
            t.data[...] = mean

    def check_in_sync(self):
        """Raise unless every rank holds the same weights, buffers and random generator state (cheap enough for
        once an epoch: it hashes the model on every rank and compares the hashes)."""
        digest = hashlib.blake2b(digest_size=16)
        for model in self.models:
            for array in module_arrays(model):
                digest.update(np.ascontiguousarray(backend.to_numpy(array)).tobytes())
        digest.update(repr(get_rng_state()).encode())
        digests = self.comm.allgather_object(digest.hexdigest())
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise RuntimeError(f"ranks {differing} hold other weights or random state than rank 0: every rank must "
                               "run the same steps and draw the same random numbers")
