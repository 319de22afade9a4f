"""Unrolled GAN (Metz et al., 2017): G's loss is taken against D as it will be K optimiser steps from now.

    f_K(θ_G, θ_D) = f(θ_G, θ_D^K(θ_G, θ_D)),   θ_D^0 = θ_D,   θ_D^{k+1} = θ_D^k + step of D's optimiser on f
    d f_K / dθ_G  =  ∂f/∂θ_G (at θ_D^K)  +  ∂f/∂θ_D^K · dθ_D^K/dθ_G
                     ──────────────────     ───────────────────────
                     first-order            the second-order term: gradients of gradients ("exact")

The look-ahead is taken on a copy of D, with D's own optimiser (its class, hyper-parameters and current moment
estimates) and on the minibatch of the current step, as in the paper's public code; D itself never moves here.
D then takes its own, un-unrolled step on f. With K = 0 the critic is D itself: the vanilla GAN.

    first-order   the copy steps with plain (graph-free) updates; G's gradient treats θ_D^K as a constant.
    exact         differentiates through the K updates. It needs higher-order gradients in the autograd core
                  (backward(create_graph=True) and optimiser updates written as tensor ops), which fastgan does
                  not have yet: asking for it raises UnrollModeUnavailable. An implementation plugs in as
                  LOOK_AHEADS["exact"]: built as LOOK_AHEADS[mode](D, opt_d), called as look_ahead(real, fake, K)
                  with G's fakes still on their graph, it returns the critic, any callable x -> logits
                  (models/toy.py's forward_with runs D from any list of weight tensors).
"""
import contextlib
import copy

from .. import functional as F
from ..nn import Module
from ..gan import _mean_sigmoid, frozen, generator_loss

UNROLL_MODES = ("first-order", "exact")


class UnrollModeUnavailable(NotImplementedError):
    """The requested unrolling mode cannot run in this version of fastgan."""


def discriminator_loss(D, real, fake):
    """(f as D minimises it, D's real logits, D's fake logits): f = BCE(D(x), 1) + BCE(D(G(z)), 0), each term a
    mean over its batch (the loss of the paper's public code)."""
    real_logits, fake_logits = D(real), D(fake)
    loss = F.binary_cross_entropy_with_logits(real_logits, 1.0) + F.binary_cross_entropy_with_logits(fake_logits, 0.0)
    return loss, real_logits, fake_logits


class FirstOrderLookAhead:
    """A copy of D and of its optimiser, reset to D's current state before every look-ahead."""

    def __init__(self, D, opt_d):
        self.D, self.opt_d = D, opt_d
        # one deepcopy of the pair, so that the copied optimiser updates the copied parameters
        self.copy, self.copy_opt = copy.deepcopy((D, opt_d))

    def __call__(self, real, fake, steps):
        """θ_D^steps from θ_D on this batch, as a module to evaluate G's fakes with (its weights are constants)."""
        self.copy.load_state_dict(self.D.state_dict())            # copies: D's arrays are never written
        self.copy_opt.load_state_dict(self.opt_d.state_dict())
        fake = fake.detach()
        for _ in range(steps):
            self.copy_opt.zero_grad()
            discriminator_loss(self.copy, real, fake)[0].backward()
            self.copy_opt.step()
        return self.copy


# An "exact" look-ahead plugs in here, built and called as FirstOrderLookAhead is.
LOOK_AHEADS = {"first-order": FirstOrderLookAhead}


def check_unroll_mode(mode):
    """ValueError for an unknown mode, UnrollModeUnavailable for one this fastgan cannot run yet."""
    if mode not in UNROLL_MODES:
        raise ValueError(f"unknown unroll mode {mode!r}: expected one of {UNROLL_MODES}")
    if mode not in LOOK_AHEADS:
        raise UnrollModeUnavailable(
            f"--unroll-mode {mode} differentiates through the look-ahead's optimiser steps, which needs "
            "higher-order gradients (backward(create_graph=True)) that fastgan's autograd core does not have yet; "
            "use --unroll-mode first-order")


def make_look_ahead(D, opt_d, mode):
    """The look-ahead of `mode` for D and its optimiser: look_ahead(real, fake, steps) returns the critic."""
    check_unroll_mode(mode)
    return LOOK_AHEADS[mode](D, opt_d)


def unrolled_step(G, D, opt_g, opt_d, real, z, unroll=0, look_ahead=None, g_loss="minimax"):
    """One simultaneous update of both players (the schedule of the paper's public code).

    G's gradient is taken against the critic (D itself when unroll = 0, else the look-ahead's θ_D^unroll), D's
    gradient against the same batch at D's current weights; then both step. Returns the losses and D's mean
    outputs (D(x), D(G(z)), at D's weights before its step) as floats.
    """
    if unroll < 0 or (unroll > 0 and look_ahead is None):
        raise ValueError(f"unrolled_step: unroll must be ≥ 0 and needs a look_ahead when > 0, got {unroll}")
    fake = G(z)
    critic = D if unroll == 0 else look_ahead(real, fake, unroll)

    opt_g.zero_grad()
    # a module critic's weights are held constant: only the gradient at its input is wanted, then on through G
    with frozen(critic) if isinstance(critic, Module) else contextlib.nullcontext():
        loss_g = generator_loss(critic(fake), g_loss)
        loss_g.backward()

    opt_d.zero_grad()
    loss_d, real_logits, fake_logits = discriminator_loss(D, real, fake.detach())
    loss_d.backward()

    opt_d.step()
    opt_g.step()
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_x": _mean_sigmoid(real_logits),
            "d_g_z": _mean_sigmoid(fake_logits)}
