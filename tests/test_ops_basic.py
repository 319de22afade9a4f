"""Elementwise, linear-algebra, shape and reduction ops against torch (forward and every input gradient)."""
import numpy as np
import pytest
import torch

import fastgan
import fastgan.functional as F
from oracle import check, random_inputs

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 5), (3, 1)), ((1,), (2, 3))])
def test_broadcast_arithmetic(dtype, shape_a, shape_b):
    a, b = random_inputs(shape_a, shape_b, dtype=dtype)
    b = np.abs(b) + 0.5  # keep division well conditioned
    check(lambda x, y: x + y, lambda x, y: x + y, [a, b], dtype=dtype)
    check(lambda x, y: x - y, lambda x, y: x - y, [a, b], dtype=dtype)
    check(lambda x, y: x * y, lambda x, y: x * y, [a, b], dtype=dtype)
    check(lambda x, y: x / y, lambda x, y: x / y, [a, b], dtype=dtype)


def test_scalars_and_unary():
    (a,) = random_inputs((4, 5))
    check(lambda x: 2 * x - 1 + x / 3 - (-x), lambda x: 2 * x - 1 + x / 3 - (-x), [a])
    check(lambda x: 1 / (x * x + 1), lambda x: 1 / (x * x + 1), [a])
    check(lambda x: x ** 3, lambda x: x ** 3, [a])
    check(lambda x: (x * 0.1).exp(), lambda x: (x * 0.1).exp(), [a])
    check(lambda x: (x * x + 1).log(), lambda x: (x * x + 1).log(), [a])


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_and_linear(dtype):
    a, b, w, bias = random_inputs((5, 3), (3, 7), (4, 3), (4,), dtype=dtype)
    check(F.matmul, torch.matmul, [a, b], dtype=dtype)
    check(F.linear, torch.nn.functional.linear, [a, w, bias], dtype=dtype)
    check(F.linear, torch.nn.functional.linear, [a[:1], w], dtype=dtype)  # batch 1, no bias


def test_shapes():
    (a,) = random_inputs((2, 3, 4, 5))
    check(lambda x: x.reshape(6, 20) * 2, lambda x: x.reshape(6, 20) * 2, [a])
    check(lambda x: F.flatten(x), lambda x: torch.flatten(x, 1), [a])
    check(lambda x: F.transpose(x, 1, 3), lambda x: torch.transpose(x, 1, 3), [a])
    check(lambda x: F.permute(x, (3, 0, 2, 1)), lambda x: x.permute(3, 0, 2, 1), [a])
    check(lambda x: x[1, :, 2], lambda x: x[1, :, 2], [a])
    b, c = random_inputs((2, 3), (2, 5))
    check(lambda x, y: F.cat([x, y, x], dim=1), lambda x, y: torch.cat([x, y, x], dim=1), [b, c])


@pytest.mark.parametrize("dim, keepdim", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, False)])
def test_reductions(dim, keepdim):
    (a,) = random_inputs((3, 4, 5))
    tdim = dim if dim is not None else tuple(range(3))
    check(lambda x: F.sum(x, dim, keepdim), lambda x: torch.sum(x, tdim, keepdim=keepdim), [a])
    check(lambda x: F.mean(x, dim, keepdim), lambda x: torch.mean(x, tdim, keepdim=keepdim), [a])


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations(dtype):
    (a,) = random_inputs((7, 9), dtype=dtype)
    check(F.relu, torch.relu, [a], dtype=dtype)
    check(lambda x: F.leaky_relu(x, 0.2), lambda x: torch.nn.functional.leaky_relu(x, 0.2), [a], dtype=dtype)
    check(F.tanh, torch.tanh, [a], dtype=dtype)
    check(F.sigmoid, torch.sigmoid, [a * 30], dtype=dtype)  # saturated tails too


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7, 7), (2, 64, 14, 14)])
def test_leaky_relu_kernels(impl, dtype, shape):
    (a,) = random_inputs(shape, dtype=dtype)
    check(lambda x: F.leaky_relu(x, 0.2), lambda x: torch.nn.functional.leaky_relu(x, 0.2), [a], dtype=dtype)


def test_maxout():
    (a,) = random_inputs((6, 12))
    check(lambda x: F.maxout(x, 3), lambda x: x.view(6, 4, 3).max(dim=2).values, [a])
    check(lambda x: F.maxout(x, 1), lambda x: x, [a])
    (b,) = random_inputs((3, 1200), dtype=np.float32)  # the MLP discriminator's 240 units × 5 pieces
    check(lambda x: F.maxout(x, 5), lambda x: x.view(3, 240, 5).max(dim=2).values, [b], dtype=np.float32)


def test_maxout_ties_send_the_gradient_to_the_first_winner():
    x = fastgan.tensor(np.array([[1.0, 3.0, 3.0, 2.0, 2.0, 2.0]]), requires_grad=True)
    y = F.maxout(x, 3)
    np.testing.assert_array_equal(y.numpy(), [[3.0, 2.0]])
    F.sum(y * fastgan.tensor(np.array([[10.0, 20.0]]))).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 10.0, 0.0, 20.0, 0.0, 0.0]])


def test_dropout_scales_and_masks():
    import fastgan
    fastgan.manual_seed(0)
    x = fastgan.ones(1000, 50, requires_grad=True)
    y = F.dropout(x, 0.3, training=True)
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())  # same mask, same scale
    assert F.dropout(x, 0.3, training=False) is x
