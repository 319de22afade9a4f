"""What the GPU benchmarks share: they either measure on a usable GPU or fail loudly, and every validation failure
ends the run with a non-zero exit status (after the table, so that what was measured is still printed)."""
import sys


def fail(benchmark, reason):
    """Stop now: print 'FAIL <benchmark>: reason' and exit 1."""
    print(f"FAIL {benchmark}: {reason}", file=sys.stderr, flush=True)
    sys.exit(1)


def require_gpu_and_torch(benchmark):
    """(torch, cupy) when fastgan can use the GPU (a kernel compiled and ran) and torch has CUDA; otherwise fail:
    a benchmark of the GPU has nothing to report without either."""
    from fastgan import backend
    status = backend.cuda_status()
    if not status.usable:
        fail(benchmark, f"no GPU that fastgan can use: {status.detail}")
    try:
        import torch
    except ImportError as err:
        fail(benchmark, f"torch, the comparison, cannot be imported ({err})")
    if not torch.cuda.is_available():
        fail(benchmark, f"torch {torch.__version__} has no CUDA (torch.version.cuda = {torch.version.cuda}): "
                        "nothing to compare with on the GPU")
    import cupy
    return torch, cupy


class Verdict:
    """The failures of one benchmark run: each is printed when found; exit() ends the run, 1 if there were any."""

    def __init__(self, benchmark):
        self.benchmark, self.failures = benchmark, []

    def fail(self, what):
        self.failures.append(what)
        print(f"FAILED: {what}", file=sys.stderr, flush=True)

    def exit(self):
        if self.failures:
            print(f"\n{self.benchmark}: {len(self.failures)} FAILURE(S), exit status 1:\n  " +
                  "\n  ".join(self.failures), flush=True)
            sys.exit(1)
        print(f"\n{self.benchmark}: every result was validated against torch", flush=True)
        sys.exit(0)


def gpu_implementations(verdict):
    """The names of fastgan's GPU kernel implementations that load here; each one that does not is a failure
    (with dispatch's reason), and none at all ends the run."""
    from fastgan import dispatch
    names = []
    for name in dispatch.PREFERENCE["cuda"]:
        reason = dispatch.why_unavailable(name)
        if reason is None:
            names.append(name)
        else:
            verdict.fail(f"fastgan's {name!r} GPU kernels do not load: {reason}")
    if not names:
        verdict.exit()
    return names


def best(times, names):
    """(name, value) of the smallest of times[name] over `names` that were measured (floats), or None."""
    measured = [(times[n], n) for n in names if isinstance(times.get(n), float)]
    return (min(measured)[1], min(measured)[0]) if measured else None
