"""Where arrays live: NumPy on the CPU, CuPy on a GPU. The rest of fastgan asks this module, never imports CuPy."""
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
