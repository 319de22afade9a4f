"""The training command on R ranks: `mpiexec -n R python -m fastgan.train mnist [--sync-bn]`.

fastgan/train.py runs the same code on every rank and asks a Parallel object what differs:

    OneProcess           plain `python -m fastgan.train` (or a launcher that started one rank): today's run,
                         untouched: no communicator, no sharding, every file written.
    DataParallelTraining R ranks of one run (data_parallel.py). Rank 0 plans the run (reads the checkpoint,
                         checks the run folder) and sends the plan to the others; rank 0 loads the data first (a
                         download happens once), then the others read the cache; every rank draws each global
                         batch's rows, noise and labels in full and keeps its shard; the gradients are averaged
                         before each optimiser step. Rank 0 alone writes the run folder and shows the progress bar.

`launch` starts the command on this rank. The ranks other than 0 print nothing (their error output is kept and
shown if they fail alone). An error that every rank meets at the same point (a bad flag, a run folder that
holds a run, a diverged run) ends every rank with the same exit code, reported once by rank 0. A rank that fails
alone ends the job with a message naming it (failure.py); a killed one is named by mpiexec, through the rank map
rank 0 prints at the start.
"""
import hashlib
import io
import os
import pickle
import sys
import time

import numpy as np

from .. import backend
from .comm import NCCLCommunicator, init, launched_by_mpi
from .data_parallel import DataParallel
from .failure import Watchdog, run_on_every_rank

AGREE_S = 10  # how long a rank that stops with an error waits for the others to stop too, before ending the job
# Options that look across the batch and have no data-parallel form here: on R ranks each would see only its shard
SHARD_BLIND = {
    "minibatch_disc": "--minibatch-disc compares every sample with the others of its batch: on {R} ranks it would "
                      "see only its shard of {b} samples, not the global batch of {B}; train it in one process",
    "feature_matching": "--g-loss feature-matching matches the batch means of D's features: on {R} ranks each would "
                        "match its shard's means (of {b} samples), another objective than the global batch's; train "
                        "it in one process",
}


class OneProcess:
    """The run in this process alone: every hook does what the single-process command always did."""
    rank, size = 0, 1
    writes = True  # writes the run folder and shows the progress bar

    def use_device(self, device):
        return device

    def from_rank_zero(self, plan, *args):
        return plan(*args)

    def rank_zero_first(self, load, *args, **kwargs):
        return load(*args, **kwargs)

    def refusals(self, config):
        return []

    def data_mismatch(self, fingerprint):
        return None

    def prepare(self, models, optimizers, sync_bn):
        pass

    def shard(self, batch):
        return batch

    def step(self, play, *args, **kwargs):
        return play(*args, **kwargs)

    def check_in_sync(self, optimizers):
        pass

    def announce(self):
        pass


class DataParallelTraining(OneProcess):
    """The run on the ranks of `comm` (an MPICommunicator of size > 1)."""

    def __init__(self, comm, timeout=None):
        self.comm, self.rank, self.size, self.writes = comm, comm.rank, comm.size, comm.rank == 0
        if timeout is not None:
            comm.watchdog = Watchdog(timeout, comm.abort)
        self.threads = share_the_cores(comm)
        self.dp = None

    def use_device(self, device):
        """On GPUs, NCCL between them (each rank takes GPU local_rank): before anything is allocated there."""
        if backend.normalize_device(device) == "cuda" and not isinstance(self.comm, NCCLCommunicator):
            self.comm = NCCLCommunicator(self.comm)
        return device

    def from_rank_zero(self, plan, *args):
        """Rank 0's plan(*args) on every rank: rank 0 computes it (or fails: then every rank raises its error)."""
        return self._share(plan, args, {}, everyone_after=False)

    def rank_zero_first(self, load, *args, **kwargs):
        """load(*args, **kwargs) on rank 0, then on the others (so that a download into the cache happens once);
        if it fails on rank 0, every rank raises its error."""
        return self._share(load, args, kwargs, everyone_after=True)

    def _share(self, fn, args, kwargs, everyone_after):
        if self.rank == 0:
            try:
                result = fn(*args, **kwargs)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - the others must hear of it, whatever it is
                self.comm.broadcast_object(("error", _sendable(err)))
                raise
            self.comm.broadcast_object(("ok", None if everyone_after else result))
            return result
        kind, value = self.comm.broadcast_object(None)
        if kind == "error":
            raise value
        return fn(*args, **kwargs) if everyone_after else value

    def refusals(self, config):
        """What this run cannot do on these ranks, one message each (the settings are all filled in)."""
        batch, ranks = config["batch_size"], self.size
        errors = []
        if batch % ranks:
            errors.append(f"--batch-size {batch} does not split over {ranks} ranks: the global batch is divided into "
                          f"equal shards, so choose a batch size that {ranks} divides (or another number of ranks)")
        values = {"R": ranks, "b": batch // ranks, "B": batch}
        if config.get("minibatch_disc"):
            errors.append(SHARD_BLIND["minibatch_disc"].format(**values))
        if config.get("g_loss") == "feature-matching":
            errors.append(SHARD_BLIND["feature_matching"].format(**values))
        return errors

    def data_mismatch(self, fingerprint):
        """Why the ranks cannot train together on the data they read (None if they can): each reads its own copy,
        and every rank must see the same images."""
        fingerprints = self.comm.allgather_object(fingerprint)
        differing = [r for r, f in enumerate(fingerprints) if f != fingerprints[0]]
        if differing:
            return (f"rank {differing[0]} read other training images than rank 0 (fingerprint "
                    f"{fingerprints[differing[0]]!r}, rank 0: {fingerprints[0]!r}): every rank must see the same data "
                    "(the same MNIST cache, --data-dir or folder)")
        return None

    def prepare(self, models, optimizers, sync_bn):
        """Data-parallel layers, rank 0's weights on every rank, gradient averaging in the optimisers."""
        self.dp = DataParallel(self.comm, models, optimizers, sync_bn=sync_bn)
        self.check_in_sync(optimizers)

    def shard(self, batch):
        return self.dp.shard(batch)

    def step(self, play, *args, **kwargs):
        return self.dp.step(play, *args, **kwargs)

    def check_in_sync(self, optimizers):
        """Every rank holds the same weights, random state and optimiser state (raises if not)."""
        self.dp.check_in_sync()
        digest = hashlib.blake2b(digest_size=16)
        for opt in optimizers:
            for state in opt.state:
                for key in sorted(state):
                    value = state[key]
                    digest.update(key.encode())
                    digest.update(np.ascontiguousarray(backend.to_numpy(value)).tobytes() if hasattr(value, "shape")
                                  else repr(value).encode())
        digests = self.comm.allgather_object(digest.hexdigest())
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise RuntimeError(f"ranks {differing} hold another optimiser state than rank 0")

    def announce(self):
        """Rank 0 prints the rank map (which process and host each rank is: mpiexec names a killed rank by its
        process id). A collective: every rank calls it."""
        line = self.comm.describe()
        if self.rank == 0:
            print(f"{line}; {self.threads} per rank", flush=True)


def share_the_cores(comm):
    """Limit this rank's CPU threads (the kernels' OpenMP threads and OpenBLAS's) to its share of the node's cores,
    unless OMP_NUM_THREADS says how many: R ranks with every core each would fight over them. Returns how many, in
    words."""
    if os.environ.get("OMP_NUM_THREADS"):
        return f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} CPU threads"
    from threadpoolctl import threadpool_limits
    threads = comm.threads_per_rank()
    threadpool_limits(threads)  # called, not entered: the limits stay for the rest of the process
    return f"{threads} CPU thread{'s' if threads > 1 else ''}"


def parallel_for(comm, timeout=None):
    """The Parallel object of a run on `comm` (None or a one-rank communicator: this process alone); `timeout`
    (seconds) ends the job when a collective waits longer."""
    if comm is None or comm.size == 1:
        return OneProcess()
    return DataParallelTraining(comm, timeout)


def launch(main, argv=None):
    """main(argv, comm) -> exit code, as this process's part of the run: under an MPI launcher that started
    several ranks, one rank of them (see the module's docstring); else main(argv) alone."""
    if not launched_by_mpi():
        return main(argv)
    comm = init()
    if comm.size == 1:
        return main(argv)
    stopping = comm.mpi.Dup()  # the exit agreement's own communicator: it never meets a collective of the run
    kept = _quiet(comm.rank)
    agreed = {}

    def rank_main():
        try:
            code = main(argv, comm)
        except SystemExit as stop:
            code = stop.code
        except BaseException:
            _replay(kept)  # the traceback run_on_every_rank prints, after what this rank said before
            raise
        if code in (0, None):
            return code
        if _everyone_stops(stopping):
            agreed["code"] = code  # the same error on every rank, reported by rank 0
            return 0
        _replay(kept)
        return code  # this rank stopped alone: run_on_every_rank ends the job, naming it

    run_on_every_rank(comm, rank_main)
    return agreed.get("code", 0)


def _sendable(err):
    """`err` if it can travel to the other ranks (pickled between this run's own processes), else its message."""
    try:
        pickle.dumps(err)
        return err
    except Exception:  # noqa: BLE001 - an exception with unpicklable arguments
        return RuntimeError(f"{type(err).__name__}: {err}")


def _quiet(rank):
    """Ranks other than 0 print nothing: their output goes nowhere, their error output into a buffer (returned)."""
    if rank == 0:
        return None
    sys.stdout = open(os.devnull, "w")
    sys.stderr = kept = io.StringIO()
    return kept


def _replay(kept):
    """Show what this rank wrote to its error output, and let it write there again."""
    if kept is not None and sys.stderr is kept:
        sys.stderr = sys.__stderr__
        sys.stderr.write(kept.getvalue())
        sys.stderr.flush()


def _everyone_stops(stopping):
    """Whether every rank reaches this point within AGREE_S seconds (a non-blocking barrier, polled)."""
    request = stopping.Ibarrier()
    deadline = time.monotonic() + AGREE_S
    while not request.Test():
        if time.monotonic() > deadline:
            return False  # (a collective request cannot be cancelled: this rank is about to end the job)
        time.sleep(0.01)
    return True
