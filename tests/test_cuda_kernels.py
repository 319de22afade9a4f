"""The CUDA kernels (csrc/cuda through fastgan/kernels/cuda.py) and the Triton kernels against the NumPy reference,
on the cases of kernel_cases.py (the DCGAN layers and odd shapes, float32 and float64).

    cuda-emulated   always (needs g++): the CUDA kernels run on the CPU under tests/cuda_emulator.py, driven by the
                    unchanged cuda.py — launch sizes, argument packing and the kernels' index arithmetic, without a GPU
    cuda, triton    on a GPU only (marked gpu; not collected elsewhere): the same cases on the device, on CuPy
                    arrays; an implementation that does not load there fails (the larger, DCGAN-batch cases are
                    in test_gpu.py)

The emulated implementation also trains two whole DCGAN steps against the reference implementation.
"""
import importlib
import sys

import numpy as np
import pytest

import fastgan
from fastgan import backend, dispatch, optim
from fastgan.gan import train_step
from fastgan.kernels import reference
from fastgan.models.dcgan import dcgan_mnist
from cuda_emulator import compiler, fake_cupy
from kernel_cases import CONV_CASES, check_against_reference, run_impl
from test_bfloat16 import assert_ml_dtypes_rounding, awkward_floats

BOTH = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


@pytest.fixture
def emulated_cuda(monkeypatch):
    """fastgan.kernels.cuda imported over the fake CuPy: "cuda" then runs on NumPy arrays, on the CPU."""
    if compiler() is None:
        pytest.skip("no C++ compiler (g++): the CUDA kernels cannot be emulated here")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    monkeypatch.delitem(sys.modules, "fastgan.kernels.cuda", raising=False)   # the real one comes back afterwards
    monkeypatch.delattr(fastgan.kernels, "cuda", raising=False)
    module = importlib.import_module("fastgan.kernels.cuda")
    monkeypatch.setitem(dispatch._loaded, "cuda", module)
    monkeypatch.setitem(dispatch.DEVICE_OF, "cuda", "cpu")   # its "device arrays" are NumPy arrays
    yield module
    sys.modules.pop("fastgan.kernels.cuda", None)
    fastgan.kernels.__dict__.pop("cuda", None)


# without a GPU only the emulated implementation is collected (tests/test_gpu.py says why the device tests skip)
GPU_PARAMS = [pytest.param(name, marks=pytest.mark.gpu) for name in ("cuda", "triton")]


@pytest.fixture(params=["cuda-emulated"] + (GPU_PARAMS if backend.cuda_available() else []))
def kernel_impl(request):
    """The implementation under test, by its dispatch name."""
    return _implementation(request)


def _implementation(request):
    if request.param == "cuda-emulated":
        request.getfixturevalue("emulated_cuda")
        return "cuda"
    if dispatch.implementation(request.param) is None:   # on a usable GPU every GPU implementation must load
        pytest.fail(f"kernel implementation {request.param!r} does not load on this GPU: "
                    f"{dispatch.why_unavailable(request.param)}")
    return request.param


from kernel_bodies import *  # noqa: E402,F401,F403  (the shared test bodies, run here on cuda)


# --- the emulated CUDA implementation in a whole training step ------------------------------------------------

# float32 as in test_dcgan_step.py: where a gradient is ~0, Adam's m/√v turns a rounding difference into a step of
# up to lr; float64 is the tight check.
@pytest.mark.parametrize("dtype, tol, precision", [(np.float64, dict(rtol=1e-9, atol=1e-11), "float32"),
                                                   (np.float32, dict(rtol=1e-3, atol=1.5e-3), "float32"),
                                                   (np.float32, dict(rtol=1e-3, atol=1.5e-3), "bfloat16")])
def test_two_dcgan_steps_match_the_reference(emulated_cuda, monkeypatch, dtype, tol, precision):
    # the emulator runs a block's threads as coroutines: keep blocks small and few (the grid-stride loops and the
    # block reductions then do several elements per thread, which the full-size launches rarely exercise)
    monkeypatch.setattr(emulated_cuda, "MAX_BLOCKS", 4)
    monkeypatch.setattr(emulated_cuda, "_block_size", lambda count: 32)
    states = {}
    for impl in ("reference", "cuda"):
        fastgan.manual_seed(0)
        G, D = dcgan_mnist()
        G.astype(dtype), D.astype(dtype)
        opt_g, opt_d = (optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (G, D))
        rng = np.random.default_rng(0)
        with dispatch.use(impl), fastgan.autocast(precision):
            for _ in range(2):
                real = np.tanh(rng.standard_normal((3, 1, 28, 28))).astype(dtype)
                z = rng.standard_normal((3, 100, 1, 1)).astype(dtype)
                stats = train_step(G, D, opt_g, opt_d, fastgan.tensor(real), fastgan.tensor(z))
        states[impl] = stats, {**{f"G.{k}": v for k, v in G.state_dict().items()},
                               **{f"D.{k}": v for k, v in D.state_dict().items()}}
    (stats, ours), (expected_stats, expected) = states["cuda"], states["reference"]
    np.testing.assert_allclose([stats[k] for k in sorted(stats)], [expected_stats[k] for k in sorted(stats)], **tol)
    for name in expected:
        np.testing.assert_allclose(ours[name], expected[name], err_msg=name, **tol)


# --- the bfloat16 products (the *_bf16 kernels): the CUDA implementation, emulated or on a GPU, and Triton's on a GPU
# (Triton's interpreter cannot round to bfloat16 or multiply bfloat16 tiles: test_triton_kernels.py) -----------------

@pytest.fixture(params=["cuda-emulated"] + (GPU_PARAMS if backend.cuda_available() else []))
def cuda_impl(request):
    """An implementation that runs the bfloat16 kernels here: CUDA, emulated or on the device, and on a GPU Triton."""
    return _implementation(request)


def test_round_to_bfloat16_is_ml_dtypes_rounding(cuda_impl):
    x = awkward_floats()
    assert_ml_dtypes_rounding(run_impl(cuda_impl, "round_to_bfloat16", x), x)


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[4], CONV_CASES[-1]], ids=lambda c: c.name)
def test_bf16_conv(cuda_impl, case):
    """Against the bf16 reference: the same rounded operands and float32 products (sums in cuBLAS's order)."""
    x, weight, bias, dy = case.inputs(np.float32)
    for fn, args in ((case.fn + "_forward_bf16", case.forward_args(x, weight, bias)),
                     (case.fn + "_backward_bf16", case.backward_args(dy, x, weight))):
        check_against_reference(cuda_impl, fn, args, np.float32)


def test_bf16_batch_norm_leaky_relu_and_matmul(cuda_impl):
    rng = np.random.default_rng(6)
    x, dy = (rng.standard_normal((3, 5, 4, 4)).astype(np.float32) for _ in range(2))
    weight, bias = 1 + rng.standard_normal(5).astype(np.float32) / 4, rng.standard_normal(5).astype(np.float32)
    forward = (x, weight, bias, np.zeros(5, np.float32), np.ones(5, np.float32), True, 0.1, 1e-5, "leaky_relu", 0.2)
    y, mean, rstd = check_against_reference(cuda_impl, "batch_norm_act_forward_bf16", forward, np.float32)
    assert np.array_equal(y, reference.round_to_bfloat16(y))    # the output is bfloat16, the statistics are not
    check_against_reference(cuda_impl, "batch_norm_act_backward_bf16",
                            (dy, x, weight, bias, mean, rstd, True, "leaky_relu", 0.2), np.float32)
    check_against_reference(cuda_impl, "leaky_relu_forward_bf16", (x, 0.2), np.float32)
    check_against_reference(cuda_impl, "leaky_relu_backward_bf16", (dy, x, 0.2), np.float32)
    a, b = rng.standard_normal((7, 33)).astype(np.float32), rng.standard_normal((33, 5)).astype(np.float32)
    check_against_reference(cuda_impl, "matmul_bf16", (a, b), np.float32)
