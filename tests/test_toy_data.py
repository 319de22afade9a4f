"""The toy data sets: mode positions, spreads, reproducibility; the 1-D densities; the toy networks."""
import math

import numpy as np
import pytest

import fastgan
from fastgan.data.toy import Mixture1D, gaussian_1d, grid, ring
from fastgan.models.toy import AffineGenerator1D, ToyMLP, forward_with
from fastgan.nn import init


def test_ring_has_eight_distinct_modes_at_2_pi_k_over_8():
    data = ring()
    angles = 2 * np.pi * np.arange(8) / 8
    np.testing.assert_allclose(data.modes, 2 * np.stack([np.cos(angles), np.sin(angles)], 1), atol=1e-12)
    gaps = np.linalg.norm(data.modes[:, None] - data.modes[None], axis=2) + 10 * np.eye(8)
    assert gaps.min() == pytest.approx(4 * math.sin(math.pi / 8))  # neighbours, no repeated mode
    assert data.std == 0.02


def test_grid_is_25_modes_two_apart_with_std_0_05():
    data = grid()
    assert len(data) == 25 and data.std == 0.05
    assert sorted(set(data.modes[:, 0])) == sorted(set(data.modes[:, 1])) == [-4, -2, 0, 2, 4]
    assert len({tuple(m) for m in data.modes}) == 25


@pytest.mark.parametrize("make", [ring, grid])
def test_samples_sit_on_the_modes_with_the_stated_spread(make):
    data = make()
    fastgan.manual_seed(0)
    x = data.sample(20000)
    assert x.shape == (20000, 2) and x.dtype == np.float32
    offsets = x - data.modes[np.linalg.norm(x[:, None] - data.modes[None], axis=2).argmin(1)]
    assert offsets.mean(0) == pytest.approx([0, 0], abs=0.003)
    assert offsets.std(0) == pytest.approx([data.std] * 2, rel=0.03)
    counts = np.bincount(np.linalg.norm(x[:, None] - data.modes[None], axis=2).argmin(1), minlength=len(data))
    assert counts.min() > 0.7 * 20000 / len(data)  # every mode drawn, about evenly


def test_sampling_follows_fastgan_seed():
    fastgan.manual_seed(3)
    a = ring().sample(5)
    fastgan.manual_seed(3)
    np.testing.assert_array_equal(a, ring().sample(5))


def test_mixture_1d_pdf_integrates_to_one_and_sampling_matches():
    p = Mixture1D([-1.0, 2.0], [0.5, 1.0], [1, 3])
    x = np.linspace(-10, 12, 20001)
    assert np.sum(p.pdf(x)) * (x[1] - x[0]) == pytest.approx(1.0, abs=1e-6)
    fastgan.manual_seed(0)
    s = p.sample(200000)
    assert s.mean() == pytest.approx(0.25 * -1 + 0.75 * 2, abs=0.01)
    assert gaussian_1d(0, 2).pdf(0.0) == pytest.approx(1 / (2 * math.sqrt(2 * math.pi)))


def test_bad_toy_settings_are_refused():
    with pytest.raises(ValueError, match="stds and weights must be positive"):
        Mixture1D([0.0], [0.0])
    with pytest.raises(ValueError, match=r"modes must have shape \(M, 2\)"):
        from fastgan.data.toy import GaussianMixture2D
        GaussianMixture2D("x", np.zeros((3, 3)), 0.1)


def test_orthogonal_init_is_orthogonal_times_gain_and_contiguous():
    for shape in [(128, 256), (2, 128), (128, 2), (64, 64)]:
        w = fastgan.nn.Parameter(np.zeros(shape, np.float32))
        init.orthogonal_(w, 1.4)
        a = w.data.astype(np.float64)
        small = a @ a.T if shape[0] <= shape[1] else a.T @ a
        np.testing.assert_allclose(small, 1.96 * np.eye(min(shape)), atol=1e-5)
        assert w.data.flags.c_contiguous, shape  # the native Adam kernel needs contiguous parameters


def test_toy_mlp_forward_with_its_own_parameters_is_forward():
    fastgan.manual_seed(0)
    D = ToyMLP(2, 1)
    x = fastgan.randn(7, 2)
    np.testing.assert_array_equal(D(x).numpy(), forward_with(D.parameters(), x).numpy())
    assert [p.shape for p in D.parameters()] == [(128, 2), (128,), (128, 128), (128,), (1, 128), (1,)]
    assert all(np.all(p.data == 0) for name, p in D.named_parameters() if name.endswith("bias"))
    with pytest.raises(ValueError, match="weight/bias pairs"):
        forward_with(D.parameters()[:3], x)


def test_affine_generator_has_the_density_it_samples():
    G = AffineGenerator1D(1.5, -0.5)
    fastgan.manual_seed(0)
    s = G(fastgan.randn(100000, 1)).numpy()
    p = G.density()
    assert (p.means[0], p.stds[0]) == (1.5, 0.5)
    assert s.mean() == pytest.approx(1.5, abs=0.01) and s.std() == pytest.approx(0.5, rel=0.01)
