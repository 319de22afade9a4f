"""Where arrays live: NumPy on the CPU, CuPy on a GPU. The rest of fastgan asks this module, never imports CuPy."""
import ctypes
import sys

import numpy as np

DEVICES = ("cpu", "cuda")


def normalize_device(device):
    """'cpu', 'cuda', 'cuda:0' or 'auto' -> 'cpu' | 'cuda' (auto picks the GPU when CuPy finds one)."""
    name = str(device).split(":")[0].lower()
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of 'cpu', 'cuda', 'auto'")
    return name


def cuda_available():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver or no device all mean "no GPU"
        return False


def array_module(device):
    """The NumPy-like module that holds arrays on `device`."""
    if normalize_device(device) == "cpu":
        return np
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError("device 'cuda' needs CuPy: pip install -e '.[gpu]'") from err
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
