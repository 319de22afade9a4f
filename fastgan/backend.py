"""Where arrays live: NumPy on the CPU, CuPy on a GPU. The rest of fastgan asks this module, never imports CuPy."""
import ctypes
import sys
from typing import NamedTuple

import numpy as np

DEVICES = ("cpu", "cuda")


def normalize_device(device):
    """'cpu', 'cuda', 'cuda:0' or 'auto' -> 'cpu' | 'cuda' (auto picks the GPU when cuda_available())."""
    name = str(device).split(":")[0].lower()
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of 'cpu', 'cuda', 'auto'")
    return name


class CudaStatus(NamedTuple):
    """What fastgan found out about the GPU: usable (a kernel compiled and ran), how many devices CuPy counts,
    and a one-line account (the reason when not usable)."""
    usable: bool
    devices: int
    detail: str


_PROBE_SOURCE = "template <typename T> __global__ void probe(T* out) { out[threadIdx.x] = T(2) * threadIdx.x + 1; }"
_probed = None   # (the cupy module probed, or None when it could not be imported; its CudaStatus)


def cuda_status():
    """Probe the GPU once per CuPy module: import CuPy, count devices, then compile (NVRTC) and run a tiny kernel
    with the RawModule API that kernels/cuda.py uses and read its result back. A GPU whose CuPy cannot compile
    (no NVRTC, a CuPy built for another CUDA major, a driver too old) is reported here, not at the first op."""
    global _probed
    if _probed is None or _probed[0] is not sys.modules.get("cupy"):   # first call, or another CuPy (tests)
        status = _probe_cuda()
        _probed = (sys.modules.get("cupy"), status)   # keyed on the module the probe imported (None: none)
    return _probed[1]


def _probe_cuda():
    try:
        import cupy
    except ModuleNotFoundError as err:
        if err.name == "cupy":
            return CudaStatus(False, 0, f"CuPy is not installed ({err})")
        return CudaStatus(False, 0, f"CuPy cannot be imported (ModuleNotFoundError: {err})")
    except Exception as err:  # noqa: BLE001 - a CuPy whose CUDA libraries are missing or do not match
        return CudaStatus(False, 0, f"CuPy cannot be imported ({type(err).__name__}: {_first_line(err)})")
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # noqa: BLE001 - no driver, no device: CuPy raises its own errors for each
        return CudaStatus(False, 0, f"CuPy finds no CUDA device ({type(err).__name__}: {_first_line(err)})")
    if devices == 0:
        return CudaStatus(False, 0, "CuPy finds no CUDA device")
    try:
        function = cupy.RawModule(code=_PROBE_SOURCE, name_expressions=["probe<float>"]).get_function("probe<float>")
        out = cupy.zeros(32, np.float32)
        function((1,), (32,), (out,))
        result = to_numpy(out)
    except Exception as err:  # noqa: BLE001 - NVRTC, driver and launch failures all mean "this GPU cannot be used"
        return CudaStatus(False, devices, f"CuPy sees {devices} CUDA device(s) but cannot compile and run a kernel "
                                          f"({type(err).__name__}: {_first_line(err)})")
    if not np.array_equal(result, 2 * np.arange(32, dtype=np.float32) + 1):
        return CudaStatus(False, devices, f"CuPy sees {devices} CUDA device(s) but a test kernel computed wrong "
                                          f"values ({result[:4]} ...)")
    return CudaStatus(True, devices, f"{devices} CUDA device(s); a test kernel compiled and ran")


def _first_line(err):
    return (str(err).strip().splitlines() or [""])[0][:300]


def cuda_available():
    """Whether device 'cuda' works here: CuPy sees a GPU and can compile and run a kernel on it (cached)."""
    return cuda_status().usable


def array_module(device):
    """The NumPy-like module that holds arrays on `device`."""
    if normalize_device(device) == "cpu":
        return np
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError("device 'cuda' needs CuPy: pip install -e '.[gpu-cuda12]' (or '.[gpu-cuda13]', the "
                           "CUDA major version of the machine)") from err
    return cupy


def xp(array):
    """The array module of an existing array."""
    return np if isinstance(array, (np.ndarray, np.generic)) else array_module("cuda")


def device_of(array):
    return "cpu" if isinstance(array, (np.ndarray, np.generic)) else "cuda"


def to_numpy(array):
    """A NumPy view of host data, or a host copy of a CuPy array."""
    return array.get() if type(array).__module__.startswith("cupy") else np.asarray(array)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_cpu_memory(mmap_threshold=32 << 20, trim_threshold=1 << 30):
    """Ask glibc's malloc to keep the memory of freed arrays for the next ones instead of returning it to the OS.

    A training step frees and re-allocates the same large activations every time. By default glibc maps each
    array of more than ~128 KB afresh and unmaps it when freed, and gives the top of its heap back when it is free:
    every new array then costs a page fault per 4 KiB on first touch (zeroed by the kernel, under a lock that the
    threads of one process share), which made the DCGAN step ~10 % slower. With arrays up to `mmap_threshold` taken
    from the heap, and up to `trim_threshold` bytes of free heap kept, the step's memory is recycled. Returns
    whether it applied (glibc on Linux only; elsewhere the allocator is left alone). FASTGAN_SYSTEM_MALLOC=1 skips
    it when fastgan is imported.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
