"""The small networks of the toy experiments (the 2-D ring and grid, the 1-D optimal discriminator).

The unrolled-GAN paper's public code (poolio/unrolled_gan) uses, for both players,
    in → Linear 128 → tanh → Linear 128 → tanh → Linear out
with every weight orthogonal × 1.4 and every bias 0; G maps z ∈ R^256 ~ N(0, I) to the plane, D's output is a logit.

A minibatch-discrimination D (`ToyMinibatchD`) has the same hidden layers, then MinibatchDiscrimination(128, B, C)
(fastgan/nn/gan_layers.py) before its last layer, which then takes 128 + B inputs.

`forward_with(params, x)` evaluates the same network with any list of weight and bias tensors in place of the
module's own: a look-ahead copy of D can be run from tensors that are not Parameters (for instance the results of
differentiable optimiser steps).
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..data.toy import Mixture1D

HIDDEN, LAYERS, INIT_GAIN = 128, 2, 1.4


class ToyMLP(nn.Module):
    """in → [Linear hidden → tanh] × layers → Linear out."""

    def __init__(self, in_features, out_features, hidden=HIDDEN, layers=LAYERS, gain=INIT_GAIN):
        super().__init__()
        sizes = [in_features] + [hidden] * layers + [out_features]
        self.net = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        for linear in self.net:
            nn.init.orthogonal_(linear.weight, gain)
            nn.init.constant_(linear.bias, 0.0)
        self.in_features, self.out_features, self.hidden, self.layers = in_features, out_features, hidden, layers

    def forward(self, x):
        return forward_with(self.parameters(), x)

    def extra_repr(self):
        return f"{self.in_features} → {self.layers}×{self.hidden} tanh → {self.out_features}"


def forward_with(params, x):
    """The ToyMLP whose parameters are `params` = [W1, b1, W2, b2, ...] (in the module's parameter order)."""
    if len(params) % 2:
        raise ValueError(f"forward_with: expected weight/bias pairs, got {len(params)} tensors")
    last = len(params) // 2 - 1
    for i in range(0, len(params), 2):
        x = F.linear(x, params[i], params[i + 1])
        if i // 2 < last:
            x = F.tanh(x)
    return x


class ToyMinibatchD(nn.Module):
    """in → [Linear hidden → tanh] × layers → MinibatchDiscrimination(hidden, B, C) → Linear 1, initialised as
    ToyMLP (the last layer's weight orthogonal × gain too)."""

    def __init__(self, in_features, minibatch, hidden=HIDDEN, layers=LAYERS, gain=INIT_GAIN):
        super().__init__()
        b, c = minibatch
        self.body = ToyMLP(in_features, hidden, hidden, layers - 1, gain)
        self.minibatch = nn.MinibatchDiscrimination(hidden, b, c)
        self.last = nn.Linear(hidden + b, 1)
        nn.init.orthogonal_(self.last.weight, gain)
        nn.init.constant_(self.last.bias, 0.0)

    def features(self, x):
        return F.tanh(self.body(x))

    def initialise(self, real):
        """Start the minibatch layer from a batch of real data (module doc of fastgan/nn/gan_layers.py): in the
        toy runs D judges G's samples first, so it must not start from its first batch."""
        self.minibatch.initialise(self.features(real))

    def forward(self, x):
        return self.last(self.minibatch(self.features(x)))


def toy_gan(nz=256, data_dim=2, hidden=HIDDEN, layers=LAYERS, minibatch=()):
    """(G, D) of the ring experiments: G: z (nz) → data_dim, D: data_dim → 1 logit; minibatch = (B, C) gives D
    a minibatch-discrimination layer (ToyMinibatchD)."""
    D = ToyMinibatchD(data_dim, minibatch, hidden, layers) if minibatch else ToyMLP(data_dim, 1, hidden, layers)
    return ToyMLP(nz, data_dim, hidden, layers), D


class AffineGenerator1D(nn.Module):
    """G(z) = loc + scale·z for z ~ N(0, 1): the smallest learned G, and one whose density is known exactly,
    p_g = N(loc, scale²), so that D* and the Jensen–Shannon divergence can be computed at every step."""

    def __init__(self, loc=0.0, scale=1.0):
        super().__init__()
        self.loc = nn.Parameter(np.array([loc], dtype=np.float32))
        self.scale = nn.Parameter(np.array([scale], dtype=np.float32))

    def forward(self, z):
        return z * self.scale + self.loc

    def density(self):
        """p_g as a Mixture1D (one term)."""
        return Mixture1D([self.loc.item()], [abs(self.scale.item())])
