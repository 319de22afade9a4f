"""Reductions the other kernel families share: per-channel sums of NCHW arrays, and summing partial results.

An (N, C, H, W) array is read per channel as N·HW values: value e = n·HW + s of channel c lives at
(n·C + c)·HW + s. An (N, C) array is the case HW = 1. `channel_offsets` is that index math, used by batch norm too.
"""
import triton
import triton.language as tl

from . import _carrier as carrier


@triton.jit
def channel_offsets(c, e, C, HW):
    """Flat offsets of values e = n·HW + s (sample n, pixel s) of channel c in an (N, C, HW) array."""
    return (e // HW * C + c) * HW + e % HW


@triton.jit
def channel_moment(x_ptr, c, C, HW, COUNT, center, POWER: tl.constexpr, BLOCK: tl.constexpr):
    """Σ (x - center)^POWER over the COUNT values of channel c (POWER 1 or 2): BLOCK lanes accumulate in the
    dtype of x (fp32 or fp64), then one tree sum."""
    acc = tl.zeros([BLOCK], x_ptr.dtype.element_ty)
    for start in range(0, COUNT, BLOCK):
        e = start + tl.arange(0, BLOCK)
        mask = e < COUNT
        d = tl.where(mask, tl.load(x_ptr + channel_offsets(c, e, C, HW), mask=mask, other=0.0) - center, 0.0)
        if POWER == 2:
            d = d * d
        acc += d
    return tl.sum(acc, axis=0)


@triton.jit
def _channel_sum_kernel(x_ptr, out_ptr, C, HW, COUNT, BLOCK: tl.constexpr):
    """Program c: out[c] = Σ_{n,s} x[n, c, s]."""
    c = tl.program_id(0)
    tl.store(out_ptr + c, channel_moment(x_ptr, c, C, HW, COUNT, 0.0, 1, BLOCK))


@triton.jit
def _sum_rows_kernel(part_ptr, out_ptr, S, J, divisor: tl.float64, BLOCK_S: tl.constexpr, BLOCK_J: tl.constexpr):
    """Program p: out[j] = Σ_s part[s, j] / divisor for its BLOCK_J columns j (part is S×J, row-major)."""
    cols = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    acc = tl.zeros([BLOCK_S, BLOCK_J], part_ptr.dtype.element_ty)
    for start in range(0, S, BLOCK_S):
        rows = start + tl.arange(0, BLOCK_S)
        mask = (rows[:, None] < S) & (cols[None, :] < J)
        acc += tl.load(part_ptr + rows[:, None] * J + cols[None, :], mask=mask, other=0.0)
    total = tl.sum(acc, axis=0) / carrier.scalar(divisor, part_ptr.dtype.element_ty)
    tl.store(out_ptr + cols, total, mask=cols < J)


def channel_sum(x):
    """(N, C[, H, W]) -> (C,): the sum over everything but the channel axis (a conv's dbias)."""
    x = carrier.contiguous(x)
    c = x.shape[1]
    hw = x.shape[2] * x.shape[3] if x.ndim == 4 else 1
    count = x.shape[0] * hw
    out = carrier.empty(x, (c,))
    carrier.launch(_channel_sum_kernel, (c,), x, out, c, hw, count,
                   BLOCK=min(1024, max(16, triton.next_power_of_2(count))))
    return out


def sum_rows(part, out_shape, divisor=1.0):
    """part (S, J) -> out of out_shape (J values; () for one): the column sums of part, divided by divisor."""
    s, j = part.shape
    out = carrier.empty(part, out_shape)
    block_j = min(128, triton.next_power_of_2(j))
    block_s = max(1, min(triton.next_power_of_2(s), 4096 // block_j))
    carrier.launch(_sum_rows_kernel, (triton.cdiv(j, block_j),), part, out, s, j, float(divisor),
                   BLOCK_S=block_s, BLOCK_J=block_j)
    return out
