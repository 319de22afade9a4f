"""Fused sigmoid + binary cross-entropy: the loss and d loss/d logits in one pass over the logits.

    ℓ(s) = max(s, 0) − s·y + log(1 + e^{−|s|})        (no exponential of a positive number: stable for any s)
    dℓ/ds = σ(s) − y,  σ(s) = 1/(1 + e^{−|s|}) for s ≥ 0 and e^{−|s|}/(1 + e^{−|s|}) for s < 0

For "mean" and "sum" each program also writes the sum of its block's losses; reduce.sum_rows adds those partial
sums (and divides by N for the mean) in a second, tiny launch, so the result is deterministic.
"""
import triton
import triton.language as tl

from . import _carrier as carrier
from .reduce import sum_rows

__all__ = ["sigmoid_bce_forward"]

_BLOCK = 1024


@triton.jit
def _log1p(e):
    """log(1 + e) for e >= 0, accurate also for tiny e (Goldberg's trick: log(u)·e/(u - 1) with u = 1 + e rounded
    cancels the rounding of u; where u rounds to 1, log1p(e) = e to working precision)."""
    added = (1.0 + e) - 1.0                        # the part of e that 1 + e kept
    vanished = added == 0.0
    return tl.where(vanished, e, tl.log(1.0 + e) * (e / tl.where(vanished, 1.0, added)))


@triton.jit
def _sigmoid_bce_kernel(s_ptr, y_ptr, loss_ptr, dlogits_ptr, part_ptr, N, grad_divisor: tl.float64,
                        PER_ELEMENT: tl.constexpr, BLOCK: tl.constexpr):
    """Program p, on its BLOCK logits: dlogits = (σ(s) − y) / grad_divisor (N for the mean, else 1), and the losses
    (PER_ELEMENT, reduction "none") or their sum part[p]."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < N
    s = tl.load(s_ptr + offsets, mask=mask, other=0.0)
    y = tl.load(y_ptr + offsets, mask=mask, other=0.0)
    e = tl.exp(-tl.abs(s))
    loss = tl.maximum(s, 0.0) - s * y + _log1p(e)
    sigmoid = tl.where(s >= 0, 1.0, e) / (1.0 + e)
    tl.store(dlogits_ptr + offsets, (sigmoid - y) / carrier.scalar(grad_divisor, s.dtype), mask=mask)
    if PER_ELEMENT:
        tl.store(loss_ptr + offsets, loss, mask=mask)
    else:
        tl.store(part_ptr + tl.program_id(0), tl.sum(tl.where(mask, loss, 0.0), axis=0))


def sigmoid_bce_forward(logits, target, reduction):
    """-> (loss, dloss/dlogits); loss is a 0-d array for "mean" and "sum", per element for "none"."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")
    logits, target = carrier.contiguous(logits), carrier.contiguous(target)
    n = carrier.numel(logits)
    programs = triton.cdiv(n, _BLOCK)
    dlogits = carrier.empty(logits, logits.shape)
    per_element = reduction == "none"
    out = carrier.empty(logits, logits.shape if per_element else (programs, 1))
    carrier.launch(_sigmoid_bce_kernel, (programs,), logits, target, out, dlogits, out, n,
                   float(n) if reduction == "mean" else 1.0, PER_ELEMENT=per_element, BLOCK=_BLOCK)
    if per_element:
        return out, dlogits
    return sum_rows(out, (), n if reduction == "mean" else 1), dlogits
