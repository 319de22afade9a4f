"""conv2d and conv_transpose2d as implicit GEMMs: each program computes one output tile as a sum of tl.dot
products of tiles gathered straight from the NCHW arrays; no im2col matrix and no zero-inserted input is ever
materialised. The notation is kernels/reference.py's: `u` is the array being correlated, `g` an upstream gradient
in "channel rows" form, and cols[tap, pix] = u[n, c, p·sh + i - ph, q·sw + j - pw] the (virtual) im2col matrix with
pix = (n·Ho + p)·Wo + q and tap = (c·kh + i)·kw + j.

Three kernels serve all six operations (a transposed convolution is the adjoint of a convolution):

    _correlate_kernel          y = W · cols(u)                conv2d forward,  conv_transpose2d dx
    _correlate_adjoint_kernel  out = col2im(Wᵀ · g)           conv2d dx,       conv_transpose2d forward
    _weight_grad_kernel        dW = g · cols(u)ᵀ              conv2d dW (g=dy, u=x), conv_transpose2d dW (g=x, u=dy)

and reduce.channel_sum gives both dbias. Accumulation is fp32 for float32 arrays and fp64 for float64 (each tl.dot
names its accumulator's dtype as out_dtype: Triton 3.6 refuses an fp64 accumulator otherwise). tl.dot runs
with input_precision "ieee" unless FASTGAN_TRITON_TF32=1 (then float32 tiles use TF32 tensor cores; see _carrier).
Offsets are int32: arrays must have fewer than 2**31 elements.

The *_bf16 versions (reference.py: bfloat16 operands, float32 sums) run the same kernels with BF16=True: each float32
tile is rounded to bfloat16 (to nearest even, Triton's default for this cast) as it is loaded, and tl.dot multiplies
bfloat16 tiles into the float32 accumulator. Triton's CPU interpreter (3.9) cannot run them: its tl.dot multiplies
bfloat16's 16-bit storage as integers, and its float32 -> bfloat16 cast truncates. So they are tested on a GPU only
(tests/test_triton_kernels.py, tests/test_cuda_kernels.py).
"""
import triton
import triton.language as tl

from . import _carrier as carrier
from .reduce import channel_sum, sum_rows

__all__ = ["conv2d_forward", "conv2d_backward", "conv_transpose2d_forward", "conv_transpose2d_backward",
           "conv2d_forward_bf16", "conv2d_backward_bf16", "conv_transpose2d_forward_bf16",
           "conv_transpose2d_backward_bf16", "round_to_bfloat16"]

# the weight gradient splits its long reduction (over N·Ho·Wo pixels) until about this many programs run; the
# interpreter runs programs one by one, so the CPU tests use few (tests/test_triton_kernels.py also runs the GPU's)
GPU_WEIGHT_GRAD_PROGRAMS = 256
_WEIGHT_GRAD_PROGRAMS = 4 if carrier.INTERPRETED else GPU_WEIGHT_GRAD_PROGRAMS


# --- the index math, in one place ----------------------------------------------------------------------------

@triton.jit
def _split_pixel(pix, HO, WO):
    """pix = (n·Ho + p)·Wo + q -> (n, p, q)."""
    rest = pix // WO
    return rest // HO, rest % HO, pix % WO


@triton.jit
def _split_tap(tap, KH, KW):
    """tap = (c·kh + i)·kw + j -> (c, i, j), the column order of weight.reshape(O, C·kh·kw)."""
    rest = tap // KW
    return rest // KH, rest % KH, tap % KW


@triton.jit
def _im2col(u_ptr, pix, tap, NPIX, NTAP, C, H, W, HO, WO, KH, KW, SH, SW, PH, PW):
    """cols[tap, pix] for broadcastable index tiles pix and tap: u at (n, c, p·sh + i - ph, q·sw + j - pw), 0 where
    that reads the padding or the indices are past NPIX / NTAP."""
    n, p, q = _split_pixel(pix, HO, WO)
    c, i, j = _split_tap(tap, KH, KW)
    h = p * SH + i - PH
    w = q * SW + j - PW
    mask = (pix < NPIX) & (tap < NTAP) & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    return tl.load(u_ptr + ((n * C + c) * H + h) * W + w, mask=mask, other=0.0)


@triton.jit
def _phase(r, P, S, K, L):
    """One axis of a stride phase of the transposed convolution. Output row h receives kernel row i from input row
    a when h + P = a·S + i, so the rows with (h + P) mod S = r receive exactly the kernel rows i = r + S·t. Returns
    the first such row h0, their count below L, the number of kernel rows that reach them, and a0 such that tap t
    at the phase's u-th row (h = h0 + S·u) reads input row a = a0 + u - t."""
    h0 = (r - P % S + S) % S
    count = tl.cdiv(tl.maximum(L - h0, 0), S)
    taps = tl.cdiv(tl.maximum(K - r, 0), S)
    return h0, count, taps, (h0 + P - r) // S


# --- the kernels ---------------------------------------------------------------------------------------------

@triton.jit
def _correlate_kernel(u_ptr, w_ptr, b_ptr, y_ptr, N, C, H, W, O, HO, WO, KH, KW, SH, SW, PH, PW,
                      HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, BF16: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Program (m, o): the BLOCK_M output pixels × BLOCK_N output channels tile of y = W·cols(u) (+ bias), as a
    loop over the C·kh·kw taps in BLOCK_K steps: A = cols(u)ᵀ gathered [pixels, taps], B = Wᵀ [taps, channels]."""
    pix = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    och = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    npix, ntap = N * HO * WO, C * KH * KW
    acc = tl.zeros((BLOCK_M, BLOCK_N), y_ptr.dtype.element_ty)
    for start in range(0, ntap, BLOCK_K):
        tap = start + tl.arange(0, BLOCK_K)
        a = _im2col(u_ptr, pix[:, None], tap[None, :], npix, ntap, C, H, W, HO, WO, KH, KW, SH, SW, PH, PW)
        b = tl.load(w_ptr + och[None, :] * ntap + tap[:, None], mask=(tap[:, None] < ntap) & (och[None, :] < O),
                    other=0.0)
        if BF16:
            a, b = a.to(tl.bfloat16), b.to(tl.bfloat16)
        acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=acc.dtype)
    if HAS_BIAS:
        acc += tl.load(b_ptr + och, mask=och < O, other=0.0)[None, :]
    n, p, q = _split_pixel(pix, HO, WO)
    out = ((n[:, None] * O + och[None, :]) * HO + p[:, None]) * WO + q[:, None]
    tl.store(y_ptr + out, acc, mask=(pix[:, None] < npix) & (och[None, :] < O))


@triton.jit
def _correlate_adjoint_kernel(g_ptr, w_ptr, b_ptr, out_ptr, N, C, H, W, O, HG, WG, KH, KW, SH, SW, PH, PW,
                              HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, BF16: tl.constexpr,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Program (m, c, phase): a BLOCK_M pixels × BLOCK_N channels tile of out = col2im(Wᵀ·g) (+ bias), in gather
    form: out[n, c, h, w] = Σ_{o,i,j} W[o, c, i, j]·g[n, o, a, b] over h + ph = a·sh + i, w + pw = b·sw + j.
    The pixels of one program share a stride phase, (h + ph) mod sh and (w + pw) mod sw, so they receive the same
    ceil(kh/sh)·ceil(kw/sw) kernel taps: the loop runs over O × those taps only (no multiplying by inserted zeros)."""
    phase = tl.program_id(2)
    rh, rw = phase // SW, phase % SW
    h0, hp, th, a0 = _phase(rh, PH, SH, KH, H)
    w0, wp, tw, b0 = _phase(rw, PW, SW, KW, W)
    pix = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    och = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    npix = N * hp * wp
    ntap = tl.where(tl.program_id(0) * BLOCK_M < npix, O * th * tw, 0)   # programs past this phase's pixels idle
    n, u, v = _split_pixel(pix, tl.maximum(hp, 1), tl.maximum(wp, 1))
    acc = tl.zeros((BLOCK_M, BLOCK_N), out_ptr.dtype.element_ty)
    for start in range(0, ntap, BLOCK_K):
        tap = start + tl.arange(0, BLOCK_K)
        o, t, s = _split_tap(tap, th, tw)
        a = a0 + u[:, None] - t[None, :]
        b = b0 + v[:, None] - s[None, :]
        mask = (pix[:, None] < npix) & (tap[None, :] < ntap) & (a >= 0) & (a < HG) & (b >= 0) & (b < WG)
        gathered = tl.load(g_ptr + ((n[:, None] * O + o[None, :]) * HG + a) * WG + b, mask=mask, other=0.0)
        i, j = rh + SH * t, rw + SW * s
        weights = tl.load(w_ptr + ((o[:, None] * C + och[None, :]) * KH + i[:, None]) * KW + j[:, None],
                          mask=(tap[:, None] < ntap) & (och[None, :] < C), other=0.0)
        if BF16:
            gathered, weights = gathered.to(tl.bfloat16), weights.to(tl.bfloat16)
        acc = tl.dot(gathered, weights, acc, input_precision=PRECISION, out_dtype=acc.dtype)
    if HAS_BIAS:
        acc += tl.load(b_ptr + och, mask=och < C, other=0.0)[None, :]
    h, w = h0 + SH * u, w0 + SW * v
    out = ((n[:, None] * C + och[None, :]) * H + h[:, None]) * W + w[:, None]
    tl.store(out_ptr + out, acc, mask=(pix[:, None] < npix) & (och[None, :] < C))


@triton.jit
def _weight_grad_kernel(g_ptr, u_ptr, part_ptr, N, C, H, W, O, HO, WO, KH, KW, SH, SW, PH, PW, PIX_PER_SPLIT,
                        PRECISION: tl.constexpr, BF16: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Program (o, tap, split): the BLOCK_M out-channels × BLOCK_N taps tile of dW = g·cols(u)ᵀ, summed over one
    slice of PIX_PER_SPLIT output pixels (the GEMM's long K axis); part[split] holds that slice's sum."""
    och = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    tap = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    split = tl.program_id(2)
    ntap = C * KH * KW
    first = split * PIX_PER_SPLIT
    stop = tl.minimum(first + PIX_PER_SPLIT, N * HO * WO)
    acc = tl.zeros((BLOCK_M, BLOCK_N), part_ptr.dtype.element_ty)
    for start in range(first, stop, BLOCK_K):
        pix = start + tl.arange(0, BLOCK_K)
        n, p, q = _split_pixel(pix, HO, WO)
        rows = tl.load(g_ptr + ((n[None, :] * O + och[:, None]) * HO + p[None, :]) * WO + q[None, :],
                       mask=(pix[None, :] < stop) & (och[:, None] < O), other=0.0)
        cols = _im2col(u_ptr, pix[:, None], tap[None, :], stop, ntap, C, H, W, HO, WO, KH, KW, SH, SW, PH, PW)
        if BF16:
            rows, cols = rows.to(tl.bfloat16), cols.to(tl.bfloat16)
        acc = tl.dot(rows, cols, acc, input_precision=PRECISION, out_dtype=acc.dtype)
    out = split * O * ntap + och[:, None] * ntap + tap[None, :]
    tl.store(part_ptr + out, acc, mask=(och[:, None] < O) & (tap[None, :] < ntap))


# --- host side -----------------------------------------------------------------------------------------------

def _block(size, high):
    """A power-of-two tile edge for a GEMM axis of `size`: at least 16 (tl.dot's minimum), at most `high`."""
    return max(16, min(high, triton.next_power_of_2(size)))


def _correlate(u, weight, bias, stride, padding, bf16=False):
    """y = conv2d(u, weight) + bias: u (N, C, H, W), weight (O, C, kh, kw) -> (N, O, Ho, Wo)."""
    (n, c, h, w), (o, _, kh, kw) = u.shape, weight.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = carrier.empty(u, (n, o, ho, wo))
    bm, bn, bk = _block(n * ho * wo, 64), _block(o, 64), _block(c * kh * kw, 32)
    carrier.launch(_correlate_kernel, (triton.cdiv(n * ho * wo, bm), triton.cdiv(o, bn)),
                   u, weight, bias, y, n, c, h, w, o, ho, wo, kh, kw, sh, sw, ph, pw,
                   HAS_BIAS=bias is not None, PRECISION=carrier.dot_precision(u), BF16=bf16, BLOCK_M=bm, BLOCK_N=bn,
                   BLOCK_K=bk)
    return y


def _correlate_adjoint(g, weight, bias, stride, padding, out_hw, bf16=False):
    """out = col2im(Wᵀ·g) + bias: g (N, O, Hg, Wg), weight (O, C, kh, kw) -> (N, C, *out_hw)."""
    (n, o, hg, wg), (_, c, kh, kw) = g.shape, weight.shape
    (sh, sw), (ph, pw), (h, w) = stride, padding, out_hw
    out = carrier.empty(g, (n, c, h, w))
    # the largest phase: ceil(H/sh)·ceil(W/sw) pixels per image, ceil(kh/sh)·ceil(kw/sw) taps per channel
    phase_pixels = n * triton.cdiv(h, sh) * triton.cdiv(w, sw)
    phase_taps = o * triton.cdiv(kh, sh) * triton.cdiv(kw, sw)
    bm, bn, bk = _block(phase_pixels, 64), _block(c, 64), _block(phase_taps, 32)
    carrier.launch(_correlate_adjoint_kernel, (triton.cdiv(phase_pixels, bm), triton.cdiv(c, bn), sh * sw),
                   g, weight, bias, out, n, c, h, w, o, hg, wg, kh, kw, sh, sw, ph, pw,
                   HAS_BIAS=bias is not None, PRECISION=carrier.dot_precision(g), BF16=bf16, BLOCK_M=bm, BLOCK_N=bn,
                   BLOCK_K=bk)
    return out


def weight_grad_splits(npix, tiles, block_k):
    """(splits, pixels per split) for a weight gradient of `tiles` output tiles summing over npix pixels: about
    _WEIGHT_GRAD_PROGRAMS programs in all, each split a whole number of block_k steps (the last may be shorter)."""
    splits = max(1, min(triton.cdiv(npix, block_k), _WEIGHT_GRAD_PROGRAMS // tiles))
    per_split = triton.cdiv(triton.cdiv(npix, splits), block_k) * block_k
    return triton.cdiv(npix, per_split), per_split


def _weight_grad(g, u, weight_shape, stride, padding, bf16=False):
    """dW (O, C, kh, kw) = g·cols(u)ᵀ: g (N, O, Ho, Wo) is the gradient at the correlation's output, u its input."""
    (n, o, ho, wo), (_, c, h, w), (kh, kw) = g.shape, u.shape, weight_shape[2:]
    (sh, sw), (ph, pw) = stride, padding
    npix, ntap = n * ho * wo, c * kh * kw
    if npix == 0:  # an empty batch: a sum of no products
        return carrier.zeros(g, weight_shape)
    bm, bn, bk = _block(o, 64), _block(ntap, 64), _block(npix, 32)
    splits, per_split = weight_grad_splits(npix, triton.cdiv(o, bm) * triton.cdiv(ntap, bn), bk)
    part = carrier.empty(g, weight_shape if splits == 1 else (splits, o * ntap))
    carrier.launch(_weight_grad_kernel, (triton.cdiv(o, bm), triton.cdiv(ntap, bn), splits),
                   g, u, part, n, c, h, w, o, ho, wo, kh, kw, sh, sw, ph, pw, per_split,
                   PRECISION=carrier.dot_precision(g), BF16=bf16, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
    return part if splits == 1 else sum_rows(part, weight_shape)


# --- the four kernels of the specification --------------------------------------------------------------------

def conv2d_forward(x, weight, bias, stride, padding, bf16=False):
    """x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo)."""
    x, weight, bias = carrier.contiguous(x), carrier.contiguous(weight), carrier.contiguous(bias)
    return _correlate(x, weight, bias, stride, padding, bf16)


# With Y = W·cols(x):  dx = col2im(Wᵀ·dY) (a transposed convolution of dy),  dW = dY·cols(x)ᵀ,  db = Σ_{n,p,q} dy.
def conv2d_backward(dy, x, weight, stride, padding, output_mask=(True, True, True), bf16=False):
    """-> (dx, dweight, dbias), None where output_mask (want dx, dW, db) says it is not needed."""
    dy, x, weight = carrier.contiguous(dy), carrier.contiguous(x), carrier.contiguous(weight)
    want_dx, want_dw, want_db = output_mask
    return (_correlate_adjoint(dy, weight, None, stride, padding, x.shape[2:], bf16) if want_dx else None,
            _weight_grad(dy, x, weight.shape, stride, padding, bf16) if want_dw else None,
            channel_sum(round_to_bfloat16(dy) if bf16 else dy) if want_db else None)


def conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding, bf16=False):
    """x (N, Cin, H, W), weight (Cin, Cout, kh, kw) -> y (N, Cout, Hout, Wout), Hout = (H-1)·sh - 2·ph + kh + oph."""
    x, weight, bias = carrier.contiguous(x), carrier.contiguous(weight), carrier.contiguous(bias)
    out_hw = tuple((size - 1) * s - 2 * p + k + op for size, s, p, k, op in
                   zip(x.shape[2:], stride, padding, weight.shape[2:], output_padding))
    return _correlate_adjoint(x, weight, bias, stride, padding, out_hw, bf16)


# y = col2im(Wᵀ·X) is the adjoint of the conv2d y' -> W·cols(y'), so its gradient is that conv2d:
# dx = conv2d(dy, W) (W read as (O=Cin, C=Cout)),  dW = X·cols(dy)ᵀ,  db = Σ_{n,p,q} dy.
def conv_transpose2d_backward(dy, x, weight, stride, padding, output_padding, output_mask=(True, True, True),
                              bf16=False):
    """-> (dx, dweight, dbias), None where output_mask says so; output_padding is implied by dy's shape."""
    dy, x, weight = carrier.contiguous(dy), carrier.contiguous(x), carrier.contiguous(weight)
    want_dx, want_dw, want_db = output_mask
    return (_correlate(dy, weight, None, stride, padding, bf16=bf16) if want_dx else None,
            _weight_grad(x, dy, weight.shape, stride, padding, bf16) if want_dw else None,
            channel_sum(round_to_bfloat16(dy) if bf16 else dy) if want_db else None)


# --- bfloat16 (the specification: reference.py) ----------------------------------------------------------------

@triton.jit
def _round_kernel(x_ptr, y_ptr, N, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < N
    tl.store(y_ptr + offsets, tl.load(x_ptr + offsets, mask=mask).to(tl.bfloat16).to(tl.float32), mask=mask)


def round_to_bfloat16(x):
    """float32 x rounded to the nearest bfloat16 (ties to even), as float32."""
    x = carrier.contiguous(x)
    y = carrier.empty(x, x.shape)
    n = carrier.numel(x)
    carrier.launch(_round_kernel, (max(1, triton.cdiv(n, 1024)),), x, y, n, BLOCK=1024)
    return y


def conv2d_forward_bf16(x, weight, bias, stride, padding):
    return conv2d_forward(x, weight, bias, stride, padding, bf16=True)


def conv2d_backward_bf16(dy, x, weight, stride, padding, output_mask=(True, True, True)):
    return conv2d_backward(dy, x, weight, stride, padding, output_mask, bf16=True)


def conv_transpose2d_forward_bf16(x, weight, bias, stride, padding, output_padding):
    return conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding, bf16=True)


def conv_transpose2d_backward_bf16(dy, x, weight, stride, padding, output_padding, output_mask=(True, True, True)):
    return conv_transpose2d_backward(dy, x, weight, stride, padding, output_padding, output_mask, bf16=True)
