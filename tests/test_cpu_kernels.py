"""The native CPU kernels (fastgan.kernels.cpu, built from csrc/cpu) against the NumPy reference kernels.

Every kernel on awkward shapes (sizes that are no multiple of any vector width, batch 1, one channel, 1x1 images,
the fast paths for whole-image kernels and 1x1 inputs), both dtypes, every batch-norm mode and activation, the
loss at its extremes, several optimiser steps, the fallbacks, and results that do not depend on the thread count.
(The torch-oracle tests in test_ops_*.py run the same kernels through the functional layer via the impl fixture.)
"""
import contextlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import native_kernels_missing
from fastgan.kernels import reference as R

try:
    from fastgan.kernels import cpu as C
except ImportError as err:  # run `python setup.py build_ext --inplace` or `pip install -e .`
    native_kernels_missing(err, module_level=True)

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def rand(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def close(ours, ref, dtype, what="", scale=1.0):
    """Compare with the dtype's tolerance; atol grows with the magnitude of the values summed (scale)."""
    assert ours is not None, what
    assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype}, expected {np.dtype(dtype)}"
    assert ours.shape == np.shape(ref), f"{what}: shape {ours.shape}, expected {np.shape(ref)}"
    tol = dict(TOL[dtype])
    tol["atol"] *= scale
    np.testing.assert_allclose(ours, ref, err_msg=what, **tol)


@contextlib.contextmanager
def threads(n):
    before = C.get_num_threads()
    C.set_num_threads(n)
    try:
        yield
    finally:
        C.set_num_threads(before)


# --- im2col / col2im ----------------------------------------------------------------------------------------------

# (N, C, H, W, (kh, kw), (sh, sw), (ph, pw))
IM2COL_CASES = [
    (2, 3, 7, 7, (3, 3), (1, 1), (1, 1)), (1, 1, 5, 7, (3, 3), (2, 2), (0, 0)), (3, 2, 9, 6, (2, 4), (3, 3), (2, 2)),
    (2, 4, 8, 8, (5, 5), (2, 2), (2, 2)), (1, 3, 6, 5, (1, 1), (1, 1), (0, 0)), (4, 2, 28, 28, (4, 4), (2, 2), (1, 1)),
    (2, 5, 1, 1, (1, 1), (1, 1), (0, 0)), (2, 3, 10, 9, (4, 4), (1, 2), (2, 1)), (1, 2, 4, 4, (2, 2), (5, 5), (3, 3)),
    (3, 1, 7, 7, (7, 7), (1, 1), (0, 0)), (2, 2, 3, 11, (3, 1), (1, 3), (0, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c, h, w, k, s, p", IM2COL_CASES)
def test_im2col_col2im(dtype, n, c, h, w, k, s, p):
    rng = np.random.default_rng(0)
    x = rand(rng, (n, c, h, w), dtype)
    cols = C.im2col(x, k, s, p)
    np.testing.assert_array_equal(cols, R.im2col(x, k, s, p))        # a pure copy: exactly the reference
    assert cols.dtype == np.dtype(dtype)
    back = rand(rng, cols.shape, dtype)
    close(C.col2im(back, x.shape, k, s, p), R.col2im(back, x.shape, k, s, p), dtype, "col2im")
    # adjointness <im2col(x), cols> = <x, col2im(cols)>, in float64
    if dtype == np.float64:
        assert np.isclose(np.vdot(cols, back), np.vdot(x, C.col2im(back, x.shape, k, s, p)), rtol=1e-12)
    # the per-image layout (N, C*kh*kw, Ho*Wo) holds the same matrix, image by image
    per_image = C._C.im2col(x, k, s, p, per_image=True)
    np.testing.assert_array_equal(per_image, cols.reshape(cols.shape[0], n, -1).transpose(1, 0, 2))
    back_per_image = np.ascontiguousarray(back.reshape(back.shape[0], n, -1).transpose(1, 0, 2))
    np.testing.assert_array_equal(C._C.col2im(back_per_image, x.shape, k, s, p, per_image=True),
                                  C.col2im(back, x.shape, k, s, p))


# --- convolutions ---------------------------------------------------------------------------------------------------

# (N, C_in, H, W, C_out, (kh, kw), stride, padding, output_padding for the transposed conv)
CONV_CASES = [
    (2, 3, 7, 7, 4, (3, 3), (1, 1), (1, 1), (0, 0)), (1, 1, 5, 7, 2, (3, 3), (2, 2), (0, 0), (1, 1)),
    (3, 2, 9, 6, 3, (2, 4), (3, 3), (2, 2), (2, 1)), (2, 4, 8, 8, 5, (5, 5), (2, 2), (2, 2), (1, 0)),
    (1, 3, 6, 5, 1, (1, 1), (1, 1), (0, 0), (0, 0)), (4, 2, 28, 28, 3, (4, 4), (2, 2), (1, 1), (0, 0)),
    (2, 5, 1, 1, 3, (1, 1), (1, 1), (0, 0), (0, 0)), (2, 3, 10, 9, 2, (4, 4), (1, 2), (2, 1), (0, 1)),
    (3, 6, 7, 7, 1, (7, 7), (1, 1), (0, 0), (0, 0)),   # conv: whole-image kernel (D's last layer)
    (3, 5, 1, 1, 4, (7, 7), (1, 1), (0, 0), (0, 0)),   # conv_transpose: 1x1 input (G's first layer)
    (2, 3, 1, 1, 2, (3, 2), (2, 2), (0, 0), (1, 1)),   # 1x1 input with output_padding: the general path
    (2, 2, 5, 4, 3, (5, 4), (2, 2), (0, 0), (1, 0)),
    (0, 3, 7, 7, 4, (3, 3), (2, 2), (1, 1), (1, 1)),   # an empty batch: empty y and dx, zero dweight and dbias
    (0, 6, 7, 7, 2, (7, 7), (1, 1), (0, 0), (0, 0)),   # ... on the whole-image path
    (0, 5, 1, 1, 4, (7, 7), (1, 1), (0, 0), (0, 0)),   # ... and on the 1x1-input path
]


@pytest.fixture(params=["auto", "im2col-channel-rows", "im2col-per-image", "direct"])
def layout(request, monkeypatch):
    """Every way the cpu kernels compute a convolution, on every case, chosen as FASTGAN_CONV chooses (use_conv):
    this CPU's automatic choice, im2col + one GEMM over the batch, im2col + per-image GEMMs, and (float32 on
    AVX-512; float64 then takes the channel-rows path) the direct kernel for every convolution."""
    choice = request.param.split("-")[0]
    if choice == "direct" and not C._DIRECT:
        pytest.skip("FASTGAN_CONV=direct needs the direct convolutions, which need AVX-512; this CPU has none")
    if choice != "auto":
        monkeypatch.setattr(C, "_per_image", lambda rows: request.param == "im2col-per-image")
    C.release_workspace()
    with C.use_conv(choice):
        yield request.param


def test_conv_choice_decides_the_direct_path(monkeypatch):
    """FASTGAN_CONV / use_conv: im2col never runs the direct kernels, direct runs them for every float32
    convolution, auto where the channels fill vectors, the reduction is more than one channel's window and the
    images are at least 7 pixels on a side."""
    monkeypatch.setattr(C, "_DIRECT", True)   # the decision only: no kernel runs here
    cases = [(np.float32, 64, 1024, 7), (np.float32, 1, 16, 14), (np.float32, 16, 33, 32), (np.float32, 15, 1024, 8),
             (np.float32, 512, 4096, 4), (np.float64, 64, 1024, 7)]
    expected = {"auto": [True, False, True, False, False, False], "im2col": [False] * 6,
                "direct": [True, True, True, True, True, False]}
    for choice, wanted in expected.items():
        with C.use_conv(choice):
            assert C.conv_choice() == choice
            assert [C._direct(*case) for case in cases] == wanted, choice
    monkeypatch.setattr(C, "_DIRECT", False)  # a CPU without AVX-512: never direct
    assert not any(C._direct(*case) for case in cases)


def test_auto_leaves_images_under_7_pixels_to_im2col(monkeypatch):
    """The side each call site passes: the 64×64 model's 8→4 conv, its 4→8 transposed conv and their gradients stay
    on im2col, where its 16→8 conv goes direct."""
    monkeypatch.setattr(C, "_DIRECT", True)   # the decision only: the direct kernels are replaced by a record
    called = []
    for name in ("direct_conv2d", "direct_conv_transpose2d", "direct_conv2d_weight_grad"):
        monkeypatch.setattr(C._C, name, lambda *args, name=name, **kwargs: called.append(name))
    rng = np.random.default_rng(0)
    x8, x4 = rng.standard_normal((2, 32, 8, 8), np.float32), rng.standard_normal((2, 64, 4, 4), np.float32)
    w = rng.standard_normal((64, 32, 4, 4), np.float32)
    with C.use_conv("auto"):
        C.conv2d_forward(x8, w, None, (2, 2), (1, 1))
        C.conv2d_backward(x4, x8, w, (2, 2), (1, 1))
        C.conv_transpose2d_forward(x4, w, None, (2, 2), (1, 1), (0, 0))
        C.conv_transpose2d_backward(x8, x4, w, (2, 2), (1, 1), (0, 0))
        assert called == []
        C.conv2d_forward(rng.standard_normal((2, 32, 16, 16), np.float32), w, None, (2, 2), (1, 1))
        assert called == ["direct_conv2d"]


def test_conv_choice_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"^use_conv='gemm': expected one of auto, im2col, direct"), \
            C.use_conv("gemm"):
        pass
    monkeypatch.setattr(C, "_DIRECT", False)
    with pytest.raises(RuntimeError, match=r"^use_conv=direct: this CPU has no AVX-512"), C.use_conv("direct"):
        pass
    assert C.conv_choice() == C._conv._stack[0]  # a refused choice leaves the one before in force


@pytest.mark.parametrize("setting", ["im2col", "direct", "bogus"])
def test_fastgan_conv_from_the_environment(setting):
    """`FASTGAN_CONV=... python -m fastgan.kernels` shows the choice, or stops with the one-line error."""
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, FASTGAN_CONV=setting,
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "fastgan.kernels"], capture_output=True, text=True, env=env,
                          cwd=root, timeout=120, check=False)
    if setting == "bogus":
        error = "ValueError: FASTGAN_CONV='bogus': expected one of auto, im2col, direct"
    elif setting == "direct" and not C._DIRECT:
        error = "RuntimeError: FASTGAN_CONV=direct: this CPU has no AVX-512"
    else:
        assert done.returncode == 0, done.stderr
        assert f"float32 convolutions on the cpu: FASTGAN_CONV={setting}: " in done.stdout
        return
    assert done.returncode != 0 and done.stderr.strip().splitlines()[-1].startswith(error), done.stderr


def conv_inputs(rng, dtype, n, cin, h, w, cout, k, transposed, with_bias):
    x = rand(rng, (n, cin, h, w), dtype)
    weight = rand(rng, (cin, cout) + k if transposed else (cout, cin) + k, dtype, 0.3)
    bias = rand(rng, (cout,), dtype) if with_bias else None
    return x, weight, bias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("n, cin, h, w, cout, k, s, p, op", CONV_CASES)
def test_conv2d(dtype, with_bias, n, cin, h, w, cout, k, s, p, op, layout):
    if h + 2 * p[0] < k[0] or w + 2 * p[1] < k[1]:
        pytest.skip("the kernel does not fit the image")
    rng = np.random.default_rng(1)
    x, weight, bias = conv_inputs(rng, dtype, n, cin, h, w, cout, k, False, with_bias)
    y = C.conv2d_forward(x, weight, bias, s, p)
    close(y, R.conv2d_forward(x, weight, bias, s, p), dtype, "y", scale=10)
    dy = rand(rng, y.shape, dtype)
    for ours, ref, what in zip(C.conv2d_backward(dy, x, weight, s, p), R.conv2d_backward(dy, x, weight, s, p),
                               ("dx", "dweight", "dbias")):
        close(ours, ref, dtype, what, scale=10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("n, cin, h, w, cout, k, s, p, op", CONV_CASES)
def test_conv_transpose2d(dtype, with_bias, n, cin, h, w, cout, k, s, p, op, layout):
    rng = np.random.default_rng(2)
    x, weight, bias = conv_inputs(rng, dtype, n, cin, h, w, cout, k, True, with_bias)
    y = C.conv_transpose2d_forward(x, weight, bias, s, p, op)
    close(y, R.conv_transpose2d_forward(x, weight, bias, s, p, op), dtype, "y", scale=10)
    dy = rand(rng, y.shape, dtype)
    for ours, ref, what in zip(C.conv_transpose2d_backward(dy, x, weight, s, p, op),
                               R.conv_transpose2d_backward(dy, x, weight, s, p, op), ("dx", "dweight", "dbias")):
        close(ours, ref, dtype, what, scale=10)


@pytest.mark.parametrize("impl", [R, C], ids=["reference", "cpu"])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[8], CONV_CASES[9]])
def test_conv_backward_output_mask(impl, transposed, case, layout):
    """output_mask skips gradients (None) and leaves the others unchanged."""
    n, cin, h, w, cout, k, s, p, op = case
    if not transposed and (h + 2 * p[0] < k[0] or w + 2 * p[1] < k[1]):
        pytest.skip("the kernel does not fit the image")
    rng = np.random.default_rng(3)
    x, weight, _ = conv_inputs(rng, np.float64, n, cin, h, w, cout, k, transposed, False)
    if transposed:
        forward, backward = impl.conv_transpose2d_forward, impl.conv_transpose2d_backward
        dy = rand(rng, forward(x, weight, None, s, p, (0, 0)).shape, np.float64)
        run = lambda mask: backward(dy, x, weight, s, p, (0, 0), output_mask=mask)  # noqa: E731
    else:
        dy = rand(rng, impl.conv2d_forward(x, weight, None, s, p).shape, np.float64)
        run = lambda mask: impl.conv2d_backward(dy, x, weight, s, p, output_mask=mask)  # noqa: E731
    full = run((True, True, True))
    for mask in [(False, True, True), (True, False, False), (False, False, True), (False, False, False)]:
        for got, want, keep in zip(run(mask), full, mask):
            if keep:
                np.testing.assert_array_equal(got, want)
            else:
                assert got is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_dcgan_layer_shapes(dtype):
    """The six DCGAN convolutions at a small batch, forward and backward."""
    rng = np.random.default_rng(4)
    for kind, cin, cout, k, s, p, hw in [("T", 100, 32, 7, 1, 0, 1), ("T", 32, 16, 4, 2, 1, 7), ("T", 16, 1, 4, 2, 1, 14),
                                         ("C", 1, 8, 4, 2, 1, 28), ("C", 8, 16, 4, 2, 1, 14), ("C", 16, 1, 7, 1, 0, 7)]:
        x, weight, _ = conv_inputs(rng, dtype, 3, cin, hw, hw, cout, (k, k), kind == "T", False)
        if kind == "T":
            args = ((s, s), (p, p), (0, 0))
            y, ref = C.conv_transpose2d_forward(x, weight, None, *args), R.conv_transpose2d_forward(x, weight, None, *args)
            dy = rand(rng, y.shape, dtype)
            grads = zip(C.conv_transpose2d_backward(dy, x, weight, *args), R.conv_transpose2d_backward(dy, x, weight, *args))
        else:
            args = ((s, s), (p, p))
            y, ref = C.conv2d_forward(x, weight, None, *args), R.conv2d_forward(x, weight, None, *args)
            dy = rand(rng, y.shape, dtype)
            grads = zip(C.conv2d_backward(dy, x, weight, *args), R.conv2d_backward(dy, x, weight, *args))
        close(y, ref, dtype, f"{kind}{cin}->{cout} y", scale=10)
        for (ours, theirs), what in zip(grads, ("dx", "dweight", "dbias")):
            close(ours, theirs, dtype, f"{kind}{cin}->{cout} {what}", scale=100)


def test_conv_accepts_non_contiguous_inputs():
    rng = np.random.default_rng(5)
    x = rand(rng, (5, 6, 3, 2), np.float32).transpose(3, 2, 0, 1)     # (2, 3, 5, 6), not contiguous
    weight = rand(rng, (3, 4, 3, 3), np.float32).transpose(1, 0, 2, 3)
    close(C.conv2d_forward(x, weight, None, (1, 1), (1, 1)), R.conv2d_forward(x, weight, None, (1, 1), (1, 1)),
          np.float32, "y", scale=10)
    dy = np.broadcast_to(np.float32(0.5), (2, 4, 5, 6))                 # what sum's backward hands over
    for ours, ref in zip(C.conv2d_backward(dy, x, weight, (1, 1), (1, 1)),
                         R.conv2d_backward(dy, x, weight, (1, 1), (1, 1))):
        close(ours, ref, np.float32, "grad", scale=10)


# --- batch norm + activation --------------------------------------------------------------------------------------

BN_SHAPES = [(8, 5), (1, 3, 4, 5), (4, 1, 3, 3), (3, 7, 5, 2), (5, 3, 7, 9), (2, 4, 1, 1), (200, 3), (6, 2, 17, 1),
             (0, 4, 5, 5), (0, 3), (3, 2, 0, 4)]   # empty batches: no statistics (NaN), running ones unchanged


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_act(dtype, shape, training, activation, affine):
    rng = np.random.default_rng(6)
    c = shape[1]
    x = rand(rng, shape, dtype, 2.0, 0.5)
    weight, bias = (rand(rng, (c,), dtype), rand(rng, (c,), dtype)) if affine else (None, None)
    stats = rand(rng, (c,), dtype), rng.uniform(0.5, 2, c).astype(dtype)
    ours_stats, ref_stats = [s.copy() for s in stats], [s.copy() for s in stats]
    ours = C.batch_norm_act_forward(x, weight, bias, *ours_stats, training, 0.1, 1e-5, activation, 0.2)
    ref = R.batch_norm_act_forward(x, weight, bias, *ref_stats, training, 0.1, 1e-5, activation, 0.2)
    for a, b, what in zip(ours, ref, ("y", "mean", "rstd")):
        close(a, b, dtype, what, scale=10)
    for a, b in zip(ours_stats, ref_stats):
        close(a, b, dtype, "running statistics")
    dy = rand(rng, shape, dtype)
    mean, rstd = ref[1], ref[2]
    grads = C.batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, activation, 0.2)
    for a, b, what in zip(grads, R.batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, activation, 0.2),
                          ("dx", "dweight", "dbias")):
        close(a, b, dtype, what, scale=100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_without_running_stats_and_large_mean(dtype):
    """Training without running statistics; |mean| >> std (the two-pass variance keeps float32 accurate)."""
    rng = np.random.default_rng(7)
    x = rand(rng, (16, 3, 5, 5), dtype, 0.01, 100.0)
    ours = C.batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, "relu", 0.0)
    ref = R.batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, "relu", 0.0)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-3 if dtype == np.float32 else 1e-9, atol=1e-3)
    np.testing.assert_allclose(ours[2], ref[2], rtol=1e-4 if dtype == np.float32 else 1e-9)


def test_batch_norm_errors_and_fallbacks():
    x = np.ones((1, 3), np.float32)
    with pytest.raises(ValueError, match="batch_norm: expected more than 1 value per channel when training"):
        C.batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, None, 0.0)
    with pytest.raises(ValueError, match="batch_norm_act_forward: unknown activation 'gelu'"):
        C.batch_norm_act_forward(np.ones((4, 3), np.float32), None, None, None, None, True, 0.1, 1e-5, "gelu", 0.0)
    # running statistics that cannot be updated in place natively (a strided view) go through the reference
    rng = np.random.default_rng(8)
    x = rand(rng, (6, 3, 4, 4), np.float32)
    rm, rv = np.zeros(6, np.float32)[::2], np.ones(6, np.float32)[::2]
    rm2, rv2 = rm.copy(), rv.copy()
    y = C.batch_norm_act_forward(x, None, None, rm, rv, True, 0.1, 1e-5, "relu", 0.0)[0]
    y2 = R.batch_norm_act_forward(x, None, None, rm2, rv2, True, 0.1, 1e-5, "relu", 0.0)[0]
    close(y, y2, np.float32, "y", scale=10)
    close(rm, rm2, np.float32, "running_mean")
    close(rv, rv2, np.float32, "running_var")


# --- sigmoid + BCE ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(), (1,), (64, 1), (7, 13), (40001,)])   # 40001: several chunks, a ragged tail
def test_sigmoid_bce(dtype, reduction, shape):
    rng = np.random.default_rng(9)
    logits = rand(rng, shape, dtype, 5.0)
    flat = logits.reshape(-1)
    extremes = np.array([100, -100, 1000, -1000, 0, 88.7, -88.7, 1e-8], dtype)[:flat.size]
    flat[:extremes.size] = extremes
    target = (rng.random(shape) > 0.5).astype(dtype)
    target.reshape(-1)[:3] = [0.9, 0.1, 0.5][:target.size]                          # soft targets
    loss, dlogits = C.sigmoid_bce_forward(logits, target, reduction)
    ref_loss, ref_dlogits = R.sigmoid_bce_forward(logits, target, reduction)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(dlogits))
    # the native loss sums in float64; the float32 reference sums in float32
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    assert loss.shape == ref_loss.shape and loss.dtype == np.dtype(dtype)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    close(dlogits, ref_dlogits, dtype, "dlogits")


@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
def test_sigmoid_bce_float32_accuracy(target):
    """float32 uses its own vectorised e^x and log1p: a few ulp from the exact values for every logit; where e^x
    would be subnormal (logits below -87.3) it is flushed to 0, an absolute error below 1.3e-38. (With a soft target
    the gradient σ - y cancels: there the float32 rounding of y itself, 6e-8·y, is the limit.)"""
    logits = np.concatenate([np.linspace(-120, 120, 240001), [-87.4, -87.3, -87.2, -43.0, -1e-30, 0.0, 1e-30]])
    logits = logits.astype(np.float32)
    y = np.full_like(logits, target)
    loss, dlogits = C.sigmoid_bce_forward(logits, y, "none")
    exact_loss, exact_dlogits = R.sigmoid_bce_forward(logits.astype(np.float64), y.astype(np.float64), "none")
    np.testing.assert_allclose(loss, exact_loss, rtol=1e-6, atol=1.3e-38)
    np.testing.assert_allclose(dlogits, exact_dlogits, rtol=1e-6, atol=1.3e-38 + 1.2e-7 * target)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sigmoid_bce_of_no_values(reduction):
    """The mean of no losses is NaN, their sum 0, as in torch; the gradient is empty."""
    for impl in (R, C):
        loss, dlogits = impl.sigmoid_bce_forward(np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), reduction)
        assert dlogits.shape == (0, 1) and loss.shape == ((0, 1) if reduction == "none" else ())
        np.testing.assert_array_equal(loss, {"mean": np.nan, "sum": 0.0, "none": loss}[reduction])


def test_sigmoid_bce_nan_propagates():
    logits = np.array([0.5, np.nan, -2.0], np.float32)
    loss, dlogits = C.sigmoid_bce_forward(logits, np.ones(3, np.float32), "mean")
    assert np.isnan(loss) and np.isnan(dlogits[1]) and np.isfinite(dlogits[[0, 2]]).all()


def test_conv_backward_reuses_only_its_own_columns(layout):
    """dW reuses the forward's im2col while no other conv has run since, and never another input's columns (same
    shape, other values) or another geometry's."""
    rng = np.random.default_rng(5)
    x1, x2 = rand(rng, (3, 4, 9, 9), np.float64), rand(rng, (3, 4, 9, 9), np.float64)
    weight = rand(rng, (5, 4, 3, 3), np.float64)
    for s, p in [((2, 2), (1, 1)), ((1, 1), (0, 0))]:
        dy = rand(rng, R.conv2d_forward(x1, weight, None, s, p).shape, np.float64)
        want = R.conv2d_backward(dy, x1, weight, s, p)
        C.conv2d_forward(x1, weight, None, s, p)
        close(C.conv2d_backward(dy, x1, weight, s, p)[1], want[1], np.float64, "dW right after x1's forward")
        C.conv2d_forward(x1, weight, None, s, p)
        close(C.conv2d_forward(x2, weight, None, s, p), R.conv2d_forward(x2, weight, None, s, p), np.float64,
              "x2's forward right after x1's")                       # the buffer now holds x2's columns
        close(C.conv2d_backward(dy, x1, weight, s, p)[1], want[1], np.float64, "dW after x2's forward")
    C.conv2d_forward(x1, weight, None, (1, 1), (1, 1))                # same x, other padding
    dy = rand(rng, R.conv2d_forward(x1, weight, None, (1, 1), (0, 0)).shape, np.float64)
    close(C.conv2d_backward(dy, x1, weight, (1, 1), (0, 0))[1], R.conv2d_backward(dy, x1, weight, (1, 1), (0, 0))[1],
          np.float64, "dW after a forward with other padding")


# --- stand-alone LeakyReLU ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (0, 3), (7, 13), (3, 5, 14, 14), (40001,)])
def test_leaky_relu(dtype, shape):
    rng = np.random.default_rng(13)
    x, dy = rand(rng, shape, dtype), rand(rng, shape, dtype)
    x.reshape(-1)[:2] = [0.0, -0.0][:x.size]
    factor = np.where(x > 0, dtype(1), dtype(0.2))                      # the definition, exact in every dtype
    for impl in (R, C):
        y, dx = impl.leaky_relu_forward(x, 0.2), impl.leaky_relu_backward(dy, x, 0.2)
        assert y.shape == dx.shape == shape                              # a 0-d input stays 0-d
        np.testing.assert_array_equal(y, x * factor)
        np.testing.assert_array_equal(dx, dy * factor)
    assert C.leaky_relu_forward(x, 0.2).dtype == np.dtype(dtype)


def test_leaky_relu_nan_and_fallback():
    x = np.array([np.nan, -1.0, 2.0], np.float32)
    assert np.isnan(C.leaky_relu_forward(x, 0.2)[0])
    half = x.astype(np.float16)                                           # not native: NumPy fallback, same values
    np.testing.assert_array_equal(C.leaky_relu_forward(half, 0.5)[1:], np.array([-0.5, 2.0], np.float16))


# --- optimisers -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-8, weight_decay=0.0),
                                    dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-6, weight_decay=0.1)])
@pytest.mark.parametrize("size", [1, 7, 1000, 70001])
def test_adam(dtype, kwargs, size):
    rng = np.random.default_rng(10)
    ours = [rand(rng, (size,), dtype), np.zeros(size, dtype), np.zeros(size, dtype)]
    ref = [a.copy() for a in ours]
    for step in range(1, 6):
        grad = rand(rng, (size,), dtype)
        C.adam_step(ours[0], grad, ours[1], ours[2], step, **kwargs)
        R.adam_step(ref[0], grad, ref[1], ref[2], step, **kwargs)
    for a, b, what in zip(ours, ref, ("param", "exp_avg", "exp_avg_sq")):
        close(a, b, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(lr=0.1, momentum=0.0, weight_decay=0.0),
                                    dict(lr=0.1, momentum=0.5, weight_decay=0.0),
                                    dict(lr=0.05, momentum=0.9, weight_decay=0.0, nesterov=True),
                                    dict(lr=0.1, momentum=0.7, weight_decay=0.01, dampening=0.1)])
@pytest.mark.parametrize("size", [3, 70001])
def test_sgd(dtype, kwargs, size):
    rng = np.random.default_rng(11)
    ours = [rand(rng, (size,), dtype), np.zeros(size, dtype) if kwargs["momentum"] else None]
    ref = [a if a is None else a.copy() for a in ours]
    for step in range(5):
        grad = rand(rng, (size,), dtype)
        C.sgd_step(ours[0], grad, ours[1], first_step=step == 0, **kwargs)
        R.sgd_step(ref[0], grad, ref[1], first_step=step == 0, **kwargs)
    close(ours[0], ref[0], dtype, "param")
    if ours[1] is not None:
        close(ours[1], ref[1], dtype, "momentum_buf")


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimisers_on_a_0d_parameter(dtype):
    """A 0-d parameter (a learned scalar) stays 0-d, and both implementations agree."""
    for step_kind in ("adam", "sgd"):
        results = []
        for impl in (R, C):
            param, grad, m, v = (np.array(value, dtype) for value in (0.5, -0.25, 0.1, 0.2))
            if step_kind == "adam":
                impl.adam_step(param, grad, m, v, 3, 0.1, 0.9, 0.999, 1e-8, 0.01)
            else:
                impl.sgd_step(param, grad, m, 0.1, 0.9, 0.01)
            assert param.shape == m.shape == v.shape == ()
            results.append((param, m, v))
        for a, b, what in zip(*results, ("param", "first moment", "second moment")):
            close(a, b, dtype, f"{step_kind} {what}")


def test_sgd_float32_flushes_a_decayed_momentum_buffer():
    """A momentum buffer whose gradient is 0 decays into float32 subnormals, which would cost a microcode assist per
    element: the float kernel reads and writes them as 0 (double keeps them). Normal values are the reference's."""
    tiny = np.float32(1e-39)                                                     # subnormal in float32
    buf = np.array([tiny, -tiny, 1e-3, 0.0], np.float32)
    param, grad = np.ones(4, np.float32), np.array([0, 0, 0, 2e-3], np.float32)
    C.sgd_step(param, grad, buf, lr=0.1, momentum=0.5, weight_decay=0.0, first_step=False)
    np.testing.assert_array_equal(buf, np.array([0, 0, 5e-4, 2e-3], np.float32))
    np.testing.assert_array_equal(param, np.float32(1) - np.float32(0.1) * buf)
    buf64 = np.array([1e-39, 1e-310], np.float64)
    C.sgd_step(np.ones(2), np.zeros(2), buf64, lr=0.1, momentum=0.5, weight_decay=0.0, first_step=False)
    np.testing.assert_array_equal(buf64, [5e-40, 5e-311])


def test_optimiser_state_is_updated_in_place_even_when_not_native():
    """A non-contiguous parameter (a view) is still updated in place (through the reference)."""
    base = np.ones((4, 6), np.float32)
    param = base[:, ::2]
    m, v = np.zeros_like(param), np.zeros_like(param)
    C.adam_step(param, np.ones_like(param), m, v, 1, 0.1, 0.9, 0.999, 1e-8, 0.0)
    assert np.allclose(base[:, ::2], 0.9) and np.all(base[:, 1::2] == 1)


def test_native_bindings_refuse_wrong_dtypes():
    from fastgan import _C
    p = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="adam_step: grad has dtype float64, expected float32"):
        _C.adam_step(p, np.zeros(4, np.float64), np.zeros(4, np.float32), np.zeros(4, np.float32), 1, 0.1, 0.9,
                     0.999, 1e-8, 0.0)
    with pytest.raises(TypeError, match="im2col: expected a float32 or float64 array, got dtype int64"):
        _C.im2col(np.zeros((1, 1, 3, 3), np.int64), (2, 2), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="adam_step: param must be C-contiguous"):
        _C.adam_step(p[::2], np.zeros(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32), 1, 0.1, 0.9,
                     0.999, 1e-8, 0.0)


# --- minibatch discrimination's closeness ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,b,c", [(128, 100, 5), (37, 3, 2), (2, 1, 1), (1, 4, 3), (0, 2, 2), (9, 5, 0)])
def test_minibatch_closeness(n, b, c, dtype):
    rng = np.random.default_rng(n + b + c)
    m, g = rand(rng, (n, b, c), dtype, 0.7), rand(rng, (n, b), dtype)
    if n > 3:
        m[3] = m[1]                                          # two equal examples: distance 0, sign(0) = 0
    ours, ref = C.minibatch_closeness_forward(m), R.minibatch_closeness_forward(m)
    close(ours, ref, dtype, "forward", scale=n)
    close(C.minibatch_closeness_backward(g, m), R.minibatch_closeness_backward(g, m), dtype, "backward", scale=n)
    assert ours.flags.c_contiguous


# --- thread-count independence ------------------------------------------------------------------------------------

def run_every_kernel(dtype, rng_seed=12):
    """Every native kernel once, on shapes large enough to be split across threads; returns all outputs."""
    rng = np.random.default_rng(rng_seed)
    out = []
    x = rand(rng, (16, 24, 14, 14), dtype)
    w = rand(rng, (40, 24, 4, 4), dtype, 0.1)      # 40 output channels: the direct convolutions too (float32)
    y = C.conv2d_forward(x, w, None, (2, 2), (1, 1))
    out += [y, *C.conv2d_backward(rand(rng, y.shape, dtype), x, w, (2, 2), (1, 1))]
    wt = rand(rng, (24, 40, 4, 4), dtype, 0.1)
    y = C.conv_transpose2d_forward(x, wt, None, (2, 2), (1, 1), (0, 0))
    out += [y, *C.conv_transpose2d_backward(rand(rng, y.shape, dtype), x, wt, (2, 2), (1, 1), (0, 0))]
    g, b = rand(rng, (24,), dtype), rand(rng, (24,), dtype)
    rm, rv = np.zeros(24, dtype), np.ones(24, dtype)
    y, mean, rstd = C.batch_norm_act_forward(x, g, b, rm, rv, True, 0.1, 1e-5, "leaky_relu", 0.2)
    out += [y, mean, rstd, rm, rv]
    out += list(C.batch_norm_act_backward(rand(rng, x.shape, dtype), x, g, b, mean, rstd, True, "relu", 0.0))
    logits = rand(rng, (100003,), dtype, 3.0)
    out += list(C.sigmoid_bce_forward(logits, (logits > 0).astype(dtype), "mean"))
    out += [C.leaky_relu_forward(logits, 0.2), C.leaky_relu_backward(logits[::-1].copy(), logits, 0.2)]
    p, m, v = rand(rng, (100003,), dtype), np.zeros(100003, dtype), np.zeros(100003, dtype)
    C.adam_step(p, logits, m, v, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    out += [p, m, v]
    rows = rand(rng, (64, 7, 3), dtype)
    out += [C.minibatch_closeness_forward(rows), C.minibatch_closeness_backward(rand(rng, (64, 7), dtype), rows)]
    return out


# float32 alone would hide some order changes: its sums are accumulated in double, and rounding the double back to
# float32 usually absorbs a different order of the double additions; float64 shows every one
@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_the_thread_count(dtype):
    with threads(1):
        one = run_every_kernel(dtype)
    for n in (2, 3):
        with threads(n):
            many = run_every_kernel(dtype)
        for i, (a, b) in enumerate(zip(one, many, strict=True)):
            assert a.dtype == np.dtype(dtype), f"output {i} has dtype {a.dtype}"
            np.testing.assert_array_equal(a, b, err_msg=f"output {i} with {n} threads")


def test_set_num_threads():
    with threads(3):
        assert C.get_num_threads() == 3
    with pytest.raises(ValueError, match="set_num_threads: expected a positive number of threads"):
        C.set_num_threads(0)
