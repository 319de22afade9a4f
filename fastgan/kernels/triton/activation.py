"""ReLU and LeakyReLU, as device helpers that batch norm fuses in (batchnorm_act.py) and as the stand-alone
LeakyReLU kernels of the discriminator's first layer, one program per BLOCK elements.

Both activations are linear on each side of 0: act(z) = slope(z)·z with slope(z) = 1 for z > 0, else 0 (relu) or
a (leaky), and act'(z) = slope(z). So the backward recomputes the mask from z instead of storing it.
"""
import triton
import triton.language as tl

from . import _carrier as carrier

__all__ = ["leaky_relu_forward", "leaky_relu_backward"]

RELU, LEAKY_RELU = tl.constexpr(1), tl.constexpr(2)   # ACTIVATION codes (0: none); constexpr, as jit code reads them
_BLOCK = 1024


@triton.jit
def times_slope(v, z, ACTIVATION: tl.constexpr, slope):
    """v·slope(z): the activation itself for v = z, its backward for v = the upstream gradient."""
    if ACTIVATION == RELU:
        v = tl.where(z > 0, v, 0.0)
    elif ACTIVATION == LEAKY_RELU:
        v = tl.where(z > 0, v, v * slope)
    return v


@triton.jit
def _leaky_kernel(v_ptr, z_ptr, out_ptr, N, slope: tl.float64, BLOCK: tl.constexpr):
    """out = v·slope(z) on this program's BLOCK elements: forward with v = z = x, backward with v = dy, z = x."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < N
    v = tl.load(v_ptr + offsets, mask=mask, other=0.0)
    z = tl.load(z_ptr + offsets, mask=mask, other=0.0)
    tl.store(out_ptr + offsets, times_slope(v, z, LEAKY_RELU, carrier.scalar(slope, v.dtype)), mask=mask)


def _leaky(v, z, negative_slope):
    v, z = carrier.contiguous(v), carrier.contiguous(z)
    out = carrier.empty(z, z.shape)
    n = carrier.numel(z)
    carrier.launch(_leaky_kernel, (max(1, triton.cdiv(n, _BLOCK)),), v, z, out, n, float(negative_slope),
                   BLOCK=_BLOCK)
    return out


def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope·x."""
    return _leaky(x, x, negative_slope)


def leaky_relu_backward(dy, x, negative_slope):
    """dx = dy if x > 0 else negative_slope·dy."""
    return _leaky(dy, x, negative_slope)
