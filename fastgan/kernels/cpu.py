"""The C++/OpenMP kernels of csrc/cpu (the extension fastgan._C), under the names and signatures of reference.py.

Importing this module raises ImportError when fastgan._C was not built; fastgan.dispatch then uses the reference.

What runs natively, and what stays in NumPy:
    conv2d / conv_transpose2d in float32 on AVX-512 CPUs, when the channels fill vectors (_direct): direct
        convolutions, their input gradients and weight gradients (direct_conv.cpp, direct_weight_grad.cpp), with
        no column matrices at all. FASTGAN_CONV=im2col|direct (or `with use_conv(...)`) overrides that choice.
        Everything else takes the im2col path:
    im2col / col2im, the NCHW <-> channel-rows transposes (with the bias added in the same copy), per-channel sums
        native; the GEMMs between them stay on NumPy's BLAS (`@`), exactly the reference's GEMMs. Two common
        shapes need no data movement at all and are pure GEMMs: a conv whose kernel covers the whole (unpadded)
        image (D's last layer, output 1x1) and a transposed conv of a 1x1 input (G's first layer). Thin column
        matrices (one channel's window) are multiplied image by image, straight from and into NCHW (_per_image),
        and a backward reuses the columns its forward computed when nothing has overwritten them (_columns).
    batch_norm_act_forward / _backward, leaky_relu_forward / _backward, sigmoid_bce_forward, adam_step, sgd_step
        native, one fused pass each (see the .cpp files for the math and the pass structure).
    the bfloat16 products (the *_bf16 kernels, reference.py), on one of these paths (FASTGAN_BF16, or
        `with use_bf16(...)`; _bf16_path): float32, the float32 kernels above on operands rounded to bfloat16 in one
        native pass each; avx512-bf16 (the default where the CPU has it), the same kernels with the direct ones
        summing bfloat16 products on VDPBF16PS (bf16=True) and matmul_bf16 on the bfloat16 GEMM
        (csrc/cpu/gemm_bf16.cpp); amx or emulated, the im2col path with all the convolutions' GEMMs on that GEMM.
        Batch norm + activation and LeakyReLU round their output, and their input gradient, in the pass that
        writes it, and an operand this module rounded already is not rounded again (_bfloat16_arrays).
Shapes are spelled out in full (never reshape(n, -1), which an empty batch, n = 0, cannot resolve). The native
kernels take float32/float64 C-contiguous arrays; read-only inputs of any other layout are made
contiguous here, and anything else unusual (other dtypes, mixed dtypes, non-contiguous state updated in place)
falls back to the reference implementation, so every call has the reference's semantics.

Results do not depend on the number of threads (OMP_NUM_THREADS, or set_num_threads below), not even in the last
bit: every reduction runs in a fixed order.

Threads. The kernels run on OpenMP threads, and this module gives its OpenMP runtime a passive wait policy (idle
threads sleep; below). NumPy's OpenBLAS runs its threaded GEMMs on the same threads (blas_threads.py): its own
workers would busy-wait for ~0.1 s after every GEMM and take the cores from the kernels that follow. When torch is
imported before this module, the extension shares torch's libgomp (same soname) and its default spinning policy;
GOMP_SPINCOUNT=10000, set before torch is imported, bounds that spin.
"""
import contextlib
import importlib
import os
import threading
import weakref

import numpy as np

from . import blas_threads, reference


def _load_extension():
    """Import fastgan._C, its OpenMP runtime set to a passive wait policy unless the user chose one.

    Between two kernels, OpenMP's worker threads by default keep spinning for a while, and a BLAS call that comes
    next (NumPy's OpenBLAS has its own threads) then fights them for the cores: a 1 ms GEMM right after one of our
    kernels took 8 ms on 2 cores. Passive workers sleep at once instead (waking them costs microseconds). libgomp
    reads the setting once, when it loads, so it is set just for the import and the environment then restored.
    """
    chosen = "OMP_WAIT_POLICY" in os.environ
    if not chosen:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        return importlib.import_module("fastgan._C")
    except ImportError as err:  # not compiled (no compiler, FASTGAN_NO_NATIVE, ...): dispatch uses the reference
        raise ImportError(f"fastgan's native CPU kernels (fastgan._C) are not built: {err}") from err
    finally:
        if not chosen:
            del os.environ["OMP_WAIT_POLICY"]


_C = _load_extension()
_DIRECT = _C.direct_conv_supported()

class _Setting:
    """A choice read once from an environment variable at import (checked there: a bad value fails at once), and
    overridden inside `with` blocks (a stack: the innermost block wins)."""

    def __init__(self, variable, choices, check):
        self.choices, self._check = choices, check
        self._stack = [self.checked(os.environ.get(variable, "").strip() or "auto", variable)]

    def checked(self, choice, source):
        """`choice` when it is one of the choices and this CPU can run it; a one-line error naming `source`."""
        if choice not in self.choices:
            raise ValueError(f"{source}={choice!r}: expected one of {', '.join(self.choices)} (unset means auto)")
        self._check(choice, source)
        return choice

    def now(self):
        return self._stack[-1]

    @contextlib.contextmanager
    def use(self, choice, source):
        self._stack.append(self.checked(choice, source))
        try:
            yield
        finally:
            self._stack.pop()


def _direct_needs_avx512(choice, source):
    # "direct" on a CPU without AVX-512 is an error, not a quiet fallback: whoever asks for it is measuring it
    if choice == "direct" and not _DIRECT:
        raise RuntimeError(f"{source}=direct: this CPU has no AVX-512, which the direct convolutions "
                           "(csrc/cpu/direct_conv.cpp) need; use im2col or auto")


# How the float32 convolutions run (see _direct): "auto" (the default), "im2col" or "direct".
CONV_CHOICES = ("auto", "im2col", "direct")
_conv = _Setting("FASTGAN_CONV", CONV_CHOICES, _direct_needs_avx512)

# How the bfloat16 products run (see _bf16_path): "auto" (the default), "float32" (float32 kernels on rounded
# operands), "avx512-bf16" (the direct kernels on VDPBF16PS), or "amx" / "emulated" (im2col + the bfloat16 GEMM of
# csrc/cpu/gemm_bf16.cpp); the hardware ones where the CPU has them.
BF16_CHOICES = ("auto", "float32", "amx", "avx512-bf16", "emulated")
_BF16_PATHS = _C.bf16_paths()  # the bfloat16 paths this CPU runs: "emulated", and "avx512-bf16", "amx" where usable


def _bf16_hardware(choice, source):
    if choice in ("amx", "avx512-bf16") and choice not in _BF16_PATHS:
        raise RuntimeError(f"{source}={choice}: this CPU has no {'AMX' if choice == 'amx' else 'AVX-512-BF16'}; "
                           f"use auto, float32 or emulated")


_bf16 = _Setting("FASTGAN_BF16", BF16_CHOICES, _bf16_hardware)


# the libraries whose threaded work runs on the kernels' threads (blas_threads.py)
OPENBLAS_ON_KERNEL_THREADS = ([] if os.environ.get("FASTGAN_OPENBLAS_OWN_THREADS") else
                              blas_threads.run_jobs_with(_C.blas_threads_callback()))

__all__ = list(reference.__all__) + ["set_num_threads", "get_num_threads", "release_workspace", "forget_columns",
                                     "conv_choice", "use_conv", "CONV_CHOICES", "bfloat16_path", "bf16_choice",
                                     "use_bf16", "BF16_CHOICES", "gemm_bf16"]

_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))

set_num_threads = _C.set_num_threads
get_num_threads = _C.get_num_threads


# --- helpers ------------------------------------------------------------------------------------------------------

def _native(dtype, *arrays, inplace=()):
    """Can the native kernels take these? One float32/float64 dtype for all; in-place arrays contiguous, writable."""
    if np.dtype(dtype) not in _NATIVE:
        return False
    for a in arrays + tuple(inplace):
        if a is not None and (not isinstance(a, np.ndarray) or a.dtype != dtype):
            return False
    return all(a is None or (a.flags.c_contiguous and a.flags.writeable) for a in inplace)


def _c(a):
    """A C-contiguous version of a read-only input, of the same shape (no copy when it already is; unlike
    np.ascontiguousarray, which makes a 0-d array 1-d)."""
    return None if a is None else np.require(a, requirements="C")


_local = threading.local()


def _scratch(name, shape, dtype):
    """A reusable temporary (im2col columns, GEMM results) that never leaves this module.

    The column matrices are large (50 MB for G's middle layer at batch 128); a fresh one per call costs a page fault
    per 4 KiB on first touch, more than the copy into it. Each thread keeps one buffer per name, grown as needed.
    Handing a buffer out again forgets what it held (see _columns).
    """
    pool = _local.__dict__.setdefault("pool", {})
    _local.__dict__.setdefault("holds", {}).pop(name, None)
    size = int(np.prod(shape))
    buf = pool.get((name, dtype))
    if buf is None or buf.size < size:
        buf = pool[(name, dtype)] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def _per_image(rows):
    """Lay the columns out image by image, (N, rows, Ho*Wo), and multiply them by a stack of per-image GEMMs, when
    the column matrix is thin: at most 32 rows, one channel's window (D's first conv, G's last). Such a product is
    memory-bound, and per image it reads and writes NCHW directly, where one big GEMM needs the image transposed to
    channel rows and back (two more passes over the largest activations of the model). Not on a bfloat16 GEMM
    (_matmul), which packs its operands on every call: there one call beats one per image."""
    return rows <= 32 and _bf16_gemm_now() is None


def conv_choice():
    """How the float32 convolutions run now: "auto", "im2col" or "direct" (FASTGAN_CONV, or use_conv's block)."""
    return _conv.now()


def use_conv(choice):
    """Run the convolutions in this block as `choice` ("auto", "im2col" or "direct"), whatever FASTGAN_CONV says."""
    return _conv.use(choice, "use_conv")


def _matmul(a, b, out=None):
    """The GEMMs of the convolutions: NumPy's BLAS, or the bfloat16 GEMM while a *_bf16 convolution runs on a GEMM
    path (_bf16_gemm_now; the convolutions are then the same code with other GEMMs)."""
    path = _bf16_gemm_now()
    return np.matmul(a, b, out=out) if path is None else gemm_bf16(a, b, path, out)


def _direct(dtype, vector_channels, reduction, side):
    """Run this convolution, input gradient or weight gradient directly (csrc/cpu/direct_conv.cpp,
    direct_weight_grad.cpp) instead of through im2col + GEMM? Only in float32 on a CPU with AVX-512; then, by
    conv_choice():
        auto    when at least 16 channels lie along the vectors (output channels; input channels for a weight
                gradient), each output sums more than one channel's window (thin reductions stay on the
                per-image GEMMs), and the images read and written are at least 7 pixels on their shorter `side`
                (a convolution's register tile holds 7 pixels of a row). On the DCGAN's middle layers this skips
                the 25-50 MB column matrices and runs closer to the core's peak than BLAS does on their shapes; on
                the 64×64 model's layers at 4×4 pixels (256-512 channels), im2col's GEMMs were 1.2-1.8× faster in
                every pass (docs/performance.md).
        im2col  never;
        direct  always (the whole-image and 1x1-input shapes, plain GEMMs, stay GEMMs under every choice).
    Under a *_bf16 convolution the same choice is made on the float32 and "avx512-bf16" paths (the direct kernels
    then sum bfloat16 products: _direct_bf16), and never on a GEMM path (_bf16_gemm_now), which has GEMMs only."""
    choice = _conv.now()
    if not _DIRECT or dtype != np.float32 or choice == "im2col" or _bf16_gemm_now():
        return False
    return choice == "direct" or (vector_channels >= 16 and reduction > 32 and side >= 7)


def _direct_bf16():
    """Whether the direct kernels sum bfloat16 products now (bf16=True: VDPBF16PS, csrc/cpu/register_tile.h): while
    a *_bf16 convolution runs on the "avx512-bf16" path."""
    return _local.__dict__.get("bf16_path") == "avx512-bf16"


def _bf16_gemm_now():
    """The bfloat16 GEMM path (gemm_bf16) the convolutions' GEMMs run on now, or None for NumPy's BLAS: "amx" or
    "emulated" while a *_bf16 convolution runs on that path. On the float32 and "avx512-bf16" paths the GEMMs that
    remain (the thin and whole-image layers, memory-bound) are BLAS's, on operands _bf16_op has rounded."""
    path = _local.__dict__.get("bf16_path")
    return path if path in ("amx", "emulated") else None


def _side(*images):
    """The shorter spatial side among NCHW arrays or shapes (_direct's `side`)."""
    return min(min(getattr(a, "shape", a)[2:]) for a in images)


def _columns(x, kernel, stride, padding, per_image):
    """im2col(x) in the "cols" scratch buffer, computed only if the buffer does not hold it already.

    A discriminator's training step runs each conv's forward and then, before any other conv runs, its backward,
    which needs the same columns for dW = dY·Xᵀ: the forward's im2col is reused instead of redone. The buffer
    remembers the array it was made from (and keeps it alive, so its id cannot be reused); the autograd graph
    never changes an array between an op's forward and its backward.
    """
    key = (kernel, stride, padding, per_image)
    held = _local.__dict__.get("holds", {}).get("cols")
    if held is not None and held[0] is x and held[1] == key:
        return held[2]
    n, rows = x.shape[0], x.shape[1] * kernel[0] * kernel[1]
    patches = int(np.prod(reference._conv_out_hw(x.shape, kernel, stride, padding)))
    shape = (n, rows, patches) if per_image else (rows, n * patches)
    cols = _C.im2col(x, kernel, stride, padding, _scratch("cols", shape, x.dtype), per_image=per_image)
    _local.holds["cols"] = (x, key, cols)
    return cols


def _times_transposed(a, b):
    """a·bᵀ for C-contiguous a (m, k) and b (n, k), a weight gradient. OpenBLAS is faster on these shapes (by up to
    25 % for D's middle conv) when the larger of m and n is the GEMM's row count: then it computes (b·aᵀ)ᵀ."""
    return _matmul(a, b.T) if a.shape[0] >= b.shape[0] else np.ascontiguousarray(_matmul(b, a.T).T)


def forget_columns():
    """Drop the im2col columns this thread keeps for a backward pass (the kernel benchmark times every call of a
    conv as a training step meets it: with nothing left from the call before)."""
    _local.__dict__.get("holds", {}).pop("cols", None)


def _sum_over_images(a, b):
    """Σ_n a[n]·b[n]ᵀ for stacks a (N, m, P) and b (N, k, P): a weight gradient from per-image matrices."""
    return _matmul(a, b.transpose(0, 2, 1)).sum(axis=0)


def release_workspace():
    """Free this thread's scratch buffers (they are re-created on the next convolution)."""
    _local.__dict__.pop("pool", None)
    _local.__dict__.pop("holds", None)


# --- im2col / col2im ----------------------------------------------------------------------------------------------

def im2col(x, kernel_size, stride, padding):
    """x (N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo), the reference's layout."""
    if not _native(x.dtype, x):
        return reference.im2col(x, kernel_size, stride, padding)
    return _C.im2col(_c(x), tuple(kernel_size), tuple(stride), tuple(padding))


def col2im(cols, x_shape, kernel_size, stride, padding):
    """The adjoint of im2col: cols -> x (N, C, H, W), summing entries that hit the same pixel."""
    if not _native(cols.dtype, cols):
        return reference.col2im(cols, x_shape, kernel_size, stride, padding)
    return _C.col2im(_c(cols), tuple(x_shape), tuple(kernel_size), tuple(stride), tuple(padding))


# --- conv2d -------------------------------------------------------------------------------------------------------

def _whole_image(shape, kernel_size, padding):
    """True when the kernel covers the whole unpadded image: one output pixel, and im2col is only a reshape."""
    return tuple(padding) == (0, 0) and tuple(shape[2:]) == tuple(kernel_size)


def conv2d_forward(x, weight, bias, stride, padding):
    """x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo)."""
    if not _native(x.dtype, x, weight, bias):
        return reference.conv2d_forward(x, weight, bias, stride, padding)
    x, weight, bias = _c(x), _c(weight), _c(bias)
    n, c = x.shape[:2]
    o, kernel = weight.shape[0], weight.shape[2:]
    w2 = weight.reshape(o, -1)
    if _whole_image(x.shape, kernel, padding):
        y = _matmul(x.reshape(n, w2.shape[1]), w2.T)                              # (N, C*H*W) @ (C*H*W, O)
        if bias is not None:
            y += bias
        return y.reshape(n, o, 1, 1)
    ho, wo = reference._conv_out_hw(x.shape, kernel, stride, padding)
    if _direct(x.dtype, o, w2.shape[1], min(_side(x), ho, wo)):
        return _C.direct_conv2d(x, weight, bias, tuple(stride), tuple(padding), bf16=_direct_bf16())
    per_image = _per_image(w2.shape[1])
    cols = _columns(x, tuple(kernel), tuple(stride), tuple(padding), per_image)
    if per_image:
        y = _matmul(w2, cols).reshape(n, o, ho, wo)                     # (O, C*kh*kw) @ (N, C*kh*kw, Ho*Wo)
        if bias is not None:
            y += bias.reshape(1, o, 1, 1)
        return y
    rows = _matmul(w2, cols, out=_scratch("rows", (o, n * ho * wo), x.dtype))
    return _C.from_channel_rows(rows, n, ho, wo, bias)


def conv2d_backward(dy, x, weight, stride, padding, output_mask=(True, True, True)):
    """-> (dx, dweight, dbias); output_mask picks which ones to compute (the others are None).

    With Y = W·X (X = im2col(x)): dW = dY·Xᵀ, dX = Wᵀ·dY and dx = col2im(dX), db = Σ dy (reference.py).
    """
    if not _native(x.dtype, dy, x, weight):
        return reference.conv2d_backward(dy, x, weight, stride, padding, output_mask)
    dy, x, weight = _c(dy), _c(x), _c(weight)
    want_dx, want_dw, want_db = output_mask
    n, o, kernel = x.shape[0], weight.shape[0], weight.shape[2:]
    w2 = weight.reshape(o, -1)
    dx = dweight = dbias = None
    if _whole_image(x.shape, kernel, padding):
        dy2 = dy.reshape(n, o)
        if want_dx:
            dx = _matmul(dy2, w2).reshape(x.shape)
        if want_dw:
            dweight = _matmul(dy2.T, x.reshape(n, w2.shape[1])).reshape(weight.shape)
    elif want_dx or want_dw:
        if want_dx and _direct(x.dtype, x.shape[1], o * kernel[0] * kernel[1], _side(x, dy)):
            # dx is the transposed convolution of dy with the same weight, onto x's grid
            dx = _C.direct_conv_transpose2d(
                dy, weight, None, tuple(stride), tuple(padding), x.shape[2:], bf16=_direct_bf16())
            want_dx = False
        if want_dw and _direct(x.dtype, x.shape[1], dy.size // o, _side(x, dy)):
            dweight = _C.direct_conv2d_weight_grad(
                dy, x, tuple(kernel), tuple(stride), tuple(padding), bf16=_direct_bf16())
            want_dw = False
        if want_dx or want_dw:
            per_image = _per_image(w2.shape[1])
            # dY as a matrix per image (N, O, Ho*Wo), or as channel rows (O, N*Ho*Wo)
            dy_mat = (dy.reshape(n, o, dy.shape[2] * dy.shape[3]) if per_image else
                      _C.to_channel_rows(dy, _scratch("rows", (o, dy.size // o), dy.dtype)))
            if want_dw:  # first: the columns may still be there from the forward pass
                cols = _columns(x, tuple(kernel), tuple(stride), tuple(padding), per_image)
                dweight = (_sum_over_images(dy_mat, cols) if per_image else
                           _times_transposed(dy_mat, cols)).reshape(weight.shape)
            if want_dx:
                dcols_shape = dy_mat.shape[:-2] + (w2.shape[1], dy_mat.shape[-1])
                dcols = _matmul(w2.T, dy_mat, out=_scratch("cols", dcols_shape, dy.dtype))
                dx = _C.col2im(dcols, x.shape, kernel, tuple(stride), tuple(padding), per_image=per_image)
    if want_db:
        dbias = _C.channel_sums(dy)
    return dx, dweight, dbias


# --- conv_transpose2d ---------------------------------------------------------------------------------------------

def _single_pixel(x, padding, output_padding):
    """A 1x1 input without padding: each sample's output is its channel vector times W, a plain GEMM."""
    return tuple(x.shape[2:]) == (1, 1) and tuple(padding) == (0, 0) and tuple(output_padding) == (0, 0)


def conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding):
    """x (N, Cin, H, W), weight (Cin, Cout, kh, kw) -> y (N, Cout, Hout, Wout): y = col2im(Wᵀ·x) (reference.py)."""
    if not _native(x.dtype, x, weight, bias):
        return reference.conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding)
    x, weight, bias = _c(x), _c(weight), _c(bias)
    n, cin = x.shape[:2]
    cout, kernel = weight.shape[1], weight.shape[2:]
    w2 = weight.reshape(cin, -1)
    if _single_pixel(x, padding, output_padding):
        y = _matmul(x.reshape(n, cin), w2).reshape(n, cout, *kernel)    # (N, Cin) @ (Cin, Cout*kh*kw)
        if bias is not None:
            y += bias.reshape(1, cout, 1, 1)
        return y
    y_shape = reference._conv_transpose_out_shape(x, weight, stride, padding, output_padding)
    if _direct(x.dtype, cout, cin * kernel[0] * kernel[1], _side(x, y_shape)):
        return _C.direct_conv_transpose2d(
            x, weight, bias, tuple(stride), tuple(padding), tuple(y_shape[2:]), bf16=_direct_bf16())
    per_image = _per_image(w2.shape[1])
    # X as a matrix per image (N, Cin, H*W), or as channel rows (Cin, N*H*W)
    x_mat = (x.reshape(n, cin, x.shape[2] * x.shape[3]) if per_image else
             _C.to_channel_rows(x, _scratch("rows", (cin, x.size // cin), x.dtype)))
    cols = _matmul(w2.T, x_mat, out=_scratch("cols", x_mat.shape[:-2] + (w2.shape[1], x_mat.shape[-1]), x.dtype))
    return _C.col2im(cols, y_shape, kernel, tuple(stride), tuple(padding), bias, per_image=per_image)


def conv_transpose2d_backward(dy, x, weight, stride, padding, output_padding, output_mask=(True, True, True)):
    """-> (dx, dweight, dbias); output_mask picks which ones to compute (the others are None).

    The gradient of y = col2im(Wᵀ·X) is a conv2d of dy: dX = W·im2col(dy), dW = X·im2col(dy)ᵀ, db = Σ dy.
    """
    if not _native(x.dtype, dy, x, weight):
        return reference.conv_transpose2d_backward(dy, x, weight, stride, padding, output_padding, output_mask)
    dy, x, weight = _c(dy), _c(x), _c(weight)
    want_dx, want_dw, want_db = output_mask
    n, cin, kernel = x.shape[0], x.shape[1], weight.shape[2:]
    w2 = weight.reshape(cin, -1)
    dx = dweight = dbias = None
    if _single_pixel(x, padding, output_padding):
        dy2 = dy.reshape(n, w2.shape[1])
        if want_dx:
            dx = _matmul(dy2, w2.T).reshape(x.shape)
        if want_dw:
            dweight = _matmul(x.reshape(n, cin).T, dy2).reshape(weight.shape)
    elif want_dx or want_dw:
        if want_dx and _direct(x.dtype, cin, w2.shape[1], _side(x, dy)):
            # dx is the convolution of dy with the same weight (it lands on x's grid: output_padding < stride)
            dx = _C.direct_conv2d(dy, weight, None, tuple(stride), tuple(padding), bf16=_direct_bf16())
            want_dx = False
        if want_dw and _direct(x.dtype, dy.shape[1], x.size // cin, _side(x, dy)):
            # the same sum as conv2d's weight gradient, with x in the place of dy and windows read from dy
            dweight = _C.direct_conv2d_weight_grad(
                x, dy, tuple(kernel), tuple(stride), tuple(padding), bf16=_direct_bf16())
            want_dw = False
        per_image = _per_image(w2.shape[1])
        cols = _columns(dy, tuple(kernel), tuple(stride), tuple(padding), per_image) if want_dx or want_dw else None
        if per_image:
            if want_dx:
                dx = _matmul(w2, cols).reshape(x.shape)                   # (Cin, rows) @ (N, rows, H*W)
            if want_dw:
                dweight = _sum_over_images(x.reshape(n, cin, x.shape[2] * x.shape[3]), cols).reshape(weight.shape)
        else:
            if want_dx:
                rows = _matmul(w2, cols, out=_scratch("rows", (cin, cols.shape[1]), x.dtype))
                dx = _C.from_channel_rows(rows, n, *x.shape[2:])
            if want_dw:
                x_rows = _C.to_channel_rows(x, _scratch("rows", (cin, cols.shape[1]), x.dtype))
                dweight = _times_transposed(x_rows, cols).reshape(weight.shape)
    if want_db:
        dbias = _C.channel_sums(dy)
    return dx, dweight, dbias


# --- batch norm + activation ----------------------------------------------------------------------------------------

def batch_norm_act_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                           activation, negative_slope):
    """y = act((x - mean)·rstd·γ + β) per channel -> (y, mean, rstd); training updates the running stats in
    place."""
    stats = (running_mean, running_var) if training else ()
    if not _native(x.dtype, x, weight, bias, running_mean, running_var, inplace=stats):
        return reference.batch_norm_act_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                                activation, negative_slope)
    return _C.batch_norm_act_forward(_c(x), _c(weight), _c(bias), running_mean if training else _c(running_mean),
                                     running_var if training else _c(running_var), bool(training), float(momentum),
                                     float(eps), activation, float(negative_slope))


def batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, activation, negative_slope):
    """-> (dx, dweight, dbias), recomputing the activation's mask from the saved mean and rstd."""
    if not _native(x.dtype, dy, x, weight, bias, mean, rstd):
        return reference.batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, activation,
                                                 negative_slope)
    return _C.batch_norm_act_backward(_c(dy), _c(x), _c(weight), _c(bias), _c(mean), _c(rstd), bool(training),
                                      activation, float(negative_slope))


# --- the loss -------------------------------------------------------------------------------------------------------

def sigmoid_bce_forward(logits, target, reduction):
    """Fused sigmoid + binary cross-entropy: -> (loss, dloss/dlogits) for reduction "mean", "sum" or "none"."""
    if not _native(logits.dtype, logits, target) or np.shape(target) != np.shape(logits):
        return reference.sigmoid_bce_forward(logits, target, reduction)
    return _C.sigmoid_bce_forward(_c(logits), _c(target), reduction)


# --- minibatch discrimination -------------------------------------------------------------------------------------

def _columns_of(m):
    """m (N, B, C) -> its columns (B, C, N), the layout of csrc/cpu/minibatch.cpp."""
    return np.ascontiguousarray(m.transpose(1, 2, 0))


def minibatch_closeness_forward(m):
    """m (N, B, C) -> o (N, B): the pairwise closeness of minibatch discrimination (reference.py)."""
    if not _native(m.dtype, m) or m.ndim != 3:
        return reference.minibatch_closeness_forward(m)
    return np.ascontiguousarray(_C.minibatch_closeness_forward(_columns_of(m)).T)


def minibatch_closeness_backward(g, m):
    """g = ∂L/∂o (N, B), m (N, B, C) -> ∂L/∂m (N, B, C)."""
    if not _native(m.dtype, g, m) or m.ndim != 3 or g.shape != m.shape[:2]:
        return reference.minibatch_closeness_backward(g, m)
    grad = _C.minibatch_closeness_backward(np.ascontiguousarray(g.T), _columns_of(m))     # (B, C, N)
    return np.ascontiguousarray(grad.transpose(2, 0, 1))


# --- optimisers -----------------------------------------------------------------------------------------------------

def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One torch.optim.Adam step, in place on param, exp_avg, exp_avg_sq (bit-identical to the reference)."""
    if not _native(param.dtype, grad, inplace=(param, exp_avg, exp_avg_sq)) or grad.shape != param.shape:
        return reference.adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)
    _C.adam_step(param, _c(grad), exp_avg, exp_avg_sq, int(step), float(lr), float(beta1), float(beta2), float(eps),
                 float(weight_decay))


def sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening=0.0, nesterov=False,
             first_step=False):
    """One torch.optim.SGD step, in place on param and momentum_buf (None when momentum == 0)."""
    buf = momentum_buf if momentum != 0 else None
    if not _native(param.dtype, grad, inplace=(param, buf)) or grad.shape != param.shape or \
            (momentum != 0 and momentum_buf is None):
        return reference.sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening, nesterov,
                                  first_step)
    _C.sgd_step(param, _c(grad), buf, float(lr), float(momentum), float(weight_decay), float(dampening),
                bool(nesterov), bool(first_step))


# --- stand-alone activation --------------------------------------------------------------------------------------

def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope·x, in one pass."""
    if not _native(x.dtype, x):
        return reference.leaky_relu_forward(x, negative_slope)
    return _C.leaky_relu_forward(_c(x), float(negative_slope))


def leaky_relu_backward(dy, x, negative_slope):
    """dx = dy if x > 0 else negative_slope·dy (the mask recomputed from x)."""
    if not _native(x.dtype, dy, x):
        return reference.leaky_relu_backward(dy, x, negative_slope)
    return _C.leaky_relu_backward(_c(dy), _c(x), float(negative_slope))


# --- bfloat16: products on bfloat16 operands with float32 sums ----------------------------------------------------

# The arrays this module returned rounded to bfloat16 (by the rounding kernel, or by a batch norm or LeakyReLU that
# rounded as it wrote), still alive: a convolution that gets one as an operand skips rounding it again. The engine
# never changes an op's output in place, so such an array keeps holding bfloat16 values. Keyed by id, with the
# array as a weak value: an entry goes when its array does, and a new array that reuses the id is not the same one.
_bfloat16_arrays = weakref.WeakValueDictionary()


def _rounded(a):
    """Mark a (float32, every value a bfloat16) as rounded; returns a."""
    _bfloat16_arrays[id(a)] = a
    return a


def bf16_choice():
    """How the bfloat16 products run now (FASTGAN_BF16, or use_bf16's block): one of BF16_CHOICES."""
    return _bf16.now()


def use_bf16(choice):
    """Run the bfloat16 products in this block as `choice` (one of BF16_CHOICES), whatever FASTGAN_BF16 says."""
    return _bf16.use(choice, "use_bf16")


def _bf16_path():
    """The path the *_bf16 products take now (bf16_choice(), with "auto" resolved), or None for the float32 path:
    the float32 kernels on operands rounded to bfloat16, which every CPU runs at its float32 speed. "auto" is
    "avx512-bf16" on a CPU that has it (Zen 4, and Intel's since Cooper Lake, AMX ones too), where its direct
    kernels made the DCGAN step 1.4x faster than the float32 path (docs/precision.md); elsewhere the float32 path.
    The AMX GEMM is not chosen by "auto": with im2col around it, it was slower than the float32 path."""
    choice = _bf16.now()
    if choice == "auto":
        return "avx512-bf16" if "avx512-bf16" in _BF16_PATHS else None
    return None if choice == "float32" else choice


def bfloat16_path():
    """How the *_bf16 kernels run on this CPU, in words (python -m fastgan.kernels prints it)."""
    hardware = [name for path, name in (("amx", "AMX"), ("avx512-bf16", "AVX-512-BF16")) if path in _BF16_PATHS]
    has = f"this CPU has {' and '.join(hardware)}" if hardware else "this CPU has neither AMX nor AVX-512-BF16"
    how = {None: "float32 kernels on operands rounded to bfloat16",
           "avx512-bf16": "the direct convolutions on VDPBF16PS (csrc/cpu/register_tile.h), where the float32 "
                          "ones would be direct; the other layers' GEMMs in float32 on rounded operands; matmul on "
                          "the avx512-bf16 bfloat16 GEMM (csrc/cpu/gemm_bf16.cpp)"}
    path = _bf16_path()
    return (f"FASTGAN_BF16={_bf16.now()}: "
            f"{how.get(path, f'im2col + the {path} bfloat16 GEMM (csrc/cpu/gemm_bf16.cpp)')} ({has})")


def gemm_bf16(a, b, path, out=None):
    """a @ b (matmul's rules for stacks of matrices) on operands rounded to bfloat16, summed in float32, on one of
    the GEMM paths of csrc/cpu/gemm_bf16.cpp ("amx", "avx512-bf16", "emulated"); a and b float32, any strides."""
    if a.ndim == 2 and b.ndim == 2:
        return _C.gemm_bf16(a, b, path, out)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if out is None:
        out = np.empty(batch + (a.shape[-2], b.shape[-1]), np.float32)
    a, b = np.broadcast_to(a, batch + a.shape[-2:]), np.broadcast_to(b, batch + b.shape[-2:])
    for i in np.ndindex(*batch):
        _C.gemm_bf16(a[i], b[i], path, out[i])
    return out


def round_to_bfloat16(x):
    """x rounded to the nearest bfloat16 (ties to even), as float32; an array this module rounded already comes
    back as it is (rounding is idempotent)."""
    if _bfloat16_arrays.get(id(x)) is x:
        return x
    if not _native(np.float32, x):
        return reference.round_to_bfloat16(x)
    return _rounded(_C.round_to_bfloat16(_c(x)))


def _bf16_op(fp32_op, operands):
    """fp32_op on its first `operands` arguments rounded to bfloat16 (reference._bf16), on the path _bf16_path()
    names: fp32_op's own code, whose direct kernels (_direct_bf16) and GEMMs (_bf16_gemm_now) look up the path
    while it runs. (Kernels on bfloat16 hardware round their operands as they copy them, so for them the rounding
    here is done twice; it is idempotent, and an operand a fused epilogue rounded is not rounded again.)"""
    rounded = reference._bf16(fp32_op, operands, round_to_bfloat16)

    def op(*args, **kwargs):
        _local.bf16_path = _bf16_path()
        try:
            return rounded(*args, **kwargs)
        finally:
            _local.bf16_path = None
    op.__name__, op.__doc__ = rounded.__name__, rounded.__doc__
    return op


conv2d_forward_bf16 = _bf16_op(conv2d_forward, 2)
conv2d_backward_bf16 = _bf16_op(conv2d_backward, 3)
conv_transpose2d_forward_bf16 = _bf16_op(conv_transpose2d_forward, 2)
conv_transpose2d_backward_bf16 = _bf16_op(conv_transpose2d_backward, 3)


def matmul_bf16(a, b):
    """a @ b on operands rounded to bfloat16, summed in float32: BLAS on the float32 path, else gemm_bf16."""
    path = _bf16_path()
    if path is None or a.ndim < 2 or b.ndim < 2 or not _native(np.float32, a, b):
        return np.matmul(round_to_bfloat16(a), round_to_bfloat16(b))
    return gemm_bf16(a, b, path)


def batch_norm_act_forward_bf16(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                activation, negative_slope):
    """batch_norm_act_forward with y rounded to bfloat16 in the pass that writes it."""
    stats = (running_mean, running_var) if training else ()
    if not _native(np.float32, x, weight, bias, running_mean, running_var, inplace=stats):
        return reference.batch_norm_act_forward_bf16(x, weight, bias, running_mean, running_var, training, momentum,
                                                     eps, activation, negative_slope)
    y, mean, rstd = _C.batch_norm_act_forward(_c(x), _c(weight), _c(bias),
                                              running_mean if training else _c(running_mean),
                                              running_var if training else _c(running_var), bool(training),
                                              float(momentum), float(eps), activation, float(negative_slope),
                                              round_bf16=True)
    return _rounded(y), mean, rstd


def batch_norm_act_backward_bf16(dy, x, weight, bias, mean, rstd, training, activation, negative_slope):
    """batch_norm_act_backward with dx rounded to bfloat16 in the pass that writes it."""
    if not _native(np.float32, dy, x, weight, bias, mean, rstd):
        return reference.batch_norm_act_backward_bf16(dy, x, weight, bias, mean, rstd, training, activation,
                                                      negative_slope)
    dx, dweight, dbias = _C.batch_norm_act_backward(_c(dy), _c(x), _c(weight), _c(bias), _c(mean), _c(rstd),
                                                    bool(training), activation, float(negative_slope),
                                                    round_bf16=True)
    return _rounded(dx), dweight, dbias


def leaky_relu_backward_bf16(dy, x, negative_slope):
    """leaky_relu_backward with dx rounded to bfloat16 in the same pass."""
    if not _native(np.float32, dy, x):
        return reference.leaky_relu_backward_bf16(dy, x, negative_slope)
    return _rounded(_C.leaky_relu_backward(_c(dy), _c(x), float(negative_slope), round_bf16=True))


def leaky_relu_forward_bf16(x, negative_slope):
    """leaky_relu_forward with y rounded to bfloat16 in the same pass."""
    if not _native(np.float32, x):
        return reference.leaky_relu_forward_bf16(x, negative_slope)
    return _rounded(_C.leaky_relu_forward(_c(x), float(negative_slope), round_bf16=True))
