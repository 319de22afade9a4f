"""One step of the GAN game (Goodfellow et al., 2014, Algorithm 1 with k = 1), losses on D's logits.

D minimises  J_D = BCE(D(x), real_label) + BCE(D(G(z)), 0)      (real and fake batches normalised separately)
G minimises  non-saturating: BCE(D(G(z)), 1) = −E log σ(s)      (the practical default)
             minimax:        −BCE(D(G(z)), 0) = E log(1 − σ(s))   (the zero-sum game; saturates early)
             ml:             −E exp(s)                           (the maximum-likelihood game; high variance)
The sigmoid and the cross-entropy are one fused, stable op on the logits s.
"""
import contextlib

import numpy as np

from . import functional as F

G_LOSSES = ("non-saturating", "minimax", "ml")


def generator_loss(fake_logits, kind="non-saturating"):
    if kind == "non-saturating":
        return F.binary_cross_entropy_with_logits(fake_logits, 1.0)
    if kind == "minimax":
        return -F.binary_cross_entropy_with_logits(fake_logits, 0.0)
    if kind == "ml":
        return -F.mean(F.exp(fake_logits))
    raise ValueError(f"unknown generator loss {kind!r}: expected one of {G_LOSSES}")


@contextlib.contextmanager
def frozen(module):
    """Within this block `module`'s parameters are constants to autograd."""
    params = module.parameters()
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p in params:
            p.requires_grad = True


def _mean_sigmoid(logits):
    s = logits.numpy().astype(np.float64)
    return float(np.mean(0.5 * (1 + np.tanh(0.5 * s))))  # σ(s), written so it cannot overflow


def train_step(G, D, opt_g, opt_d, real, z, g_loss="non-saturating", real_label=1.0):
    """One D update then one G update on the same noise. Returns the losses and D's mean outputs as floats.

    real_label < 1 is one-sided label smoothing (never smooth the fakes: it would reward G's mistakes).
    """
    # D: push D(x) up and D(G(z)) down. G's output is detached: this step must not change G.
    opt_d.zero_grad()
    real_logits = D(real)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, real_label)
    loss_real.backward()
    fake = G(z)
    fake_logits = D(fake.detach())
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits, 0.0)
    loss_fake.backward()
    opt_d.step()

    # G: push the updated D's verdict on the same fakes towards "real". D's weights are frozen meanwhile, so the
    # backward pass skips their gradients (it only needs D's input gradient to reach G).
    opt_g.zero_grad()
    with frozen(D):
        fake_logits_after = D(fake)
        loss_g = generator_loss(fake_logits_after, g_loss)
        loss_g.backward()
    opt_g.step()

    return {"loss_d": loss_real.item() + loss_fake.item(), "loss_g": loss_g.item(),
            "d_x": _mean_sigmoid(real_logits), "d_g_z1": _mean_sigmoid(fake_logits),
            "d_g_z2": _mean_sigmoid(fake_logits_after)}
