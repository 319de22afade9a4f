"""CUDA C++ kernels on CuPy arrays: the reference's names and signatures (kernels/reference.py), on the GPU.

The kernels are the .cu files of csrc/cuda, compiled at run time by NVRTC through `cupy.RawModule` (so installing
fastgan needs no CUDA toolkit; CuPy caches the compiled code on disk). Each file is one family of kernels, each
kernel a template instantiated for float and double by name ("adam_step<float>"); KERNELS below lists them all.

    batch_norm.cu    batch_norm_act_forward / _backward: one block per channel, statistics by block reduction
    sigmoid_bce.cu   the fused loss and its gradient in one pass; the mean/sum by a two-stage grid reduction
    optim.cu         adam_step, sgd_step: one thread per parameter element
    activation.cu    leaky_relu_forward / _backward: one thread per element
    conv.cu          im2col, col2im and the NCHW <-> channel-rows transpose around cuBLAS GEMMs (cupy.matmul)
    bfloat16.cu      round_to_bfloat16: the *_bf16 products are the float32 ones on operands rounded by it

Importing this module raises ImportError when CuPy, NVRTC or a GPU is missing, so `fastgan.dispatch` treats the
implementation as unavailable. Kernel parameters are only pointers, int and double: `_launch` packs Python ints
(and bools) as int32, floats as float64 and None as a null pointer — so a double parameter is always passed through
float(), in case a caller gave an int.
"""
import functools
import os
import re

import numpy as np

from .. import backend
from . import reference

try:
    import cupy
except ImportError as err:
    raise ImportError("fastgan.kernels.cuda needs CuPy (pip install -e '.[gpu-cuda12]' or '.[gpu-cuda13]')") from err
if not backend.cuda_available():
    raise ImportError(f"fastgan.kernels.cuda: {backend.cuda_status().detail}")
try:
    cupy.cuda.nvrtc.getVersion()
except Exception as err:  # noqa: BLE001 - a missing libnvrtc shows up as one of several error types
    raise ImportError(f"fastgan.kernels.cuda: NVRTC is not usable ({err})") from err

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "conv_transpose2d_forward",
           "conv_transpose2d_backward", "batch_norm_act_forward", "batch_norm_act_backward", "leaky_relu_forward",
           "leaky_relu_backward", "sigmoid_bce_forward", "adam_step", "sgd_step", "round_to_bfloat16",
           "conv2d_forward_bf16", "conv2d_backward_bf16", "conv_transpose2d_forward_bf16",
           "conv_transpose2d_backward_bf16", "matmul_bf16", "batch_norm_act_forward_bf16",
           "batch_norm_act_backward_bf16", "leaky_relu_forward_bf16", "leaky_relu_backward_bf16"]

# every kernel this module launches, by source file (tests/test_cuda_compile.py checks them against the sources)
KERNELS = {
    "batch_norm.cu": ("batch_norm_act_forward", "batch_norm_act_backward"),
    "sigmoid_bce.cu": ("sigmoid_bce_forward", "sum_partials"),
    "optim.cu": ("adam_step", "sgd_step"),
    "activation.cu": ("leaky_relu_forward", "leaky_relu_backward"),
    "conv.cu": ("im2col", "col2im", "swap_outer_axes"),
    "bfloat16.cu": ("round_to_bfloat16",),
}
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
OPTIONS = ("--std=c++17",)
THREADS = 256            # threads per block of the elementwise kernels
MAX_BLOCKS = 65535       # grid-stride loops cover the rest
_INT32_MAX = 2 ** 31 - 1
_NULL = np.uint64(0)     # a null pointer argument (8 zero bytes), for optional arrays


# --- finding, compiling and launching the kernels -----------------------------------------------------------------

def source_dir():
    """The folder of the .cu files: fastgan/kernels/cuda_src (installed, or a link in a source tree) or csrc/cuda."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(here, "cuda_src"), os.path.join(here, "..", "..", "csrc", "cuda")):
        if os.path.isfile(os.path.join(folder, "common.cuh")):
            return os.path.normpath(folder)
    raise FileNotFoundError(f"fastgan's CUDA sources are missing (looked for cuda_src/ next to {__file__} and "
                            "csrc/cuda in the source tree)")


_INCLUDE = re.compile(r'^#include "([^"]+)"[^\n]*$', re.MULTILINE)


def load_source(filename):
    """The text of a .cu file with its local #include "..." lines replaced by the files themselves: NVRTC then needs
    no include path, and CuPy's cache (keyed on the source text) sees every change to a header."""
    folder = source_dir()
    with open(os.path.join(folder, filename)) as f:
        text = f.read()
    return _INCLUDE.sub(lambda m: load_source(m.group(1)), text)


@functools.lru_cache(maxsize=None)
def _module(filename):
    names = [f"{kernel}<{c_type}>" for kernel in KERNELS[filename] for c_type in C_TYPES.values()]
    return cupy.RawModule(code=load_source(filename), options=OPTIONS, name_expressions=names)


_FILE_OF = {kernel: filename for filename, kernels in KERNELS.items() for kernel in kernels}


@functools.lru_cache(maxsize=None)
def _function(kernel, dtype):
    return _module(_FILE_OF[kernel]).get_function(f"{kernel}<{C_TYPES[np.dtype(dtype)]}>")


def _argument(value):
    if value is None:
        return _NULL
    if isinstance(value, cupy.ndarray):
        if value.size > _INT32_MAX:
            raise ValueError(f"fastgan's CUDA kernels index with 32-bit ints: an array of {value.size} elements is "
                             "too large")
        return value
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        if abs(int(value)) > _INT32_MAX:
            raise ValueError(f"fastgan's CUDA kernels index with 32-bit ints: {value} is too large")
        return np.int32(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    raise TypeError(f"cannot pass {type(value).__name__} to a CUDA kernel")


def _launch(kernel, dtype, blocks, threads, *args):
    _function(kernel, dtype)((int(blocks),), (int(threads),), tuple(_argument(a) for a in args))


def _blocks(n):
    """Blocks of THREADS threads for n elements in a grid-stride loop (at least one block)."""
    return max(1, min(MAX_BLOCKS, -(-n // THREADS)))


def _block_size(count):
    """The power-of-two block (32 ... 1024 threads) for a block reduction over `count` values."""
    return 1 << min(10, max(5, (int(count) - 1).bit_length()))


def _float_array(a, dtype, what):
    """`a` as a C-contiguous CuPy array of `dtype` (None stays None; a 0-d array stays 0-d, which
    ascontiguousarray would make 1-d)."""
    if a is None:
        return None
    if not isinstance(a, cupy.ndarray):
        raise TypeError(f"fastgan.kernels.cuda: {what} must be a CuPy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"fastgan.kernels.cuda: {what} has dtype {a.dtype}, expected {dtype}")
    return a if a.flags.c_contiguous else cupy.ascontiguousarray(a)


def _dtype_of(x):
    dtype = np.dtype(x.dtype)
    if dtype not in C_TYPES:
        raise TypeError(f"fastgan.kernels.cuda supports float32 and float64, got {dtype}")
    return dtype


def _inplace(a, dtype, what):
    """An array a kernel updates in place: checked, never copied (a copy would take the update instead)."""
    if a is not None and not (isinstance(a, cupy.ndarray) and a.dtype == dtype and a.flags.c_contiguous):
        raise TypeError(f"fastgan.kernels.cuda: {what} is updated in place and must be a C-contiguous CuPy array "
                        f"of dtype {dtype}")
    return a


# --- im2col / col2im and the layout change ------------------------------------------------------------------------

def _conv_out_hw(x_shape, kernel_size, stride, padding):
    return tuple((size + 2 * p - k) // s + 1 for size, k, s, p in zip(x_shape[2:], kernel_size, stride, padding))


def im2col(x, kernel_size, stride, padding):
    """x (N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo), the layout of kernels/reference.py."""
    dtype = _dtype_of(x)
    x = _float_array(x, dtype, "x")
    n, c, h, w = x.shape
    (kh, kw), (ho, wo) = kernel_size, _conv_out_hw(x.shape, kernel_size, stride, padding)
    cols = cupy.empty((c * kh * kw, n * ho * wo), dtype)
    _launch("im2col", dtype, _blocks(cols.size), THREADS, x, cols, n, c, h, w, kh, kw, *stride, *padding, ho, wo)
    return cols


def col2im(cols, x_shape, kernel_size, stride, padding, bias=None):
    """The adjoint of im2col: cols (C*kh*kw, N*Ho*Wo) -> x (N, C, H, W), plus bias[c] if given."""
    dtype = _dtype_of(cols)
    cols, bias = _float_array(cols, dtype, "cols"), _float_array(bias, dtype, "bias")
    n, c, h, w = x_shape
    (kh, kw), (ho, wo) = kernel_size, _conv_out_hw(x_shape, kernel_size, stride, padding)
    x = cupy.empty(tuple(x_shape), dtype)
    _launch("col2im", dtype, _blocks(x.size), THREADS, cols, bias, x, n, c, h, w, kh, kw, *stride, *padding, ho, wo)
    return x


def _swap_outer_axes(a, bias=None):
    """(A, B, ...) -> contiguous (B, A, ...), plus bias[a] if given."""
    dtype, a = a.dtype, cupy.ascontiguousarray(a)
    outer, inner = a.shape[:2], int(np.prod(a.shape[2:]))
    out = cupy.empty((outer[1], outer[0]) + a.shape[2:], dtype)
    _launch("swap_outer_axes", dtype, _blocks(a.size), THREADS, a, bias, out, outer[0], outer[1], inner)
    return out


def _to_channel_rows(a):
    """(N, C, H, W) -> (C, N*H*W)."""
    n, c, h, w = a.shape
    return _swap_outer_axes(a).reshape(c, n * h * w)


def _from_channel_rows(m, n, h, w, bias=None):
    """(C, N*H*W) -> (N, C, H, W), adding the per-channel bias in the same pass."""
    return _swap_outer_axes(m.reshape(m.shape[0], n, h, w), bias)


# --- convolutions: cuBLAS GEMMs between the kernels above (the derivations are in kernels/reference.py) ----------

def _conv_inputs(x, weight, bias=None):
    dtype = _dtype_of(x)
    return dtype, _float_array(x, dtype, "x"), _float_array(weight, dtype, "weight"), _float_array(bias, dtype, "bias")


def conv2d_forward(x, weight, bias, stride, padding):
    """y = W·im2col(x), as channel rows turned back into NCHW with the bias added."""
    _, x, weight, bias = _conv_inputs(x, weight, bias)
    o, _, kh, kw = weight.shape
    ho, wo = _conv_out_hw(x.shape, (kh, kw), stride, padding)
    y_rows = weight.reshape(o, -1) @ im2col(x, (kh, kw), stride, padding)
    return _from_channel_rows(y_rows, x.shape[0], ho, wo, bias)


def conv2d_backward(dy, x, weight, stride, padding, output_mask=(True, True, True)):
    """-> (dx, dweight, dbias): x̄ = col2im(Wᵀ·Ȳ), W̄ = Ȳ·im2col(x)ᵀ, b̄ = Σ ȳ; None where output_mask says so."""
    _, dy, weight, _ = _conv_inputs(dy, weight)
    x = _float_array(x, dy.dtype, "x")
    want_dx, want_dw, want_db = output_mask
    o = weight.shape[0]
    dy_rows = _to_channel_rows(dy)
    dx = col2im(weight.reshape(o, -1).T @ dy_rows, x.shape, weight.shape[2:], stride, padding) if want_dx else None
    dweight = (dy_rows @ im2col(x, weight.shape[2:], stride, padding).T).reshape(weight.shape) if want_dw else None
    return dx, dweight, dy_rows.sum(axis=1) if want_db else None


def conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding):
    """y = col2im(Wᵀ·X) + bias, X = x as channel rows (bias added by col2im)."""
    _, x, weight, bias = _conv_inputs(x, weight, bias)
    c_in, c_out, kh, kw = weight.shape
    y_shape = (x.shape[0], c_out) + tuple((size - 1) * s - 2 * p + k + op for size, s, p, k, op in
                                          zip(x.shape[2:], stride, padding, (kh, kw), output_padding))
    cols = weight.reshape(c_in, -1).T @ _to_channel_rows(x)
    return col2im(cols, y_shape, (kh, kw), stride, padding, bias)


def conv_transpose2d_backward(dy, x, weight, stride, padding, output_padding, output_mask=(True, True, True)):
    """-> (dx, dweight, dbias): x̄ = conv2d(ȳ, W) = W·im2col(ȳ) as rows, W̄ = X·im2col(ȳ)ᵀ, b̄ = Σ ȳ; None where
    output_mask says so."""
    _, dy, weight, _ = _conv_inputs(dy, weight)
    x = _float_array(x, dy.dtype, "x")
    want_dx, want_dw, want_db = output_mask
    c_in = weight.shape[0]
    n, _, h, w = x.shape
    dx = dweight = None
    if want_dx or want_dw:
        dy_cols = im2col(dy, weight.shape[2:], stride, padding)
        dx = _from_channel_rows(weight.reshape(c_in, -1) @ dy_cols, n, h, w) if want_dx else None
        dweight = (_to_channel_rows(x) @ dy_cols.T).reshape(weight.shape) if want_dw else None
    return dx, dweight, dy.sum(axis=(0, 2, 3)) if want_db else None


# --- batch norm + activation --------------------------------------------------------------------------------------

_ACTIVATION_CODES = {None: 0, "relu": 1, "leaky_relu": 2}   # fg::Activation in common.cuh


def _activation_code(activation):
    if activation not in _ACTIVATION_CODES:
        raise ValueError(f"unknown activation {activation!r}")
    return _ACTIVATION_CODES[activation]


def _nchw_sizes(x):
    """(N, C, HW) of an (N, C) or (N, C, H, W) array."""
    return x.shape[0], x.shape[1], int(np.prod(x.shape[2:]))


def batch_norm_act_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                           activation, negative_slope):
    """-> (y, mean, rstd); updates running_mean/running_var in place when training. One block per channel."""
    dtype = _dtype_of(x)
    x = _float_array(x, dtype, "x")
    weight, bias = _float_array(weight, dtype, "weight"), _float_array(bias, dtype, "bias")
    n, c, hw = _nchw_sizes(x)
    if training and n * hw == 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input {x.shape}")
    # the kernel reads and writes the running statistics as T: others (another dtype, a view) go through a copy
    stats = [s if s is None or (s.dtype == dtype and s.flags.c_contiguous) else s.astype(dtype)
             for s in (running_mean, running_var)]
    y, mean, rstd = cupy.empty_like(x), cupy.empty(c, dtype), cupy.empty(c, dtype)
    _launch("batch_norm_act_forward", dtype, c, _block_size(n * hw), x, weight, bias, *stats, y, mean, rstd,
            n, c, hw, training, float(momentum), float(eps), _activation_code(activation), float(negative_slope))
    for original, used in zip((running_mean, running_var), stats):
        if training and used is not original:
            original[...] = used
    return y, mean, rstd


def batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, activation, negative_slope):
    """-> (dx, dweight, dbias), recomputing the activation's mask from mean and rstd. One block per channel."""
    dtype = _dtype_of(x)
    x, dy = _float_array(x, dtype, "x"), _float_array(dy, dtype, "dy")
    weight, bias = _float_array(weight, dtype, "weight"), _float_array(bias, dtype, "bias")
    mean, rstd = _float_array(mean, dtype, "mean"), _float_array(rstd, dtype, "rstd")
    n, c, hw = _nchw_sizes(x)
    dx, dweight, dbias = cupy.empty_like(x), cupy.empty(c, dtype), cupy.empty(c, dtype)
    _launch("batch_norm_act_backward", dtype, c, _block_size(n * hw), dy, x, weight, bias, mean, rstd, dx,
            dweight, dbias, n, c, hw, training, _activation_code(activation), float(negative_slope))
    return dx, dweight, dbias


# --- the loss ---------------------------------------------------------------------------------------------------

def sigmoid_bce_forward(logits, target, reduction):
    """-> (loss, dloss/dlogits) for reduction "mean", "sum" or "none"; one pass, plus a one-block final sum."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")
    dtype = _dtype_of(logits)
    logits, target = _float_array(logits, dtype, "logits"), _float_array(target, dtype, "target")
    n = logits.size
    dlogits = cupy.empty_like(logits)
    if reduction == "none":
        loss = cupy.empty_like(logits)
        _launch("sigmoid_bce_forward", dtype, _blocks(n), THREADS, logits, target, loss, dlogits, None, n, 1.0)
        return loss, dlogits
    blocks = min(_blocks(n), 1024)
    partial_sums, loss = cupy.empty(blocks, np.float64), cupy.empty((), dtype)
    divisor = float(n) if reduction == "mean" else 1.0
    _launch("sigmoid_bce_forward", dtype, blocks, THREADS, logits, target, None, dlogits, partial_sums, n,
            max(divisor, 1.0))
    _launch("sum_partials", dtype, 1, THREADS, partial_sums, blocks, divisor, loss)
    return loss, dlogits


# --- stand-alone activation -----------------------------------------------------------------------------------------

def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope·x."""
    x = _float_array(x, _dtype_of(x), "x")
    y = cupy.empty_like(x)
    _launch("leaky_relu_forward", x.dtype, _blocks(x.size), THREADS, x, y, x.size, float(negative_slope))
    return y


def leaky_relu_backward(dy, x, negative_slope):
    """dx = dy if x > 0 else negative_slope·dy."""
    x = _float_array(x, _dtype_of(x), "x")
    dy = _float_array(dy, x.dtype, "dy")
    dx = cupy.empty_like(x)
    _launch("leaky_relu_backward", x.dtype, _blocks(x.size), THREADS, dy, x, dx, x.size, float(negative_slope))
    return dx


# --- optimisers ---------------------------------------------------------------------------------------------------

def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One torch.optim.Adam step, in place on param, exp_avg, exp_avg_sq (step counts from 1)."""
    dtype = _dtype_of(param)
    for name, a in (("param", param), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        _inplace(a, dtype, name)
    grad = _float_array(grad, dtype, "grad")
    _launch("adam_step", dtype, _blocks(param.size), THREADS, param, grad, exp_avg, exp_avg_sq, param.size,
            float(lr / (1 - beta1 ** step)), float(beta1), float(beta2), float(eps),
            float((1 - beta2 ** step) ** 0.5), float(weight_decay))


def sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening=0.0, nesterov=False,
             first_step=False):
    """One torch.optim.SGD step, in place on param and momentum_buf (None when momentum == 0)."""
    dtype = _dtype_of(param)
    _inplace(param, dtype, "param")
    buf = _inplace(momentum_buf, dtype, "momentum_buf") if momentum != 0 else None
    grad = _float_array(grad, dtype, "grad")
    _launch("sgd_step", dtype, _blocks(param.size), THREADS, param, grad, buf, param.size, float(lr),
            float(momentum), float(weight_decay), float(dampening), bool(nesterov), bool(first_step))


# --- bfloat16: the float32 kernels on operands rounded to bfloat16 (reference.py's specification) -----------------
# No tensor cores yet: the products are float32 ones on bfloat16 values, and batch norm and LeakyReLU round their
# result in a second pass.

def round_to_bfloat16(x):
    """x (float32) rounded to the nearest bfloat16, ties to even, as float32."""
    x = _float_array(x, np.dtype(np.float32), "x")
    y = cupy.empty_like(x)
    _launch("round_to_bfloat16", x.dtype, _blocks(x.size), THREADS, x, y, x.size)
    return y


conv2d_forward_bf16 = reference._bf16(conv2d_forward, 2, round_to_bfloat16)
conv2d_backward_bf16 = reference._bf16(conv2d_backward, 3, round_to_bfloat16)
conv_transpose2d_forward_bf16 = reference._bf16(conv_transpose2d_forward, 2, round_to_bfloat16)
conv_transpose2d_backward_bf16 = reference._bf16(conv_transpose2d_backward, 3, round_to_bfloat16)
batch_norm_act_forward_bf16 = reference._bf16_result(batch_norm_act_forward, round_to_bfloat16)
batch_norm_act_backward_bf16 = reference._bf16_result(batch_norm_act_backward, round_to_bfloat16)
leaky_relu_forward_bf16 = reference._bf16_result(leaky_relu_forward, round_to_bfloat16)
leaky_relu_backward_bf16 = reference._bf16_result(leaky_relu_backward, round_to_bfloat16)


def matmul_bf16(a, b):
    """a @ b (matmul's rules) on operands rounded to bfloat16, summed in float32 (cuBLAS)."""
    return cupy.matmul(round_to_bfloat16(a), round_to_bfloat16(b))


# --- minibatch discrimination: the reference's array code, which CuPy runs as it is -------------------------------

minibatch_closeness_forward = reference.minibatch_closeness_forward
minibatch_closeness_backward = reference.minibatch_closeness_backward
