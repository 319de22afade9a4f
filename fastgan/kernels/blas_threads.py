"""NumPy's OpenBLAS runs its threaded work on the native kernels' OpenMP threads: one pool of threads, not two.

OpenBLAS's own worker threads busy-wait for ~0.1 s after every threaded matrix product. A training step alternates
those products with fastgan's OpenMP kernels, which then share the cores with a spinning thread (the DCGAN step
took 1.6x as long on 2 cores). OpenBLAS reads its spin time (OPENBLAS_THREAD_TIMEOUT) once, when NumPy loads it, so
nothing fastgan sets can change it for a script that imported NumPy first. But since version 0.3.27 OpenBLAS takes
a function that runs its jobs in place of its own threads (openblas_set_threads_callback_function), and fastgan._C
has one that runs them on the OpenMP threads of its kernels, which sleep when idle (csrc/cpu/blas_threads.cpp).
OpenBLAS's own workers then get no more work and sleep, whatever the order of the imports.

fastgan.kernels.cpu hands the callback over when it loads, to every OpenBLAS loaded by then that runs on its own
pthreads (found with threadpoolctl): NumPy's, and SciPy's if SciPy was imported. An OpenBLAS built on OpenMP, or
one older than 0.3.27 (no such callback), is left as it is; FASTGAN_OPENBLAS_OWN_THREADS=1 leaves every OpenBLAS
its own threads. A child process made by fork() gets OpenBLAS's own threads back: GNU OpenMP cannot start threads
in a child forked from a process that had some.
"""
import ctypes
import itertools
import os

from threadpoolctl import ThreadpoolController

# the names under which OpenBLAS builds export their functions (NumPy's wheels ship scipy-openblas:
# scipy_openblas_..._64_ or ...64_)
_PREFIXES = ("", "scipy_")
_SUFFIXES = ("", "64_", "_64")

_handed_over = []  # the set-callback functions of the libraries that run their jobs through ours


def _set_callback_function(library):
    for prefix, suffix in itertools.product(_PREFIXES, _SUFFIXES):
        function = getattr(library.dynlib, f"{prefix}openblas_set_threads_callback_function{suffix}", None)
        if function is not None:
            function.argtypes, function.restype = (ctypes.c_void_p,), None
            return function
    return None


def run_jobs_with(callback):
    """Make every pthreads OpenBLAS loaded in this process run its jobs through `callback`, a C function's address
    (0: OpenBLAS's own threads again). Returns the paths of the libraries that took it."""
    taken = []
    for library in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        set_callback = _set_callback_function(library)
        if library.threading_layer == "pthreads" and set_callback is not None:
            set_callback(callback or None)
            taken.append(library.filepath)
            if callback and set_callback not in _handed_over:
                _handed_over.append(set_callback)
    return taken


def _own_threads_in_a_forked_child():
    for set_callback in _handed_over:
        set_callback(None)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_own_threads_in_a_forked_child)
