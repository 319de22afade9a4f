"""Randomised properties against torch: fastgan's public ops, on shapes drawn at random (0-d and empty included),
in every dtype they take (float32, float64, and integers and bools where torch allows them), with dims drawn
anywhere in their range (negative ones included), give torch's values, shapes, dtypes and gradients.

hypothesis draws the cases; derandomize=True makes every run, CI's included, draw the same ones, and no example
database is written. Values come from a drawn seed (the bugs hunted here live in shapes, dims and dtypes).
"""
import operator

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastgan
import fastgan.functional as F
from fastgan import dispatch
from oracle import assert_close, check

FLOATS = [np.float32, np.float64]
INTEGERS = [np.int32, np.int64]
IMPLS = [name for name in ("reference", "cpu") if dispatch.implementation(name) is not None]


def cases(n):
    """The hypothesis settings of a test that draws n examples."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None)


def array(shape, dtype, seed, positive=False):
    """Random values of `dtype`: normal floats (|x| + 0.1 if positive), small integers (1..4 if positive), bools
    (all True if positive)."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == bool:
        return np.asarray(rng.random(shape) > (-1 if positive else 0.5))
    if np.dtype(dtype).kind in "iu":
        return np.asarray(rng.integers(1 if positive else -4, 5, shape), dtype=dtype)
    values = rng.standard_normal(shape)
    return np.asarray(np.abs(values) + 0.1 if positive else values, dtype=dtype)


seeds = st.integers(0, 2**32 - 1)
# any shape up to 4-d with sides up to 4; one draw in four is an edge case (0-d, empty, a single element)
EDGE_SHAPES = [(), (0,), (1,), (3, 0), (0, 2, 1), (1, 1, 1)]
shapes = st.integers(0, 3).flatmap(lambda k: st.sampled_from(EDGE_SHAPES) if k == 0 else
                                   hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))


def dim_in(ndim):
    """A dim of an ndim tensor, negative or not (a 0-d tensor has dims 0 and -1)."""
    size = max(ndim, 1)
    return st.integers(-size, size - 1)


@st.composite
def distinct_dims(draw, ndim):
    """A tuple of distinct dims, each written positive or negative at random."""
    dims = draw(st.lists(st.integers(0, max(ndim, 1) - 1), unique=True, max_size=max(ndim, 1)))
    return tuple(d - max(ndim, 1) if draw(st.booleans()) else d for d in dims)


# --- elementwise ------------------------------------------------------------------------------------------------

UNARY = {  # name: (fastgan, torch, needs positive inputs, takes integers)
    "neg": (lambda x: -x, lambda x: -x, False, True),
    "exp": (F.exp, torch.exp, False, True),
    "log": (F.log, torch.log, True, True),
    "tanh": (F.tanh, torch.tanh, False, True),
    "sigmoid": (F.sigmoid, torch.sigmoid, False, True),
    "relu": (F.relu, torch.relu, False, True),
    "square": (lambda x: x ** 2, lambda x: x ** 2, False, True),
    "pow0": (lambda x: x ** 0, lambda x: x ** 0, False, True),
    "sqrt": (lambda x: x ** 0.5, lambda x: x ** 0.5, True, True),
    "reciprocal": (lambda x: x ** -1.0, lambda x: x ** -1.0, True, False),
    "exp2": (lambda x: 2 ** x, lambda x: 2 ** x, False, True),
    "rpow": (lambda x: 1.5 ** x, lambda x: 1.5 ** x, False, True),
}


@cases(150)
@given(name=st.sampled_from(sorted(UNARY)), shape=shapes, dtype=st.sampled_from(FLOATS + INTEGERS), seed=seeds)
def test_unary(name, shape, dtype, seed):
    ours, theirs, positive, integers = UNARY[name]
    assume(integers or np.dtype(dtype).kind == "f")
    check(ours, theirs, [array(shape, dtype, seed, positive)], dtype=None)


@cases(60)
@given(shape=shapes, dtype=st.sampled_from(FLOATS), slope=st.sampled_from([0.0, 0.01, 0.2, 1.5]),
       impl=st.sampled_from(IMPLS), seed=seeds)
def test_leaky_relu(shape, dtype, slope, impl, seed):
    check(lambda x: F.leaky_relu(x, slope, impl=impl), lambda x: torch.nn.functional.leaky_relu(x, slope),
          [array(shape, dtype, seed)], dtype=dtype)


BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
          "pow": operator.pow}
OPERAND_DTYPES = FLOATS + INTEGERS + [np.bool_]
NUMBERS = [2, -3, 0.5, 2.5, True]


@st.composite
def operand(draw, shape, op, side):
    """A tensor (as an array) of a drawn dtype, or now and then a Python number."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(NUMBERS))
    dtype = draw(st.sampled_from(OPERAND_DTYPES))
    positive = op == "pow" and side == 0 or op == "truediv" and side == 1   # no 0 ** -1 or x / 0
    return array(shape, dtype, draw(seeds), positive)


@cases(250)
@given(op=st.sampled_from(sorted(BINARY)), data=st.data(),
       shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, min_side=0, max_side=3))
def test_binary(op, shapes, data):
    """Broadcasting, torch's type promotion (tensors with dims, 0-d tensors, numbers) and un-broadcast gradients."""
    a = data.draw(operand(shapes.input_shapes[0], op, 0))
    b = data.draw(operand(shapes.input_shapes[1], op, 1))
    kinds = [np.asarray(v).dtype.kind for v in (a, b)]
    assume(isinstance(a, np.ndarray) or isinstance(b, np.ndarray))
    assume(not (op == "sub" and "b" in kinds))                # torch refuses these, and so does fastgan
    assume(not (op == "pow" and ("b" in kinds or a is True or b is True)))  # (torch: x ** True fails an assert)
    assume(not (op == "pow" and kinds[0] in "iu" and isinstance(b, int) and b < 0))
    check(BINARY[op], BINARY[op], [a, b], dtype=None)


# --- reductions ---------------------------------------------------------------------------------------------------

@cases(150)
@given(op=st.sampled_from(["sum", "mean"]), shape=shapes, dtype=st.sampled_from(FLOATS + INTEGERS + [np.bool_]),
       keepdim=st.booleans(), alias=st.booleans(), data=st.data())
def test_reductions(op, shape, dtype, keepdim, alias, data):
    assume(op == "sum" or np.dtype(dtype).kind == "f")
    dim = data.draw(st.one_of(st.none(), dim_in(len(shape)), distinct_dims(len(shape))))
    assume(dim != ())  # torch reads an empty dim list as every dim (tested in test_ops_basic)
    if alias:  # torch's NumPy-style names
        ours = lambda x: getattr(x, op)(axis=dim, keepdims=keepdim)  # noqa: E731
    else:
        ours = lambda x: getattr(F, op)(x, dim, keepdim)  # noqa: E731
    if dim is None:
        theirs = lambda x: getattr(torch, op)(x, tuple(range(x.ndim)), keepdim=keepdim)  # noqa: E731
    else:
        theirs = lambda x: getattr(torch, op)(x, dim, keepdim=keepdim)  # noqa: E731
    check(ours, theirs, [array(shape, dtype, data.draw(seeds))], dtype=None)


# --- shapes -------------------------------------------------------------------------------------------------------

@cases(100)
@given(shape=shapes, dtype=st.sampled_from(FLOATS + INTEGERS), data=st.data())
def test_reshape_flatten_permute_transpose(shape, dtype, data):
    x = array(shape, dtype, data.draw(seeds))
    ndim = len(shape)
    new_shape = list(data.draw(st.permutations(shape)))
    if new_shape and 0 not in shape and data.draw(st.booleans()):
        new_shape[data.draw(st.integers(0, len(new_shape) - 1))] = -1
    check(lambda t: t.reshape(tuple(new_shape)), lambda t: t.reshape(tuple(new_shape)), [x], dtype=None)
    check(lambda t: t.view(new_shape), lambda t: t.view(new_shape), [x], dtype=None)

    start, end = data.draw(dim_in(ndim)), data.draw(dim_in(ndim))
    assume(start % max(ndim, 1) <= end % max(ndim, 1))
    check(lambda t: F.flatten(t, start, end), lambda t: torch.flatten(t, start, end), [x], dtype=None)
    check(lambda t: t.flatten(), lambda t: t.flatten(), [x], dtype=None)

    dims = [d - ndim if data.draw(st.booleans()) else d for d in data.draw(st.permutations(range(ndim)))]
    check(lambda t: F.permute(t, dims), lambda t: t.permute(dims), [x], dtype=None)
    if dims:
        check(lambda t: t.permute(*dims), lambda t: t.permute(*dims), [x], dtype=None)
    d0, d1 = data.draw(dim_in(ndim)), data.draw(dim_in(ndim))
    check(lambda t: F.transpose(t, d0, d1), lambda t: torch.transpose(t, d0, d1), [x], dtype=None)


@cases(60)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3), data=st.data())
def test_cat(shape, data):
    dim = data.draw(dim_in(len(shape)))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    parts = []
    for size in sizes:
        part_shape = list(shape)
        part_shape[dim] = size
        parts.append(array(tuple(part_shape), np.float64, data.draw(seeds)))
    check(lambda *t: F.cat(t, dim), lambda *t: torch.cat(t, dim), parts)


# --- indexing -----------------------------------------------------------------------------------------------------

@st.composite
def index_for(draw, shape):
    """A random index: per dim an int, a slice, an integer array (repeats allowed) or a boolean mask, with Nones
    and an Ellipsis thrown in; (fastgan's, torch's) forms of it."""
    items, dims = [], list(shape)
    ellipsis_used = False
    while dims:
        size = dims.pop(0)
        kind = draw(st.sampled_from(["int", "slice", "array", "mask", "none", "ellipsis", "stop"]))
        if kind == "int" and size:
            items.append(draw(st.integers(-size, size - 1)))
        elif kind == "array":  # a 0-d one counts as an int in torch
            rows = draw(st.sampled_from([(), (3,), (2, 2)])) if size else (0,)
            items.append(np.random.default_rng(draw(seeds)).integers(-size, max(size, 1), rows))
        elif kind == "mask":
            items.append(np.random.default_rng(draw(seeds)).random(size) > 0.5)
        elif kind == "none":
            items.append(None)
            dims.insert(0, size)
        elif kind == "ellipsis" and not ellipsis_used:
            ellipsis_used = True
            items.append(Ellipsis)
            dims = dims[draw(st.integers(0, len(dims))):]  # it stands for the dims up to where the index resumes
        elif kind == "stop":
            break
        else:
            start, stop = draw(st.integers(-5, 5)), draw(st.integers(-5, 5))
            items.append(slice(draw(st.sampled_from([None, start])), draw(st.sampled_from([None, stop])),
                               draw(st.sampled_from([None, 1, 2, 3]))))
    theirs = tuple(torch.as_tensor(i) if isinstance(i, np.ndarray) else i for i in items)
    return tuple(items), theirs


@cases(200)
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4), data=st.data())
def test_indexing(shape, data):
    """torch's rule for mixing ints, slices, None, ... and index arrays (ints go first), forward and backward."""
    ours, theirs = data.draw(index_for(shape))
    x = array(shape, np.float64, data.draw(seeds))
    try:
        torch.zeros(shape)[theirs]
    except IndexError:  # an index array out of range of a dim that an int or mask shifted: torch refuses it too
        with pytest.raises(IndexError):
            fastgan.tensor(x)[ours]
        return
    check(lambda t: t[ours], lambda t: t[theirs], [x])
    with_tensors = tuple(fastgan.tensor(i) if isinstance(i, np.ndarray) else i for i in ours)
    check(lambda t: t[with_tensors], lambda t: t[theirs], [x])


# --- matrix products ----------------------------------------------------------------------------------------------

@cases(100)
@given(batch=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, min_side=0, max_side=3),
       vectors=st.tuples(st.booleans(), st.booleans()), sizes=st.tuples(*[st.integers(0, 3)] * 3),
       dtype=st.sampled_from(FLOATS + [np.int64]), seed=seeds)
def test_matmul(batch, vectors, sizes, dtype, seed):
    """Vectors (1-D), matrices, and batches of them whose leading dims broadcast."""
    n, k, m = sizes
    shape_a = (k,) if vectors[0] else batch.input_shapes[0] + (n, k)
    shape_b = (k,) if vectors[1] else batch.input_shapes[1] + (k, m)
    a, b = array(shape_a, dtype, seed), array(shape_b, dtype, seed + 1)
    check(F.matmul, torch.matmul, [a, b], dtype=None)
    check(lambda x, y: x @ y, lambda x, y: x @ y, [a, b], dtype=None)


# --- the layers' ops and the losses, on every CPU kernel implementation -------------------------------------------

@cases(40)
@given(n=st.integers(0, 2), cin=st.integers(1, 3), cout=st.integers(1, 3), hw=st.tuples(*[st.integers(1, 6)] * 2),
       k=st.tuples(*[st.integers(1, 4)] * 2), stride=st.tuples(*[st.integers(1, 3)] * 2),
       padding=st.tuples(*[st.integers(0, 2)] * 2), transposed=st.booleans(), dtype=st.sampled_from(FLOATS),
       impl=st.sampled_from(IMPLS), seed=seeds)
def test_convolutions(n, cin, cout, hw, k, stride, padding, transposed, dtype, impl, seed):
    if transposed:
        w_shape, ours, theirs = (cin, cout) + k, F.conv_transpose2d, torch.nn.functional.conv_transpose2d
        assume(all((size - 1) * s - 2 * p + kk > 0 for size, s, p, kk in zip(hw, stride, padding, k)))
    else:
        w_shape, ours, theirs = (cout, cin) + k, F.conv2d, torch.nn.functional.conv2d
        assume(all(size + 2 * p >= kk for size, p, kk in zip(hw, padding, k)))
    inputs = [array((n, cin) + hw, dtype, seed), array(w_shape, dtype, seed + 1), array((cout,), dtype, seed + 2)]
    check(lambda x, w, b: ours(x, w, b, stride, padding, impl=impl),
          lambda x, w, b: theirs(x, w, b, stride, padding), inputs, dtype=dtype)


@cases(60)
@given(shape=st.one_of(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=4),
                       hnp.array_shapes(min_dims=4, max_dims=4, min_side=0, max_side=3)),
       training=st.booleans(), activation=st.sampled_from([None, "relu", "leaky_relu"]),
       dtype=st.sampled_from(FLOATS), impl=st.sampled_from(IMPLS), seed=seeds)
def test_batch_norm(shape, training, activation, dtype, impl, seed):
    count = int(np.prod(shape)) // max(shape[1], 1)
    assume(shape[1] > 0 and not (training and count == 1))  # one value per channel: both refuse (test_ops_norm_loss)
    c = shape[1]
    stats = array((c,), dtype, seed + 3), array((c,), dtype, seed + 4, positive=True)
    ours_stats, torch_stats = [fastgan.tensor(s.copy()) for s in stats], [torch.tensor(s.copy()) for s in stats]
    act = {None: lambda y: y, "relu": torch.relu, "leaky_relu": lambda y: torch.nn.functional.leaky_relu(y, 0.2)}
    check(lambda x, g, b: F.batch_norm(x, *ours_stats, g, b, training, activation=activation, impl=impl),
          lambda x, g, b: act[activation](torch.nn.functional.batch_norm(x, *torch_stats, g, b, training)),
          [array(shape, dtype, seed), array((c,), dtype, seed + 1), array((c,), dtype, seed + 2)], dtype=dtype)
    for a, b in zip(ours_stats, torch_stats):
        assert_close(a.numpy(), b, "running statistics", dtype)


@cases(60)
@given(shape=shapes, reduction=st.sampled_from(["mean", "sum", "none"]), dtype=st.sampled_from(FLOATS),
       impl=st.sampled_from(IMPLS), seed=seeds)
def test_binary_cross_entropy_with_logits(shape, reduction, dtype, impl, seed):
    logits = np.asarray(array(shape, dtype, seed) * 4)
    target = np.asarray(np.random.default_rng(seed).random(shape), dtype)      # soft targets
    check(lambda s, y: F.binary_cross_entropy_with_logits(s, y, reduction, impl=impl),
          lambda s, y: torch.nn.functional.binary_cross_entropy_with_logits(s, y, reduction=reduction),
          [logits, target], grad=[True, False], dtype=dtype)


@cases(40)
@given(n=st.integers(0, 4), classes=st.integers(1, 4), reduction=st.sampled_from(["mean", "sum", "none"]),
       dtype=st.sampled_from(FLOATS), seed=seeds)
def test_cross_entropy(n, classes, reduction, dtype, seed):
    labels = np.random.default_rng(seed).integers(0, classes, n)
    check(lambda s: F.cross_entropy(s, labels, reduction),
          lambda s: torch.nn.functional.cross_entropy(s, torch.as_tensor(labels), reduction=reduction),
          [array((n, classes), dtype, seed)], dtype=dtype)


@cases(40)
@given(n=st.integers(0, 3), features=st.integers(0, 4), out=st.integers(0, 3), bias=st.booleans(),
       dtype=st.sampled_from(FLOATS), seed=seeds)
def test_linear(n, features, out, bias, dtype, seed):
    inputs = [array((n, features), dtype, seed), array((out, features), dtype, seed + 1)]
    inputs += [array((out,), dtype, seed + 2)] if bias else []
    check(F.linear, torch.nn.functional.linear, inputs, dtype=dtype)


@cases(40)
@given(shape=shapes, p=st.sampled_from([0.0, 1.0]), dtype=st.sampled_from(FLOATS), seed=seeds)
def test_dropout_at_its_deterministic_ends(shape, p, dtype, seed):
    check(lambda x: F.dropout(x, p), lambda x: torch.nn.functional.dropout(x, p), [array(shape, dtype, seed)],
          dtype=dtype)
