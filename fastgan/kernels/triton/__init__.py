"""Triton kernels on CuPy memory: the "triton" implementation of fastgan.dispatch (same names as reference.py).

    conv.py            conv2d / conv_transpose2d forward and backward as implicit GEMMs (three kernels)
    batchnorm_act.py   batch norm + activation, forward and backward, one program per channel
    activation.py      ReLU / LeakyReLU helpers, and the stand-alone LeakyReLU forward and backward
    sigmoid_bce.py     the loss and its gradient in one pass
    bfloat16.py        the mixed-precision kernels beside conv.py's bfloat16 convolutions
    adam.py            fused Adam and SGD steps
    reduce.py          per-channel sums and partial-sum reductions the others share
    _carrier.py        array ("carrier") handling and launches: CuPy on a GPU, torch tensors under the interpreter

Importing raises ImportError (so dispatch treats the implementation as unavailable, and says why) when triton is
missing; when there is neither a GPU that fastgan can use (backend.cuda_available) nor TRITON_INTERPRET=1 (Triton's
CPU interpreter, used by the tests); or when Triton itself cannot launch on the GPU: Triton 3.6's CUDA driver is
active only beside a CUDA build of torch, and without one every launch would fail with "0 active drivers".
"""
import os

try:
    import triton  # noqa: F401
except ImportError as err:
    raise ImportError("fastgan.kernels.triton needs triton (pip install triton)") from err

from fastgan import backend

if os.environ.get("TRITON_INTERPRET", "") != "1":
    if not backend.cuda_available():
        raise ImportError(f"fastgan.kernels.triton needs a GPU that fastgan can use (or TRITON_INTERPRET=1): "
                          f"{backend.cuda_status().detail}")
    from ._carrier import gpu_driver_problem
    _problem = gpu_driver_problem()
    if _problem is not None:
        raise ImportError(f"fastgan.kernels.triton: {_problem}")

from .activation import leaky_relu_backward, leaky_relu_forward  # noqa: E402
from .adam import adam_step, sgd_step  # noqa: E402
from .batchnorm_act import batch_norm_act_backward, batch_norm_act_forward  # noqa: E402
from .bfloat16 import (batch_norm_act_backward_bf16, batch_norm_act_forward_bf16, leaky_relu_backward_bf16,  # noqa: E402
                       leaky_relu_forward_bf16, matmul_bf16, minibatch_closeness_backward,
                       minibatch_closeness_forward)
from .conv import (conv2d_backward, conv2d_backward_bf16, conv2d_forward, conv2d_forward_bf16,  # noqa: E402
                   conv_transpose2d_backward, conv_transpose2d_backward_bf16, conv_transpose2d_forward,
                   conv_transpose2d_forward_bf16, round_to_bfloat16)
from . import bfloat16 as _bfloat16, conv as _conv  # noqa: E402
from .sigmoid_bce import sigmoid_bce_forward  # noqa: E402

__all__ = _conv.__all__ + _bfloat16.__all__ + [
           "batch_norm_act_forward", "batch_norm_act_backward", "leaky_relu_forward", "leaky_relu_backward",
           "sigmoid_bce_forward", "adam_step", "sgd_step"]
