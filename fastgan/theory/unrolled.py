"""Unrolled GAN (Metz et al., 2017): G's loss is taken against D as it will be K optimiser steps from now.

    f_K(θ_G, θ_D) = f(θ_G, θ_D^K(θ_G, θ_D)),   θ_D^0 = θ_D,   θ_D^{k+1} = θ_D^k + step of D's optimiser on f
    d f_K / dθ_G  =  ∂f/∂θ_G (at θ_D^K)  +  ∂f/∂θ_D^K · dθ_D^K/dθ_G
                     ──────────────────     ───────────────────────
                     first-order            the second-order term: gradients of gradients ("exact")

The look-ahead is taken on a copy of D, with D's own optimiser (its class, hyper-parameters and current moment
estimates) and on the minibatch of the current step, as in the paper's public code; D itself never moves here.
D then takes its own, un-unrolled step on f. With K = 0 the critic is D itself: the vanilla GAN.

    first-order   the copy steps with plain (graph-free) updates; G's gradient treats θ_D^K as a constant.
    exact         the copy's weights are tensors on the tape: each of the K steps takes D's gradient with
                  create_graph=True and applies D's optimiser as ops on the tape (tensor_optim.py), so G's
                  backward runs through all K updates (through the fakes they were computed on) to θ_G.
A look-ahead is built as LOOK_AHEADS[mode](D, opt_d) and called as look_ahead(real, fake, K) with G's fakes still on
their graph; it returns the critic, a module or any callable x -> logits.
"""
import contextlib
import copy
import functools

from .. import functional as F
from ..gan import _mean_sigmoid, frozen, generator_loss
from ..models.toy import ToyMLP, forward_with
from ..nn import Module
from ..tensor import Tensor, grad
from .tensor_optim import tensor_steps

UNROLL_MODES = ("first-order", "exact")


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


class ExactLookAhead:
    """θ_D^K as tensors on the tape, from a copy of D's weights and D's optimiser as ops on the tape."""

    def __init__(self, D, opt_d):
        if not isinstance(D, ToyMLP) or [id(p) for p in opt_d.params] != [id(p) for p in D.parameters()]:
            raise TypeError(f"the exact look-ahead runs D from a list of weights (models/toy.py's forward_with): "
                            f"it needs a ToyMLP D and D's own optimiser, got {type(D).__name__}")
        tensor_steps(opt_d)                                          # (refuses an optimiser it cannot write)
        self.D, self.opt_d = D, opt_d

    def __call__(self, real, fake, steps):
        """The critic x -> D(x; θ_D^steps), forward_with(θ_D^steps, x), with θ_D^steps on the tape as functions of
        the fakes (and so of θ_G)."""
        start = weights = [Tensor(p.data.copy(), requires_grad=True) for p in self.D.parameters()]
        step = tensor_steps(self.opt_d)                              # D's step count and moments, copied
        for _ in range(steps):
            loss = discriminator_loss(lambda x, w=weights: forward_with(w, x), real, fake)[0]
            weights = step(weights, grad(loss, weights, create_graph=True))
        for w in start:  # θ_D^0 is a constant to G: its gradient (and what leads only to it) is never computed
            w.requires_grad = False
        return functools.partial(forward_with, weights)


LOOK_AHEADS = {"first-order": FirstOrderLookAhead, "exact": ExactLookAhead}


def check_unroll_mode(mode):
    """ValueError for an unknown mode."""
    if mode not in UNROLL_MODES:
        raise ValueError(f"unknown unroll mode {mode!r}: expected one of {UNROLL_MODES}")


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
