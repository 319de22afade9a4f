"""Modules: layers against torch's, registration, state_dict round trip, train/eval, DCGAN init."""
import numpy as np
import pytest
import torch

import fastgan
from fastgan import nn


def copy_parameters(ours, theirs):
    """Give torch's module fastgan's values, pairing parameters by order (shapes must agree)."""
    ours_p, theirs_p = ours.parameters(), list(theirs.parameters())
    assert len(ours_p) == len(theirs_p)
    with torch.no_grad():
        for a, b in zip(ours_p, theirs_p):
            assert a.shape == tuple(b.shape)
            b.copy_(torch.tensor(a.numpy()))


def test_layers_match_torch():
    fastgan.manual_seed(0)
    ours = nn.Sequential(nn.Conv2d(2, 4, 3, 1, 1), nn.BatchNorm2d(4, activation="leaky_relu", negative_slope=0.2),
                         nn.ConvTranspose2d(4, 3, 4, 2, 1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 10 * 10, 7),
                         nn.ReLU(), nn.Linear(7, 1), nn.Sigmoid()).double()
    theirs = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, 1, 1), torch.nn.BatchNorm2d(4), torch.nn.LeakyReLU(0.2),
                                 torch.nn.ConvTranspose2d(4, 3, 4, 2, 1), torch.nn.Tanh(), torch.nn.Flatten(),
                                 torch.nn.Linear(300, 7), torch.nn.ReLU(), torch.nn.Linear(7, 1),
                                 torch.nn.Sigmoid()).double()
    copy_parameters(ours, theirs)
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 5))
    out_ours, out_theirs = ours(fastgan.tensor(x)), theirs(torch.tensor(x))
    np.testing.assert_allclose(out_ours.numpy(), out_theirs.detach().numpy(), rtol=1e-10)
    out_ours.sum().backward()
    out_theirs.sum().backward()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_registration_and_state_dict_round_trip():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, activation="relu"), nn.Maxout(4, 2, 3))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "2.linear.weight", "2.linear.bias"]
    state = model.state_dict()
    assert "1.running_mean" in state and "1.running_var" in state
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, activation="relu"), nn.Maxout(4, 2, 3))
    other.load_state_dict(state)
    for a, b in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(KeyError, match=r"load_state_dict for Sequential: missing \['0.bias'\], unexpected \[\]"):
        other.load_state_dict({k: v for k, v in state.items() if k != "0.bias"})
    with pytest.raises(ValueError, match=r"0.weight.*\(4, 3\)"):
        other.load_state_dict({**state, "0.weight": np.zeros((3, 3))})


def test_train_eval_and_zero_grad():
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    x = fastgan.tensor(np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())  # dropout off in eval
    model(x).sum().backward()
    assert model[0].weight.grad is not None
    model.zero_grad()
    assert model[0].weight.grad is None


def test_batchnorm_eval_uses_running_stats():
    bn = nn.BatchNorm2d(3)
    x = fastgan.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32) * 3 + 1)
    bn(x)
    assert not np.allclose(bn.running_mean.numpy(), 0)
    bn.eval()
    y = bn(x).numpy()
    expected = (x.numpy() - bn.running_mean.numpy()[:, None, None]) / np.sqrt(bn.running_var.numpy()[:, None, None] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"4-D input, got shape \(4, 3\)"):
        bn(fastgan.tensor(np.zeros((4, 3), np.float32)))


def test_dcgan_init_statistics():
    fastgan.manual_seed(1)
    model = nn.init.dcgan_init(nn.Sequential(nn.Conv2d(64, 128, 4), nn.BatchNorm2d(4096)))
    w, gamma, beta = model[0].weight.numpy(), model[1].weight.numpy(), model[1].bias.numpy()
    assert abs(w.mean()) < 1e-3 and abs(w.std() - 0.02) < 1e-3
    assert abs(gamma.mean() - 1) < 2e-3 and abs(gamma.std() - 0.02) < 2e-3
    assert not beta.any()


def test_seed_reproducible():
    fastgan.manual_seed(7)
    a = nn.Linear(5, 5).weight.numpy()
    fastgan.manual_seed(7)
    np.testing.assert_array_equal(a, nn.Linear(5, 5).weight.numpy())
