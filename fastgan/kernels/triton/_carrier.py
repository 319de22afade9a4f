"""What crosses a Triton launch: the arrays ("carriers") and the float hyperparameters.

On a GPU the arrays are CuPy arrays. Under TRITON_INTERPRET=1 (the CPU tests) they are torch CPU tensors, because
the interpreter copies kernel arguments through torch's storage API. Every wrapper in this package takes carriers,
allocates its outputs with `empty` (the same kind, device and dtype as an input) and launches through `launch`,
which hands Triton something it can read a pointer and a dtype from. torch is imported only when a torch tensor was
passed in, i.e. only in tests; fastgan never imports it otherwise (Triton 3.6's GPU driver does: see
gpu_driver_problem).

Triton launches on the stream its GPU driver calls current (torch's current stream when torch is loaded, else the
device's default stream), which fastgan cannot pass in; CuPy allocates and computes on CuPy's current stream. So
every GPU launch checks that the two are the same stream on the same device, and refuses otherwise: a kernel on
another stream could read an array before CuPy has finished writing it.
"""
import importlib
import os
import sys

import numpy as np
import triton
import triton.language as tl

# Matrix products (tl.dot) of float32 tiles: "ieee" (exact fp32 products, the default, so that results match the
# NumPy reference to ~1e-5) or "tf32" (10-bit mantissa inputs, ~1e-3 relative error, several times faster on
# tensor cores), chosen by FASTGAN_TRITON_TF32=1. float64 tiles always use "ieee".
TF32 = os.environ.get("FASTGAN_TRITON_TF32", "") == "1"
INTERPRETED = os.environ.get("TRITON_INTERPRET", "") == "1"


# --- carriers --------------------------------------------------------------------------------------------------

def _is_torch(a):
    return type(a).__module__.split(".")[0] == "torch"


class _DevicePointer:
    """What Triton's launcher needs of a pointer argument: data_ptr() and a dtype whose str() names the type."""

    __slots__ = ("ptr", "dtype")

    def __init__(self, ptr, dtype):
        self.ptr, self.dtype = ptr, dtype

    def data_ptr(self):
        return self.ptr


def _pointer(a):
    """A launch argument for carrier `a`: torch tensors go as they are; CuPy (or any __cuda_array_interface__
    array) goes as its device address and NumPy dtype (str(np.dtype) is "float32", which Triton maps to fp32)."""
    if hasattr(a, "data_ptr"):
        return a
    interface = getattr(a, "__cuda_array_interface__", None)
    if interface is None:
        raise TypeError(f"fastgan.kernels.triton works on GPU arrays (CuPy), or torch tensors under "
                        f"TRITON_INTERPRET=1; got {type(a).__module__}.{type(a).__name__}")
    return _DevicePointer(interface["data"][0], np.dtype(interface["typestr"]))


def _module(a):
    """The array library of carrier `a` (torch or cupy), imported on demand."""
    return importlib.import_module(type(a).__module__.split(".")[0])


def empty(like, shape):
    """An uninitialised array of `shape` with the kind, device and dtype of carrier `like` (0-d for shape ())."""
    if _is_torch(like):
        return _module(like).empty(tuple(shape), dtype=like.dtype, device=like.device)
    return _module(like).empty(tuple(shape), dtype=like.dtype)


def zeros(like, shape):
    """As `empty`, filled with zeros."""
    if _is_torch(like):
        return _module(like).zeros(tuple(shape), dtype=like.dtype, device=like.device)
    return _module(like).zeros(tuple(shape), dtype=like.dtype)


def numel(a):
    """The number of elements of a carrier (torch's .size is a method, CuPy's an int)."""
    return a.numel() if _is_torch(a) else a.size


def contiguous(a):
    """`a` itself when C-contiguous, else a contiguous copy (inputs only: a copy of an output would be lost)."""
    if a is None:
        return None
    if _is_torch(a):
        return a.contiguous()
    return a if a.flags.c_contiguous else _module(a).ascontiguousarray(a)


def require_contiguous(a, name):
    """State updated in place must be contiguous: a kernel writes through its flat address."""
    if a is not None and not (a.is_contiguous() if _is_torch(a) else a.flags.c_contiguous):
        raise ValueError(f"{name} must be C-contiguous to be updated in place")


def float_dtype(a):
    """"float32" or "float64" (the dtypes these kernels support) for a carrier of either library."""
    name = str(a.dtype).split(".")[-1]
    if name not in ("float32", "float64"):
        raise TypeError(f"fastgan.kernels.triton supports float32 and float64, got {a.dtype}")
    return name


def dot_precision(a):
    """The tl.dot input_precision for tiles of carrier `a`'s dtype (see TF32 above)."""
    return "tf32" if TF32 and float_dtype(a) == "float32" else "ieee"


def gpu_driver_problem():
    """None when Triton has an active GPU driver here, else why not (one line). Triton's CUDA driver is "active" in
    Triton 3.6 only when a CUDA build of torch is importable (it launches through torch's CUDA runtime); Triton
    3.9 also finds the CUDA driver without torch."""
    from triton.runtime import driver
    try:
        driver.active.get_current_device()
        return None
    except Exception as err:  # noqa: BLE001 - "0 active drivers", a missing libcuda, ...: Triton cannot launch
        torch = sys.modules.get("torch")
        seen = (f"torch {torch.__version__} is loaded with CUDA {torch.version.cuda}, "
                f"torch.cuda.is_available() = {torch.cuda.is_available()}" if torch is not None else
                "torch is not loaded")
        return (f"Triton {triton.__version__} cannot launch on the GPU: {type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]} ({seen}). Triton 3.6 needs a CUDA build of torch for its GPU "
                "driver; install one, or a Triton that launches without torch")


def check_cupy_stream():
    """Raise unless Triton's current device and stream are CuPy's (see the top of this file)."""
    cupy = sys.modules["cupy"]   # a GPU launch has CuPy arrays, so CuPy is loaded
    from triton.runtime import driver
    device = cupy.cuda.runtime.getDevice()
    if driver.active.get_current_device() != device:
        raise RuntimeError(f"fastgan.kernels.triton: Triton would launch on GPU {driver.active.get_current_device()}"
                           f", but CuPy's current device is GPU {device}; select the same device in both (torch."
                           "cuda.set_device where torch is loaded)")
    theirs, ours = driver.active.get_current_stream(device), cupy.cuda.get_current_stream().ptr
    if theirs != ours:
        raise RuntimeError(f"fastgan.kernels.triton: Triton would launch on stream {theirs:#x}, but CuPy's current "
                           f"stream is {ours:#x}; run fastgan's Triton kernels on CuPy's default stream, or make "
                           "the stream current in torch too (torch.cuda.ExternalStream) where torch is loaded")


def launch(kernel, grid, *args, num_warps=4, **constexprs):
    """kernel[grid](*args, **constexprs), carriers converted to pointers (None stays None: an unused pointer).
    A grid without programs (an empty batch) launches nothing: there is nothing to compute, and CUDA refuses it."""
    if 0 in tuple(grid):
        return
    if not INTERPRETED:
        check_cupy_stream()
    kernel[grid](*(_pointer(a) if a is not None and not isinstance(a, (int, float)) else a for a in args),
                 num_warps=num_warps, **constexprs)


# --- device-side helpers shared by the kernels -------------------------------------------------------------------

@triton.jit
def scalar(value, dtype: tl.constexpr):
    """A float hyperparameter in the compute dtype. Kernels declare such parameters `: tl.float64`, so float64
    kernels get them exactly (Triton passes unannotated Python floats as fp32); float32 kernels round them once."""
    return (tl.zeros([], dtype) + value).to(dtype)
