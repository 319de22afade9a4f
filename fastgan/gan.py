"""One step of the GAN game (Goodfellow et al., 2014, Algorithm 1 with k = 1), losses on D's logits.

D minimises  J_D = c·[BCE(D(x), real_label) + BCE(D(G(z)), 0)]  (real and fake batches normalised separately;
                                                                c = d_loss_scale: 1 in the DCGAN examples, ½ in
                                                                the 2014 paper's code — with SGD it scales D's lr)
G minimises  non-saturating: BCE(D(G(z)), 1) = −E log σ(s)      (the practical default)
             minimax:        −BCE(D(G(z)), 0) = E log(1 − σ(s))   (the zero-sum game; saturates early)
             ml:             −E exp(s)                           (the maximum-likelihood game; high variance)
The sigmoid and the cross-entropy are one fused, stable op on the logits s.

Two ways to play one round:
  train_step         alternating: D steps first, then G steps against the updated D (the DCGAN examples).
  simultaneous_step  both players' gradients from one forward pass (same samples, same dropout masks in D),
                     then both step at once (the 2014 paper's public code: one SGD update of all parameters).
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


def train_step(G, D, opt_g, opt_d, real, z, g_loss="non-saturating", real_label=1.0, d_loss_scale=1.0):
    """One D update then one G update on the same noise. Returns the losses and D's mean outputs as floats.

    real_label < 1 is one-sided label smoothing (never smooth the fakes: it would reward G's mistakes).
    """
    # D: push D(x) up and D(G(z)) down. G's output is detached: this step must not change G.
    opt_d.zero_grad()
    real_logits = D(real)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, real_label)
    (loss_real * d_loss_scale).backward()
    fake = G(z)
    fake_logits = D(fake.detach())
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits, 0.0)
    (loss_fake * d_loss_scale).backward()
    opt_d.step()

    # G: push the updated D's verdict on the same fakes towards "real". D's weights are frozen meanwhile, so the
    # backward pass skips their gradients (it only needs D's input gradient to reach G).
    opt_g.zero_grad()
    with frozen(D):
        fake_logits_after = D(fake)
        loss_g = generator_loss(fake_logits_after, g_loss)
        loss_g.backward()
    opt_g.step()

    return {"loss_d": d_loss_scale * (loss_real.item() + loss_fake.item()), "loss_g": loss_g.item(),
            "d_x": _mean_sigmoid(real_logits), "d_g_z1": _mean_sigmoid(fake_logits),
            "d_g_z2": _mean_sigmoid(fake_logits_after)}


def simultaneous_step(G, D, opt_g, opt_d, real, z, g_loss="non-saturating", real_label=1.0, d_loss_scale=1.0):
    """Both players' gradients from one forward pass, then one update of both (same returns as train_step;
    D(G(z)) is seen once, so d_g_z2 = d_g_z1).

    The fakes enter D as a leaf, which splits the backward in two:
        ∂J_G/∂θ_G = ∂J_G/∂fake · ∂fake/∂θ_G     (J_G through D's current weights: D is frozen for this pass)
        ∂J_D/∂θ_D                               (backward stops at the leaf: G's graph is not walked again)
    """
    opt_d.zero_grad()
    opt_g.zero_grad()
    fake = G(z)
    fake_in = fake.detach().requires_grad_()
    real_logits, fake_logits = D(real), D(fake_in)  # one forward each; the dropout masks serve both players
    loss_real = F.binary_cross_entropy_with_logits(real_logits, real_label)
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits, 0.0)
    loss_g = generator_loss(fake_logits, g_loss)

    with frozen(D):  # G's objective: only the gradient at D's input is wanted, then on through G
        loss_g.backward(retain_graph=True)
    fake.backward(fake_in.grad)
    fake_in.requires_grad_(False)  # D's objective: its parameters only
    ((loss_real + loss_fake) * d_loss_scale).backward()

    opt_d.step()
    opt_g.step()
    d_g_z = _mean_sigmoid(fake_logits)
    return {"loss_d": d_loss_scale * (loss_real.item() + loss_fake.item()), "loss_g": loss_g.item(),
            "d_x": _mean_sigmoid(real_logits), "d_g_z1": d_g_z, "d_g_z2": d_g_z}


STEPS = {"alternating": train_step, "simultaneous": simultaneous_step}
