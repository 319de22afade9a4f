"""When one rank fails, the whole job ends, and the message names the rank.

The other ranks are usually waiting for the failed one inside a collective, and would wait forever. What ends them:

    killed (SIGKILL, out of memory, a crash)  the launcher: MPICH's mpiexec (hydra) sees a rank end abnormally and
                                               kills the others at once ("BAD TERMINATION ... PID <pid>"; the pid
                                               is named in the rank map that Communicator.describe() prints: the
                                               first process mpiexec reaps, usually the killed rank)
    an exception, or a non-zero exit code      run_on_every_rank: prints the traceback and "rank R of N: ..." and
                                               calls MPI_Abort, which ends every rank. Without it, the failed
                                               rank would wait in MPI_Finalize and the others in their collective:
                                               hydra ends a job only when a rank exits abnormally.
    stuck (a rank that never arrives)           the Watchdog, with a timeout: a collective that has waited longer
                                               aborts the job
"""
import threading
import time
import traceback


def run_on_every_rank(comm, main, *args, **kwargs):
    """main(*args, **kwargs) -> exit code, on this rank. With several ranks, a rank that fails (an exception or a
    non-zero exit code) aborts the whole job, naming itself; alone, it behaves as a plain call."""
    if comm.size == 1:
        return main(*args, **kwargs)
    try:
        code = main(*args, **kwargs)
    except SystemExit as stop:
        code = stop.code
    except BaseException as err:  # noqa: BLE001 - whatever it is, the other ranks must not wait for this one
        traceback.print_exc()
        comm.abort(f"failed with {type(err).__name__}: {err}")
    if code not in (0, None):
        comm.abort(f"stopped with exit code {code}", code if isinstance(code, int) else 1)
    return code


class Watchdog:
    """Ends the job when this rank has waited in one collective for longer than `timeout` seconds.

    A thread checks a few times per timeout whether the collective now running (enter .. leave) began too long
    ago; it calls expire(message) then (the communicator's abort: MPI_Abort may be called from any thread, since
    mpi4py asks for MPI_THREAD_MULTIPLE). Entering and leaving only set an attribute: the collectives stay cheap.
    The timeout must exceed the longest work one rank does while the others wait at the next collective (rank 0
    writing samples, plots and checkpoints, or running the quality evaluation).
    """

    def __init__(self, timeout, expire):
        if timeout <= 0:
            raise ValueError(f"Watchdog: timeout must be positive, got {timeout}")
        self.timeout, self._expire = timeout, expire
        self._waiting = None  # (what, since) while in a collective
        threading.Thread(target=self._watch, name="fastgan-watchdog", daemon=True).start()

    def enter(self, what):
        self._waiting = (what, time.monotonic())

    def leave(self):
        self._waiting = None

    def _watch(self):
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[1] > self.timeout:
                what, since = waiting
                self._expire(f"{what} has waited {time.monotonic() - since:.0f} s (timeout {self.timeout:g} s) for "
                             "the other ranks: one of them is stuck or gone")
                return

