"""The Triton kernels (fastgan/kernels/triton/) against the NumPy reference, on the cases of kernel_cases.py.

Without a GPU, Triton's interpreter runs the kernels on the CPU (TRITON_INTERPRET=1, set below before triton is
imported) with torch CPU tensors as the carriers; on a GPU they run compiled, on CuPy arrays. Each test body takes
the implementation's name, so another GPU implementation joins by being added to GPU_IMPLS.
"""
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastgan import backend

if not backend.cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is not installed: the Triton kernels cannot be tested")

from fastgan import dispatch  # noqa: E402

GPU_IMPLS = ["triton"]


@pytest.fixture(params=GPU_IMPLS)
def kernel_impl(request):
    name = request.param
    if dispatch.implementation(name) is None:
        pytest.skip(f"kernel implementation {name!r} is not available on this machine")
    return name


from kernel_bodies import *  # noqa: E402,F401,F403  (the shared test bodies, run here on triton)


# --- the package itself -------------------------------------------------------------------------------------------

def test_package_does_not_import_torch():
    code = "import sys, fastgan.kernels.triton; assert 'torch' not in sys.modules, 'fastgan imported torch'"
    env = dict(os.environ, TRITON_INTERPRET=os.environ.get("TRITON_INTERPRET", "0"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_cupy_style_arrays_become_triton_pointers():
    """The GPU path in miniature: an object with __cuda_array_interface__ (as CuPy arrays have) is launched as a
    pointer whose dtype Triton's own argument specialisation reads as fp32 / fp64."""
    from triton.runtime.jit import mangle_type

    from fastgan.kernels.triton import _carrier

    class FakeCupy:
        def __init__(self, dtype):
            self.__cuda_array_interface__ = {"data": (0x7F0000001000, False), "typestr": np.dtype(dtype).str,
                                             "shape": (4,), "version": 3}

    for dtype, expected in ((np.float32, "*fp32"), (np.float64, "*fp64")):
        pointer = _carrier._pointer(FakeCupy(dtype))
        assert pointer.data_ptr() == 0x7F0000001000
        assert mangle_type(pointer) == expected
    with pytest.raises(TypeError, match=r"fastgan.kernels.triton works on GPU arrays \(CuPy\)"):
        _carrier._pointer(np.zeros(3, np.float32))


# --- every launch above also compiles for a real GPU --------------------------------------------------------------
# The interpreter runs kernels as NumPy code, which accepts some programs the GPU compiler rejects (types, layouts,
# tl.dot shapes). So the fixture below records the signature of every launch the tests make, and the last test
# compiles each distinct one (block sizes aside) ahead of time for sm_90 (H100) with Triton's own compiler and
# ptxas, no GPU needed. It runs last in this module; run alone it has nothing to compile and skips.

_LAUNCHES = {}


def _launch_spec(kernel, args, constexprs):
    """(key, spec): the compile signature of one launch. The key is the kernel, its pointer dtypes and its flags:
    launches that differ only in BLOCK sizes or in which integers are 1 compile once (the first seen)."""
    signature, constants = {}, {}
    for param, value in zip(inspect.signature(kernel.fn).parameters.values(), args):
        if value is None or (type(value) is int and value == 1):   # as Triton's launcher specialises them
            signature[param.name], constants[param.name] = "constexpr", value
        elif param.annotation is not inspect.Parameter.empty:                # float hyperparameters: tl.float64
            signature[param.name] = param.annotation.name
        elif isinstance(value, int):
            signature[param.name] = "i32" if -2**31 <= value < 2**31 else "i64"
        else:
            signature[param.name] = "*fp32" if str(value.dtype).endswith("float32") else "*fp64"
    for name, value in constexprs.items():
        signature[name], constants[name] = "constexpr", value
    spec = dict(module=kernel.fn.__module__, name=kernel.fn.__name__, signature=signature, constants=constants)
    pointers = {k: v for k, v in signature.items() if v.startswith("*")}
    flags = {k: v for k, v in constexprs.items() if not k.startswith("BLOCK")}
    key = json.dumps([spec["name"], pointers, flags, [k for k, v in constants.items() if v is None]])
    return key, spec


@pytest.fixture(autouse=True)
def _record_launches(monkeypatch):
    if dispatch.implementation("triton") is None:
        yield
        return
    from fastgan.kernels.triton import _carrier
    launch = _carrier.launch

    def recording(kernel, grid, *args, num_warps=4, **constexprs):
        key, spec = _launch_spec(kernel, args, constexprs)
        _LAUNCHES.setdefault(key, spec)
        return launch(kernel, grid, *args, num_warps=num_warps, **constexprs)
    monkeypatch.setattr(_carrier, "launch", recording)
    yield


_COMPILE_SCRIPT = r'''
import importlib, json, multiprocessing, os, sys, types
import fastgan.kernels
# the kernel modules without the package __init__ (which wants a GPU or the interpreter)
package = types.ModuleType("fastgan.kernels.triton")
package.__path__ = [os.path.join(os.path.dirname(fastgan.kernels.__file__), "triton")]
sys.modules["fastgan.kernels.triton"] = package
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource


def compile_one(spec):
    kernel = getattr(importlib.import_module(spec["module"]), spec["name"])
    try:
        triton.compile(ASTSource(kernel, spec["signature"], spec["constants"]), target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": 4})
    except Exception as err:  # noqa: BLE001 - report every failing launch, not just the first
        return f"{spec['name']} {spec['constants']}: {err}"


if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(min(4, os.cpu_count() or 1)) as pool:
        failures = [f for f in pool.map(compile_one, json.load(sys.stdin), chunksize=1) if f]
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)
'''


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="on a GPU the tests above compile for real")
def test_every_launch_compiles_for_sm90(tmp_path):
    if not _LAUNCHES:
        pytest.skip("no launches recorded: run the whole module")
    specs = list(_LAUNCHES.values())
    # TF32 variants of the float32 convolution tiles (FASTGAN_TRITON_TF32=1), which the interpreter cannot tell apart
    specs += [dict(spec, constants=dict(spec["constants"], PRECISION="tf32"))
              for spec in _LAUNCHES.values() if spec["constants"].get("PRECISION") == "ieee"
              and all(t != "*fp64" for t in spec["signature"].values())]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    result = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], input=json.dumps(specs), text=True,
                            capture_output=True, env=env)
    assert result.returncode == 0, f"{len(specs)} launches compiled for sm_90; failures:\n{result.stderr[-5000:]}"
