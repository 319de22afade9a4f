"""Differentiable ops with torch-like names and signatures.

Each op computes its output and returns `_result(out, inputs, backward)`, where `backward(g)` maps the gradient of
the output to one gradient per input. Above each backward stands the derivation it implements. The heavy ops
(convolutions, batch norm, the loss) call a kernel chosen by `dispatch`; the NumPy specification of those kernels
is kernels/reference.py.
"""
import numpy as np

from . import backend, dispatch
from .random import generator
from .tensor import Tensor, _result

# --- helpers ---------------------------------------------------------------------------------------------------


def _lift(value, like):
    """Python numbers and arrays become constant Tensors with `like`'s dtype and device."""
    if isinstance(value, Tensor):
        return value
    xp = backend.xp(like.data)
    return Tensor(xp.asarray(value, dtype=like.dtype))


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

def _operands(op, a, b):
    """Lift numbers to Tensors like the other operand and check that the shapes broadcast."""
    a, b = _lift(a, b if isinstance(b, Tensor) else a), _lift(b, a if isinstance(a, Tensor) else b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None
    return a, b


def add(a, b):
    a, b = _operands("add", a, b)
    # d(a+b) = da + db
    return _result(a.data + b.data, (a, b), lambda g: (g, g), "add")


def sub(a, b):
    a, b = _operands("sub", a, b)
    # d(a-b) = da - db
    return _result(a.data - b.data, (a, b), lambda g: (g, -g), "sub")


def mul(a, b):
    a, b = _operands("mul", a, b)
    # d(ab) = b da + a db
    return _result(a.data * b.data, (a, b), lambda g: (g * b.data, g * a.data), "mul")


def div(a, b):
    a, b = _operands("div", a, b)
    # d(a/b) = da/b - a db/b²
    return _result(a.data / b.data, (a, b), lambda g: (g / b.data, -g * a.data / (b.data * b.data)), "div")


def neg(x):
    return _result(-x.data, (x,), lambda g: (-g,), "neg")


def pow(x, exponent):
    if not isinstance(exponent, (int, float)):
        raise TypeError(f"pow: exponent must be a Python number, got {type(exponent).__name__}")
    # d(x^p) = p x^(p-1) dx
    return _result(x.data ** exponent, (x,), lambda g: (g * exponent * x.data ** (exponent - 1),), "pow")


def exp(x):
    out = backend.xp(x.data).exp(x.data)
    # d(e^x) = e^x dx
    return _result(out, (x,), lambda g: (g * out,), "exp")


def log(x):
    # d(log x) = dx / x
    return _result(backend.xp(x.data).log(x.data), (x,), lambda g: (g / x.data,), "log")


# --- linear algebra --------------------------------------------------------------------------------------------

def matmul(a, b):
    """2-D (or batched) matrix product a @ b."""
    a, b = _lift(a, b if isinstance(b, Tensor) else a), _lift(b, a if isinstance(a, Tensor) else b)
    _check_same_dtype("matmul", a, b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied")
    xp = backend.xp(a.data)
    # C = AB: dA = dC Bᵀ, dB = Aᵀ dC
    return _result(a.data @ b.data, (a, b),
                   lambda g: (g @ xp.swapaxes(b.data, -1, -2), xp.swapaxes(a.data, -1, -2) @ g), "matmul")


def linear(x, weight, bias=None):
    """y = x Wᵀ + b with W of shape (out_features, in_features), as torch."""
    _check_same_dtype("linear", x, weight, bias)
    _check_ndim("linear", "weight", weight, (2,))
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: input {x.shape} does not match weight {weight.shape} (expected (N, {weight.shape[1]}))")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias {bias.shape} does not match weight {weight.shape}")
    out = x.data @ weight.data.T
    if bias is not None:
        out += bias.data
    # y = x Wᵀ + b: dx = dy W, dW = dyᵀ x, db = Σ_n dy   (each only if wanted: see _wanted)
    def backward(g):
        want_x, want_w, want_b = _wanted(x, weight, bias)
        return (g @ weight.data if want_x else None, g.T @ x.data if want_w else None,
                g.sum(axis=0) if want_b else None)
    return _result(out, (x, weight, bias), backward, "linear")


# --- shapes ----------------------------------------------------------------------------------------------------

def reshape(x, *shape):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    try:
        out = x.data.reshape(shape)
    except ValueError as err:
        raise ValueError(f"reshape: cannot view shape {x.shape} as {shape}") from err
    # a reshape moves no values: the gradient is reshaped back
    return _result(out, (x,), lambda g: (g.reshape(x.shape),), "reshape")


def flatten(x, start_dim=1, end_dim=-1):
    end_dim = end_dim % x.ndim
    shape = x.shape[:start_dim] + (-1,) + x.shape[end_dim + 1:]
    return reshape(x, shape)


def permute(x, dims):
    inverse = tuple(np.argsort(dims))
    # a permutation moves values: the gradient is moved back by the inverse permutation
    return _result(x.data.transpose(dims), (x,), lambda g: (g.transpose(inverse),), "permute")


def transpose(x, dim0, dim1):
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(x, tuple(dims))


def getitem(x, index):
    xp = backend.xp(x.data)

    def backward(g):
        # indexing picks values: the gradient goes back to the picked places, zero elsewhere
        dx = xp.zeros_like(x.data)
        xp.add.at(dx, index, g)
        return (dx,)
    return _result(x.data[index], (x,), backward, "getitem")


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    _check_same_dtype("cat", *tensors)
    ref = tensors[0].shape
    for t in tensors:
        if t.ndim != len(ref) or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref)) if i != dim % len(ref)):
            raise ValueError(f"cat: shapes {[t.shape for t in tensors]} differ outside dim {dim}")
    xp = backend.xp(tensors[0].data)
    cuts = np.cumsum([t.shape[dim] for t in tensors])[:-1]
    # concatenation places values side by side: the gradient is split at the same cuts
    return _result(xp.concatenate([t.data for t in tensors], axis=dim), tuple(tensors),
                   lambda g: tuple(xp.split(g, cuts, axis=dim)), "cat")


# --- reductions ------------------------------------------------------------------------------------------------

def sum(x, dim=None, keepdim=False):
    out = x.data.sum(axis=dim, keepdims=keepdim)
    xp = backend.xp(x.data)

    def backward(g):
        # every summed element gets the gradient of the sum: broadcast it back
        if dim is not None and not keepdim:
            g = xp.expand_dims(g, dim)
        return (xp.broadcast_to(g, x.shape),)
    return _result(xp.asarray(out), (x,), backward, "sum")


def mean(x, dim=None, keepdim=False):
    dims = range(x.ndim) if dim is None else (dim if isinstance(dim, (tuple, list)) else (dim,))
    count = int(np.prod([x.shape[d] for d in dims]))
    return div(sum(x, dim, keepdim), float(count))


# --- activations -----------------------------------------------------------------------------------------------

def relu(x):
    positive = x.data > 0
    # relu(x) = x·[x>0]: d/dx = [x>0]
    return _result(x.data * positive, (x,), lambda g: (g * positive,), "relu")


def leaky_relu(x, negative_slope=0.01, impl=None):
    forward = dispatch.kernel("leaky_relu_forward", x.device, impl)
    backward_kernel = dispatch.kernel("leaky_relu_backward", x.device, impl)
    # leaky(x) = x·(1 if x>0 else a): d/dx = 1 or a, recomputed from x in the backward kernel
    return _result(forward(x.data, negative_slope), (x,),
                   lambda g: (backward_kernel(g, x.data, negative_slope),), "leaky_relu")


def tanh(x):
    out = backend.xp(x.data).tanh(x.data)
    # d tanh(x)/dx = 1 - tanh²(x)
    return _result(out, (x,), lambda g: (g * (1 - out * out),), "tanh")


def _stable_sigmoid(xp, s):
    e = xp.exp(-xp.abs(s))  # never overflows
    return xp.where(s >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid(x):
    out = _stable_sigmoid(backend.xp(x.data), x.data).astype(x.dtype, copy=False)
    # d σ(x)/dx = σ(x)(1 - σ(x))
    return _result(out, (x,), lambda g: (g * out * (1 - out),), "sigmoid")


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout), in training only."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = generator().random(x.shape, dtype=np.float32) >= p  # float32 draws: half the work of float64 ones
    mask = backend.xp(x.data).asarray(np.multiply(keep, 1 / (1 - p), dtype=x.dtype))
    # y = x·mask: dy/dx = mask
    return _result(x.data * mask, (x,), lambda g: (g * mask,), "dropout")


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
    forward = dispatch.kernel("conv2d_forward", x.device, impl)
    backward_kernel = dispatch.kernel("conv2d_backward", x.device, impl)
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
    forward = dispatch.kernel("conv_transpose2d_forward", x.device, impl)
    backward_kernel = dispatch.kernel("conv_transpose2d_backward", x.device, impl)
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
    mean and 1/std instead of storing the activation.
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
    forward = dispatch.kernel("batch_norm_act_forward", x.device, impl)
    backward_kernel = dispatch.kernel("batch_norm_act_backward", x.device, impl)
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
    # L = Σ ℓ(sᵢ): dL/dsᵢ = g · ∂ℓ/∂sᵢ, with ∂ℓ/∂sᵢ already computed by the forward pass
    return _result(loss, (logits,), lambda g: (g * dlogits,), "binary_cross_entropy_with_logits")


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


# --- devices ---------------------------------------------------------------------------------------------------

def to_device(x, device):
    device = backend.normalize_device(device)
    source = x.device
    out = backend.array_module(device).asarray(backend.to_numpy(x.data)) if device == "cuda" else backend.to_numpy(x.data)
    # a copy between devices: the gradient is copied back
    return _result(out, (x,), lambda g: (backend.array_module(source).asarray(backend.to_numpy(g)),), "to")


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("np", "backend",
                                                                                "dispatch", "generator", "Tensor")]


# --- torch-compatible ops for code written against torch (squeeze, unsqueeze, BCE on probabilities) --------------

def _dims(op, x, dim):
    """`dim` (an int, a tuple of them, or None for all) as sorted non-negative axes of x, checked."""
    dims = range(x.ndim) if dim is None else (dim if isinstance(dim, (tuple, list)) else (dim,))
    out = []
    for d in dims:
        if not -max(x.ndim, 1) <= d < max(x.ndim, 1):
            raise IndexError(f"{op}: dim {d} is out of range for a tensor of shape {x.shape}")
        out.append(d % max(x.ndim, 1))
    return sorted(set(out))


def squeeze(x, dim=None):
    """Drop the axes of length 1 among `dim` (all of them by default); an axis longer than 1 is kept, as torch."""
    drop = [d for d in _dims("squeeze", x, dim) if x.ndim and x.shape[d] == 1]
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
