"""The rest of the mixed-precision kernels on Triton, around conv.py's bfloat16 convolutions: batch norm and
LeakyReLU compute in float32 and round their output (and input gradient) to bfloat16 in conv.py's rounding kernel
(reference.py: _bf16_result is the specification), and matmul_bf16 multiplies rounded operands with the array
library's float32 matmul (cuBLAS under CuPy). Minibatch discrimination's closeness is the reference's array code,
which CuPy runs as it is (as in kernels/cuda.py).
"""
from fastgan.kernels import reference

from . import _carrier as carrier
from .activation import leaky_relu_backward, leaky_relu_forward
from .batchnorm_act import batch_norm_act_backward, batch_norm_act_forward
from .conv import round_to_bfloat16

__all__ = ["batch_norm_act_forward_bf16", "batch_norm_act_backward_bf16", "leaky_relu_forward_bf16",
           "leaky_relu_backward_bf16", "matmul_bf16", "minibatch_closeness_forward", "minibatch_closeness_backward"]

batch_norm_act_forward_bf16 = reference._bf16_result(batch_norm_act_forward, round_to_bfloat16)
batch_norm_act_backward_bf16 = reference._bf16_result(batch_norm_act_backward, round_to_bfloat16)
leaky_relu_forward_bf16 = reference._bf16_result(leaky_relu_forward, round_to_bfloat16)
leaky_relu_backward_bf16 = reference._bf16_result(leaky_relu_backward, round_to_bfloat16)


def matmul_bf16(a, b):
    """a @ b (matmul's rules) on operands rounded to bfloat16, summed in float32."""
    return carrier._module(a).matmul(round_to_bfloat16(a), round_to_bfloat16(b))


minibatch_closeness_forward = reference.minibatch_closeness_forward
minibatch_closeness_backward = reference.minibatch_closeness_backward
