"""Kernel implementations, one module each, all with the same function names:

    reference.py   NumPy — the specification and the teaching text; every other implementation is tested against it
    cpu.py         the C++/OpenMP kernels of csrc/cpu (compiled into fastgan._C by setup.py), when built
                   (blas_threads.py: NumPy's OpenBLAS then runs its threaded work on the same OpenMP threads)

`fastgan.dispatch` picks one per op and device; `python -m fastgan.kernels` prints which one runs each op.
"""
