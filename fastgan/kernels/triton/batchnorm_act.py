"""Batch norm fused with its activation, in the shape of Triton's layer-norm tutorial with channels as the rows:
one program per channel loops over that channel's N·H·W values (reduce.channel_offsets) in BLOCK steps, so every
per-channel statistic and sum is a plain in-program reduction (no atomics, no second launch). Statistics
accumulate in the array's dtype (fp32 or fp64), lane-wise and then as a tree, two-pass (mean, then Σ(x - mean)²).

activation: None, "relu" or "leaky_relu" (ACTIVATION 0, 1, 2); the backward recomputes the activation's input
z = γ·x̂ + β from the saved mean and rstd instead of storing a mask.
"""
import triton
import triton.language as tl

from . import _carrier as carrier
from .activation import LEAKY_RELU, RELU, times_slope
from .reduce import channel_moment, channel_offsets

__all__ = ["batch_norm_act_forward", "batch_norm_act_backward"]

_ACTIVATIONS = {None: 0, "relu": RELU.value, "leaky_relu": LEAKY_RELU.value}


@triton.jit
def _masked_grad(x, dy, mean, rstd, gamma, beta, ACTIVATION: tl.constexpr, slope):
    """(x̂, g): the normalised input and the upstream gradient times the activation's derivative at γ·x̂ + β."""
    xhat = (x - mean) * rstd
    return xhat, times_slope(dy, xhat * gamma + beta, ACTIVATION, slope)


@triton.jit
def _channel_params(w_ptr, b_ptr, c, dtype: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr):
    """γ[c] and β[c], 1 and 0 when the layer has no affine parameters."""
    gamma = tl.load(w_ptr + c).to(dtype) if HAS_WEIGHT else tl.full([], 1.0, dtype)
    beta = tl.load(b_ptr + c).to(dtype) if HAS_BIAS else tl.full([], 0.0, dtype)
    return gamma, beta


@triton.jit
def _forward_kernel(x_ptr, w_ptr, b_ptr, rmean_ptr, rvar_ptr, y_ptr, mean_ptr, rstd_ptr, C, HW, COUNT,
                    momentum: tl.float64, eps: tl.float64, slope: tl.float64,
                    TRAINING: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_RUNNING_MEAN: tl.constexpr, HAS_RUNNING_VAR: tl.constexpr, ACTIVATION: tl.constexpr,
                    BLOCK: tl.constexpr):
    """Program c: mean and rstd of channel c (batch statistics when training, running ones in eval), the running
    statistics' update (unbiased variance), then y = act((x - mean)·rstd·γ + β) over the channel. An empty batch
    (COUNT = 0) has no statistics: mean and rstd come out NaN (0/0) and the running statistics stay."""
    c = tl.program_id(0)
    dtype = y_ptr.dtype.element_ty
    momentum, eps, slope = carrier.scalar(momentum, dtype), carrier.scalar(eps, dtype), carrier.scalar(slope, dtype)
    if TRAINING:
        mean = channel_moment(x_ptr, c, C, HW, COUNT, 0.0, 1, BLOCK) / COUNT
        var = channel_moment(x_ptr, c, C, HW, COUNT, mean, 2, BLOCK) / COUNT
        if HAS_RUNNING_MEAN and COUNT > 0:
            tl.store(rmean_ptr + c, tl.load(rmean_ptr + c) * (1 - momentum) + momentum * mean)
        if HAS_RUNNING_VAR and COUNT > 0:
            unbiased = var * COUNT / (COUNT - 1)
            tl.store(rvar_ptr + c, tl.load(rvar_ptr + c) * (1 - momentum) + momentum * unbiased)
    else:
        mean = tl.load(rmean_ptr + c).to(dtype)
        var = tl.load(rvar_ptr + c).to(dtype)
    rstd = 1.0 / tl.sqrt(var + eps)
    gamma, beta = _channel_params(w_ptr, b_ptr, c, dtype, HAS_WEIGHT, HAS_BIAS)
    scale = rstd * gamma
    for start in range(0, COUNT, BLOCK):
        e = start + tl.arange(0, BLOCK)
        offsets, mask = channel_offsets(c, e, C, HW), e < COUNT
        y = (tl.load(x_ptr + offsets, mask=mask, other=0.0) - mean) * scale + beta
        tl.store(y_ptr + offsets, times_slope(y, y, ACTIVATION, slope), mask=mask)
    tl.store(mean_ptr + c, mean)
    tl.store(rstd_ptr + c, rstd)


@triton.jit
def _backward_kernel(dy_ptr, x_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr, db_ptr, C, HW, COUNT,
                     slope: tl.float64, TRAINING: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
                     ACTIVATION: tl.constexpr, BLOCK: tl.constexpr):
    """Program c, two passes over channel c. With g the masked gradient and m = COUNT:
    pass 1: dβ = Σg, dγ = Σ g·x̂;  pass 2: dx = γ·rstd·(g − (dβ + x̂·dγ)/m) when training (μ and rstd depend
    on x), dx = γ·rstd·g in eval (they are constants)."""
    c = tl.program_id(0)
    dtype = dx_ptr.dtype.element_ty
    slope = carrier.scalar(slope, dtype)
    mean, rstd = tl.load(mean_ptr + c).to(dtype), tl.load(rstd_ptr + c).to(dtype)
    gamma, beta = _channel_params(w_ptr, b_ptr, c, dtype, HAS_WEIGHT, HAS_BIAS)
    sum_g = tl.zeros([BLOCK], dtype)
    sum_gx = tl.zeros([BLOCK], dtype)
    for start in range(0, COUNT, BLOCK):
        e = start + tl.arange(0, BLOCK)
        offsets, mask = channel_offsets(c, e, C, HW), e < COUNT
        xhat, g = _masked_grad(tl.load(x_ptr + offsets, mask=mask, other=0.0),
                               tl.load(dy_ptr + offsets, mask=mask, other=0.0), mean, rstd, gamma, beta,
                               ACTIVATION, slope)
        sum_g += g                                   # masked lanes load dy = 0, so g = 0 there
        sum_gx += g * xhat
    dbeta, dgamma = tl.sum(sum_g, axis=0), tl.sum(sum_gx, axis=0)
    tl.store(db_ptr + c, dbeta)
    tl.store(dw_ptr + c, dgamma)
    gamma_rstd = gamma * rstd
    for start in range(0, COUNT, BLOCK):
        e = start + tl.arange(0, BLOCK)
        offsets, mask = channel_offsets(c, e, C, HW), e < COUNT
        xhat, g = _masked_grad(tl.load(x_ptr + offsets, mask=mask, other=0.0),
                               tl.load(dy_ptr + offsets, mask=mask, other=0.0), mean, rstd, gamma, beta,
                               ACTIVATION, slope)
        if TRAINING:
            g = g - (dbeta + xhat * dgamma) / COUNT
        tl.store(dx_ptr + offsets, g * gamma_rstd, mask=mask)


def _layout(x):
    """(C, HW, COUNT) of an (N, C) or (N, C, H, W) input, and a BLOCK for a loop over COUNT values."""
    c = x.shape[1]
    hw = x.shape[2] * x.shape[3] if x.ndim == 4 else 1
    count = x.shape[0] * hw
    return c, hw, count, min(1024, max(16, triton.next_power_of_2(count)))


def _activation_code(activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    return _ACTIVATIONS[activation]


def batch_norm_act_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                           activation, negative_slope):
    """-> (y, mean, rstd), both (C,); running statistics are updated in place when training."""
    x, weight, bias = carrier.contiguous(x), carrier.contiguous(weight), carrier.contiguous(bias)
    carrier.require_contiguous(running_mean, "running_mean")
    carrier.require_contiguous(running_var, "running_var")
    c, hw, count, block = _layout(x)
    if training and count == 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input "
                         f"{tuple(x.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: eval mode needs running_mean and running_var")
    y, mean, rstd = carrier.empty(x, x.shape), carrier.empty(x, (c,)), carrier.empty(x, (c,))
    carrier.launch(_forward_kernel, (c,), x, weight, bias, running_mean, running_var, y, mean, rstd, c, hw, count,
                   float(momentum), float(eps), float(negative_slope),
                   TRAINING=bool(training), HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
                   HAS_RUNNING_MEAN=running_mean is not None, HAS_RUNNING_VAR=running_var is not None,
                   ACTIVATION=_activation_code(activation), BLOCK=block)
    return y, mean, rstd


def batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, activation, negative_slope):
    """-> (dx, dweight, dbias); dweight and dbias are returned even when the layer has no weight or bias."""
    dy, x, weight, bias = carrier.contiguous(dy), carrier.contiguous(x), carrier.contiguous(weight), \
        carrier.contiguous(bias)
    mean, rstd = carrier.contiguous(mean), carrier.contiguous(rstd)
    c, hw, count, block = _layout(x)
    dx, dweight, dbias = carrier.empty(x, x.shape), carrier.empty(x, (c,)), carrier.empty(x, (c,))
    carrier.launch(_backward_kernel, (c,), dy, x, weight, bias, mean, rstd, dx, dweight, dbias, c, hw, count,
                   float(negative_slope), TRAINING=bool(training), HAS_WEIGHT=weight is not None,
                   HAS_BIAS=bias is not None, ACTIVATION=_activation_code(activation), BLOCK=block)
    return dx, dweight, dbias
