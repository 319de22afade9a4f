"""Reference kernels in plain NumPy: the specification of every kernel, and the text to learn them from.

Every faster implementation (C++, Triton, CUDA) has these function names and signatures and is tested against
this module. The code favours clarity, but it is not naive: each convolution is one matrix product (GEMM) that
NumPy hands to BLAS, and the only Python loop is over the kh*kw kernel offsets. All kernels preserve the dtype
(float32 in, float32 out; float64 in, float64 out), take C-contiguous NCHW arrays, return contiguous arrays, and
never modify their inputs, except the state they are documented to update (running statistics, optimiser state).

Convolution as a matrix product
-------------------------------
A 2-D convolution (strictly a cross-correlation) with weight W (O, C, kh, kw) is

    y[n, o, p, q] = sum_{c, i, j} W[o, c, i, j] * xpad[n, c, p*sh + i, q*sw + j]

im2col copies every input patch into a column, so that the sum becomes one GEMM:

    cols has shape (C*kh*kw, N*Ho*Wo):
        row    r = (c*kh + i)*kw + j          -- the same order as weight.reshape(O, C*kh*kw)
        column k = (n*Ho + p)*Wo + q          -- one output pixel
        cols[r, k] = xpad[n, c, p*sh + i, q*sw + j]       (zero where the patch reads the padding)

    y as a matrix (O, N*Ho*Wo) = weight.reshape(O, C*kh*kw) @ cols

The "channel-rows" matrix of an NCHW array a is a.transpose(1, 0, 2, 3).reshape(C, N*H*W): one row per channel,
the same column order as cols. y above is in that form; turning it back into NCHW costs one copy of the output.

col2im is the adjoint (transpose) of im2col: it scatters each column entry back to the pixel it was copied from
and sums where patches overlap. Because y = W·im2col(x) is linear in x, its gradient is x̄ = col2im(Wᵀ ȳ); and
a transposed convolution is *defined* as that adjoint, so conv_transpose2d_forward is literally conv2d's
backward-data, and conv_transpose2d's backward-data is a plain conv2d.
"""
import ml_dtypes
import numpy as np

from .. import backend

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "conv_transpose2d_forward",
           "conv_transpose2d_backward", "batch_norm_act_forward", "batch_norm_act_backward", "leaky_relu_forward",
           "leaky_relu_backward", "sigmoid_bce_forward", "adam_step", "sgd_step", "round_to_bfloat16",
           "conv2d_forward_bf16", "conv2d_backward_bf16", "conv_transpose2d_forward_bf16",
           "conv_transpose2d_backward_bf16", "matmul_bf16", "batch_norm_act_forward_bf16",
           "batch_norm_act_backward_bf16", "leaky_relu_forward_bf16", "leaky_relu_backward_bf16",
           "minibatch_closeness_forward", "minibatch_closeness_backward"]


# --- im2col / col2im ------------------------------------------------------------------------------------------

def _conv_out_hw(x_shape, kernel_size, stride, padding):
    """(Ho, Wo) of a conv2d over an input of shape x_shape: Ho = (H + 2·ph - kh) // sh + 1."""
    return tuple((size + 2 * p - k) // s + 1 for size, k, s, p in zip(x_shape[2:], kernel_size, stride, padding))


def _offset_window(i, j, out_hw, stride):
    """The (rows, cols) slices of the padded input that kernel offset (i, j) reads for every output pixel."""
    (ho, wo), (sh, sw) = out_hw, stride
    return slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw)


def im2col(x, kernel_size, stride, padding):
    """x (N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo), the layout described in the module docstring."""
    n, c, h, w = x.shape
    (kh, kw), (ph, pw) = kernel_size, padding
    ho, wo = _conv_out_hw(x.shape, kernel_size, stride, padding)
    # one copy of x, channel-major (C, N, H, W) and zero-padded, so that each offset below copies a block whose
    # memory order matches the destination's
    xpad = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _offset_window(i, j, (ho, wo), stride)
            cols[:, i, j] = xpad[:, :, rows, columns]
    return cols.reshape(c * kh * kw, n * ho * wo)


def col2im(cols, x_shape, kernel_size, stride, padding):
    """The adjoint of im2col: cols (C*kh*kw, N*Ho*Wo) -> x (N, C, H, W), summing entries that hit the same pixel.

    <im2col(x), cols> = <x, col2im(cols)> for all x, cols: every entry of cols is added back to the one input
    pixel im2col copied it from; entries that came from the padding are dropped.
    """
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel_size, padding
    ho, wo = _conv_out_hw(x_shape, kernel_size, stride, padding)
    cols = cols.reshape(c, kh, kw, n, ho, wo)
    xpad = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # within one offset, distinct output pixels read distinct input pixels: a plain slice-add is exact
            rows, columns = _offset_window(i, j, (ho, wo), stride)
            xpad[:, :, rows, columns] += cols[:, i, j]
    # crop the padding and go back to NCHW in the same copy
    return np.ascontiguousarray(xpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))


# --- the pieces both convolutions are made of ------------------------------------------------------------------

def _to_channel_rows(a):
    """(N, C, H, W) -> (C, N*H*W): one row per channel, columns in im2col's order."""
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(c, n * h * w)


def _from_channel_rows(m, n, h, w, bias=None):
    """(C, N*H*W) -> contiguous (N, C, H, W), adding the per-channel bias in the same copy."""
    c = m.shape[0]
    nchw = m.reshape(c, n, h, w).transpose(1, 0, 2, 3)
    out = np.empty((n, c, h, w), dtype=m.dtype)
    if bias is None:
        out[...] = nchw
    else:
        np.add(nchw, bias.reshape(1, c, 1, 1), out=out)
    return out


def _correlate(x, weight, stride, padding, bias=None):
    """The conv2d product y = W·im2col(x). Returns y (N, O, Ho, Wo) and the columns (kept for the weight grad)."""
    o, _, kh, kw = weight.shape
    cols = im2col(x, (kh, kw), stride, padding)
    y = weight.reshape(o, -1) @ cols                                   # the one GEMM: (O, CKK) @ (CKK, N*Ho*Wo)
    return _from_channel_rows(y, x.shape[0], *_conv_out_hw(x.shape, (kh, kw), stride, padding), bias), cols


def _correlate_adjoint(rows, weight, x_shape, stride, padding):
    """The adjoint of _correlate in x: col2im(Wᵀ · rows), rows (O, N*Ho*Wo) -> (N, C, H, W)."""
    o, _, kh, kw = weight.shape
    cols = weight.reshape(o, -1).T @ rows                              # the one GEMM: (CKK, O) @ (O, N*Ho*Wo)
    return col2im(cols, x_shape, (kh, kw), stride, padding)


def _weight_grad(rows, cols, weight_shape):
    """dW of y = W·cols: rows (O, M) is the upstream gradient as channel rows; dW = rows · colsᵀ."""
    return (rows @ cols.T).reshape(weight_shape)


# --- conv2d ---------------------------------------------------------------------------------------------------

def conv2d_forward(x, weight, bias, stride, padding):
    """x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo)."""
    y, _ = _correlate(x, weight, stride, padding, bias)
    return y


# With Y = W·X (Y = y as channel rows, X = im2col(x)) and upstream gradient Ȳ:
#   W̄ = Ȳ·Xᵀ,   X̄ = Wᵀ·Ȳ and x̄ = col2im(X̄) (col2im is im2col's adjoint),   b̄ = Σ_{n,p,q} ȳ.
def conv2d_backward(dy, x, weight, stride, padding, output_mask=(True, True, True)):
    """-> (dx, dweight, dbias), dbias = dy summed over N, H, W. output_mask (want dx, dW, db) skips the gradients
    nobody needs (an input image's, a frozen weight's, a missing bias's): those come back as None."""
    want_dx, want_dw, want_db = output_mask
    dy_rows = _to_channel_rows(dy)
    dx = _correlate_adjoint(dy_rows, weight, x.shape, stride, padding) if want_dx else None
    dweight = _weight_grad(dy_rows, im2col(x, weight.shape[2:], stride, padding), weight.shape) if want_dw else None
    return dx, dweight, dy_rows.sum(axis=1) if want_db else None


# --- conv_transpose2d -----------------------------------------------------------------------------------------

def _conv_transpose_out_shape(x, weight, stride, padding, output_padding):
    return (x.shape[0], weight.shape[1]) + tuple(
        (size - 1) * s - 2 * p + k + op
        for size, s, p, k, op in zip(x.shape[2:], stride, padding, weight.shape[2:], output_padding))


def conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding):
    """x (N, Cin, H, W), weight (Cin, Cout, kh, kw) -> y (N, Cout, Hout, Wout), Hout = (H-1)·sh - 2·ph + kh + oph.

    A transposed convolution is the adjoint of the conv2d that maps y's shape to x's shape with the same weight
    (read as (O=Cin, C=Cout, kh, kw)): y = col2im(Wᵀ · x). output_padding only picks which of the y shapes that
    conv2d maps onto x's shape is meant (the extra rows/columns receive nothing but the bias).
    """
    y_shape = _conv_transpose_out_shape(x, weight, stride, padding, output_padding)
    y = _correlate_adjoint(_to_channel_rows(x), weight, y_shape, stride, padding)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


# y = col2im(Wᵀ·X) with X = x as channel rows is the adjoint of the conv2d Y' = W·im2col(y'), so its gradient
# is that conv2d:   x̄ = conv2d(ȳ, W)  (as rows: W·im2col(ȳ)),   W̄ = X·im2col(ȳ)ᵀ,   b̄ = Σ_{n,p,q} ȳ.
def conv_transpose2d_backward(dy, x, weight, stride, padding, output_padding, output_mask=(True, True, True)):
    """-> (dx, dweight, dbias), None where output_mask says so (as conv2d_backward); output_padding is implied by
    dy's shape and not needed here."""
    want_dx, want_dw, want_db = output_mask
    dx = dweight = None
    if want_dx or want_dw:
        dx, dy_cols = _correlate(dy, weight, stride, padding)
        dweight = _weight_grad(_to_channel_rows(x), dy_cols, weight.shape) if want_dw else None
    return dx if want_dx else None, dweight, dy.sum(axis=(0, 2, 3)) if want_db else None


# --- batch norm + activation ----------------------------------------------------------------------------------

def _channel_view(v, ndim):
    """A per-channel vector (C,) shaped to broadcast against an (N, C) or (N, C, H, W) array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _reduce_axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


# (NumPy's where= and np.where are an order of magnitude slower than plain ufuncs here, hence the masks below.)
def _apply_activation(z, activation, negative_slope):
    """In place: relu(z) = max(z, 0), or leaky_relu(z) = max(z, 0) + slope·min(z, 0) (exactly z or slope·z)."""
    if activation == "leaky_relu":
        negative = np.minimum(z, 0)
        negative *= negative_slope
        np.maximum(z, 0, out=z)
        z += negative
    elif activation == "relu":
        np.maximum(z, 0, out=z)
    elif activation is not None:
        raise ValueError(f"unknown activation {activation!r}")


def _activation_grad(g, z, activation, negative_slope):
    """In place: g times the activation's derivative at z (relu: [z > 0]; leaky: 1 where z > 0, else the slope)."""
    if activation is None:
        return
    if activation not in ("relu", "leaky_relu"):
        raise ValueError(f"unknown activation {activation!r}")
    positive = z > 0
    if activation == "leaky_relu":
        negative = g * ~positive                                       # exactly g where z <= 0, else 0
        negative *= negative_slope
    g *= positive
    if activation == "leaky_relu":
        g += negative


def batch_norm_act_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                           activation, negative_slope):
    """y = act((x - mean)·rstd·γ + β), per channel over N (and H, W). Returns (y, mean, rstd), both (C,).

    training: batch mean and biased variance normalise x; running stats (if given) are updated in place with the
    unbiased variance, as torch. eval: the running statistics normalise x. An empty batch (no values per channel)
    gives an empty y, as torch; in training it has no statistics: mean and rstd are NaN, the running ones stay.
    """
    axes, dtype = _reduce_axes(x), x.dtype
    count = int(np.prod([x.shape[a] for a in axes]))
    if training and count == 0:
        mean = var = np.full(x.shape[1], np.nan)
    elif training:
        if count == 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input {x.shape}")
        # two-pass statistics, accumulated in float64 (cheap: the results are per channel)
        mean = x.mean(axis=axes, dtype=np.float64)
        centred = x - _channel_view(mean.astype(dtype), x.ndim)
        var = np.square(centred, out=centred).mean(axis=axes, dtype=np.float64)
        del centred
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * var * count / (count - 1)).astype(running_var.dtype)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    rstd = 1.0 / np.sqrt(var + eps)
    # y = (x - mean)·(γ·rstd) + β, in place in one new array (subtracting first keeps float32 accurate when
    # |mean| >> std, which folding into y = x·scale + shift would not)
    scale = rstd if weight is None else weight.astype(np.float64) * rstd
    y = x - _channel_view(mean.astype(dtype), x.ndim)
    y *= _channel_view(scale.astype(dtype), x.ndim)
    if bias is not None:
        y += _channel_view(bias, x.ndim)
    _apply_activation(y, activation, negative_slope)
    return y, mean.astype(dtype), rstd.astype(dtype)


# Let g be the gradient after the activation's mask (relu: ȳ·[z > 0]; leaky: ȳ, times the slope where z <= 0).
# y = γ·x̂ + β gives γ̄ = Σ g·x̂, β̄ = Σ g. In eval mode x̂ = (x - μ)·rstd with constant μ, rstd: x̄ = g·γ·rstd. In
# training μ and rstd depend on x (∂μ/∂x = 1/m, ∂rstd/∂x = -rstd²·x̂/m), which subtracts g's mean and its x̂
# component:  x̄ = γ·rstd/m · (m·g − Σg − x̂·Σ(g·x̂)),  m = the number of values per channel.
def batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, activation, negative_slope):
    """-> (dx, dweight, dbias). mean, rstd are what the forward returned; the activation is recomputed from them."""
    axes, dtype, ndim = _reduce_axes(x), x.dtype, x.ndim
    xhat = (x - _channel_view(mean, ndim)) * _channel_view(rstd, ndim)
    gamma = np.ones(x.shape[1], dtype) if weight is None else weight
    g = dy.copy()
    if activation is not None:
        z = xhat * _channel_view(gamma, ndim)
        if bias is not None:
            z += _channel_view(bias, ndim)
        _activation_grad(g, z, activation, negative_slope)
        del z
    # per-channel sums, accumulated in float64
    dbias = g.sum(axis=axes, dtype=np.float64)
    dweight = (g * xhat).sum(axis=axes, dtype=np.float64)
    gamma_rstd = gamma.astype(np.float64) * rstd.astype(np.float64)
    if training:
        m = max(int(np.prod([x.shape[a] for a in axes])), 1)  # (with no values there is no dx to correct)
        # dx = γ·rstd · (g − Σg/m − x̂·Σ(g·x̂)/m), computed in place in g
        xhat *= _channel_view((dweight / m).astype(dtype), ndim)
        g -= xhat
        g -= _channel_view((dbias / m).astype(dtype), ndim)
    g *= _channel_view(gamma_rstd.astype(dtype), ndim)
    return g, dweight.astype(dtype), dbias.astype(dtype)


# --- a stand-alone activation (D's first layer has no batch norm) --------------------------------------------------

def leaky_relu_forward(x, negative_slope):
    """y = x where x > 0, else negative_slope·x (a new array)."""
    y = np.array(x, copy=True)
    _apply_activation(y, "leaky_relu", negative_slope)
    return y


# y = x·s(x) with s = 1 on x > 0 and the slope elsewhere, piecewise linear:  x̄ = ȳ·s(x)  (the mask recomputed from x).
def leaky_relu_backward(dy, x, negative_slope):
    """dx = dy where x > 0, else negative_slope·dy."""
    g = np.array(dy, dtype=x.dtype, copy=True)
    _activation_grad(g, x, "leaky_relu", negative_slope)
    return g


# --- the loss ---------------------------------------------------------------------------------------------------

# ℓ(s) = -y·log σ(s) - (1-y)·log(1-σ(s)) = max(s,0) - s·y + log(1 + e^{-|s|})   (no exp of a positive number),
# dℓ/ds = σ(s) - y, with σ(s) = 1/(1+e^{-|s|}) for s >= 0 and e^{-|s|}/(1+e^{-|s|}) for s < 0 (both stable).
def sigmoid_bce_forward(logits, target, reduction):
    """Fused sigmoid + binary cross-entropy: -> (loss, dloss/dlogits) for reduction "mean", "sum" or "none".
    The mean of no values is NaN, as in torch."""
    shape = logits.shape
    logits, target = logits.reshape(-1), target.reshape(-1)           # flat: a 0-d input gives arrays, not scalars
    e = np.exp(-np.abs(logits))                                       # in (0, 1]: never overflows
    loss = np.maximum(logits, 0) - logits * target + np.log1p(e)
    one_plus_e = 1 + e
    sigmoid = np.divide(np.where(logits >= 0, 1, e), one_plus_e, out=one_plus_e)
    dlogits = np.subtract(sigmoid, target, out=sigmoid)
    dlogits = dlogits.reshape(shape)
    if reduction == "none":
        return loss.reshape(shape), dlogits
    if reduction == "mean":
        dlogits /= max(logits.size, 1)
        return np.asarray(loss.mean() if logits.size else np.nan, dtype=logits.dtype), dlogits
    if reduction == "sum":
        return np.asarray(loss.sum(), dtype=logits.dtype), dlogits
    raise ValueError(f"unknown reduction {reduction!r}")


# --- minibatch discrimination (nn/gan_layers.py) ------------------------------------------------------------------
# For rows M_{i,b} ∈ R^C (i < N examples, b < B kernels), the closeness of each example to the others of its batch:
#     E_{ijb} = exp(−Σ_c |M_{i,b,c} − M_{j,b,c}|) for j ≠ i, 0 for j = i (symmetric in i, j);   o_{i,b} = Σ_j E_{ijb}
# M_{k,b,c} enters o_{k,b} through each E_{kjb} and o_{j,b} through E_{jkb}, with ∂E_{kjb}/∂M_{k,b,c} =
# −E_{kjb}·sign(M_{k,b,c} − M_{j,b,c}); so for g = ∂L/∂o:
#     ∂L/∂M_{k,b,c} = −Σ_j (g_{k,b} + g_{j,b})·E_{kjb}·sign(M_{k,b,c} − M_{j,b,c})      (sign(0) = 0, as torch's |x|)
# Pairs are laid out (B, N, N), so that NumPy's loops run along N, and only (B, N, N) arrays are made: the C
# differences are taken one at a time. The backward computes E again rather than keep it. Written with the array
# module of the input, so that CuPy runs it too.

def _pair_distances(m):
    """-> (a function that writes the differences M_{i,b,c} − M_{j,b,c} of one c into a (B, N, N) buffer at
    [b, i, j], that buffer, the L1 distances ‖M_{i,b} − M_{j,b}‖₁ (B, N, N)) for m (N, B, C)."""
    xp = backend.xp(m)
    n, b, c = m.shape
    columns = xp.ascontiguousarray(m.transpose(2, 1, 0))                   # (C, B, N)
    buffer = xp.empty((b, n, n), m.dtype)

    def differences(k):
        return xp.subtract(columns[k][:, :, None], columns[k][:, None, :], out=buffer)

    distance = xp.zeros((b, n, n), m.dtype)
    for k in range(c):
        distance += xp.abs(differences(k), out=buffer)
    return differences, buffer, distance


def minibatch_distances(m):
    """m (N, B, C) -> the L1 distances (B, N, N) of every pair of rows, per kernel (the layer's start from data)."""
    return _pair_distances(m)[2]


def _closeness_pairs(m):
    """-> (differences, buffer) as _pair_distances, and E (B, N, N)."""
    xp = backend.xp(m)
    differences, buffer, near = _pair_distances(m)
    xp.exp(xp.negative(near, out=near), out=near)
    near[:, xp.arange(m.shape[0]), xp.arange(m.shape[0])] = 0               # j = i left out
    return differences, buffer, near


def minibatch_closeness_forward(m):
    """m (N, B, C) -> o (N, B), o_{i,b} = Σ_{j≠i} exp(−‖M_{i,b} − M_{j,b}‖₁)."""
    return _closeness_pairs(m)[2].sum(axis=2).T.copy()


def minibatch_closeness_backward(g, m):
    """g = ∂L/∂o (N, B), m (N, B, C) -> ∂L/∂m (N, B, C)."""
    xp = backend.xp(m)
    differences, buffer, near = _closeness_pairs(m)
    gt = g.T                                                                 # (B, N)
    weight = xp.multiply(gt[:, :, None] + gt[:, None, :], near, out=near)    # (g_k + g_j)·E_{kj}
    grad = xp.empty((m.shape[2],) + gt.shape, m.dtype)                      # (C, B, N)
    for k in range(m.shape[2]):
        grad[k] = -xp.multiply(xp.sign(differences(k), out=buffer), weight, out=buffer).sum(axis=2)
    return xp.ascontiguousarray(grad.transpose(2, 1, 0))


# --- optimisers ---------------------------------------------------------------------------------------------------

def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One torch.optim.Adam step, in place on param, exp_avg, exp_avg_sq; step counts from 1 (already incremented).

        g = grad + weight_decay·param                       (L2, not AdamW)
        m ← β1·m + (1-β1)·g,  v ← β2·v + (1-β2)·g²
        param ← param − lr/(1-β1^t) · m / (√v / √(1-β2^t) + eps)
    """
    if weight_decay != 0:
        grad = grad + weight_decay * param
    tmp = np.subtract(grad, exp_avg, out=np.empty_like(param))          # m.lerp_(g, 1-β1) as torch: m + (1-β1)(g-m)
    tmp *= 1 - beta1
    exp_avg += tmp
    np.multiply(grad, grad, out=tmp)
    tmp *= 1 - beta2
    exp_avg_sq *= beta2
    exp_avg_sq += tmp
    denom = np.sqrt(exp_avg_sq, out=tmp)
    denom /= (1 - beta2 ** step) ** 0.5
    denom += eps
    update = np.divide(exp_avg, denom, out=tmp)
    update *= lr / (1 - beta1 ** step)
    param -= update


def sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening=0.0, nesterov=False,
             first_step=False):
    """One torch.optim.SGD step, in place on param and momentum_buf (None when momentum == 0).

        g = grad + weight_decay·param
        b ← g on the first step, else momentum·b + (1-dampening)·g
        param ← param − lr·(g + momentum·b if nesterov else b)      (param ← param − lr·g without momentum)
    """
    if weight_decay != 0:
        grad = grad + weight_decay * param
    if momentum != 0:
        if first_step:
            momentum_buf[...] = grad
        else:
            momentum_buf *= momentum
            momentum_buf += (1 - dampening) * grad
        grad = grad + momentum * momentum_buf if nesterov else momentum_buf
    param -= lr * grad


# --- bfloat16: the mixed-precision products (fastgan/precision.py) -----------------------------------------------
#
# bfloat16 is float32 with the low 16 bits of the significand cut off: 1 sign bit, the same 8 exponent bits (the
# same range), and 8 significant bits (7 stored) instead of 24, so a value rounded to it is off by at most
# 2^-8 relative (half a unit in its last place). Rounding is to nearest, ties to even, as IEEE's default: what
# ml_dtypes (NumPy's bfloat16 dtype) does, and what AVX-512-BF16's VCVTNEPS2BF16 does. The product of two
# bfloat16 values has at most 16 significant bits: it is exact in float32. So a product "in bfloat16 with float32
# accumulation" is fully specified by:
#     round both operands to bfloat16,  multiply exactly,  sum the products in float32
# and any two implementations of it differ only in the order of the float32 additions (tests/test_bfloat16.py
# derives the tolerance from that). The results stay float32: the sums are not rounded to bfloat16 again.

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


def round_to_bfloat16(x):
    """x (float32) rounded to the nearest bfloat16, ties to even, returned as float32 (the storage every kernel
    takes): |result − x| <= 2^-8·|x|. Values beyond bfloat16's largest finite one round to ±inf; NaN stays NaN."""
    with np.errstate(invalid="ignore"):  # (ml_dtypes warns about casting NaN, which it keeps)
        return np.asarray(x, np.float32).astype(BFLOAT16).astype(np.float32)


def _bf16(fp32_op, operands, rounding=round_to_bfloat16):
    """fp32_op with its first `operands` arguments rounded to bfloat16: the float32 kernels then multiply bfloat16
    values exactly and sum in float32, which is the whole specification above. (kernels/cpu.py builds its
    float32-path versions so, with its own fp32_op and rounding.)"""
    def op(*args, **kwargs):
        rounded = [None if a is None else rounding(a) for a in args[:operands]]
        return fp32_op(*rounded, *args[operands:], **kwargs)
    op.__name__ = fp32_op.__name__ + "_bf16"
    op.__doc__ = f"{fp32_op.__name__} on float32 arguments rounded to bfloat16 (the first {operands} of them)."
    return op


# Forward: x and W rounded (the bias is added in float32). Backward: dy, x and W rounded; every gradient, the
# bias's too, is then the float32 kernel's, from the rounded dy.
conv2d_forward_bf16 = _bf16(conv2d_forward, 2)
conv2d_backward_bf16 = _bf16(conv2d_backward, 3)
conv_transpose2d_forward_bf16 = _bf16(conv_transpose2d_forward, 2)
conv_transpose2d_backward_bf16 = _bf16(conv_transpose2d_backward, 3)


def matmul_bf16(a, b):
    """a @ b (NumPy's matmul rules) on operands rounded to bfloat16, summed in float32."""
    return np.matmul(round_to_bfloat16(a), round_to_bfloat16(b))


# Under autocast, batch norm + activation and LeakyReLU sit between two convolutions. Forward, they round their
# output (the next convolution's operand) to bfloat16 as they write it; backward, they round their input gradient
# (the previous convolution's dy, which that convolution would round anyway; torch's autocast makes it bfloat16 too).
# Their arithmetic is the float32 kernels'; the rounding of y passes the gradient through unchanged.
def _bf16_result(fp32_op, rounding=round_to_bfloat16):
    """fp32_op with its result rounded to bfloat16: the whole result, or the first of a tuple (y or dx; the
    statistics and the weight gradients stay float32). (kernels/cuda.py builds its versions so, with its own
    fp32_op and rounding.)"""
    def op(*args):
        out = fp32_op(*args)
        return (rounding(out[0]), *out[1:]) if isinstance(out, tuple) else rounding(out)
    op.__name__ = fp32_op.__name__ + "_bf16"
    op.__doc__ = f"{fp32_op.__name__} (same arguments, float32 arithmetic) with its output y or dx rounded to bfloat16."
    return op


batch_norm_act_forward_bf16 = _bf16_result(batch_norm_act_forward)      # -> (y, mean, rstd)
batch_norm_act_backward_bf16 = _bf16_result(batch_norm_act_backward)    # -> (dx, dweight, dbias)
leaky_relu_forward_bf16 = _bf16_result(leaky_relu_forward)
leaky_relu_backward_bf16 = _bf16_result(leaky_relu_backward)
