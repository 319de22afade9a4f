"""NumPy's OpenBLAS runs its threaded work on the native kernels' OpenMP threads (fastgan/kernels/blas_threads.py),
whatever the order of the imports: same results as OpenBLAS's own threads, nothing printed, a forked child that
still multiplies matrices, and FASTGAN_OPENBLAS_OWN_THREADS=1 to opt out."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from conftest import native_kernels_missing
from fastgan import dispatch

if dispatch.implementation("cpu") is None:
    native_kernels_missing("fastgan's native CPU kernels (fastgan._C) are not built here", module_level=True)
from fastgan.kernels import blas_threads, cpu  # noqa: E402


def _takes_the_callback(info):
    if info["internal_api"] != "openblas" or info["threading_layer"] != "pthreads":
        return False
    return tuple(int(part) for part in (info["version"] or "0").split(".")[:3]) >= (0, 3, 27)


OPENBLAS = [info["filepath"] for info in threadpool_info() if _takes_the_callback(info)]
pytestmark = pytest.mark.skipif(not OPENBLAS, reason="NumPy's BLAS is no OpenBLAS >= 0.3.27 on its own pthreads")

ENV = {k: v for k, v in os.environ.items()
       if k not in ("OPENBLAS_THREAD_TIMEOUT", "FASTGAN_OPENBLAS_OWN_THREADS", "FASTGAN_IMPL")}
ENV["OPENBLAS_NUM_THREADS"] = "2"  # threaded GEMMs even on a 1-core machine


def python(code, timeout=120, **env):
    """Run `code` in a fresh interpreter -> (stdout, stderr)."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                         env={**ENV, **env})
    assert run.returncode == 0, run.stderr
    return run.stdout, run.stderr


# a user's first script: a layer forward and backward, then a product of NumPy's own
SCRIPT = """
import fastgan.functional as F
x = fastgan.randn(8, 3, 12, 12, requires_grad=True)
w = fastgan.randn(16, 3, 4, 4, requires_grad=True)
F.leaky_relu(F.conv2d(x, w, stride=2, padding=1), 0.2).sum().backward()
a = numpy.ones((300, 300), numpy.float32)
from fastgan.kernels import cpu
print(len(cpu.OPENBLAS_ON_KERNEL_THREADS), (a @ a)[0, 0], cpu._C.blas_calls_run() > 0)
"""


@pytest.mark.parametrize("imports", ["import numpy, fastgan", "import fastgan, numpy"])
def test_either_import_order_prints_nothing_and_shares_the_threads(imports):
    out, err = python(imports + SCRIPT)
    assert err == ""
    assert out.split() == ["1", "300.0", "True"]


# NumPy first, then a second of matrix products, each followed by a native kernel (the pattern of a training step);
# prints the CPU time that OpenBLAS's own worker threads (the threads NumPy's import started) used meanwhile
SPIN = """
import os, threading, time
import numpy
time.sleep(0.3)  # OpenBLAS's workers, started with NumPy, busy-wait ~0.1 s before they first sleep
main = threading.get_native_id()
workers = [int(tid) for tid in os.listdir("/proc/self/task") if int(tid) != main]
def cpu_seconds():
    fields = [open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split() for tid in workers]
    return sum(int(f[11]) + int(f[12]) for f in fields) / os.sysconf("SC_CLK_TCK")  # utime + stime
import fastgan
from fastgan.kernels import cpu
a = numpy.ones((300, 300), numpy.float32)
x = numpy.ones(1 << 20, numpy.float32)
before, end = cpu_seconds(), time.perf_counter() + 1.0
while time.perf_counter() < end:
    a @ a
    cpu.leaky_relu_forward(x, 0.2)
print(len(workers), cpu_seconds() - before)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the threads' CPU times from /proc")
def test_openblas_own_threads_do_not_spin_after_a_numpy_first_import():
    """The cause of the slow step, measured directly: OpenBLAS's own workers busy-wait after each product they
    helped with. With the kernels' threads running OpenBLAS's jobs, its workers get none and use no CPU time; the
    control (OpenBLAS's own threads) shows that the measurement sees them work."""
    workers, ours = python(SPIN)[0].split()
    assert int(workers) == 1
    assert float(ours) <= 0.03, f"OpenBLAS's own worker used {ours} s of CPU"
    _, theirs = python(SPIN, FASTGAN_OPENBLAS_OWN_THREADS="1")[0].split()
    assert float(theirs) >= 0.05, f"the control: OpenBLAS's own worker used only {theirs} s of CPU"


def test_fastgan_openblas_own_threads_leaves_openblas_alone():
    out, err = python("import numpy, fastgan" + SCRIPT, FASTGAN_OPENBLAS_OWN_THREADS="1")
    assert (out.split(), err) == (["0", "300.0", "False"], "")


def test_a_forked_child_multiplies_on_openblas_own_threads():
    """GNU OpenMP cannot start threads in a child forked from a process that had some: the child hands OpenBLAS
    its own threads back (without that it would hang here)."""
    out, _ = python("""
import os, numpy, fastgan
from fastgan.kernels import cpu
a = numpy.ones((300, 300), numpy.float32)
a @ a; cpu.leaky_relu_forward(a, 0.2)  # both kinds of threads started
pid = os.fork()
if pid == 0:
    before = cpu._C.blas_calls_run()
    print("child", (a @ a)[0, 0], cpu._C.blas_calls_run() - before, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
""", timeout=60)
    assert out.split() == ["child", "300.0", "0"]


# (m, k, n): the DCGAN's products (G's first layer, D's last, a middle layer's weight gradient) and odd sizes
SHAPES = [(128, 100, 12544), (128, 6272, 1), (128, 1024, 256), (257, 129, 515), (1, 3000, 2000)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", SHAPES)
def test_products_on_the_kernel_threads_equal_openblas_own(dtype, m, k, n):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    callback = cpu._C.blas_threads_callback()
    with threadpool_limits(2, user_api="blas"):
        try:
            assert set(OPENBLAS) <= set(blas_threads.run_jobs_with(0))  # (SciPy may have loaded its own since)
            before = cpu._C.blas_calls_run()
            theirs = a @ b
            assert cpu._C.blas_calls_run() == before
        finally:
            assert set(OPENBLAS) <= set(blas_threads.run_jobs_with(callback))
        ours = a @ b
    np.testing.assert_array_equal(ours, theirs)


def test_calls_from_two_python_threads_at_once():
    """Job i of a call uses the scratch buffer of OpenBLAS's thread i: the callback runs one call at a time."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 400))
    v = rng.standard_normal(400)
    expected = (a @ a, a @ v)
    wrong = []

    def work():
        for _ in range(20):
            if not (np.array_equal(a @ a, expected[0]) and np.array_equal(a @ v, expected[1])):
                wrong.append(1)
    with threadpool_limits(2, user_api="blas"):
        workers = [threading.Thread(target=work) for _ in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    assert not wrong
