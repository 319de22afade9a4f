"""The three G costs and their gradients, by the engine's autograd, against their closed forms."""
import numpy as np
import pytest

from fastgan.theory.g_losses import cost_curves


def test_costs_and_gradients_match_the_closed_forms():
    d = np.array([1e-4, 0.01, 0.3, 0.5, 0.9, 0.999])
    c = cost_curves(d)
    expected = {"minimax": (np.log1p(-d), -d), "non-saturating": (-np.log(d), -(1 - d)),
                "ml": (-d / (1 - d), -d / (1 - d))}
    for kind, (cost, grad) in expected.items():
        np.testing.assert_allclose(c[kind]["cost"], cost, rtol=1e-9, err_msg=kind)
        np.testing.assert_allclose(c[kind]["grad"], grad, rtol=1e-9, err_msg=kind)


def test_minimax_saturates_where_d_rejects_the_fakes():
    c = cost_curves(np.array([1e-3]))
    assert abs(c["minimax"]["grad"][0]) < 2e-3 < 0.99 < abs(c["non-saturating"]["grad"][0])


def test_values_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match=r"inside \(0, 1\)"):
        cost_curves([0.0, 0.5])
