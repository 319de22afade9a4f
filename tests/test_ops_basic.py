"""Elementwise, linear-algebra, shape and reduction ops against torch (forward and every input gradient)."""
import operator

import numpy as np
import pytest
import torch

import fastgan
import fastgan.functional as F
from oracle import check, random_inputs

DTYPES = [np.float64, np.float32]
# NumPy warns where IEEE arithmetic gives inf or NaN (0 ** -1, 1 / 0, (-1.5) ** 2.5); torch says nothing: both agree
IEEE_EXCEPTIONS = pytest.mark.filterwarnings("ignore:(divide by zero|invalid value) encountered:RuntimeWarning")


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
    check(lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1), [a])
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
@pytest.mark.parametrize("shape", [(), (1,), (0, 3), (3, 5, 7, 7), (2, 64, 14, 14)])
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


# --- dims: negative dims, 0-d tensors, torch's defaults ----------------------------------------------------------

def test_permute_and_transpose_with_negative_dims():
    (a,) = random_inputs((3, 4, 5, 6))
    check(lambda x: F.permute(x, (-1, 0, -2, 1)), lambda x: x.permute(-1, 0, -2, 1), [a])
    check(lambda x: x.permute(2, -1, 0, -3), lambda x: x.permute(2, -1, 0, -3), [a])
    check(lambda x: F.transpose(x, -1, 0), lambda x: x.transpose(-1, 0), [a])
    with pytest.raises(ValueError, match=r"permute: dims \(0, -4, 1, 2\) name a dim twice"):
        F.permute(fastgan.tensor(a), (0, -4, 1, 2))
    with pytest.raises(IndexError, match=r"permute: dim 4 is out of range for a tensor of shape \(3, 4, 5, 6\)"):
        F.permute(fastgan.tensor(a), (0, 4, 1, 2))


@pytest.mark.parametrize("shape, kwargs", [
    ((2, 3, 4), {}), ((2, 3, 4), dict(start_dim=1)), ((2, 3, 4), dict(end_dim=1)), ((2, 3, 4), dict(end_dim=-2)),
    ((2, 3, 4, 5), dict(start_dim=-3, end_dim=2)), ((2, 3), dict(start_dim=1, end_dim=1)), ((), {}),
    ((), dict(start_dim=-1, end_dim=0)), ((1,), {}), ((5,), dict(start_dim=-1)), ((2, 0, 3), dict(start_dim=1)),
    ((0, 2, 3), dict(start_dim=1)),
])
def test_flatten_as_torch(shape, kwargs):
    (a,) = random_inputs(shape)
    check(lambda x: F.flatten(x, **kwargs), lambda x: torch.flatten(x, **kwargs), [a])
    check(lambda x: x.flatten(**kwargs), lambda x: x.flatten(**kwargs), [a])


def test_flatten_errors_and_the_layer_keeps_the_batch_dim():
    (a,) = random_inputs((2, 3, 4))
    with pytest.raises(ValueError, match="flatten: start_dim 2 comes after end_dim 1"):
        F.flatten(fastgan.tensor(a), 2, 1)
    with pytest.raises(IndexError, match=r"flatten: dim 1 is out of range for a tensor of shape \(\)"):
        F.flatten(fastgan.tensor(1.0), 1)
    check(lambda x: fastgan.nn.Flatten()(x), lambda x: torch.nn.Flatten()(x), [a])


@pytest.mark.parametrize("dim", [None, 0, -1, (0,), [-1]])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions_of_a_0d_tensor(dim, keepdim):
    check(lambda x: F.sum(x, dim, keepdim), lambda x: torch.sum(x, dim, keepdim=keepdim), [np.array(1.5)])
    check(lambda x: F.mean(x, dim, keepdim), lambda x: torch.mean(x, dim, keepdim=keepdim), [np.array(1.5)])
    with pytest.raises(IndexError, match=r"sum: dim 1 is out of range for a tensor of shape \(\)"):
        fastgan.tensor(1.5).sum(1)


def test_reductions_take_torch_aliases_and_reject_repeated_dims():
    (a,) = random_inputs((3, 4, 5))
    check(lambda x: x.sum(axis=-1), lambda x: x.sum(axis=-1), [a])
    check(lambda x: x.mean(axis=(0, -1), keepdims=True), lambda x: x.mean(axis=(0, -1), keepdims=True), [a])
    check(lambda x: F.sum(x, []), lambda x: torch.sum(x, []), [a])  # an empty dim list reduces everything
    with pytest.raises(ValueError, match=r"sum: dims \(0, -3\) name a dim twice"):
        fastgan.tensor(a).sum((0, -3))
    with pytest.raises(TypeError, match="sum: got both dim and its alias axis"):
        fastgan.tensor(a).sum(0, axis=1)


@pytest.mark.parametrize("shape, dim", [((0, 3), None), ((0, 3), 0), ((0, 3), 1), ((2, 0), -1)])
def test_reductions_of_empty_tensors(shape, dim):
    a = np.zeros(shape)
    tdim = dim if dim is not None else tuple(range(len(shape)))
    check(lambda x: F.sum(x, dim), lambda x: torch.sum(x, tdim), [a])
    check(lambda x: F.mean(x, dim), lambda x: torch.mean(x, tdim), [a])  # the mean of nothing is NaN


def test_integer_reductions():
    a = np.arange(-3, 9, dtype=np.int32).reshape(3, 4)
    check(lambda x: x.sum(-1), lambda x: x.sum(-1), [a], dtype=None)   # int64, as torch
    check(lambda x: x.sum(), lambda x: x.sum(), [a > 2], dtype=None)   # bools count
    with pytest.raises(TypeError, match="mean: expected a floating-point tensor, got dtype int32"):
        fastgan.tensor(a).mean()


# --- x ** p and p ** x --------------------------------------------------------------------------------------------

@IEEE_EXCEPTIONS
@pytest.mark.parametrize("exponent", [0, 0.0, 1, 2, 3, 0.5, -1, -2.5])
def test_pow_at_zero_and_negative_bases(exponent):
    a = np.array([0.0, 1.5, 3.0, 1e-3])   # at 0 the derivative is 0·∞: torch says 0 for x ** 0, else ±inf
    if float(exponent).is_integer():
        a = np.concatenate([a, [-2.0, -0.5]])
    check(lambda x: x ** exponent, lambda x: x ** exponent, [a])
    check(lambda x: x.pow(exponent), lambda x: x.pow(exponent), [a], dtype=np.float32)


@IEEE_EXCEPTIONS
def test_pow_with_tensor_exponents_and_rpow():
    a, b = random_inputs((3, 4), (4,))
    a[0, :2] = 0  # 0 ** e: d/de is 0 where e >= 0, as torch
    check(lambda x, e: x ** e, lambda x, e: x ** e, [np.abs(a), b])
    check(lambda x, e: x ** e, lambda x, e: x ** e, [a, np.round(b * 3)])  # integral exponents of negative bases
    check(lambda x: 2 ** x, lambda x: 2 ** x, [b])
    check(lambda x: 0 ** x, lambda x: 0 ** x, [np.array([0.0, 1.0, -1.0, 2.5])])
    check(lambda x: 1.5 ** x, lambda x: 1.5 ** x, [b], dtype=np.float32)
    ints = np.array([0, 1, 2, 5])
    check(lambda x: 2 ** x, lambda x: 2 ** x, [ints], dtype=None)
    check(lambda x: x ** 2.5, lambda x: x ** 2.5, [ints], dtype=None)
    with pytest.raises(ValueError, match="pow: integers to negative integer powers are not allowed"):
        fastgan.tensor([1, 2]) ** -1


# --- dropout --------------------------------------------------------------------------------------------------------

def test_dropout_with_p_one_zeroes_everything():
    (a,) = random_inputs((4, 5))
    check(lambda x: F.dropout(x, 1.0), lambda x: torch.nn.functional.dropout(x, 1.0), [a])
    check(lambda x: F.dropout(x, 0.0), lambda x: torch.nn.functional.dropout(x, 0.0), [a])
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"dropout: p must be in \[0, 1\], got {p}"):
            F.dropout(fastgan.tensor(a), p)


# --- indexing -------------------------------------------------------------------------------------------------------

INDEX = np.array([0, 2, 2, 1])  # a repeated index: its gradients add up
MASK = np.arange(36).reshape(3, 12) % 5 == 0


@pytest.mark.parametrize("index", [
    lambda d, m: (1, slice(None), slice(3, 11, 2), d, slice(0, 2)),   # NumPy puts d's dim first, torch in place
    lambda d, m: (1, slice(None), d),
    lambda d, m: (d, slice(None), 1),
    lambda d, m: (slice(None), d, 1, d),                               # 1 is applied first: then d, d are adjacent
    lambda d, m: (slice(None), d, slice(None), d),                     # separated: their dim goes first
    lambda d, m: (Ellipsis, d, 1),
    lambda d, m: (None, 1, d, Ellipsis, None),
    lambda d, m: (d[:2, None], slice(None), 0, d),                     # broadcast index arrays
    lambda d, m: (slice(None), m, 2),                                  # a mask over two dims, after an int
    lambda d, m: (-1, slice(1, None), d),
    lambda d, m: d,
    lambda d, m: (True, 1),
], ids=lambda f: str(f(INDEX, MASK)).replace("\n", ""))
def test_indexing_follows_torch(index):
    (a,) = random_inputs((3, 3, 12, 4, 5))
    ours = index(INDEX, MASK)
    theirs = index(torch.tensor(INDEX), torch.tensor(MASK))
    check(lambda x: x[ours], lambda x: x[theirs], [a])


def test_index_with_tensors_and_0d_integers():
    (a,) = random_inputs((4, 5, 6))
    d = INDEX
    check(lambda x: x[fastgan.tensor(d)], lambda x: x[torch.tensor(d)], [a])
    check(lambda x: x[fastgan.tensor(1), :, fastgan.tensor(d)], lambda x: x[torch.tensor(1), :, torch.tensor(d)], [a])
    check(lambda x: x[np.int64(3), [0, 4]], lambda x: x[3, [0, 4]], [a])
    check(lambda x: x[2, 3, 4], lambda x: x[2, 3, 4], [a])  # a 0-d result
    with pytest.raises(IndexError, match="index arrays must hold integers or booleans, got dtype float32"):
        fastgan.tensor(a)[fastgan.tensor([0.0])]
    with pytest.raises(IndexError, match="too many indices for a tensor of dimension 3"):
        fastgan.tensor(a)[0, 0, 0, 0]
    with pytest.raises(ValueError, match="the step must be greater than zero"):
        fastgan.tensor(a)[::-1]


# --- torch's call forms ---------------------------------------------------------------------------------------------

def test_cat_with_negative_dims_and_0d_tensors():
    a, b = random_inputs((2, 3, 1), (2, 3, 4))
    check(lambda x, y: F.cat([x, y, x], dim=-1), lambda x, y: torch.cat([x, y, x], dim=-1), [a, b])
    with pytest.raises(ValueError, match="cat: 0-d tensors have no dim to join along"):
        F.cat([fastgan.tensor(1.0), fastgan.tensor(2.0)])


def test_tensor_methods_as_torch():
    a, b, v = random_inputs((3, 4), (4, 5), (4,))
    check(lambda x, y: x.matmul(y), lambda x, y: x.matmul(y), [a, b])
    check(lambda x: x.neg(), lambda x: x.neg(), [a])
    check(lambda x: x.permute((1, 0)), lambda x: x.permute((1, 0)), [a])
    with pytest.raises(TypeError, match=r"len\(\) of a 0-d tensor"):
        len(fastgan.tensor(1.0))


@pytest.mark.parametrize("shape_a, shape_b", [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((2, 3, 4), (4,)),
                                              ((4,), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((0, 4), (4, 2))])
def test_matmul_shapes_as_torch(shape_a, shape_b):
    check(F.matmul, torch.matmul, random_inputs(shape_a, shape_b))


# --- dtypes: torch's promotion, in every binary op ----------------------------------------------------------------

OPERANDS = {  # name: value (arrays become tensors; numbers stay Python numbers)
    "int64[3]": np.array([1, 2, 3]), "int32[3]": np.array([4, -5, 6], np.int32),
    "bool[3]": np.array([True, False, True]),
    "float32[3]": np.array([0.5, -1.5, 2.25], np.float32), "float64[3]": np.array([1.25, 0.5, -3.0]),
    "float64[]": np.array(2.5), "int64[]": np.array(3), "float32[]": np.array(-0.75, np.float32),
    "2.5": 2.5, "0.7": 0.7, "2": 2, "True": True,
}
PAIRS = [("int64[3]", "2.5"), ("int64[3]", "0.7"), ("int64[3]", "2"), ("int32[3]", "2"), ("int32[3]", "int64[]"),
         ("int32[3]", "int64[3]"), ("bool[3]", "2"), ("bool[3]", "2.5"), ("float32[3]", "2.5"),
         ("float32[3]", "float64[3]"), ("float32[3]", "float64[]"), ("int64[3]", "float64[]"),
         ("int64[3]", "float32[]"), ("float32[]", "float64[]"), ("int64[]", "2.5"), ("float32[3]", "int64[3]"),
         ("float64[3]", "True")]


@IEEE_EXCEPTIONS
@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "pow"])
@pytest.mark.parametrize("names", PAIRS, ids="-".join)
def test_type_promotion_as_torch(op, names):
    fn = getattr(operator, op)
    for left, right in (names, names[::-1]):
        values = [OPERANDS[left], OPERANDS[right]]
        if op == "sub" and any(np.asarray(v).dtype == bool for v in values):  # torch refuses it, and so do we
            with pytest.raises(TypeError, match="sub: subtraction with a bool operand is not supported"):
                fn(*[fastgan.tensor(v) if isinstance(v, np.ndarray) else v for v in values])
            continue
        if op == "pow" and any(v is True for v in values):
            continue  # torch's backward of x ** True and True ** x fails an internal assert
        check(fn, fn, values, dtype=None)


def test_integer_tensors_cannot_require_grad():
    for make in (lambda: fastgan.Tensor(np.array([1, 2]), requires_grad=True),
                 lambda: fastgan.zeros(2, dtype=int, requires_grad=True),
                 lambda: fastgan.ones(2, dtype=np.int32, requires_grad=True),
                 lambda: fastgan.tensor([1, 2]).requires_grad_()):
        with pytest.raises(TypeError, match="only floating-point tensors can require grad, got dtype int"):
            make()
