"""Which kernel implementation runs an op: the one place that decides.

Implementations are modules with the same function names (see kernels/reference.py, the specification):
    reference  NumPy, readable, the oracle for the others          (fastgan.kernels.reference)
    cpu        C++/OpenMP kernels from csrc/cpu, if they were built (fastgan.kernels.cpu)
    triton     Triton kernels on CuPy memory                        (fastgan.kernels.triton)
    cuda       CUDA C++ kernels from csrc/cuda through CuPy         (fastgan.kernels.cuda)

For each device there is an order of preference; an op runs on the first implementation that is available and
has it. Choose explicitly, from strongest to weakest:
    conv2d(..., impl="reference")                    per call
    with fastgan.dispatch.use("reference"): ...      for a block (tests and benchmarks pin implementations so)
    FASTGAN_IMPL=reference  or  FASTGAN_IMPL=conv2d_forward=reference,adam_step=cpu   environment variable
"""
import contextlib
import importlib
import os
import warnings

PREFERENCE = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton")}
DEVICE_OF = {"reference": "cpu", "cpu": "cpu", "triton": "cuda", "cuda": "cuda"}
_MODULES = {"reference": "fastgan.kernels.reference", "cpu": "fastgan.kernels.cpu",
            "triton": "fastgan.kernels.triton", "cuda": "fastgan.kernels.cuda"}
_loaded = {}
_why_not = {}  # implementation name -> why it did not load (its ImportError's message)
_pinned = []  # stack of implementation names set by use()


def implementation(name):
    """The module of implementation `name`, or None if it cannot be loaded here (not built, no GPU, ...)."""
    if name not in _MODULES:
        raise ValueError(f"unknown kernel implementation {name!r}: expected one of {sorted(_MODULES)}")
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(_MODULES[name])
        except ImportError as err:
            _loaded[name] = None
            _why_not[name] = str(err)
            if name == "cpu":  # the GPU implementations are absent on most machines; this one should be there
                warnings.warn(f"{err}; fastgan runs on its NumPy reference kernels (slower). Reinstall with a C++ "
                              "compiler present (pip install -e .) to build them.", RuntimeWarning, stacklevel=2)
    return _loaded[name]


def why_unavailable(name):
    """Why implementation `name` does not load here (None when it does)."""
    return None if implementation(name) is not None else _why_not.get(name, "it did not load")


def available(device=None):
    """The implementations that load on this machine (for `device`, or all)."""
    names = PREFERENCE[device] if device else tuple(_MODULES)
    return [n for n in names if implementation(n) is not None]


def _from_environment(op):
    setting = os.environ.get("FASTGAN_IMPL", "").strip()
    if not setting:
        return None
    if "=" not in setting:
        return setting
    for item in setting.split(","):
        name, _, impl = item.partition("=")
        if name.strip() == op:
            return impl.strip()
    return None


def kernel(op, device="cpu", impl=None):
    """The function that implements kernel `op` (e.g. "conv2d_forward") on `device`."""
    impl = impl or (_pinned[-1] if _pinned else None) or _from_environment(op)
    if impl is not None:
        module = implementation(impl)
        if module is None or not hasattr(module, op):
            raise RuntimeError(f"kernel implementation {impl!r} does not provide {op!r} on this machine "
                               f"(available: {available()})")
        if DEVICE_OF[impl] != device:
            raise RuntimeError(f"implementation {impl!r} runs on {DEVICE_OF[impl]}, but the data is on {device}")
        return getattr(module, op)
    for name in PREFERENCE[device]:
        module = implementation(name)
        if module is not None and hasattr(module, op):
            return getattr(module, op)
    raise RuntimeError(f"no kernel implementation provides {op!r} on {device}")


@contextlib.contextmanager
def use(impl):
    """Run every kernel in this block with implementation `impl` (None: the default choice)."""
    _pinned.append(impl)
    try:
        yield
    finally:
        _pinned.pop()


def describe(device="cpu"):
    """{kernel op: implementation that runs it by default, or None where none does on `device`} — what
    `python -m fastgan.kernels` prints (the *_bf16 ops are the bfloat16 products of fastgan.autocast)."""
    reference = implementation("reference")
    ops = [n for n in reference.__all__ if n.endswith(("_forward", "_backward", "_step", "_bf16"))
           or n == "round_to_bfloat16"]
    chosen = {}
    for op in ops:
        try:
            fn = kernel(op, device)
        except RuntimeError:
            chosen[op] = None
            continue
        chosen[op] = next(n for n in PREFERENCE[device] if getattr(implementation(n), op, None) is fn)
    return chosen
