"""Adam and SGD against torch.optim over several steps (the update kernels run through dispatch)."""
import numpy as np
import pytest
import torch

import fastgan
from fastgan import optim


def run_both(make_ours, make_theirs, steps=5, dtype=np.float64):
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype(dtype) for s in [(3, 4), (5,), (2, 3, 2, 2)]]
    ours = [fastgan.nn.Parameter(v.copy()) for v in values]
    theirs = [torch.nn.Parameter(torch.tensor(v.copy())) for v in values]
    opt_ours, opt_theirs = make_ours(ours), make_theirs(theirs)
    for step in range(steps):
        grads = [rng.standard_normal(v.shape).astype(dtype) for v in values]
        for p, g in zip(ours, grads):
            p.grad = fastgan.tensor(g)
        for p, g in zip(theirs, grads):
            p.grad = torch.tensor(g)
        opt_ours.step()
        opt_theirs.step()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10 if dtype == np.float64 else 1e-5,
                                   atol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs", [dict(lr=2e-4, betas=(0.5, 0.999)), dict(lr=1e-2, weight_decay=0.1, eps=1e-6)])
def test_adam(impl, dtype, kwargs):
    run_both(lambda p: optim.Adam(p, **kwargs), lambda p: torch.optim.Adam(p, **kwargs), dtype=dtype)


@pytest.mark.parametrize("kwargs", [dict(lr=0.1), dict(lr=0.1, momentum=0.5), dict(lr=0.05, momentum=0.9, nesterov=True),
                                    dict(lr=0.1, momentum=0.7, weight_decay=0.01, dampening=0.1)])
def test_sgd(impl, kwargs):
    run_both(lambda p: optim.SGD(p, **kwargs), lambda p: torch.optim.SGD(p, **kwargs))


def test_optimizer_state_round_trip():
    p = fastgan.nn.Parameter(np.ones(3))
    opt = optim.Adam([p], lr=0.1)
    p.grad = fastgan.tensor(np.ones(3))
    opt.step()
    saved = opt.state_dict()
    q = fastgan.nn.Parameter(p.numpy().copy())
    opt2 = optim.Adam([q], lr=0.5)
    opt2.load_state_dict(saved)
    for o, param in ((opt, p), (opt2, q)):
        param.grad = fastgan.tensor(np.full(3, 0.5))
        o.step()
    np.testing.assert_array_equal(p.numpy(), q.numpy())
    with pytest.raises(ValueError, match="Adam.load_state_dict: checkpoint has 1 parameters, optimiser has 2"):
        optim.Adam([p, q]).load_state_dict(saved)


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.Adam(p, lr=float("nan")), r"Adam: learning rate must be a finite number > 0, got nan"),
    (lambda p: optim.SGD(p, lr=float("inf")), r"SGD: learning rate must be a finite number > 0, got inf"),
    (lambda p: optim.Adam(p, lr=0), r"Adam: learning rate must be a finite number > 0, got 0"),
    (lambda p: optim.SGD(p, lr=-0.1), r"SGD: learning rate must be a finite number > 0, got -0.1"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), r"Adam: betas must be two numbers in \[0, 1\), got \(1.0, 0.999\)"),
    (lambda p: optim.Adam(p, betas=(0.5, -0.1)), r"Adam: betas must be two numbers in \[0, 1\), got \(0.5, -0.1\)"),
    (lambda p: optim.Adam(p, betas=(float("nan"), 0.9)), r"Adam: betas must be two numbers in \[0, 1\), got \(nan"),
    (lambda p: optim.Adam(p, betas=(0.9,)), r"Adam: betas must be two numbers in \[0, 1\), got \(0.9,\)"),
    (lambda p: optim.Adam(p, eps=-1e-8), r"Adam: eps must be a finite number >= 0, got -1e-08"),
    (lambda p: optim.SGD(p, momentum=float("nan")), r"SGD: momentum must be a finite number >= 0, got nan"),
    (lambda p: optim.SGD(p, weight_decay=-1), r"SGD: weight_decay must be a finite number >= 0, got -1"),
])
def test_bad_hyperparameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make([fastgan.nn.Parameter(np.ones(3))])


def test_edge_hyperparameters_are_accepted():
    p = [fastgan.nn.Parameter(np.ones(3))]
    assert optim.Adam(p, lr=1e-12, betas=(0.0, 0.0), eps=0.0).betas == (0.0, 0.0)
    assert optim.SGD(p, lr=np.float32(0.1), momentum=0.0).lr == np.float32(0.1)
