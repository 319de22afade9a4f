"""Higher-order gradients: backward(create_graph=True) and fastgan.grad. Every op with a second derivative is
double-differentiated against torch.autograd.grad(..., create_graph=True) in float64; Hessian-vector products
against central differences; ops without one refuse create_graph by name."""
import numpy as np
import pytest
import torch

import fastgan
import fastgan.functional as F
from fastgan import autograd
from oracle import check_twice, random_inputs

TF = torch.nn.functional


@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 5), (3, 1)), ((), (2, 3)),
                                              ((1,), (1,)), ((0, 3), (3,))])
def test_arithmetic(shape_a, shape_b):
    a, b = random_inputs(shape_a, shape_b)
    b = np.abs(b) + 0.5
    for fn in (lambda x, y: x + y, lambda x, y: x - y, lambda x, y: x * y, lambda x, y: x / y,
               lambda x, y: -x * y * y, lambda x, y: (x * y) / (y + x * x + 1)):
        check_twice(fn, fn, [a, b])


def test_numbers_and_powers():
    a, b = random_inputs((3, 4), (3, 4))
    check_twice(lambda x: 2 * x - 1 + x / 3 - (-x) * x, lambda x: 2 * x - 1 + x / 3 - (-x) * x, [a])
    check_twice(lambda x: x ** 3 + 2 ** x, lambda x: x ** 3 + 2 ** x, [a])
    check_twice(lambda x, e: (x * x + 0.5) ** e, lambda x, e: (x * x + 0.5) ** e, [a, b])  # d/dx and d/de
    check_twice(lambda x: (x * x + 0.5) ** -1.5, lambda x: (x * x + 0.5) ** -1.5, [a])


@pytest.mark.parametrize("shape", [(3, 4), (), (1,), (0, 2)])
def test_unary(shape):
    (a,) = random_inputs(shape)
    check_twice(F.exp, torch.exp, [a])
    check_twice(lambda x: F.log(x * x + 0.1), lambda x: torch.log(x * x + 0.1), [a])
    check_twice(F.tanh, torch.tanh, [a])
    check_twice(F.sigmoid, torch.sigmoid, [a])
    check_twice(lambda x: F.relu(x) * x, lambda x: torch.relu(x) * x, [a])


def test_leaky_relu(impl):
    (a,) = random_inputs((5, 7))
    check_twice(lambda x: F.leaky_relu(x, 0.2) ** 2, lambda x: TF.leaky_relu(x, 0.2) ** 2, [a])
    check_twice(lambda x: F.leaky_relu(F.leaky_relu(x, 0.2) * x, 0.1),
                lambda x: TF.leaky_relu(TF.leaky_relu(x, 0.2) * x, 0.1), [a])


@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((4,), (4, 3)), ((3, 4), (4,)),
                                              ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 4), (4, 1)),
                                              ((0, 4), (4, 2))])
def test_matmul(shape_a, shape_b):
    a, b = random_inputs(shape_a, shape_b)
    check_twice(lambda x, y: F.matmul(x, y) ** 2, lambda x, y: torch.matmul(x, y) ** 2, [a, b])


@pytest.mark.parametrize("n", [1, 4])
def test_linear(n):
    x, w, b = random_inputs((n, 3), (5, 3), (5,))
    check_twice(lambda x, w, b: F.tanh(F.linear(x, w, b)), lambda x, w, b: torch.tanh(TF.linear(x, w, b)), [x, w, b])
    check_twice(lambda x, w: F.linear(x, w) ** 2, lambda x, w: TF.linear(x, w) ** 2, [x, w])


def test_shapes():
    (a,) = random_inputs((2, 3, 4))
    check_twice(lambda x: F.reshape(x * x, (4, -1)), lambda x: torch.reshape(x * x, (4, -1)), [a])
    check_twice(lambda x: F.transpose(x * x, 0, -1), lambda x: torch.transpose(x * x, 0, -1), [a])
    check_twice(lambda x: F.permute(x * x, (2, 0, 1)), lambda x: torch.permute(x * x, (2, 0, 1)), [a])
    check_twice(lambda x: F.flatten(x * x, 1), lambda x: torch.flatten(x * x, 1), [a])
    check_twice(lambda x: (x * x).T, lambda x: (x * x).permute(2, 1, 0), [a])
    check_twice(lambda x: F.unsqueeze(F.squeeze(x * x), -1), lambda x: torch.squeeze(x * x).unsqueeze(-1),
                [random_inputs((1, 3))[0]])


@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, True), (-1, False), ((0, 2), True), ((), False)])
def test_reductions(dim, keepdim):
    (a,) = random_inputs((2, 3, 4))
    tdim = dim if dim is not None else tuple(range(3))
    tdim = tdim if tdim != () else tuple(range(3))
    check_twice(lambda x: F.sum(x * x, dim, keepdim), lambda x: torch.sum(x * x, tdim, keepdim), [a])
    check_twice(lambda x: F.mean(x ** 3, dim, keepdim), lambda x: torch.mean(x ** 3, tdim, keepdim), [a])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(6, 1), (), (1,)])
def test_fused_sigmoid_bce(impl, reduction, shape):
    s, y = random_inputs(shape, shape)
    y = 1 / (1 + np.exp(-y))  # soft targets in (0, 1)
    check_twice(lambda s: F.binary_cross_entropy_with_logits(s * s, y, reduction),
                lambda s: TF.binary_cross_entropy_with_logits(s * s, torch.tensor(y), reduction=reduction), [s])
    check_twice(lambda s: F.binary_cross_entropy_with_logits(s, 1.0, reduction),
                lambda s: TF.binary_cross_entropy_with_logits(s, torch.ones_like(s), reduction=reduction), [s])


def test_where_broadcast_to_and_cast():
    a, b = random_inputs((3, 4), (4,))
    cond = a > 0
    check_twice(lambda x, y: F.where(cond, x * x, y * y * y),
                lambda x, y: torch.where(torch.tensor(cond), x * x, y ** 3), [a, b])
    check_twice(lambda y: F.broadcast_to(y * y, (2, 3, 4)), lambda y: torch.broadcast_to(y * y, (2, 3, 4)), [b])
    check_twice(lambda x: F.cast(F.cast(x * x, np.float32) * 2, np.float64) * x,
                lambda x: (x * x).float().mul(2).double() * x, [a], dtype=np.float64)


def test_dropout_mask_is_a_constant():
    """y = x·mask: the second derivative of (y·y) is 2·mask², through the same mask as the first."""
    fastgan.manual_seed(0)
    x = fastgan.tensor(random_inputs((50,))[0], requires_grad=True)
    y = F.dropout(x, 0.5)
    mask = y.numpy() / x.numpy()
    (g,) = fastgan.grad((y * y).sum(), [x], create_graph=True)
    np.testing.assert_allclose(g.numpy(), 2 * mask ** 2 * x.numpy())
    (h,) = fastgan.grad(g.sum(), [x])
    np.testing.assert_allclose(h.numpy(), 2 * mask ** 2)


def mlp_loss(x, w1, b1, w2, b2, y):
    """A small tanh MLP's fused sigmoid-BCE loss, in either framework (the toy D's ops)."""
    if isinstance(x, torch.Tensor):
        return TF.binary_cross_entropy_with_logits(TF.linear(torch.tanh(TF.linear(x, w1, b1)), w2, b2), y)
    return F.binary_cross_entropy_with_logits(F.linear(F.tanh(F.linear(x, w1, b1)), w2, b2), y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mlp_loss_twice_against_torch(dtype):
    x, w1, b1, w2, b2 = random_inputs((6, 3), (5, 3), (5,), (1, 5), (1,), dtype=dtype)
    y = (random_inputs((6, 1), seed=1)[0] > 0).astype(dtype)
    check_twice(lambda *t: mlp_loss(*t, y), lambda *t: mlp_loss(*t, torch.tensor(y)), [x, w1, b1, w2, b2],
                dtype=dtype)


def test_hessian_vector_products_against_central_differences():
    """H v = ∇(∇f · v), against (∇f(w + εv) − ∇f(w − εv)) / 2ε, for the MLP loss in its first-layer weights."""
    x, w1, b1, w2, b2, v = random_inputs((6, 3), (5, 3), (5,), (1, 5), (1,), (5, 3))
    y = (x[:, :1] > 0).astype(np.float64)
    t = [fastgan.tensor(a, requires_grad=True) for a in (x, w1, b1, w2, b2)]

    def gradient(w):
        t[1] = fastgan.tensor(w, requires_grad=True)
        return fastgan.grad(mlp_loss(*t, y), [t[1]])[0].numpy()

    w = fastgan.tensor(w1, requires_grad=True)
    t[1] = w
    (g,) = fastgan.grad(mlp_loss(*t, y), [w], create_graph=True)
    (hv,) = fastgan.grad((g * fastgan.tensor(v)).sum(), [w])
    eps = 1e-5
    numeric = (gradient(w1 + eps * v) - gradient(w1 - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hv.numpy(), numeric, rtol=1e-6, atol=1e-9)


def test_backward_create_graph_keeps_a_differentiable_grad():
    x = fastgan.tensor([1.5, -2.0], dtype=np.float64, requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)   # x.grad = 3x², on the tape
    assert x.grad.requires_grad
    g = x.grad
    x.grad = None
    g.sum().backward()                          # d(Σ 3x²)/dx = 6x
    np.testing.assert_allclose(x.grad.numpy(), [9.0, -12.0])


def test_grad_of_computed_inputs_and_its_errors():
    x = fastgan.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    h = x * x                                   # a computed input: dL/dh, not dL/dx
    loss = (h * 3).sum()
    (gh,) = fastgan.grad(loss, [h], retain_graph=True)
    np.testing.assert_allclose(gh.numpy(), [3.0, 3.0])
    assert x.grad is None                       # grad() adds nothing to any .grad
    other = fastgan.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"grad\(\): inputs \[1\] are not used by the outputs"):
        fastgan.grad(loss, [x, other], retain_graph=True)
    assert fastgan.grad(loss, [x, other], allow_unused=True)[1] is None
    with pytest.raises(RuntimeError, match=r"grad\(\): input 0 is not a Tensor that requires grad"):
        fastgan.grad(loss, [fastgan.tensor([1.0])])


@pytest.mark.parametrize("name, fn", [
    ("conv2d", lambda x: F.conv2d(x, fastgan.tensor(np.ones((2, 3, 2, 2)), requires_grad=True))),
    ("conv_transpose2d", lambda x: F.conv_transpose2d(x, fastgan.tensor(np.ones((3, 2, 2, 2)), requires_grad=True))),
    ("batch_norm", lambda x: F.batch_norm(x, None, None, training=True)),
    ("maxout", lambda x: F.maxout(F.reshape(x, (1, -1)), 3)),
    ("getitem", lambda x: x[0]),
    ("my_square", lambda x: autograd.op(x.data ** 2, [x], lambda g: (2 * g * x.data,), "my_square")),
])
def test_ops_without_a_second_derivative_refuse_create_graph(name, fn):
    x = fastgan.tensor(random_inputs((1, 3, 4, 4))[0], requires_grad=True)
    loss = (fn(x) * fn(x)).sum()
    with pytest.raises(RuntimeError, match=rf"create_graph=True: op '{name}' has no second derivative"):
        fastgan.grad(loss, [x], create_graph=True)
    (g,) = fastgan.grad(loss, [x])              # the ordinary gradient still works
    assert g.shape == x.shape and not g.requires_grad


def test_check_twice_catches_a_formula_that_reads_arrays():
    """A twice-differentiable formula must compute from its values: one that reads x's array instead has the right
    first derivative and a second derivative of zero, and check_twice says so."""
    from fastgan.functional import _data
    from fastgan.tensor import _result

    def cube(x, reads_array):
        # y = x³: dL/dx = g·3x²; with x's array in place of x, 3x² is a constant on the tape
        slope = (lambda v: 3 * _data(v) ** 2) if reads_array else (lambda v: 3 * v * v)
        return _result(x.data ** 3, (x,), lambda g, v, out: (g * slope(v),), "cube", twice=True)

    (a,) = random_inputs((4,))
    check_twice(lambda x: cube(x, False), lambda x: x ** 3, [a])
    with pytest.raises(AssertionError, match="second-order gradient of input 0"):
        check_twice(lambda x: cube(x, True), lambda x: x ** 3, [a])
