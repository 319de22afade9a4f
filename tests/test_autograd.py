"""The autograd core: accumulation, un-broadcasting, deep graphs, graph freeing, no_grad, central differences."""
import numpy as np
import pytest

import fastgan
import fastgan.functional as F
from oracle import check, gradcheck, random_inputs


def test_reused_node_accumulates():
    x = fastgan.tensor([2.0, -3.0], requires_grad=True)
    y = x * x + x  # x is used three times
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([2.0, -3.0]) + 1)


def test_gradients_accumulate_across_backward_calls():
    x = fastgan.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])


def test_unbroadcast_shapes():
    a = fastgan.tensor(np.ones((4, 1, 3)), requires_grad=True)
    b = fastgan.tensor(np.ones((5, 1)), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (4, 1, 3) and b.grad.shape == (5, 1)
    np.testing.assert_allclose(a.grad.numpy(), 5.0)
    np.testing.assert_allclose(b.grad.numpy(), 12.0)


@pytest.mark.parametrize("small, big", [((1, 3, 1, 1), (2, 3, 4, 5)), ((1, 1), (3, 4)), ((4, 1, 1), (2, 4, 3, 5)),
                                        ((), (2, 3)), ((1,), (3, 1, 2)), ((3, 1), (2, 3, 4)), ((1, 1, 5), (2, 3, 5)),
                                        ((2, 1, 1), (2, 0, 3))])
def test_unbroadcast_over_several_axes(small, big):
    """The gradient of an operand broadcast along several size-1 (and missing) axes is summed over all of them."""
    check(lambda a, b: a * b, lambda a, b: a * b, random_inputs(small, big))
    check(lambda a, b: b - a, lambda a, b: b - a, random_inputs(small, big, dtype=np.float32), dtype=np.float32)


def test_gradients_come_back_in_each_inputs_dtype():
    a, b = random_inputs((2, 3), (3,))
    check(lambda a, b: a * b, lambda a, b: a * b, [a.astype(np.float32), b], dtype=None)   # computed in float64
    check(lambda a, b: a / b, lambda a, b: a / b, [a.astype(np.float32), np.array(3.0)], dtype=None)  # in float32


def test_deep_graph_has_no_recursion_limit():
    x = fastgan.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0])


def test_graph_is_freed_unless_retained():
    x = fastgan.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])
    with pytest.raises(RuntimeError, match=r"backward through a graph a second time: .* retain_graph=True"):
        y.backward()


def test_no_grad_and_detach():
    x = fastgan.tensor([1.0], requires_grad=True)
    with fastgan.no_grad():
        y = x * 2
    assert not y.requires_grad and fastgan.is_grad_enabled()
    assert not (x.detach() * 2).requires_grad
    with pytest.raises(RuntimeError, match=r"backward\(\) on a tensor that does not require grad"):
        y.sum().backward()


def test_backward_needs_scalar_or_gradient():
    x = fastgan.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"backward\(\) without a gradient needs a scalar output, got shape \(2,\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"backward\(\): gradient shape \(3,\) != tensor shape \(2,\)"):
        (x * 2).backward(fastgan.tensor([1.0, 1.0, 1.0]))


def test_dtypes():
    assert fastgan.tensor([1.0]).dtype == np.float32
    assert fastgan.tensor(np.zeros(2)).dtype == np.float64
    assert fastgan.tensor([1.0], dtype=np.float64).dtype == np.float64
    assert (fastgan.tensor([1.0]) * 2.5).dtype == np.float32  # Python scalars never upcast
    with pytest.raises(TypeError, match="only floating-point tensors can require grad, got dtype int64"):
        fastgan.tensor([1, 2], requires_grad=True)


@pytest.mark.parametrize("fn", [
    lambda a, b: (a * b + a / (b * b + 1)).tanh(),
    lambda a, b: F.sigmoid(a @ b.T),
    lambda a, b: F.leaky_relu(a - b, 0.1) * F.relu(b),
    lambda a, b: F.sum(F.cat([a, b], dim=0) ** 2, dim=1),
])
def test_central_differences(fn):
    a, b = random_inputs((3, 4), (3, 4), seed=3)
    gradcheck(fn, [a, b])


@pytest.mark.parametrize("fn, shapes", [
    (lambda x, w: F.conv2d(x, w, None, 2, 1), [(2, 2, 5, 4), (3, 2, 3, 3)]),
    (lambda x, w: F.conv_transpose2d(x, w, None, 2, 1, 1), [(2, 2, 3, 3), (2, 3, 3, 2)]),
    (lambda x, g: F.batch_norm(x, None, None, g, None, True, activation="leaky_relu"), [(3, 2, 2, 3), (2,)]),
    (lambda s: F.binary_cross_entropy_with_logits(s * 4, fastgan.tensor(np.full((4, 3), 0.9)), "none"), [(4, 3)]),
])
def test_central_differences_kernel_ops(fn, shapes):
    gradcheck(fn, random_inputs(*shapes, seed=4), rtol=1e-5, atol=1e-6)
