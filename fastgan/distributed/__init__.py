"""Data-parallel training over several processes: MPI between processes and nodes, NCCL between GPUs.

    comm.py           the communicators (one process, MPI through mpi4py, NCCL through CuPy) and init()
    flat.py           many arrays through one collective: gradient averaging, weight broadcast
    layers.py         batch norm over the global batch (SyncBatchNorm), dropout masks of the global batch
    data_parallel.py  DataParallel: shards, averaged gradients and metrics, ranks kept in step
    failure.py        one failed or stuck rank ends the job, with a message naming it
    training.py       `mpiexec -n R python -m fastgan.train`: what differs on R ranks (train.py asks it)

`mpiexec -n R python script.py` starts R copies; `init()` tells each which rank it is. docs/distributed.md has the
design, the measurements and the scaling model.
"""
from .comm import Communicator, MPICommunicator, NCCLCommunicator, init, launched_by_mpi
from .data_parallel import DataParallel, broadcast_module
from .failure import Watchdog, run_on_every_rank
from .flat import GradientAverager, allreduce_arrays, broadcast_arrays
from .layers import ShardedDropout, SyncBatchNorm, sync_batch_norm, to_data_parallel

__all__ = ["Communicator", "MPICommunicator", "NCCLCommunicator", "init", "launched_by_mpi", "DataParallel",
           "broadcast_module", "Watchdog", "run_on_every_rank", "GradientAverager", "allreduce_arrays",
           "broadcast_arrays", "ShardedDropout", "SyncBatchNorm", "sync_batch_norm", "to_data_parallel"]
