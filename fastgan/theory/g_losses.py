"""Why the minimax generator cost saturates: the three G costs and their gradients as functions of D(G(z)).

Each point is one fake sample whose logit s = σ⁻¹(D(G(z))) is a leaf Tensor; its cost is fastgan's own
`generator_loss` (the one training uses) and the gradient dJ/ds comes from the engine's backward(), not from a
formula. dJ/ds is what backpropagation hands on to G. In closed form (what the tests compare with), with d = σ(s):
    minimax          J = log(1 − d)      dJ/ds = −d           → 0 as d → 0: no signal when D rejects the fakes
    non-saturating   J = −log d          dJ/ds = −(1 − d)     → −1 as d → 0: strongest where G is worst
    maximum lik.     J = −exp(s)         dJ/ds = −d/(1 − d)   → 0 as d → 0, and huge as d → 1 (high variance)
(fastgan's costs are means over the batch, without the tutorial's factor ½.)
"""
import numpy as np

import fastgan
from fastgan.gan import G_LOSSES, generator_loss


def cost_curves(d_values=None):
    """{"d": D(G(z)) values, kind: {"cost": J, "grad": dJ/ds}} for each G cost, by the engine's autograd."""
    d = np.linspace(0.001, 0.999, 333) if d_values is None else np.asarray(d_values, dtype=np.float64)
    if d.ndim != 1 or ((d <= 0) | (d >= 1)).any():
        raise ValueError("cost_curves: D(G(z)) values must be a 1-D array inside (0, 1)")
    logits = np.log(d) - np.log1p(-d)
    curves = {"d": d}
    for kind in G_LOSSES:
        cost, grad = np.empty_like(d), np.empty_like(d)
        for i, s in enumerate(logits):
            s = fastgan.tensor([s], requires_grad=True, dtype=np.float64)
            J = generator_loss(s, kind)
            J.backward()
            cost[i], grad[i] = J.item(), s.grad.item()
        curves[kind] = {"cost": cost, "grad": grad}
    return curves
