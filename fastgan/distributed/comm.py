"""Communicators: which rank this process is, and how arrays travel between the ranks.

    Communicator     one process (plain `python -m fastgan.train`): every collective returns at once
    MPICommunicator  processes started by mpiexec (or srun): mpi4py over any MPI library; pip's `mpich` wheel
                     provides one (`pip install -e ".[mpi]"`). NumPy arrays are sent from where they lie, CuPy
                     arrays through a host copy.
    NCCLCommunicator one GPU per rank: CuPy's NCCL bindings (cupy.cuda.nccl) all-reduce device arrays on the
                     device, queued on the current CUDA stream. NCCL has no launcher of its own: rank 0 creates
                     the communicator's unique id and MPI broadcasts it; MPI also carries objects and barriers.

A collective must be called by every rank, in the same order, with arrays of the same shape and dtype; array
collectives work in place on C-contiguous arrays and return them. Each one is counted in `traffic` (calls, bytes,
seconds per tag: what the benchmark reports) and, when a timeout is set, watched (failure.Watchdog).
"""
import os
import socket
import sys
import time

import numpy as np

from .. import backend
from .failure import Watchdog

# Set in the environment of every process by the common launchers: MPICH's and Intel MPI's mpiexec (PMI),
# Open MPI's mpirun, PMIx launchers (srun --mpi=pmix, prrte)
ABORT_GRACE_S = 0.5  # how long a failing rank waits, after printing why, before MPI_Abort ends every rank
LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def launched_by_mpi():
    """Was this process started by an MPI launcher? (Then it is one rank of several, or of one.)"""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def init(device="cpu", timeout=None):
    """The communicator of this process: one process unless an MPI launcher started it; NCCL between GPUs when the
    device is "cuda". `timeout` (seconds, or None for none) ends the job when a collective waits longer."""
    if not launched_by_mpi():
        return Communicator()
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise RuntimeError(f"this process was started by an MPI launcher, but mpi4py cannot be imported ({err}): "
                           "pip install -e '.[mpi]'") from err
    mpi = MPICommunicator(MPI.COMM_WORLD, timeout)
    return NCCLCommunicator(mpi) if backend.normalize_device(device) == "cuda" else mpi


class Communicator:
    """One rank alone: the collectives have nothing to exchange. The base of the others, which override the
    underscored methods and the object collectives."""
    name = "one process"
    rank, size = 0, 1
    local_rank, local_size = 0, 1  # this process among those on the same node (which GPU it takes)
    watchdog = None

    def __init__(self):
        self.traffic = {}  # tag -> [calls, bytes, seconds]

    # --- array collectives, in place -----------------------------------------------------------------------------
    def allreduce(self, array, tag="other"):
        """Sum `array` over the ranks; every rank gets the sum."""
        _check_contiguous("allreduce", array)
        with self._collective(tag, array.nbytes, "allreduce"):
            self._allreduce(array)
        return array

    def broadcast(self, array, root=0, tag="broadcast"):
        """Overwrite `array` on every rank with rank `root`'s."""
        _check_contiguous("broadcast", array)
        with self._collective(tag, array.nbytes, "broadcast"):
            self._broadcast(array, root)
        return array

    def _allreduce(self, array):
        pass  # one rank: the sum is the array

    def _broadcast(self, array, root):
        pass

    # --- objects (small, pickled: configuration, checkpoint state, fingerprints) ----------------------------------
    def broadcast_object(self, obj, root=0):
        return obj

    def allgather_object(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        return [obj]

    def barrier(self):
        pass

    def abort(self, message, code=1):
        """End every rank of the job now, after printing `message` (which names this rank)."""
        print(f"fastgan: {self.where()}: {message}", file=sys.stderr, flush=True)
        raise SystemExit(code)

    # --- describing ----------------------------------------------------------------------------------------------
    def where(self):
        return f"rank {self.rank} of {self.size}"

    def threads_per_rank(self):
        """CPU threads this rank should use: the cores the launcher bound it to (mpiexec -bind-to core), else its
        share of the node's cores. Without a limit, R ranks of 2 threads each would fight over 2 cores."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if cores < (os.cpu_count() or cores):
            return cores
        return max(1, cores // self.local_size)

    def describe(self):
        """One line naming every rank's process id and host (a launcher that reports a dead process names its pid).
        A collective, like the rest: every rank calls it (and rank 0 prints it)."""
        ranks = self.allgather_object((os.getpid(), socket.gethostname()))
        where = ", ".join(f"rank {r} = pid {pid} on {host}" for r, (pid, host) in enumerate(ranks))
        return f"{self.size} rank{'s' if self.size > 1 else ''} ({self.name}): {where}"

    def _collective(self, tag, nbytes, what):
        return _Counted(self, tag, nbytes, what)


class _Counted:
    """Times one collective into comm.traffic[tag], under the watchdog's eye if there is one."""

    def __init__(self, comm, tag, nbytes, what):
        self.comm, self.tag, self.what = comm, tag, what
        self.nbytes = nbytes if comm.size > 1 else 0  # alone, nothing travels

    def __enter__(self):
        if self.comm.watchdog is not None:
            self.comm.watchdog.enter(f"{self.what} ({self.tag})")
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        seconds = time.perf_counter() - self.started
        if self.comm.watchdog is not None:
            self.comm.watchdog.leave()
        counts = self.comm.traffic.setdefault(self.tag, [0, 0, 0.0])
        counts[0] += 1
        counts[1] += self.nbytes
        counts[2] += seconds


def _check_contiguous(what, array):
    if not array.flags.c_contiguous:
        raise ValueError(f"{what}: the array must be C-contiguous, got shape {array.shape} with strides "
                         f"{array.strides}")


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (COMM_WORLD: every process mpiexec started)."""

    def __init__(self, mpi_comm, timeout=None):
        super().__init__()
        from mpi4py import MPI
        self.MPI, self.mpi = MPI, mpi_comm
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)  # the ranks sharing this node's memory
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.name = "MPI: " + " ".join(MPI.Get_library_version().split("\n")[0].split())  # "MPICH Version: 5.0.2"
        # mpi4py turns MPI errors into Python exceptions (errors="exception", i.e. MPI_ERRORS_RETURN), which
        # failure.run_on_every_rank turns into an abort naming this rank
        self.watchdog = Watchdog(timeout, self.abort) if timeout else None

    def _allreduce(self, array):
        if isinstance(array, np.ndarray):
            self.mpi.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        else:  # a device array: through the host (MPI libraries built without CUDA support cannot read it)
            host = backend.to_numpy(array)
            self.mpi.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            array[...] = backend.xp(array).asarray(host)

    def _broadcast(self, array, root):
        if isinstance(array, np.ndarray):
            self.mpi.Bcast(array, root=root)
        else:
            host = np.ascontiguousarray(backend.to_numpy(array))
            self.mpi.Bcast(host, root=root)
            array[...] = backend.xp(array).asarray(host)

    def broadcast_object(self, obj, root=0):
        with self._collective("objects", 0, "broadcast"):
            return self.mpi.bcast(obj, root=root)

    def allgather_object(self, obj):
        with self._collective("objects", 0, "allgather"):
            return self.mpi.allgather(obj)

    def barrier(self):
        with self._collective("barrier", 0, "barrier"):
            self.mpi.Barrier()

    def abort(self, message, code=1):
        print(f"fastgan: {self.where()}: {message}; ending all {self.size} ranks (MPI_Abort)", file=sys.stderr,
              flush=True)
        sys.stdout.flush()
        time.sleep(ABORT_GRACE_S)  # the launcher forwards a rank's output asynchronously: let it pass the message
        self.mpi.Abort(code)
        os._exit(code)  # MPICH's MPI_Abort can return before the launcher's kill arrives: go no further


class NCCLCommunicator(Communicator):
    """One GPU per rank, arrays reduced by NCCL on the device; host arrays, objects and barriers go over MPI.

    Each rank takes GPU number local_rank of its node, so it must be created before anything is allocated on a
    GPU. NCCL's calls only queue work on the current stream: `traffic` counts their bytes, and their seconds are
    those of queueing (the time of the transfer shows in the next synchronisation). NCCL cannot tell that a peer
    died; the launcher's clean-up ends the job then (docs/distributed.md, "When a rank fails").
    """

    def __init__(self, mpi):
        super().__init__()
        import cupy
        from cupy.cuda import nccl
        if not nccl.available:
            raise RuntimeError("NCCL is not available to CuPy on this machine (see cupy.cuda.nccl.available)")
        self.cupy, self.nccl_module, self.mpi = cupy, nccl, mpi
        self.rank, self.size, self.local_rank, self.local_size = mpi.rank, mpi.size, mpi.local_rank, mpi.local_size
        self.watchdog = mpi.watchdog
        devices = cupy.cuda.runtime.getDeviceCount()
        if self.local_size > devices:
            raise RuntimeError(f"{self.local_size} ranks on this node but {devices} GPU(s): NCCL needs one GPU per "
                               "rank (start fewer ranks per node)")
        cupy.cuda.Device(self.local_rank).use()
        unique_id = mpi.broadcast_object(nccl.get_unique_id() if self.rank == 0 else None)
        self.nccl = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        self.name = f"NCCL {nccl.get_version()} on GPU {self.local_rank} of each node, bootstrapped by {mpi.name}"
        self.dtypes = {np.dtype(np.float16): nccl.NCCL_FLOAT16, np.dtype(np.float32): nccl.NCCL_FLOAT32,
                       np.dtype(np.float64): nccl.NCCL_FLOAT64, np.dtype(np.int32): nccl.NCCL_INT32,
                       np.dtype(np.int64): nccl.NCCL_INT64}

    def _nccl_dtype(self, array):
        if array.dtype not in self.dtypes:
            raise TypeError(f"NCCL cannot reduce dtype {array.dtype} (supported: {sorted(map(str, self.dtypes))})")
        return self.dtypes[array.dtype]

    def _allreduce(self, array):
        if isinstance(array, np.ndarray):
            return self.mpi._allreduce(array)
        stream = self.cupy.cuda.get_current_stream().ptr
        self.nccl.allReduce(array.data.ptr, array.data.ptr, array.size, self._nccl_dtype(array),
                            self.nccl_module.NCCL_SUM, stream)

    def _broadcast(self, array, root):
        if isinstance(array, np.ndarray):
            return self.mpi._broadcast(array, root)
        stream = self.cupy.cuda.get_current_stream().ptr
        self.nccl.bcast(array.data.ptr, array.size, self._nccl_dtype(array), root, stream)

    def broadcast_object(self, obj, root=0):
        return self.mpi.broadcast_object(obj, root)

    def allgather_object(self, obj):
        return self.mpi.allgather_object(obj)

    def barrier(self):
        self.cupy.cuda.get_current_stream().synchronize()  # this rank's queued NCCL calls are done
        self.mpi.barrier()

    def abort(self, message, code=1):
        try:
            self.nccl.abort()  # frees the other ranks' NCCL kernels waiting for this one
        finally:
            self.mpi.abort(message, code)
