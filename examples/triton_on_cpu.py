"""Run one of fastgan's Triton kernels without a GPU, and check it against the NumPy specification.

    python examples/triton_on_cpu.py

Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported) runs a @triton.jit kernel on the CPU:
every program of the launch grid in turn, each tl.load / tl.store on NumPy views of the arguments. It is slow, but
it executes exactly the code a GPU would compile, so the kernel's indexing, masking and arithmetic can be tested
on any machine. Under the interpreter the kernels take torch CPU tensors as their arrays (the interpreter reads
arguments through torch's storage API); on a GPU they take CuPy arrays. torch here is only that carrier.
"""
import os

os.environ["TRITON_INTERPRET"] = "1"                          # before triton is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fastgan.kernels import reference  # noqa: E402
from fastgan.kernels import triton as triton_kernels  # noqa: E402

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
weight, bias = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)

# the stand-alone LeakyReLU: one program per 1024 elements, the last one masked
y_triton = triton_kernels.leaky_relu_forward(torch.from_numpy(x), 0.2).numpy()
y_reference = reference.leaky_relu_forward(x, 0.2)
print("LeakyReLU, Triton (interpreted) vs NumPy: max |difference| =", np.abs(y_triton - y_reference).max())
assert np.array_equal(y_triton, y_reference)

# fused batch norm + ReLU in training mode: one program per channel computes the statistics and normalises
args = dict(running_mean=np.zeros(3, np.float32), running_var=np.ones(3, np.float32), training=True, momentum=0.1,
            eps=1e-5, activation="relu", negative_slope=0.0)
out_triton = triton_kernels.batch_norm_act_forward(
    torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
    **{k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in args.items()})
out_reference = reference.batch_norm_act_forward(x, weight, bias, **args)
diff = np.abs(out_triton[0].numpy() - out_reference[0]).max()
print("batch norm + ReLU, Triton (interpreted) vs NumPy: max |difference| =", diff)
assert diff < 1e-5
