"""Why sigmoid and binary cross-entropy are one fused op.

    python examples/fused_sigmoid_bce.py

Unfused, in float32: p = σ(s) = 1/(1 + e^{−s}), and e^{−s} overflows to inf for s ≤ −89 (e^89 > 3.4·10^38, the
largest float32), so p = 0, BCE(p, 1) = −log p = inf, and its gradient is NaN. Fused, on the logit s:

    ℓ(s, y) = max(s, 0) − s·y + log(1 + e^{−|s|})      (no exponential of a positive number)
    dℓ/ds  = σ(s) − y                                   (the sigmoid's derivative cancels the log's)

which is finite for every float32 s. fastgan's kernel (kernels/reference.py: sigmoid_bce_forward) returns the loss
and dℓ/ds in one pass, so the backward pass costs nothing more.
"""
import numpy as np

import fastgan
from fastgan import functional as F

s = np.array([-200.0, -104.0, -89.0, -88.0, -20.0, 0.0, 20.0, 200.0], dtype=np.float32)
with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
    p = (1 / (1 + np.exp(-s))).astype(np.float32)                  # σ(s) in float32
    unfused = -np.log(p)                                          # BCE with target 1
    unfused_grad = -(1 / p) * p * (1 - p)                         # chain rule through σ: (−1/p)·σ'(s)

logits = fastgan.tensor(s, requires_grad=True)
fused = F.binary_cross_entropy_with_logits(logits, 1.0, reduction="none")
fused.sum().backward()

print(f"{'s':>8} {'unfused loss':>14} {'fused loss':>12} {'unfused grad':>14} {'fused grad':>11}")
for row in zip(s, unfused, fused.numpy(), unfused_grad, logits.grad.numpy()):
    print(f"{row[0]:8.1f} {row[1]:14.6g} {row[2]:12.6g} {row[3]:14.6g} {row[4]:11.6g}")

assert np.isinf(unfused[s <= -89]).all()                          # e^{−s} overflowed, σ = 0: −log 0 = inf
assert np.isfinite(fused.numpy()).all() and np.isfinite(logits.grad.numpy()).all()
assert np.allclose(fused.numpy()[s == -200.0], 200.0)             # ℓ(s, 1) = −s for very negative s
assert np.allclose(logits.grad.numpy(), 1 / (1 + np.exp(-s.astype(np.float64))) - 1, atol=1e-7)
print("fused: finite loss and gradient everywhere; unfused: inf where e^(-s) overflows")
