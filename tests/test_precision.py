"""fastgan.autocast: which ops run in bfloat16 (fastgan/precision.py), and one whole DCGAN step under it against
one step under torch.autocast("cpu", dtype=torch.bfloat16) from the same weights, batch and noise."""
import itertools
import pathlib

import numpy as np
import pytest
import torch

import fastgan
from fastgan import functional as F
from fastgan import precision
from fastgan.gan import train_step
from fastgan.kernels import reference
from test_dcgan_step import torch_train_step, twin_dcgans


def tensors(*shapes, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [fastgan.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


def is_bfloat16(a):
    return np.array_equal(a, reference.round_to_bfloat16(a))


# --- the policy -------------------------------------------------------------------------------------------------

def test_conv_under_autocast_is_the_bf16_kernel_and_its_gradients_stay_float32(impl):
    x, w = tensors((2, 3, 9, 9), (4, 3, 3, 3))
    with fastgan.autocast("bfloat16"):
        y = F.conv2d(x, w, stride=2, padding=1)
    y.backward(fastgan.tensor(np.ones(y.shape, np.float32)))
    want = reference.conv2d_forward_bf16(x.data, w.data, None, (2, 2), (1, 1))
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-6)
    fp32 = reference.conv2d_forward(x.data, w.data, None, (2, 2), (1, 1))
    assert np.abs(y.numpy() - fp32).max() > 1e-4          # it really ran on rounded operands
    dx, dw, _ = reference.conv2d_backward_bf16(np.ones(y.shape, np.float32), x.data, w.data, (2, 2), (1, 1))
    assert x.grad.dtype == w.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), dw, rtol=1e-5, atol=1e-5)
    assert not is_bfloat16(w.data)                         # the master weight itself is never rounded


def test_conv_transpose_linear_and_matmul_under_autocast(impl):
    x, w, a, b, lw, lb = tensors((2, 5, 4, 4), (5, 3, 4, 4), (3, 7), (7, 2), (6, 7), (6,))
    with fastgan.autocast("bf16"):
        y = F.conv_transpose2d(x, w, stride=2, padding=1)
        product = F.matmul(a, b)
        dense = F.linear(a, lw, lb)
    np.testing.assert_allclose(y.numpy(), reference.conv_transpose2d_forward_bf16(x.data, w.data, None, (2, 2),
                                                                                  (1, 1), (0, 0)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(product.numpy(), reference.matmul_bf16(a.data, b.data), rtol=1e-6)
    np.testing.assert_allclose(dense.numpy(), reference.matmul_bf16(a.data, lw.data.T) + lb.data, rtol=1e-6)
    g = np.ones(product.shape, np.float32)
    product.backward(fastgan.tensor(g))
    np.testing.assert_allclose(a.grad.numpy(), reference.matmul_bf16(g, b.data.T), rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), reference.matmul_bf16(a.data.T, g), rtol=1e-6)


def test_batch_norm_and_leaky_relu_round_their_output_under_autocast(impl):
    x, = tensors((4, 3, 5, 5))
    gamma, beta = fastgan.tensor(np.ones(3, np.float32)), fastgan.tensor(np.zeros(3, np.float32))
    mean, var = fastgan.tensor(np.zeros(3, np.float32)), fastgan.tensor(np.ones(3, np.float32))
    with fastgan.autocast("bfloat16"):
        bn = F.batch_norm(x, mean, var, gamma, beta, training=True, activation="relu")
        leaky = F.leaky_relu(x, 0.2)
        tanh = F.tanh(x)
    assert is_bfloat16(bn.numpy()) and is_bfloat16(leaky.numpy())
    assert not is_bfloat16(tanh.numpy())                   # the other elementwise ops stay float32
    assert not is_bfloat16(mean.numpy())                   # the running statistics are float32
    leaky.backward(fastgan.tensor(np.ones(x.shape, np.float32)))   # the rounding of y passes the gradient through,
    want = reference.round_to_bfloat16(np.where(x.data > 0, 1, 0.2).astype(np.float32))   # dx is rounded
    np.testing.assert_array_equal(x.grad.numpy(), want)


def test_autocast_leaves_float64_alone_and_can_be_turned_off_inside():
    x, w = tensors((1, 2, 5, 5), (3, 2, 3, 3), dtype=np.float64)
    x32, w32 = tensors((1, 2, 5, 5), (3, 2, 3, 3))
    with fastgan.autocast("bfloat16"):
        assert precision.is_enabled()
        y64 = F.conv2d(x, w)
        with fastgan.autocast("bfloat16", enabled=False):
            assert not precision.is_enabled()
            y32 = F.conv2d(x32, w32)
        assert precision.is_enabled()
    assert not precision.is_enabled()
    np.testing.assert_array_equal(y64.numpy(), reference.conv2d_forward(x.data, w.data, None, (1, 1), (0, 0)))
    np.testing.assert_allclose(y32.numpy(), reference.conv2d_forward(x32.data, w32.data, None, (1, 1), (0, 0)),
                               rtol=1e-5, atol=1e-6)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match=r"unknown precision 'float16': expected one of \('float32', 'bfloat16'\)"):
        with fastgan.autocast("float16"):
            pass


# --- a whole DCGAN step against torch's autocast ---------------------------------------------------------------------

def dcgan_step(bf16_fastgan, bf16_torch, n=8):
    """One step of both engines from the same weights -> (fastgan's losses, torch's losses, the relative distance
    ‖g_fastgan − g_torch‖ / ‖g_torch‖ of each parameter's gradient, G's then D's)."""
    (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_dcgans()
    rng = np.random.default_rng(0)
    real = np.tanh(rng.standard_normal((n, 1, 28, 28))).astype(np.float32)
    z = rng.standard_normal((n, 100, 1, 1)).astype(np.float32)
    with fastgan.autocast("bfloat16", enabled=bf16_fastgan):
        stats = train_step(G, D, opt_g, opt_d, fastgan.tensor(real), fastgan.tensor(z))
    # cache_enabled=False: autocast otherwise keeps the bf16 copy of each weight until the block ends, and a step
    # after an optimiser's update would see the weights from before it
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_torch, cache_enabled=False):
        # (torch's G step freezes D, as fastgan's: D's gradients are then those of D's step in both)
        theirs = torch_train_step(tG, tD, topt_g, topt_d, torch.tensor(real), torch.tensor(z), False)
    distances = [np.linalg.norm(p.grad.numpy() - q.grad.float().numpy()) / np.linalg.norm(q.grad.float().numpy())
                 for ours, torch_model in ((G, tG), (D, tD))
                 for p, q in zip(ours.parameters(), torch_model.parameters(), strict=True)]
    return np.array([stats["loss_d"], stats["loss_g"]]), np.array(theirs), np.array(distances)


def test_a_dcgan_step_under_autocast_is_as_close_to_torch_autocast_as_bfloat16_allows():
    """bfloat16 moves each gradient of a DCGAN step at batch 8 by ~10 % of its norm (batch norm's backward subtracts
    nearly equal sums), in torch as in fastgan. So the tolerance is measured, not guessed: fastgan's bf16 step must
    be no further from torch's bf16 step than twice what bfloat16 itself moves torch's step away from torch's fp32
    one (+0.01). A wiring error (a gradient to the wrong operand, a missing term) moves a gradient by ~100 %. The
    losses agree to 1 %, bfloat16's level (its 8-bit significand: 2^-8 ≈ 0.4 % per rounding)."""
    ours, theirs, distance = dcgan_step(True, True)
    _, torch_fp32, bf16_effect = dcgan_step(False, True)   # fastgan's fp32 step is torch's (test_dcgan_step.py)
    assert (bf16_effect > 0.01).any()                       # torch's autocast really changed its step
    np.testing.assert_allclose(ours, theirs, rtol=1e-2)
    assert (distance <= 2 * bf16_effect + 0.01).all(), (distance, bf16_effect)


def test_the_docs_table_is_the_policy():
    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "precision.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| op |")) + 2   # after the header and |---|
    rows = [line for line in itertools.takewhile(lambda line: line.startswith("| "), lines[start:])]
    assert rows == [f"| {op} | {forward} | {backward} |" for op, (forward, backward) in precision.POLICY.items()]
