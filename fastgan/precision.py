"""Mixed precision (fastgan.autocast): which op runs in which precision under `with fastgan.autocast("bfloat16"):`.

    with fastgan.autocast("bfloat16"):
        loss = F.binary_cross_entropy_with_logits(D(G(z)), 1.0)
    loss.backward()                      # each backward runs in the precision its forward ran in

Within the block, the ops that are matrix products -- conv2d, conv_transpose2d, linear, matmul -- take their
float32 operands rounded to bfloat16 and sum the (exact) products in float32: the kernels' `*_bf16` versions
(kernels/reference.py states the arithmetic). Everything else stays float32: the batch-norm statistics, the loss,
the parameters (the "master weights": a layer rounds a copy of its weight for each product, never the weight) and
the optimiser's state. Batch norm + activation and a stand-alone LeakyReLU, which sit between two convolutions,
round their output (the next convolution's operand) and their input gradient (the previous convolution's dy) to
bfloat16 as they write them, as under torch's autocast, where both are bfloat16 tensors; the rounding of the output
passes the gradient through unchanged. Only float32 tensors are cast: float64
ones keep float64 (as torch's autocast leaves them alone).

The storage stays float32 throughout: a "bfloat16 operand" is a float32 array whose values are bfloat16s. On a CPU
with bfloat16 arithmetic a kernel would narrow it to 16 bits on the way in; on one without (AVX2 only), the float32
kernels run on it (`python -m fastgan.kernels` says which path each op takes).

POLICY below is the table docs/precision.md shows.
"""
import contextlib

import numpy as np

PRECISIONS = ("float32", "bfloat16")
_ALIASES = {"bf16": "bfloat16", "fp32": "float32", "float": "float32"}
_stack = []  # the precisions of the enclosing autocast blocks, innermost last

# op -> (forward, backward): what each op multiplies and sums in under autocast("bfloat16")
POLICY = {
    "conv2d, conv_transpose2d": ("x, W rounded to bf16, fp32 sums, fp32 output (+ fp32 bias)",
                                 "dy, x, W rounded to bf16, fp32 sums: dx, dW and db in fp32"),
    "linear, matmul": ("both operands rounded to bf16, fp32 sums, fp32 output (+ fp32 bias)",
                       "dy and the other operand rounded to bf16, fp32 sums: fp32 gradients"),
    "batch norm (+ ReLU / LeakyReLU)": ("fp32 statistics and arithmetic; output rounded to bf16",
                                        "fp32 arithmetic; dx rounded to bf16 (the rounding of y passes it through)"),
    "LeakyReLU (stand-alone)": ("fp32; output rounded to bf16",
                                "fp32; dx rounded to bf16 (the rounding of y passes it through)"),
    "tanh, sigmoid, other elementwise ops": ("fp32", "fp32"),
    "loss (sigmoid + BCE, cross-entropy)": ("fp32", "fp32"),
    "parameters, gradients, optimiser state": ("fp32 master weights; Adam/SGD moments fp32", "fp32"),
}


def canonical(precision):
    """'bfloat16' or 'float32' from any accepted spelling (bf16, fp32, ...); ValueError otherwise."""
    name = _ALIASES.get(precision, precision)
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS} (or bf16, fp32)")
    return name


@contextlib.contextmanager
def autocast(dtype="bfloat16", enabled=True):
    """Within this block, the matrix products of float32 tensors run in `dtype` (see the module docstring);
    enabled=False (or dtype "float32") turns an enclosing block off."""
    _stack.append(canonical(dtype) if enabled else "float32")
    try:
        yield
    finally:
        _stack.pop()


def is_enabled():
    """True inside an autocast("bfloat16") block."""
    return bool(_stack) and _stack[-1] == "bfloat16"


def applies(*tensors):
    """Do the ops on these tensors (None for a missing bias) run in bfloat16 here? Inside an autocast block and
    when every one of them is float32."""
    return is_enabled() and all(t is None or t.dtype == np.float32 for t in tensors)


def kernel_name(op, *tensors):
    """The kernel that runs `op` on these tensors: op's `_bf16` version where autocast applies, else op."""
    return op + "_bf16" if applies(*tensors) else op
