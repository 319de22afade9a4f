"""Differentiable ops with torch-like names and signatures.

Each op computes its output and returns `_result(out, inputs, backward)`, where `backward(g)` maps the gradient of
the output to one gradient per input. Above each backward stands the derivation it implements. The heavy ops
(convolutions, batch norm, the loss) call a kernel chosen by `dispatch`; the NumPy specification of those kernels
is kernels/reference.py.

The ops with a second derivative pass twice=True and write their backward as a formula backward(g, *inputs,
output) over values that are arrays in an ordinary backward and Tensors under create_graph (tensor.py): only
operators that both support, and `_math(g).f` for a NumPy function f (fastgan's op of that name on Tensors).
"""
import numbers
import types

import numpy as np

from . import backend, dispatch, precision, promotion
from .random import generator
from .tensor import Tensor, _result

# --- helpers ---------------------------------------------------------------------------------------------------


def _lift(value, like):
    """Python numbers and arrays become constant Tensors with `like`'s dtype and device."""
    if isinstance(value, Tensor):
        return value
    xp = backend.xp(like.data)
    return Tensor(xp.asarray(value, dtype=like.dtype))


def _dim(dim, shape, op):
    """A dim of a tensor of `shape`, counted from the end when negative, checked as torch does (a 0-d tensor has
    dims 0 and -1)."""
    size = max(len(shape), 1)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or not -size <= dim < size:
        raise IndexError(f"{op}: dim {dim!r} is out of range for a tensor of shape {tuple(shape)} (expected an int "
                         f"in [{-size}, {size - 1}])")
    return int(dim) % size


def _dims(dims, shape, op):
    """Several dims, each as _dim; naming one twice is an error."""
    out = tuple(_dim(d, shape, op) for d in dims)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dims {tuple(dims)} name a dim twice")
    return out


def _unpack(args):
    """f(x, 2, 3) and f(x, (2, 3)) alike: reshape's and permute's sizes or dims."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def _math(value):
    """NumPy (or CuPy) for an array; for a Tensor, fastgan's ops under NumPy's names, so that a backward formula
    run on Tensors (create_graph) is recorded on the tape."""
    return _TENSOR_MATH if isinstance(value, Tensor) else backend.xp(value)


def _data(value):
    """A Tensor's array, or the array itself: for the constant masks a backward formula computes from its values."""
    return value.data if isinstance(value, Tensor) else value


def _floating(x):
    """x's array, in the default float dtype when it holds integers (torch's exp, log, tanh of an int tensor)."""
    return x.data if x.dtype.kind == "f" else x.data.astype(promotion.DEFAULT_FLOAT)


def _check_same_dtype(op, *tensors):
    dtypes = {t.dtype for t in tensors if t is not None}
    if len(dtypes) > 1:
        shapes = ", ".join(f"{t.shape}:{t.dtype}" for t in tensors if t is not None)
        raise TypeError(f"{op}: inputs must share one dtype, got {shapes}")
    if any(t is not None and t.dtype.kind != "f" for t in tensors):
        raise TypeError(f"{op}: expected floating-point inputs, got dtype {dtypes.pop()}")


def _check_ndim(op, name, t, ndims):
    if t.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{op}: {name} must be {want}, got shape {t.shape}")


def _pair(v, name="argument"):
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or any(int(p) != p or p < 0 for p in pair):
        raise ValueError(f"{name} must be a non-negative int or a pair of them, got {v!r}")
    return tuple(int(p) for p in pair)


# --- elementwise arithmetic (broadcasting; the engine un-broadcasts the gradients) ------------------------------

def _binary(op, a, b, floating=False):
    """(a, b, A, B): both operands as Tensors (numbers and arrays become constants on the tensor operand's device),
    and their arrays A, B in the dtype the op computes in, torch's promotion of the two (promotion.py; `floating`:
    integers promote further to the default float dtype, as in a true division). The gradients come back in each
    input's own dtype (tensor._fit)."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected at least one Tensor, got {type(a).__name__} and {type(b).__name__}")
    for v in (a, b):
        if not isinstance(v, (Tensor, numbers.Number, np.generic)) and not hasattr(v, "dtype"):
            raise TypeError(f"{op}: expected tensors, arrays or real numbers, got {type(v).__name__}")
    like = a if isinstance(a, Tensor) else b
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype:
        dtype = a.dtype  # (what result_type gives, without its walk: the common case, worth a shortcut)
    else:
        dtype = promotion.result_type(*(v.data if isinstance(v, Tensor) else v for v in (a, b)))
    if floating and promotion.category(dtype) < promotion.category(promotion.DEFAULT_FLOAT):
        dtype = promotion.DEFAULT_FLOAT
    xp = backend.xp(like.data)
    # a number becomes a constant in the computing dtype (a backward formula multiplies in it); an array keeps its own
    a, b = (v if isinstance(v, Tensor) else Tensor(xp.asarray(v, dtype=None if _keeps_dtype(v) else dtype))
            for v in (a, b))
    if a.shape != b.shape:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None
    return a, b, a.data.astype(dtype, copy=False), b.data.astype(dtype, copy=False)


def _keeps_dtype(value):
    return hasattr(value, "dtype") and not isinstance(value, np.generic) or isinstance(value, (bool, np.bool_))


def add(a, b):
    a, b, A, B = _binary("add", a, b)
    # d(a+b) = da + db
    return _result(A + B, (a, b), lambda g, a, b, out: (g, g), "add", twice=True)


def sub(a, b):
    a, b, A, B = _binary("sub", a, b)
    if bool in (a.dtype, b.dtype):
        raise TypeError(f"sub: subtraction with a bool operand is not supported (as in torch), got dtypes {a.dtype} "
                        f"and {b.dtype}")
    # d(a-b) = da - db
    return _result(A - B, (a, b), lambda g, a, b, out: (g, -g), "sub", twice=True)


def mul(a, b):
    a, b, A, B = _binary("mul", a, b)
    # d(ab) = b da + a db
    return _result(A * B, (a, b), lambda g, a, b, out: (g * b, g * a), "mul", twice=True)


def div(a, b):
    """a / b, true division: integers divide in the default float dtype, as torch."""
    a, b, A, B = _binary("div", a, b, floating=True)
    # d(a/b) = da/b - a db/b²
    return _result(A / B, (a, b), lambda g, a, b, out: (g / b, -g * a / (b * b)), "div", twice=True)


def neg(x):
    # d(-x) = -dx
    return _result(-x.data, (x,), lambda g, x, out: (-g,), "neg", twice=True)


def pow(x, exponent):
    """x ** exponent elementwise; either may be a Tensor or a number (2 ** x is pow(2, x))."""
    number = isinstance(exponent, (numbers.Number, np.generic))
    x, exponent, X, E = _binary("pow", x, exponent)
    xp = backend.xp(X)
    if X.dtype == bool:
        raise TypeError("pow: not implemented for two bool operands, as in torch")
    if X.dtype.kind in "iu":
        if number and E < 0:
            raise ValueError(f"pow: integers to negative integer powers are not allowed (dtype {X.dtype})")
        # torch's integer power: x^-k = 1/x^k rounded towards 0, which is 0 unless x = ±1
        out = xp.where((E < 0) & (abs(X) != 1), 0, X ** abs(E)).astype(X.dtype, copy=False)
    else:
        out = X ** E

    # d(x^e) = e·x^(e-1) dx + x^e·log(x) de. Where a product is 0·∞ the gradient is 0, as in torch: d/dx where e = 0
    # (x^0 = 1 for every x, even 0), d/de where x = 0 and e >= 0.
    def backward(g, x_, e, out):
        want_x, want_e = _wanted(x, exponent)
        m = _math(g)
        with np.errstate(divide="ignore", invalid="ignore"):  # the 0·∞ products that where() then discards
            return (m.where(_data(e) == 0, 0, g * e * x_ ** (e - 1)) if want_x else None,
                    m.where((_data(x_) == 0) & (_data(e) >= 0), 0, g * out * m.log(x_)) if want_e else None)
    return _result(out, (x, exponent), backward, "pow", twice=True)


def where(condition, x, y):
    """x where `condition` (a boolean array or Tensor, held constant) holds, else y; x or y may be numbers."""
    cond = _data(condition)
    x, y, X, Y = _binary("where", x, y)
    # each element is copied from x or from y: its gradient goes back to where it came from
    return _result(backend.xp(X).where(cond, X, Y), (x, y),
                   lambda g, x, y, out: (_math(g).where(cond, g, 0), _math(g).where(cond, 0, g)), "where", twice=True)


def exp(x):
    out = backend.xp(x.data).exp(_floating(x))
    # d(e^x) = e^x dx
    return _result(out, (x,), lambda g, x, out: (g * out,), "exp", twice=True)


def log(x):
    X = _floating(x)
    # d(log x) = dx / x
    return _result(backend.xp(X).log(X), (x,), lambda g, x, out: (g / x,), "log", twice=True)


# --- linear algebra --------------------------------------------------------------------------------------------

def matmul(a, b):
    """a @ b as torch.matmul: matrices, or batches of them (leading dims broadcast); a 1-D `a` is a row vector and a
    1-D `b` a column vector, whose dim the result drops (two 1-D operands give their dot product)."""
    a, b = _lift(a, b if isinstance(b, Tensor) else a), _lift(b, a if isinstance(a, Tensor) else b)
    if a.dtype != b.dtype or a.dtype.kind not in "iuf":
        raise TypeError(f"matmul: inputs must share one integer or floating-point dtype, got {a.dtype} and {b.dtype}")
    A = a.data.reshape(1, -1) if a.ndim == 1 else a.data
    B = b.data.reshape(-1, 1) if b.ndim == 1 else b.data
    try:
        if a.ndim == 0 or b.ndim == 0 or A.shape[-1] != B.shape[-2]:
            raise ValueError
        batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied") from None
    mm = _matrix_product(a, b)
    product = mm(A, B)
    shape = batch + A.shape[-2:-1] * (a.ndim > 1) + B.shape[-1:] * (b.ndim > 1)

    # C = AB: dA = dC Bᵀ, dB = Aᵀ dC (on the matrix forms; the batch dims are summed back by the engine)
    def backward(g, a_, b_, out):
        g, m = g.reshape(product.shape), _math(g)
        want_a, want_b = _wanted(a, b)
        A, B = (a_.reshape(1, -1) if a.ndim == 1 else a_), (b_.reshape(-1, 1) if b.ndim == 1 else b_)
        mul = _backward_product(g, mm)
        da = mul(g, m.swapaxes(B, -1, -2)) if want_a else None
        db = mul(m.swapaxes(A, -1, -2), g) if want_b else None
        return (da.reshape(da.shape[:-2] + da.shape[-1:]) if want_a and a.ndim == 1 else da,
                db.reshape(db.shape[:-1]) if want_b and b.ndim == 1 else db)
    return _result(product.reshape(shape), (a, b), backward, "matmul", twice=True)


def _backward_product(g, mm):
    """The matrix product of a backward formula: the forward's `mm` on arrays (bfloat16 under autocast); on Tensors
    (create_graph) the recorded `@`, in the tensors' own precision."""
    return (lambda p, q: p @ q) if isinstance(g, Tensor) else mm


def _matrix_product(*tensors):
    """The matrix product of these tensors' arrays: `@`, or under autocast the kernel that rounds both operands to
    bfloat16 and sums in float32 (precision.py); their backward's products run in the same precision."""
    if precision.applies(*tensors):
        return dispatch.kernel("matmul_bf16", tensors[0].device)
    return lambda p, q: p @ q


def linear(x, weight, bias=None):
    """y = x Wᵀ + b with W of shape (out_features, in_features), as torch."""
    _check_same_dtype("linear", x, weight, bias)
    _check_ndim("linear", "weight", weight, (2,))
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: input {x.shape} does not match weight {weight.shape} (expected (N, {weight.shape[1]}))")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias {bias.shape} does not match weight {weight.shape}")
    mm = _matrix_product(x, weight, bias)
    out = mm(x.data, weight.data.T)
    if bias is not None:
        out += bias.data
    # y = x Wᵀ + b: dx = dy W, dW = dyᵀ x, db = Σ_n dy   (each only if wanted: see _wanted)
    def backward(g, x_, w, b, out):
        want_x, want_w, want_b = _wanted(x, weight, bias)
        mul = _backward_product(g, mm)
        return (mul(g, w) if want_x else None, mul(g.T, x_) if want_w else None,
                g.sum(axis=0) if want_b else None)
    return _result(out, (x, weight, bias), backward, "linear", twice=True)


# --- shapes ----------------------------------------------------------------------------------------------------

def reshape(x, *shape):
    shape = _unpack(shape)
    try:
        out = x.data.reshape(shape)
    except ValueError as err:
        raise ValueError(f"reshape: cannot view shape {x.shape} as {shape}") from err
    # a reshape moves no values: the gradient is reshaped back
    return _result(out, (x,), lambda g, x, out: (g.reshape(x.shape),), "reshape", twice=True)


def broadcast_to(x, shape):
    """x repeated along new leading dims and its dims of size 1, to `shape` (NumPy's rule; a view)."""
    try:
        out = backend.xp(x.data).broadcast_to(x.data, tuple(shape))
    except ValueError:
        raise ValueError(f"broadcast_to: shape {x.shape} does not broadcast to {tuple(shape)}") from None
    # each value is copied to several places: the engine sums their gradients back (un-broadcasting)
    return _result(out, (x,), lambda g, x, out: (g,), "broadcast_to", twice=True)


def flatten(x, start_dim=0, end_dim=-1):
    """Dims start_dim..end_dim merged into one, as torch.flatten: by default every dim (a 0-d tensor becomes shape
    (1,)). nn.Flatten keeps the batch dim (start_dim=1)."""
    start, end = _dim(start_dim, x.shape, "flatten"), _dim(end_dim, x.shape, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (shape {x.shape})")
    if x.ndim == 0:
        return reshape(x, (1,))
    return reshape(x, x.shape[:start] + (int(np.prod(x.shape[start:end + 1])),) + x.shape[end + 1:])


def permute(x, *dims):
    """The dims reordered: permute(x, (2, 0, 1)) or permute(x, 2, 0, 1); negative dims count from the end."""
    dims = _unpack(dims)
    if len(dims) != x.ndim:
        raise ValueError(f"permute: dims {dims} do not match the {x.ndim} dims of shape {x.shape}")
    dims = _dims(dims, x.shape, "permute")
    inverse = tuple(int(i) for i in np.argsort(dims))
    # a permutation moves values: the gradient is moved back by the inverse permutation
    return _result(x.data.transpose(dims), (x,), lambda g, x, out: (_math(g).transpose(g, inverse),), "permute",
                   twice=True)


def transpose(x, dim0, dim1):
    dims = list(range(x.ndim))
    dim0, dim1 = _dim(dim0, x.shape, "transpose"), _dim(dim1, x.shape, "transpose")
    if x.ndim:
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(x, tuple(dims))


def _torch_index(index, ndim):
    """torch's indexing rule as two NumPy indices (basic, advanced); advanced is None when there is no index array.

    torch applies every int (a 0-d integer array counts as one), slice, None and ... first: ints select and drop
    their dim. Only then do the index arrays (integer, boolean, lists, integer Tensors) index the dims that remain,
    by NumPy's rule for arrays: the result's dims from the arrays go where the arrays are if they are adjacent, else
    first. NumPy instead counts ints among the arrays, so x[1, :, d] gives shape (len(d), ...) in NumPy and
    (..., len(d), ...) in torch. `basic` is x's index for the first step, `advanced` that of its result.
    """
    items = []
    for item in index if isinstance(index, tuple) else (index,):
        item = item.data if isinstance(item, Tensor) else item
        if isinstance(item, list):
            item = np.asarray(item)
        if hasattr(item, "ndim") and item.ndim == 0 and item.dtype.kind in "biu":
            item = bool(item) if item.dtype == bool else int(item)
        items.append(item)
    if len([item for item in items if item is Ellipsis]) > 1:
        raise IndexError(f"an index can hold only one ellipsis (...): {index!r}")
    # the dims of x the index names (a boolean array names as many as it has; None, bools and ... name none)
    consumed = int(np.sum([(i.ndim if i.dtype == bool else 1) if hasattr(i, "ndim") else
                           isinstance(i, (int, np.integer, slice)) and not isinstance(i, (bool, np.bool_))
                           for i in items]))
    if consumed > ndim:
        raise IndexError(f"too many indices for a tensor of dimension {ndim}: {index!r}")
    basic, advanced = [], []
    for item in items:
        if item is Ellipsis:
            basic += [slice(None)] * (ndim - consumed)
            advanced += [slice(None)] * (ndim - consumed)
        elif isinstance(item, (bool, np.bool_)):        # torch: a new dim of size 1, kept (True) or emptied (False)
            basic.append(None)
            advanced.append(np.arange(int(item)))
        elif isinstance(item, (int, np.integer)):
            basic.append(int(item))
        elif isinstance(item, slice) or item is None:
            if isinstance(item, slice) and item.step is not None and item.step <= 0:
                raise ValueError(f"index {item}: the step must be greater than zero (torch has no reversing slice)")
            basic.append(item)
            advanced.append(slice(None))
        elif hasattr(item, "ndim"):
            if item.dtype.kind not in "biu":
                raise IndexError(f"index arrays must hold integers or booleans, got dtype {item.dtype}")
            basic += [slice(None)] * (item.ndim if item.dtype == bool else 1)
            advanced.append(item)
        else:
            raise TypeError(f"unsupported index {item!r} of type {type(item).__name__}")
    has_arrays = any(hasattr(i, "ndim") for i in advanced)
    return tuple(basic) + (Ellipsis,), (tuple(advanced) if has_arrays else None)


def getitem(x, index):
    """x[index] with torch's rules (see _torch_index); the result of basic indexing is a view, as in NumPy."""
    xp = backend.xp(x.data)
    basic, advanced = _torch_index(index, x.ndim)
    out = x.data[basic]  # the trailing ... keeps a 0-d result an array (a view), not a NumPy scalar
    if advanced is not None:
        advanced = tuple(xp.asarray(i) if hasattr(i, "ndim") else i for i in advanced)
        out = out[advanced]

    def backward(g):
        # indexing picks values: the gradient goes back to the picked places, zero elsewhere; an index array may
        # pick a place twice, so its gradients are added (add.at), where basic indexing picks each place once
        dx = xp.zeros_like(x.data)
        if advanced is None:
            dx[basic] = g
        else:
            xp.add.at(dx[basic], advanced, g)
        return (dx,)
    return _result(out, (x,), backward, "getitem")


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    _check_same_dtype("cat", *tensors)
    ref = tensors[0].shape
    if not ref:
        raise ValueError("cat: 0-d tensors have no dim to join along (reshape them to shape (1,) first)")
    dim = _dim(dim, ref, "cat")
    for t in tensors:
        if t.ndim != len(ref) or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref)) if i != dim):
            raise ValueError(f"cat: shapes {[t.shape for t in tensors]} differ outside dim {dim}")
    xp = backend.xp(tensors[0].data)
    cuts = np.cumsum([t.shape[dim] for t in tensors])[:-1]
    # concatenation places values side by side: the gradient is split at the same cuts
    return _result(xp.concatenate([t.data for t in tensors], axis=dim), tuple(tensors),
                   lambda g: tuple(xp.split(g, cuts, axis=dim)), "cat")


# --- reductions ------------------------------------------------------------------------------------------------

def _reduced(x, dim, keepdim, axis, keepdims, op):
    """(axes, keepdim) of a reduction: `dim` an int, a sequence, or None (or empty) for every dim, negative dims
    counted from the end; `axis` and `keepdims` are accepted as aliases, as torch does. A 0-d tensor has dims 0 and
    -1, and reducing over them reduces nothing."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{op}: got both dim and its alias axis")
        dim = axis
    keepdim = keepdim if keepdims is None else keepdims
    if dim is None or (isinstance(dim, (tuple, list)) and not dim):
        return tuple(range(x.ndim)), bool(keepdim)
    axes = _dims(dim if isinstance(dim, (tuple, list)) else (dim,), x.shape, op)
    return (axes if x.ndim else ()), bool(keepdim)


def sum(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Σ over `dim` (see _reduced). Integers and bools sum to int64, as in torch."""
    axes, keepdim = _reduced(x, dim, keepdim, axis, keepdims, "sum")
    xp = backend.xp(x.data)
    out = x.data.sum(axis=axes, keepdims=keepdim, dtype=None if x.dtype.kind == "f" else np.int64)
    kept = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    # every summed element gets the gradient of the sum: broadcast it back
    return _result(xp.asarray(out), (x,), lambda g, x, out: (_math(g).broadcast_to(g.reshape(kept), x.shape),),
                   "sum", twice=True)


def mean(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Σ / count over `dim` (see _reduced), of a floating-point tensor; the mean of no values is NaN, as in torch."""
    if x.dtype.kind != "f":
        raise TypeError(f"mean: expected a floating-point tensor, got dtype {x.dtype}")
    axes, keepdim = _reduced(x, dim, keepdim, axis, keepdims, "mean")
    xp = backend.xp(x.data)
    count = int(np.prod([x.shape[a] for a in axes]))
    total = x.data.sum(axis=axes, keepdims=keepdim)
    out = xp.asarray(total / count if count else total * np.nan)
    kept = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    # each of the `count` averaged elements gets 1/count of the gradient (with no elements there is nothing to get)
    return _result(out, (x,), lambda g, x, out: (_math(g).broadcast_to(g.reshape(kept) / max(count, 1), x.shape),),
                   "mean", twice=True)


# --- activations -----------------------------------------------------------------------------------------------

def relu(x):
    positive = x.data > 0
    # relu(x) = x·[x>0]: d/dx = [x>0] (a constant mask: its own derivative is 0 wherever it is defined)
    return _result(x.data * positive, (x,), lambda g, x, out: (g * positive,), "relu", twice=True)


def leaky_relu(x, negative_slope=0.01, impl=None):
    """Under autocast("bfloat16") the output and the input gradient are rounded to bfloat16 (the next
    convolution's operand, the previous one's dy)."""
    forward = dispatch.kernel(precision.kernel_name("leaky_relu_forward", x), x.device, impl)
    backward_kernel = dispatch.kernel(precision.kernel_name("leaky_relu_backward", x), x.device, impl)
    X = x.data
    # leaky(x) = x·(1 if x>0 else a): d/dx = 1 or a, recomputed from x in the backward kernel (a constant mask)
    return _result(forward(X, negative_slope), (x,),
                   lambda g, x, out: (_masked(lambda g: backward_kernel(g, X, negative_slope), g, "leaky_relu"),),
                   "leaky_relu", twice=True)


def _masked(scale, g, op):
    """scale(g) = g·s for a kernel that multiplies by a constant mask s; on a Tensor g (create_graph) it is an op
    of its own, linear in g and its own adjoint: d(g·s) = dg·s."""
    if not isinstance(g, Tensor):
        return scale(g)
    return _result(scale(g.data), (g,), lambda gg, g_, out: (_masked(scale, gg, op),), f"{op}_backward", twice=True)


def tanh(x):
    out = backend.xp(x.data).tanh(_floating(x))
    # d tanh(x)/dx = 1 - tanh²(x)
    return _result(out, (x,), lambda g, x, out: (g * (1 - out * out),), "tanh", twice=True)


def _stable_sigmoid(xp, s):
    e = xp.exp(-xp.abs(s))  # never overflows
    return xp.where(s >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid(x):
    X = _floating(x)
    out = _stable_sigmoid(backend.xp(X), X).astype(X.dtype, copy=False)
    # d σ(x)/dx = σ(x)(1 - σ(x))
    return _result(out, (x,), lambda g, x, out: (g * out * (1 - out),), "sigmoid", twice=True)


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout), in training only;
    p = 1 zeroes everything, as in torch."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if x.dtype.kind != "f":
        raise TypeError(f"dropout: expected a floating-point tensor, got dtype {x.dtype}")
    if not training or p == 0:
        return x
    xp = backend.xp(x.data)
    if p == 1:
        mask = xp.zeros(x.shape, x.dtype)
    else:
        keep = generator().random(x.shape, dtype=np.float32) >= p  # float32 draws: half the work of float64 ones
        mask = xp.asarray(np.multiply(keep, 1 / (1 - p), dtype=x.dtype))
    # y = x·mask: dy/dx = mask
    return _result(x.data * mask, (x,), lambda g, x, out: (g * mask,), "dropout", twice=True)


def maxout(x, pieces):
    """(N, units·pieces) -> (N, units): the max over each group of `pieces` consecutive features."""
    _check_ndim("maxout", "input", x, (2,))
    n, features = x.shape
    if features % pieces:
        raise ValueError(f"maxout: {features} features in input {x.shape} do not split into groups of {pieces}")
    xp = backend.xp(x.data)
    groups = x.data.reshape(n, features // pieces, pieces)
    # a running max over the pieces, one strided slice at a time (NumPy reduces a 5-long last axis slowly)
    out = groups[..., 0].copy()
    for p in range(1, pieces):
        xp.maximum(out, groups[..., p], out=out)

    def backward(g):
        # only the winning piece of each group passed through (the first one on ties): it gets the whole gradient
        dx = xp.empty_like(groups)
        taken = xp.zeros(out.shape, dtype=bool)
        for p in range(pieces):
            wins = (groups[..., p] == out) & ~taken
            taken |= wins
            xp.multiply(g, wins, out=dx[..., p])
        return (dx.reshape(x.shape),)
    return _result(out, (x,), backward, "maxout")


# --- convolutions (kernels: conv2d_* and conv_transpose2d_*) ----------------------------------------------------

def _check_conv(op, x, weight, bias, in_channels_axis):
    _check_same_dtype(op, x, weight, bias)
    _check_ndim(op, "input", x, (4,))
    _check_ndim(op, "weight", weight, (4,))
    if x.shape[1] != weight.shape[in_channels_axis]:
        raise ValueError(f"{op}: input {x.shape} has {x.shape[1]} channels but weight {weight.shape} expects "
                         f"{weight.shape[in_channels_axis]}")
    out_channels = weight.shape[1 - in_channels_axis]
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"{op}: bias {bias.shape} does not match weight {weight.shape}")


def _wanted(*inputs):
    """The backward kernels' output_mask: which inputs need a gradient when the backward runs. An image, a frozen
    weight or a missing bias does not, and its gradient (a GEMM for a weight or an image) is never computed. (Asked
    at backward time, as the autograd core routes gradients: a module frozen only for one backward pass is skipped.)"""
    return tuple(t is not None and t.requires_grad for t in inputs)


def conv2d(x, weight, bias=None, stride=1, padding=0, impl=None):
    """2-D cross-correlation, NCHW input, weight (C_out, C_in, kH, kW), as torch.nn.functional.conv2d."""
    _check_conv("conv2d", x, weight, bias, in_channels_axis=1)
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    kh, kw = weight.shape[2:]
    if x.shape[2] + 2 * padding[0] < kh or x.shape[3] + 2 * padding[1] < kw or 0 in stride:
        raise ValueError(f"conv2d: kernel {weight.shape[2:]} with padding {padding}, stride {stride} does not fit "
                         f"input {x.shape}")
    # under autocast: the _bf16 kernels, operands rounded to bfloat16 and float32 sums (precision.py)
    forward = dispatch.kernel(precision.kernel_name("conv2d_forward", x, weight, bias), x.device, impl)
    backward_kernel = dispatch.kernel(precision.kernel_name("conv2d_backward", x, weight, bias), x.device, impl)
    out = forward(x.data, weight.data, None if bias is None else bias.data, stride, padding)
    # derivation in kernels/reference.py: dx = col2im(Wᵀ dy), dW = dy · im2col(x)ᵀ, db = Σ dy
    return _result(out, (x, weight, bias),
                   lambda g: backward_kernel(g, x.data, weight.data, stride, padding, _wanted(x, weight, bias)),
                   "conv2d")


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, impl=None):
    """The adjoint of conv2d (a "deconvolution"), weight (C_in, C_out, kH, kW), as torch's conv_transpose2d."""
    _check_conv("conv_transpose2d", x, weight, bias, in_channels_axis=0)
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    output_padding = _pair(output_padding, "output_padding")
    if any(op >= s for op, s in zip(output_padding, stride)):
        raise ValueError(f"conv_transpose2d: output_padding {output_padding} must be smaller than stride {stride}")
    out_hw = [(n - 1) * s - 2 * p + k + op for n, s, p, k, op in
              zip(x.shape[2:], stride, padding, weight.shape[2:], output_padding)]
    if min(out_hw) < 1 or 0 in stride:
        raise ValueError(f"conv_transpose2d: input {x.shape} with weight {weight.shape}, stride {stride}, padding "
                         f"{padding} gives an empty output {tuple(out_hw)}")
    # under autocast: the _bf16 kernels, operands rounded to bfloat16 and float32 sums (precision.py)
    forward = dispatch.kernel(precision.kernel_name("conv_transpose2d_forward", x, weight, bias), x.device, impl)
    backward_kernel = dispatch.kernel(precision.kernel_name("conv_transpose2d_backward", x, weight, bias), x.device,
                                      impl)
    out = forward(x.data, weight.data, None if bias is None else bias.data, stride, padding, output_padding)
    # derivation in kernels/reference.py: dx = conv2d(dy, W), dW = x · im2col(dy)ᵀ, db = Σ dy
    return _result(out, (x, weight, bias),
                   lambda g: backward_kernel(g, x.data, weight.data, stride, padding, output_padding,
                                             _wanted(x, weight, bias)), "conv_transpose2d")


# --- batch norm + activation (kernels: batch_norm_act_*) --------------------------------------------------------

ACTIVATIONS = (None, "relu", "leaky_relu")


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               activation=None, negative_slope=0.2, impl=None):
    """Batch norm over N (and H, W) of an (N, C) or (N, C, H, W) input, fused with an optional activation.

    Training mode normalises with the batch statistics and updates the running ones in place (unbiased variance,
    as torch); eval mode uses the running statistics. The backward recomputes the activation's mask from the saved
    mean and 1/std instead of storing the activation. Under autocast("bfloat16") the statistics and arithmetic stay
    float32; the output and the input gradient are rounded to bfloat16 as they are written (the next convolution's
    operand, the previous one's dy).
    """
    _check_ndim("batch_norm", "input", x, (2, 4))
    _check_same_dtype("batch_norm", x, weight, bias)
    if activation not in ACTIVATIONS:
        raise ValueError(f"batch_norm: activation must be one of {ACTIVATIONS}, got {activation!r}")
    channels = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and t.shape != (channels,):
            raise ValueError(f"batch_norm: {name} {t.shape} does not match input {x.shape} ({channels} channels)")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: eval mode needs running_mean and running_var")
    forward = dispatch.kernel(precision.kernel_name("batch_norm_act_forward", x, weight, bias), x.device, impl)
    backward_kernel = dispatch.kernel(precision.kernel_name("batch_norm_act_backward", x, weight, bias), x.device,
                                      impl)
    out, mean, rstd = forward(x.data, None if weight is None else weight.data, None if bias is None else bias.data,
                              None if running_mean is None else running_mean.data,
                              None if running_var is None else running_var.data,
                              training, momentum, eps, activation, negative_slope)
    # derivation in kernels/reference.py: dx = γ·rstd/m · (m·g − Σg − x̂·Σ(g·x̂)) with g the masked gradient
    return _result(out, (x, weight, bias),
                   lambda g: backward_kernel(g, x.data, None if weight is None else weight.data,
                                             None if bias is None else bias.data, mean, rstd, training,
                                             activation, negative_slope), "batch_norm")


# --- the loss: sigmoid + binary cross-entropy in one op (kernel: sigmoid_bce_forward) ---------------------------

REDUCTIONS = ("mean", "sum", "none")


def binary_cross_entropy_with_logits(logits, target, reduction="mean", impl=None):
    """BCE(σ(s), y) computed from logits s, stable for any s; the target may be soft (e.g. 0.9) or a number.

    The kernel writes the loss and d loss/d s = σ(s) − y (÷N for the mean) in the same pass, so backward is one
    multiply. Gradients flow to the logits only (the target is data).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"binary_cross_entropy_with_logits: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    xp = backend.xp(logits.data)
    if isinstance(target, Tensor):
        target = target.data
    target = xp.asarray(target, dtype=logits.dtype)
    if target.shape != logits.shape:
        if target.ndim:
            raise ValueError(f"binary_cross_entropy_with_logits: target {tuple(target.shape)} does not match "
                             f"logits {logits.shape}")
        target = xp.full(logits.shape, target, dtype=logits.dtype)
    if logits.dtype.kind != "f":
        raise TypeError(f"binary_cross_entropy_with_logits: logits must be floating point, got {logits.dtype}")
    loss, dlogits = dispatch.kernel("sigmoid_bce_forward", logits.device, impl)(logits.data, target, reduction)
    scale = 1 / max(logits.data.size, 1) if reduction == "mean" else 1
    # L = Σ ℓ(sᵢ): dL/dsᵢ = g · ∂ℓ/∂sᵢ = g · (σ(sᵢ) − yᵢ)·scale, already computed by the forward kernel; on Tensors
    # (create_graph) the same expression from the sigmoid op, whose own derivative then carries it on
    return _result(loss, (logits,), lambda g, s, out: (g * (dlogits if not isinstance(s, Tensor) else
                                                            (sigmoid(s) - target) * scale),),
                   "binary_cross_entropy_with_logits", twice=True)


def cross_entropy(logits, labels, reduction="mean"):
    """Softmax + cross-entropy of (N, C) logits against integer class labels (N,), fused and stable, as torch's.

    log-softmax: log p_c = s_c − m − log Σ_k exp(s_k − m) with m = max_k s_k (no exp of a positive number);
    ℓ_n = −log p_{y_n}. The gradient is written in the same pass: ∂ℓ_n/∂s_c = p_c − [c = y_n] (÷N for the mean).
    Gradients flow to the logits only (the labels are data).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    _check_ndim("cross_entropy", "logits", logits, (2,))
    if logits.dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be floating point, got {logits.dtype}")
    xp = backend.xp(logits.data)
    labels = xp.asarray(labels.data if isinstance(labels, Tensor) else labels)
    n, classes = logits.shape
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: labels must be {n} integers for logits {logits.shape}, got "
                         f"shape {tuple(labels.shape)} of dtype {labels.dtype}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"cross_entropy: labels must lie in [0, {classes}), "
                         f"got {int(labels.min())}..{int(labels.max())}")
    rows = xp.arange(n)
    shifted = logits.data - logits.data.max(axis=1, keepdims=True)     # every entry ≤ 0
    log_norm = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))       # log Σ exp(s − m), in [0, log C]
    log_p = shifted - log_norm
    loss = -log_p[rows, labels]
    dlogits = xp.exp(log_p)                                             # softmax p
    dlogits[rows, labels] -= 1                                          # p − onehot(y)
    if reduction == "mean":
        loss = loss.mean() if n else xp.asarray(xp.nan, dtype=logits.dtype)
        dlogits /= max(n, 1)
    elif reduction == "sum":
        loss = loss.sum()
    loss = xp.asarray(loss, dtype=logits.dtype)
    # L = Σ ℓ_n: dL/ds = g · ∂ℓ/∂s (g a scalar, or one value per example for reduction="none")
    return _result(loss, (logits,), lambda g: (g[:, None] * dlogits if reduction == "none" else g * dlogits,),
                   "cross_entropy")


# --- dtypes and devices ----------------------------------------------------------------------------------------

def cast(x, dtype):
    """x's values in another floating-point dtype."""
    if np.dtype(dtype).kind != "f" or x.dtype.kind != "f":
        raise TypeError(f"cast: only between floating-point dtypes, got {x.dtype} to {np.dtype(dtype)}")
    # the same values, rounded: the gradient is cast back to x's dtype (by the engine)
    return _result(x.data.astype(dtype), (x,), lambda g, x, out: (g,), "cast", twice=True)


def to_device(x, device):
    device = backend.normalize_device(device)
    source = x.device
    out = backend.array_module(device).asarray(backend.to_numpy(x.data)) if device == "cuda" else backend.to_numpy(x.data)
    # a copy between devices: the gradient is copied back
    return _result(out, (x,), lambda g: (backend.array_module(source).asarray(backend.to_numpy(g)),), "to")


__all__ = [name for name in dir() if not name.startswith("_") and
           name not in ("np", "precision", "backend", "types", "dispatch", "generator", "Tensor")]
# NumPy's names for the ops a backward formula calls through _math on Tensors
_TENSOR_MATH = types.SimpleNamespace(where=where, log=log, broadcast_to=broadcast_to, transpose=permute,
                                     swapaxes=transpose)


# --- torch-compatible ops for code written against torch (squeeze, unsqueeze, BCE on probabilities) --------------

def squeeze(x, dim=None):
    """Drop the axes of length 1 among `dim` (all of them by default); an axis longer than 1 is kept, as torch."""
    dims = range(x.ndim) if dim is None else _dims(dim if isinstance(dim, (tuple, list)) else (dim,), x.shape,
                                                   "squeeze")
    drop = [d for d in dims if x.ndim and x.shape[d] == 1]
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in drop))


def unsqueeze(x, dim):
    """Insert an axis of length 1 at `dim` (negative: counted from the end of the result, as torch)."""
    if not -(x.ndim + 1) <= dim <= x.ndim:
        raise IndexError(f"unsqueeze: dim {dim} is out of range for a tensor of shape {x.shape}")
    dim %= x.ndim + 1
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def binary_cross_entropy(probabilities, target, reduction="mean"):
    """BCE of probabilities p against targets y, as torch.nn.functional.binary_cross_entropy (the unfused form):

        ℓ = −(y·max(log p, −100) + (1−y)·max(log(1−p), −100))
    The clamp at −100 keeps ℓ finite when p rounds to 0 or 1 — in float32, σ(s) rounds to 1 for s ≳ 17, so the
    loss saturates at 100 and its gradient is wrong there. binary_cross_entropy_with_logits, fused with the sigmoid,
    has neither problem: prefer it (docs/extending.md). Gradients flow to the probabilities only.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"binary_cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if probabilities.dtype.kind != "f":
        raise TypeError(f"binary_cross_entropy: input must be floating point, got {probabilities.dtype}")
    xp, p = backend.xp(probabilities.data), probabilities.data
    y = xp.asarray(target.data if isinstance(target, Tensor) else target, dtype=p.dtype)
    if y.shape != p.shape:
        raise ValueError(f"binary_cross_entropy: target {tuple(y.shape)} does not match input {p.shape}")
    if p.size and (float(p.min()) < 0 or float(p.max()) > 1):
        raise ValueError(f"binary_cross_entropy: input must hold probabilities in [0, 1], got values in "
                         f"[{float(p.min())}, {float(p.max())}]; for logits use binary_cross_entropy_with_logits")
    y = y.copy()  # the backward reads the targets: a later in-place write (label.fill_) must not change them
    with np.errstate(divide="ignore"):
        loss = -(y * xp.maximum(xp.log(p), -100) + (1 - y) * xp.maximum(xp.log1p(-p), -100))
    scale = 1.0
    if reduction == "mean":
        loss, scale = (loss.mean() if p.size else xp.nan), 1.0 / max(p.size, 1)
    elif reduction == "sum":
        loss = loss.sum()
    # dℓ/dp = −y/p + (1−y)/(1−p) = (p − y) / (p(1−p)); the denominator kept ≥ 1e-12 (as a float32, as torch's)
    def backward(g):
        return (g * scale * (p - y) / xp.maximum(p * (1 - p), float(np.float32(1e-12))),)
    return _result(xp.asarray(loss, dtype=p.dtype), (probabilities,), backward, "binary_cross_entropy")


__all__ += ["squeeze", "unsqueeze", "binary_cross_entropy"]
