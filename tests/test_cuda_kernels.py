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
from fastgan.models.dcgan import dcgan_mnist
from cuda_emulator import compiler, fake_cupy

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
@pytest.mark.parametrize("dtype, tol", [(np.float64, dict(rtol=1e-9, atol=1e-11)),
                                        (np.float32, dict(rtol=1e-3, atol=1.5e-3))])
def test_two_dcgan_steps_match_the_reference(emulated_cuda, monkeypatch, dtype, tol):
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
        with dispatch.use(impl):
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
