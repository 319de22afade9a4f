"""The mode-coverage metric on hand-made samples."""
import math

import numpy as np
import pytest

from fastgan.data.toy import grid, ring
from fastgan.theory.modes import mode_coverage

RING = ring()


def on_modes(which, per_mode=100, spread=0.5, seed=0):
    """per_mode samples around each chosen mode, N(0, (spread·σ)²) per coordinate (all within 3σ in practice)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([RING.modes[k] + spread * RING.std * rng.standard_normal((per_mode, 2)) for k in which])


def test_all_modes_evenly():
    r = mode_coverage(on_modes(range(8)), RING.modes, RING.std)
    assert (r.modes_covered, r.high_quality, r.counts) == (8, 1.0, [100] * 8)
    assert r.kl_to_uniform == pytest.approx(0.0, abs=1e-12)


def test_one_mode_is_full_collapse():
    r = mode_coverage(on_modes([3]), RING.modes, RING.std)
    assert (r.modes_covered, r.high_quality) == (1, 1.0)
    assert r.kl_to_uniform == pytest.approx(math.log(8))


def test_off_mode_noise_is_neither_quality_nor_coverage():
    rng = np.random.default_rng(0)
    between = 2 * np.stack([np.cos(np.pi / 8 + np.pi / 4 * np.arange(8)), np.sin(np.pi / 8 + np.pi / 4 * np.arange(8))], 1)
    samples = np.concatenate([rng.uniform(-0.5, 0.5, (500, 2)), np.repeat(between, 10, axis=0)])
    r = mode_coverage(samples, RING.modes, RING.std)
    assert (r.modes_covered, r.high_quality, sum(r.counts)) == (0, 0.0, 0)
    assert math.isnan(r.kl_to_uniform)


def test_mixed_samples_count_only_the_good_ones():
    samples = np.concatenate([on_modes([0, 1], per_mode=30), np.zeros((40, 2))])  # 60 good, 40 at the centre
    r = mode_coverage(samples, RING.modes, RING.std)
    assert (r.modes_covered, r.high_quality, r.counts[:2]) == (2, 0.6, [30, 30])
    assert r.kl_to_uniform == pytest.approx(math.log(4))


def test_the_threshold_is_three_standard_deviations_euclidean():
    direction = np.array([0.6, 0.8])  # a unit vector: the distance is Euclidean, not per coordinate
    inside, outside = RING.modes[2] + 2.99 * RING.std * direction, RING.modes[2] + 3.01 * RING.std * direction
    assert mode_coverage(inside[None], RING.modes, RING.std).modes_covered == 1
    assert mode_coverage(outside[None], RING.modes, RING.std).modes_covered == 0


def test_grid_modes_and_bad_input():
    g = grid()
    r = mode_coverage(g.modes + 0.01, g.modes, g.std)
    assert (r.modes_covered, r.high_quality) == (25, 1.0)
    with pytest.raises(ValueError, match=r"samples \(3,\) and modes"):
        mode_coverage(np.zeros(3), g.modes, g.std)
    with pytest.raises(ValueError, match="std must be positive"):
        mode_coverage(g.modes, g.modes, 0.0)
