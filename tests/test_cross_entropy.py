"""F.cross_entropy (fused log-softmax + NLL) against torch: values, gradients, stability and bad input."""
import numpy as np
import pytest
import torch

import fastgan
from fastgan import functional as F
from oracle import check, gradcheck


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch(dtype, reduction):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 10)) * 3
    labels = rng.integers(0, 10, 7)
    check(lambda s: F.cross_entropy(s, labels, reduction),
          lambda s: torch.nn.functional.cross_entropy(s, torch.tensor(labels), reduction=reduction),
          [logits], dtype=dtype)


def test_central_differences():
    labels = np.array([2, 0, 1, 2])
    logits = np.random.default_rng(1).standard_normal((4, 3))
    gradcheck(lambda s: F.cross_entropy(s, labels, "none"), [logits])


def test_huge_logits_stay_finite():
    # exp(1000) overflows: only the max-shifted form gives the right answer (and gradient p − onehot)
    s = fastgan.tensor(np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]]), requires_grad=True)
    loss = F.cross_entropy(s, np.array([0, 0]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), 500.0)  # (0 + 1000) / 2
    np.testing.assert_allclose(s.grad.numpy(), [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-12)


def test_bad_labels():
    s = fastgan.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must lie in \[0, 3\), got 0\.\.3"):
        F.cross_entropy(s, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must be 2 integers for logits \(2, 3\), got shape \(2,\) of dtype float64"):
        F.cross_entropy(s, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"cross_entropy: logits must be 2-D, got shape \(3,\)"):
        F.cross_entropy(fastgan.tensor(np.zeros(3)), np.array([0]))
