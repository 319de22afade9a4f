"""A Recipe: how a model is trained — optimiser and its schedule, pixel range, noise, training subset.

`python -m fastgan.train` reads the recipe of the chosen model instead of hard-coding one: the architecture lives
in the model's builder, everything the training loop must know about it lives here.

The learning rate and the momentum are pure functions of the global step (`schedule`), so a resumed run sets
exactly the values an uninterrupted one would have had:

    lr(t)       = max(lr₀ / decay^t, lr_min)                      t = updates done so far
    momentum(t) = m₀ + (m₁ − m₀) · clip((e − e₀) / (e₁ − e₀), 0, 1)   e = t / steps_per_epoch (epochs done)

The momentum ramp [e₀, e₁] was written for `reference_epochs` epochs; a shorter run compresses it by
run_epochs / reference_epochs, so that it still ends at the final momentum.
"""
import math
from dataclasses import dataclass

from .. import optim
from ..random import randn, uniform


@dataclass(frozen=True)
class Recipe:
    optimizer: str = "adam"                 # "adam" (with beta1, β2 = 0.999) or "sgd" (with momentum)
    lr: float = 2e-4                        # initial learning rate of both players
    beta1: float = 0.5                      # Adam's β1
    batch_size: int = 128
    value_range: tuple = (-1.0, 1.0)        # the pixel range G produces and D sees
    noise: str = "normal"                   # "normal": N(0, 1); "uniform": U(−√3, √3) (also unit variance)
    noise_shape: str = "map"                # "map": z is (N, nz, 1, 1) for a convolutional G; "vector": (N, nz)
    train_images: int | None = None         # train on train[:train_images] (None: all 60,000)
    lr_decay: float = 1.0                   # lr is divided by this after every update ...
    lr_min: float = 0.0                     # ... but never falls below this
    momentum: tuple = (0.0, 0.0)            # SGD momentum (start, end), ramped linearly ...
    momentum_epochs: tuple = (1, 250)       # ... between these epochs
    reference_epochs: int = 250             # the ramp above assumes a run this long; shorter runs compress it
    pixel_mean_init: bool = False           # the builder takes pixel_mean= (initialises G's output bias)
    update: str = "alternating"             # "alternating": D steps, then G against the new D; "simultaneous":
                                            # both from one forward pass, stepped together (fastgan/gan.py)
    d_loss_scale: float = 1.0               # D minimises d_loss_scale · (BCE on reals + BCE on fakes)

    def sample_noise(self, n, nz, device="cpu"):
        """n noise vectors from fastgan's global generator (so checkpoints and resume stay exact)."""
        shape = (n, nz, 1, 1) if self.noise_shape == "map" else (n, nz)
        if self.noise == "normal":
            return randn(*shape, device=device)
        if self.noise == "uniform":
            return uniform(*shape, low=-math.sqrt(3), high=math.sqrt(3), device=device)
        raise ValueError(f"unknown noise {self.noise!r}: expected 'normal' or 'uniform'")

    def make_optimizer(self, params, lr, beta1=None):
        if self.optimizer == "adam":
            return optim.Adam(params, lr=lr, betas=(self.beta1 if beta1 is None else beta1, 0.999))
        if self.optimizer == "sgd":
            return optim.SGD(params, lr=lr, momentum=self.momentum[0])
        raise ValueError(f"unknown optimizer {self.optimizer!r}: expected 'adam' or 'sgd'")

    def schedule(self, step, steps_per_epoch, run_epochs, lr=None):
        """(lr, momentum) for the update number `step` (0-based) of a run planned for `run_epochs` epochs."""
        lr = (self.lr if lr is None else lr) / self.lr_decay ** step
        lr = max(lr, self.lr_min)
        scale = min(1.0, run_epochs / self.reference_epochs)
        start, end = (e * scale for e in self.momentum_epochs)
        progress = min(max((step / steps_per_epoch - start) / (end - start), 0.0), 1.0) if end > start else 1.0
        m0, m1 = self.momentum
        return lr, m0 + (m1 - m0) * progress

    def apply_schedule(self, optimizers, step, steps_per_epoch, run_epochs, lr=None):
        """Set every optimiser's lr (and SGD momentum) for update `step`."""
        lr, momentum = self.schedule(step, steps_per_epoch, run_epochs, lr)
        for opt in optimizers:
            opt.lr = lr
            if self.optimizer == "sgd":
                opt.momentum = momentum
        return lr, momentum

    def to_unit(self, images):
        """Map images from value_range onto [0, 1] (what the evaluations expect)."""
        lo, hi = self.value_range
        return (images - lo) / (hi - lo)


# DCGAN (Radford et al., 2015): Adam 2e-4, β1 = 0.5, batch 128, pixels in [−1, 1] (tanh), z ~ N(0, 1), all of MNIST.
DCGAN_RECIPE = Recipe()
