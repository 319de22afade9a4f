"""What the GPU benchmarks share: a clean skip when there is nothing to measure on."""
import sys


def require_gpu_and_torch(benchmark):
    """(torch, cupy) when CuPy sees a GPU and torch has CUDA; otherwise print 'SKIP <benchmark>: why' and exit 0."""
    from fastgan import backend

    def skip(reason):
        print(f"SKIP {benchmark}: {reason}")
        sys.exit(0)
    if not backend.cuda_available():
        skip("no CUDA GPU visible to CuPy (this benchmark runs on a GPU machine)")
    try:
        import torch
    except ImportError:
        skip("torch is not installed: nothing to compare with")
    if not torch.cuda.is_available():
        skip("torch has no CUDA: nothing to compare with on the GPU")
    import cupy
    return torch, cupy
