"""Toy distributions with known densities: the 2-D mode-collapse benchmarks and the 1-D densities of the theory.

2-D mixtures of equal-weight isotropic Gaussians (the benchmarks of the unrolled-GAN, VEEGAN and PacGAN papers):
    ring   8 modes at angles 2πk/8, k = 0..7, on a circle of radius 2, std 0.02 (the unrolled-GAN paper's ring;
           note that np.linspace(0, 2π, 8) would put modes 0 and 7 on the same point)
    grid   25 modes at {−4, −2, 0, 2, 4}², std 0.05 (the PacGAN code's 2-D grid, as in VEEGAN)
1-D densities (Gaussian and mixtures of Gaussians) with a pdf and a sampler, for the optimal-discriminator picture.

Every sampler draws from fastgan's global generator, so `fastgan.manual_seed` makes a run reproducible.
"""
import math

import numpy as np

from ..random import generator


class GaussianMixture2D:
    """Equal-weight mixture of isotropic Gaussians N(mode_k, std² I) in the plane."""

    def __init__(self, name, modes, std):
        modes = np.asarray(modes, dtype=np.float64)
        if modes.ndim != 2 or modes.shape[1] != 2 or len(modes) == 0:
            raise ValueError(f"GaussianMixture2D: modes must have shape (M, 2) with M ≥ 1, got {modes.shape}")
        if not std > 0:
            raise ValueError(f"GaussianMixture2D: std must be positive, got {std}")
        self.name, self.modes, self.std = name, modes, float(std)

    def __len__(self):
        return len(self.modes)

    def sample(self, n, dtype=np.float32):
        """n points (n, 2): a mode drawn uniformly, plus N(0, std²) noise in each coordinate."""
        rng = generator()
        which = rng.integers(0, len(self.modes), n)
        return (self.modes[which] + self.std * rng.standard_normal((n, 2))).astype(dtype)

    def __repr__(self):
        return f"GaussianMixture2D({self.name!r}, {len(self)} modes, std={self.std})"


def ring(modes=8, radius=2.0, std=0.02):
    """`modes` Gaussians evenly spaced on a circle: mode k at angle 2πk/modes (k = 0..modes−1, no repeat)."""
    angles = 2 * np.pi * np.arange(modes) / modes
    return GaussianMixture2D("ring", radius * np.stack([np.cos(angles), np.sin(angles)], axis=1), std)


def grid(side=5, spacing=2.0, std=0.05):
    """side² Gaussians on a square grid centred on the origin: {−4, −2, 0, 2, 4}² for the defaults."""
    ticks = spacing * (np.arange(side) - (side - 1) / 2)
    xs, ys = np.meshgrid(ticks, ticks, indexing="ij")
    return GaussianMixture2D("grid", np.stack([xs.ravel(), ys.ravel()], axis=1), std)


TOY_2D = {"ring": ring, "grid": grid}


# --- 1-D densities ---------------------------------------------------------------------------------------------

class Mixture1D:
    """A mixture of 1-D Gaussians Σ_k w_k N(mean_k, std_k²) with its exact pdf (a single Gaussian is one term)."""

    def __init__(self, means, stds, weights=None):
        self.means = np.atleast_1d(np.asarray(means, dtype=np.float64))
        self.stds = np.atleast_1d(np.asarray(stds, dtype=np.float64))
        weights = np.ones(len(self.means)) if weights is None else np.atleast_1d(np.asarray(weights, np.float64))
        if not (self.means.shape == self.stds.shape == weights.shape) or self.means.ndim != 1:
            raise ValueError(f"Mixture1D: means {self.means.shape}, stds {self.stds.shape} and weights "
                             f"{weights.shape} must be 1-D of one length")
        if (self.stds <= 0).any() or (weights <= 0).any():
            raise ValueError(f"Mixture1D: stds and weights must be positive, got stds {self.stds}, weights {weights}")
        self.weights = weights / weights.sum()

    def pdf(self, x):
        x = np.asarray(x, dtype=np.float64)[..., None]
        z = (x - self.means) / self.stds
        return (self.weights * np.exp(-0.5 * z * z) / (self.stds * math.sqrt(2 * math.pi))).sum(axis=-1)

    def sample(self, n, dtype=np.float32):
        rng = generator()
        which = rng.choice(len(self.means), size=n, p=self.weights)
        return (self.means[which] + self.stds[which] * rng.standard_normal(n)).astype(dtype)

    def __repr__(self):
        terms = " + ".join(f"{w:.3g}·N({m:.3g}, {s:.3g}²)" for w, m, s in zip(self.weights, self.means, self.stds))
        return f"Mixture1D({terms})"


def gaussian_1d(mean, std):
    return Mixture1D([mean], [std])
