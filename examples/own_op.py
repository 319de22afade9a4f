"""Write your own op: softplus, from a reference kernel to a tested layer.

    python examples/own_op.py

1. The reference kernel, in NumPy. softplus(x) = log(1 + eˣ) overflows for x ≳ 89 in float32, so compute it as

       log(1 + eˣ) = max(x, 0) + log(1 + e^{−|x|})      (e to a non-positive power only: never overflows)
2. The derivative, for the backward pass:

       d/dx log(1 + eˣ) = eˣ / (1 + eˣ) = σ(x)          (the logistic sigmoid, computed stably the same way)
3. A differentiable op: fastgan.autograd.op(output, inputs, backward, name) records it on the tape.
4. A layer: an nn.Module whose forward calls the op.
5. Tests: fastgan.testing.check against torch (outputs and gradients, float64 and float32) and
   fastgan.testing.gradcheck against central differences (no torch needed).
"""
import fastgan  # (before NumPy: see fastgan/__init__.py)
from fastgan import autograd, nn, testing

import numpy as np


# 1-2. reference kernels: the forward and the derivative, on arrays
def softplus_reference(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def sigmoid_reference(x):
    e = np.exp(-np.abs(x))  # in (0, 1]
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


# 3. the op: the output array, the inputs it read, and backward(grad of output) -> one gradient per input
def softplus(x):
    out = softplus_reference(x.data)

    # y = softplus(x): dL/dx = dL/dy · σ(x)
    def backward(grad):
        return (grad * sigmoid_reference(x.data),)
    return autograd.op(out, [x], backward, "softplus")


# 4. the layer
class Softplus(nn.Module):
    def forward(self, x):
        return softplus(x)


if __name__ == "__main__":
    x = fastgan.tensor([-100.0, -1.0, 0.0, 1.0, 100.0], requires_grad=True)
    y = Softplus()(x)
    loss = y.sum()
    print("the tape:")
    autograd.print_graph(loss, {"x": x})
    loss.backward()
    print("softplus(x)  =", y.numpy())
    print("d/dx = σ(x)  =", x.grad.numpy())
    assert np.all(np.isfinite(y.numpy())) and y.numpy()[-1] == 100.0  # the naive log(1 + eˣ) is inf here in float32

    # 5. tests: every output and gradient against torch (float64 tight, float32 looser) ...
    inputs = testing.random_inputs((3, 7), seed=1)
    inputs[0][0, :3] = [-120.0, 0.0, 120.0]  # far tails, where a naive formula overflows
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the check against torch")
    else:
        testing.check(Softplus(), torch.nn.functional.softplus, inputs)
        testing.check(Softplus(), torch.nn.functional.softplus, inputs, dtype=np.float32)
        print("matches torch.nn.functional.softplus (forward and gradient, float64 and float32)")
    # ... and the gradient against central differences, which needs no torch
    testing.gradcheck(softplus, testing.random_inputs((2, 3), seed=2))
    print("gradient matches central differences")
