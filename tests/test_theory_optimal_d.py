"""The optimal discriminator in 1-D: quadrature identities, and a trained D against a fixed, known p_g.

Tolerances (stated in docs/gan_theory.md): after 600 Adam steps on batches of 256, the trained D is within 0.12 of
D* wherever ½(p_data + p_g) is at least 1 % of its peak (0.05 where it is at least 5 %), and V(D, G), by
quadrature, is within 0.01 nats below −log 4 + 2·JSD. For p_g = p_data: |D − ½| ≤ 0.03 and |V + log 4| ≤ 0.002.
"""
import dataclasses
import math

import numpy as np
import pytest

from fastgan.data.toy import gaussian_1d
from fastgan.theory import optimal_d as od

FAST = dataclasses.replace(od.OptimalDConfig(), d_steps=600, batch_size=256)


def test_value_at_d_star_is_minus_log4_plus_two_jsd():
    p, q = gaussian_1d(2.0, 0.5), gaussian_1d(0.0, 1.0)
    x = od.quadrature_grid(p, q)
    d_star = od.optimal_discriminator(p, q, x)
    logits = np.log(d_star) - np.log1p(-d_star)
    assert od.value_of_game(logits, p, q, x) == pytest.approx(-od.LOG4 + 2 * od.jensen_shannon(p, q, x), abs=1e-9)


def test_jensen_shannon_limits():
    p = gaussian_1d(0.0, 1.0)
    x = od.quadrature_grid(p, gaussian_1d(40.0, 1.0))
    assert od.jensen_shannon(p, p, x) == pytest.approx(0.0, abs=1e-12)
    assert od.jensen_shannon(p, gaussian_1d(40.0, 1.0), x) == pytest.approx(math.log(2), abs=1e-6)
    # a known value: N(0, 1) vs N(0, 1) shifted by a small δ has JSD ≈ δ²/8
    x = np.linspace(-12, 12, 40001)
    assert od.jensen_shannon(p, gaussian_1d(0.01, 1.0), x) == pytest.approx(0.01 ** 2 / 8, rel=1e-3)


def test_trained_d_reaches_d_star_and_the_value_of_the_game():
    result = od.fixed_g_experiment(FAST)
    r = result["different"]
    error = np.abs(r["d"] - r["d_star"])
    mix = 0.5 * (result["p_data"].pdf(r["x"]) + result["p_g"].pdf(r["x"]))
    assert error[mix >= 0.01 * mix.max()].max() <= 0.12
    assert error[mix >= 0.05 * mix.max()].max() <= 0.05
    assert r["c_of_g"] - 0.01 <= r["value"] <= r["c_of_g"] + 1e-3  # V(D, G) ≤ V(D*, G), up to quadrature

    same = result["same"]
    assert np.abs(same["d"] - 0.5)[same["support"]].max() <= 0.03
    assert np.all(same["d_star"] == 0.5)
    assert same["value"] == pytest.approx(-math.log(4), abs=2e-3)


def test_learned_affine_g_moves_towards_p_data():
    config = dataclasses.replace(od.OptimalDConfig(), g_steps=40)
    result = od.learning_experiment(config, snapshots=(0, None))
    curves = result["curves"]
    assert [f["g_step"] for f in result["frames"]] == [0, 40]
    assert curves["c_of_g"][-1] < curves["c_of_g"][0] - 0.1           # JSD falls as G learns
    assert curves["loc"][-1] > config.g_loc + 0.3                       # p_g moves towards p_data
