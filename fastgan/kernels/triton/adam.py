"""Fused optimiser steps: one launch per parameter, each program updating BLOCK elements of the parameter and its
state in place (every value is read once and written once). The arithmetic follows kernels/reference.py operation
by operation; the step-dependent constants (bias corrections) are computed on the host in float64.
"""
import math

import triton
import triton.language as tl

from . import _carrier as carrier

__all__ = ["adam_step", "sgd_step"]

_BLOCK = 1024


@triton.jit
def _adam_kernel(p_ptr, g_ptr, m_ptr, v_ptr, N, step_size: tl.float64, sqrt_bias_correction2: tl.float64,
                 one_minus_beta1: tl.float64, beta2: tl.float64, one_minus_beta2: tl.float64, eps: tl.float64,
                 weight_decay: tl.float64, HAS_WEIGHT_DECAY: tl.constexpr, BLOCK: tl.constexpr):
    """g = grad + wd·p;  m ← m + (1-β1)·(g - m);  v ← β2·v + (1-β2)·g²;
    p ← p − (m / (√v / √(1-β2^t) + eps))·lr/(1-β1^t)   (step_size = lr/(1-β1^t))."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < N
    p = tl.load(p_ptr + offsets, mask=mask)
    g = tl.load(g_ptr + offsets, mask=mask)
    m = tl.load(m_ptr + offsets, mask=mask)
    v = tl.load(v_ptr + offsets, mask=mask)
    dtype = p.dtype
    if HAS_WEIGHT_DECAY:
        g = g + carrier.scalar(weight_decay, dtype) * p
    m = m + (g - m) * carrier.scalar(one_minus_beta1, dtype)
    v = v * carrier.scalar(beta2, dtype) + (g * g) * carrier.scalar(one_minus_beta2, dtype)
    denom = tl.sqrt(v) / carrier.scalar(sqrt_bias_correction2, dtype) + carrier.scalar(eps, dtype)
    p = p - (m / denom) * carrier.scalar(step_size, dtype)
    tl.store(m_ptr + offsets, m, mask=mask)
    tl.store(v_ptr + offsets, v, mask=mask)
    tl.store(p_ptr + offsets, p, mask=mask)


@triton.jit
def _sgd_kernel(p_ptr, g_ptr, buf_ptr, N, lr: tl.float64, momentum: tl.float64, one_minus_dampening: tl.float64,
                weight_decay: tl.float64, HAS_WEIGHT_DECAY: tl.constexpr, HAS_MOMENTUM: tl.constexpr,
                FIRST_STEP: tl.constexpr, NESTEROV: tl.constexpr, BLOCK: tl.constexpr):
    """g = grad + wd·p;  b ← g on the first step, else momentum·b + (1-dampening)·g;
    p ← p − lr·(g + momentum·b if nesterov else b)   (p ← p − lr·g without momentum)."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < N
    p = tl.load(p_ptr + offsets, mask=mask)
    g = tl.load(g_ptr + offsets, mask=mask)
    dtype = p.dtype
    if HAS_WEIGHT_DECAY:
        g = g + carrier.scalar(weight_decay, dtype) * p
    if HAS_MOMENTUM:
        mu = carrier.scalar(momentum, dtype)
        if FIRST_STEP:
            b = g
        else:
            b = tl.load(buf_ptr + offsets, mask=mask) * mu + carrier.scalar(one_minus_dampening, dtype) * g
        tl.store(buf_ptr + offsets, b, mask=mask)
        if NESTEROV:
            g = g + mu * b
        else:
            g = b
    tl.store(p_ptr + offsets, p - carrier.scalar(lr, dtype) * g, mask=mask)


def _check_state(*named):
    for name, a in named:
        carrier.require_contiguous(a, name)


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One torch.optim.Adam step in place on param, exp_avg, exp_avg_sq (step counts from 1)."""
    _check_state(("param", param), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq))
    grad = carrier.contiguous(grad)
    n = carrier.numel(param)
    carrier.launch(_adam_kernel, (triton.cdiv(n, _BLOCK),), param, grad, exp_avg, exp_avg_sq, n,
                   lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step), 1.0 - beta1, float(beta2), 1.0 - beta2,
                   float(eps), float(weight_decay), HAS_WEIGHT_DECAY=weight_decay != 0, BLOCK=_BLOCK)


def sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening=0.0, nesterov=False,
             first_step=False):
    """One torch.optim.SGD step in place on param and momentum_buf (None when momentum == 0)."""
    _check_state(("param", param), ("momentum_buf", momentum_buf))
    grad = carrier.contiguous(grad)
    n = carrier.numel(param)
    carrier.launch(_sgd_kernel, (triton.cdiv(n, _BLOCK),), param, grad, momentum_buf, n, float(lr),
                   float(momentum), 1.0 - dampening, float(weight_decay), HAS_WEIGHT_DECAY=weight_decay != 0,
                   HAS_MOMENTUM=momentum != 0, FIRST_STEP=bool(first_step), NESTEROV=bool(nesterov), BLOCK=_BLOCK)
