"""The Triton kernels (fastgan/kernels/triton/) against the NumPy reference, on the cases of kernel_cases.py.

Without a GPU, Triton's interpreter runs the kernels on the CPU (TRITON_INTERPRET=1, set below before triton is
imported) with torch CPU tensors as the carriers; on a GPU they run compiled, on CuPy arrays. Each test body takes
the implementation's name, so another GPU implementation joins by being added to GPU_IMPLS.
"""
import functools
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
from kernel_cases import CONV_CASES, compare_outputs, run_impl  # noqa: E402
from fastgan.kernels import reference  # noqa: E402


# --- the package itself -------------------------------------------------------------------------------------------

def test_package_does_not_import_torch():
    """fastgan's own Triton modules never import torch (under the interpreter, so that Triton's GPU driver, which
    loads torch in Triton 3.6, is left out)."""
    code = "import sys, fastgan.kernels.triton; assert 'torch' not in sys.modules, 'fastgan imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, TRITON_INTERPRET="1"))


def test_every_kernel_is_there():
    """The package has every kernel that dispatch knows (the bfloat16 ones too, which run on a GPU only)."""
    module = dispatch.implementation("triton")
    if module is None:
        pytest.skip(f"the triton implementation is not available: {dispatch.why_unavailable('triton')}")
    assert [op for op in dispatch.describe("cpu") if not hasattr(module, op)] == []


def test_without_a_triton_gpu_driver_the_implementation_does_not_load_and_says_why():
    """A GPU that CuPy can use (faked here) but no GPU driver for Triton, as with Triton 3.6 beside a CPU-only torch:
    the first launch would fail with "0 active drivers", so the implementation refuses to load, and dispatch offers
    the cuda kernels only and tells why."""
    code = """if True:
        from fastgan import backend, dispatch
        backend.cuda_status = lambda: backend.CudaStatus(True, 1, "faked: CuPy compiled and ran a kernel")
        assert dispatch.implementation("triton") is None and "triton" not in dispatch.available("cuda")
        print(dispatch.why_unavailable("triton"))
        """
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cannot launch on the GPU" in result.stdout and "active drivers" in result.stdout, result.stdout


def test_gpu_launches_refuse_a_device_or_stream_other_than_cupys(monkeypatch):
    """Triton launches on its driver's current stream (torch's, when torch is loaded), fastgan's arrays live on
    CuPy's: a launch checks that both are the same. Faked: CuPy and Triton's driver."""
    import types

    from triton.runtime import driver

    from fastgan.kernels.triton import _carrier
    cupy_state = types.SimpleNamespace(device=0, stream=0)
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: cupy_state.device),
        get_current_stream=lambda: types.SimpleNamespace(ptr=cupy_state.stream)))
    fake_driver = types.SimpleNamespace(get_current_device=lambda: 0, get_current_stream=lambda device: 0)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(driver, "_active", fake_driver)
    monkeypatch.setattr(_carrier, "INTERPRETED", False)
    launched = []

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launched.append(grid)
    _carrier.launch(Kernel(), (3,), 7)
    assert launched == [(3,)]
    cupy_state.stream = 0x5A5A
    with pytest.raises(RuntimeError, match="Triton would launch on stream 0x0, but CuPy's current stream is 0x5a5a"):
        _carrier.launch(Kernel(), (3,), 7)
    cupy_state.stream, cupy_state.device = 0, 1
    with pytest.raises(RuntimeError, match="Triton would launch on GPU 0, but CuPy's current device is GPU 1"):
        _carrier.launch(Kernel(), (3,), 7)
    assert launched == [(3,)]


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


# --- launch configurations of a GPU, small enough for the interpreter -----------------------------------------------

@pytest.mark.parametrize("case", [c for c in CONV_CASES if c.dcgan and c.name[:2] in ("G3", "D1", "D2")],
                         ids=lambda c: c.name)   # 13, 13 and 4 splits (D2 of 32 tiles each); G2 would repeat D2
def test_weight_gradient_with_a_gpus_split_count(kernel_impl, case, monkeypatch):
    """On a GPU the weight gradient splits its sum over pixels across about GPU_WEIGHT_GRAD_PROGRAMS programs; the
    interpreter's default is a handful. Here the DCGAN layers at batch 2 split as a GPU would: several slices, a
    shorter last one, then the sum of the slices."""
    from fastgan.kernels.triton import conv
    monkeypatch.setattr(conv, "_WEIGHT_GRAD_PROGRAMS", conv.GPU_WEIGHT_GRAD_PROGRAMS)
    splits, weight_grad_splits = [], conv.weight_grad_splits
    monkeypatch.setattr(conv, "weight_grad_splits", lambda *args: splits.append(weight_grad_splits(*args)) or
                        splits[-1])
    x, weight, _, dy = case.inputs(np.float32)
    fn = case.fn + "_backward"
    expected = getattr(reference, fn)(*case.backward_args(dy, x, weight))[1]
    _, got, _ = run_impl(kernel_impl, fn, *case.backward_args(dy, x, weight), (False, True, False))
    compare_outputs(got, expected, np.float32, f"{fn} dweight, split as on a GPU")
    assert splits and splits[0][0] > 1, f"expected the GPU's count to split the sum, got {splits}"


# --- every launch above also compiles for a real GPU --------------------------------------------------------------
# The interpreter runs kernels as NumPy code, which accepts some programs the GPU compiler rejects (types, layouts,
# tl.dot shapes). So the fixture below records the signature of every launch the tests make, and the last test
# compiles each distinct one (block sizes aside) ahead of time for sm_90 (H100, H200) with Triton's own compiler and
# ptxas, no GPU needed. It runs last in this module; run alone it has nothing to compile and skips.
# The GPU machine may have another Triton than CI (Triton 3.6): FASTGAN_EXTRA_TRITON names folders that each hold
# another Triton (pip install --no-deps --target DIR triton==X), and the same launches also compile with each of
# them. Opt-in, as each is a download of ~600 MB: `bash .ci/triton-versions 3.6.0` makes the folder and runs this.

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
        if hasattr(kernel, "fn"):   # a @triton.jit kernel (the launch tests above pass fakes)
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
    specs = json.load(sys.stdin)
    with multiprocessing.get_context("fork").Pool(min(4, os.cpu_count() or 1)) as pool:
        failures = [f for f in pool.map(compile_one, specs, chunksize=1) if f]
    print(f"{len(specs)} launches compiled for sm_90 by triton {triton.__version__} from {triton.__file__}")
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)
'''


def _tritons():
    """None (this environment's Triton), then each folder of FASTGAN_EXTRA_TRITON (separated by os.pathsep)."""
    yield pytest.param(None, id="installed-triton")
    for folder in filter(None, os.environ.get("FASTGAN_EXTRA_TRITON", "").split(os.pathsep)):
        yield pytest.param(os.path.abspath(folder), id=os.path.basename(os.path.normpath(folder)))


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="on a GPU the tests above compile for real")
@pytest.mark.parametrize("triton_dir", list(_tritons()))
def test_every_launch_compiles_for_sm90(tmp_path, triton_dir):
    if not _LAUNCHES:
        pytest.skip("no launches recorded: run the whole module")
    specs = list(_LAUNCHES.values())
    # TF32 variants of the float32 convolution tiles (FASTGAN_TRITON_TF32=1), which the interpreter cannot tell apart
    specs += [dict(spec, constants=dict(spec["constants"], PRECISION="tf32"))
              for spec in _LAUNCHES.values() if spec["constants"].get("PRECISION") == "ieee"
              and all(t != "*fp64" for t in spec["signature"].values())]
    # and their bfloat16 versions (BF16=True: tiles rounded to bfloat16 for tl.dot), which the interpreter cannot run
    specs += [dict(spec, constants=dict(spec["constants"], BF16=True)) for spec in _LAUNCHES.values()
              if spec["constants"].get("BF16") is False and all(t != "*fp64" for t in spec["signature"].values())]
    specs.append(dict(module="fastgan.kernels.triton.conv", name="_round_kernel",
                      signature=dict(x_ptr="*fp32", y_ptr="*fp32", N="i32", BLOCK="constexpr"),
                      constants=dict(BLOCK=1024)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    if triton_dir is not None:   # that Triton first on the path
        assert os.path.isfile(os.path.join(triton_dir, "triton", "__init__.py")), f"no Triton in {triton_dir}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [triton_dir, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], input=json.dumps(specs), text=True,
                            capture_output=True, env=env)
    assert result.returncode == 0, f"{result.stdout}failures:\n{result.stderr[-5000:]}"
    if triton_dir is not None:
        assert f"from {triton_dir}{os.sep}" in result.stdout, f"another Triton was used: {result.stdout}"
    print(result.stdout)   # which Triton compiled how many launches (shown with pytest -s or -rA)


# --- bfloat16: tl.dot on bfloat16 tiles with float32 accumulators ----------------------------------------------------

@functools.lru_cache(maxsize=None)
def interpreter_bfloat16_problem():
    """Why Triton's interpreter cannot run the bf16 convolutions here (None on a GPU, or when it can): it is asked
    to round to bfloat16 and multiply 16×16 bfloat16 tiles, and its answers are checked."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        return None
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def probe(a_ptr, rounded_ptr, product_ptr):
        i = tl.arange(0, 16)
        a = tl.load(a_ptr + i[:, None] * 16 + i[None, :]).to(tl.bfloat16)
        tl.store(rounded_ptr + i[:, None] * 16 + i[None, :], a.to(tl.float32))
        product = tl.dot(a, a, tl.zeros((16, 16), tl.float32), out_dtype=tl.float32)
        tl.store(product_ptr + i[:, None] * 16 + i[None, :], product)

    a = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    rounded, product = torch.empty(16, 16), torch.empty(16, 16)
    probe[(1,)](torch.from_numpy(a), rounded, product)
    want = reference.round_to_bfloat16(a)
    problems = []
    if not np.array_equal(rounded.numpy(), want):
        problems.append("its float32 -> bfloat16 cast does not round to nearest even")
    if not np.allclose(product.numpy(), want @ want, rtol=1e-5, atol=1e-5):
        problems.append("its tl.dot of bfloat16 tiles is wrong (it multiplies their 16-bit storage as integers)")
    return (f"Triton {triton.__version__}'s interpreter cannot run the bf16 convolutions: {'; '.join(problems)}"
            if problems else None)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.name)
def test_bf16_conv_against_the_reference(kernel_impl, case):
    """conv.py's *_bf16 versions (BF16=True: tiles rounded to bfloat16, float32 accumulators) within the bound of
    tests/test_bfloat16.py (the same rounded operands; only the order of the float32 sums differs)."""
    problem = interpreter_bfloat16_problem()
    if problem:
        pytest.skip(problem)
    from fastgan.kernels.triton import conv
    from kernel_cases import carrier
    from test_bfloat16 import check_bf16_conv
    to, back, _ = carrier(kernel_impl)

    def triton_bf16(fn, *args):
        out = getattr(conv, fn + "_bf16")(*[to(a) if isinstance(a, np.ndarray) else a for a in args])
        return tuple(None if o is None else np.asarray(back(o)) for o in out) if isinstance(out, tuple) else \
            np.asarray(back(out))
    check_bf16_conv(kernel_impl, case, kernel=triton_bf16)


def test_the_interpreter_says_why_it_cannot_run_bfloat16():
    """The reason the bf16 tests above skip under the interpreter is measured, not assumed: if a later Triton runs
    them, the probe returns None and they run."""
    problem = interpreter_bfloat16_problem()
    if os.environ.get("TRITON_INTERPRET") != "1":
        assert problem is None
    elif problem is not None:
        assert problem.startswith("Triton ") and "interpreter cannot run the bf16 convolutions" in problem
