"""The ops' numeric parameters at several values, against torch, for every kernel implementation: batch norm's eps
and momentum, and LeakyReLU's slope (alone and fused into batch norm). A kernel that ignored one of them, or
hard-coded the default, would pass every test that uses the default only."""
import numpy as np
import pytest
import torch

import fastgan
import fastgan.functional as F
from fastgan import nn
from oracle import assert_close, check, random_inputs

DTYPES = [np.float64, np.float32]
SLOPES = [0.0, 0.01, 0.2, 0.37, 1.0]
EPSILONS = [1e-5, 1e-3, 0.1, 1.0]
MOMENTA = [0.0, 0.1, 0.5, 1.0]
SHAPE = (4, 64, 6, 5)  # 7680 elements: large enough for the native kernels' threads and vector loops


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", SLOPES)
def test_leaky_relu_slope(impl, dtype, slope):
    (x,) = random_inputs(SHAPE, dtype=dtype)
    check(lambda x: F.leaky_relu(x, slope), lambda x: torch.nn.functional.leaky_relu(x, slope), [x], dtype=dtype)


@pytest.mark.parametrize("slope", [0.01, 0.37])
def test_leaky_relu_layer_passes_its_slope(impl, slope):
    (x,) = random_inputs(SHAPE)
    check(nn.LeakyReLU(slope), torch.nn.LeakyReLU(slope), [x])


def batch_norm_twins(c, dtype, running_var_range=(0.5, 2.0)):
    """Running statistics for fastgan and for torch, equal: (ours, theirs)."""
    rng = np.random.default_rng(5)
    stats = rng.standard_normal(c).astype(dtype), rng.uniform(*running_var_range, c).astype(dtype)
    return [fastgan.tensor(s.copy()) for s in stats], [torch.tensor(s.copy()) for s in stats]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_leaky_relu_slope(impl, dtype, slope, training):
    x, gamma, beta = random_inputs(SHAPE, (SHAPE[1],), (SHAPE[1],), dtype=dtype)
    ours, theirs = batch_norm_twins(SHAPE[1], dtype)
    check(lambda x, g, b: F.batch_norm(x, *ours, g, b, training, 0.1, 1e-5, "leaky_relu", slope),
          lambda x, g, b: torch.nn.functional.leaky_relu(
              torch.nn.functional.batch_norm(x, *theirs, g, b, training, 0.1, 1e-5), slope),
          [x, gamma, beta], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_eps(impl, dtype, eps, training):
    """Variances of ~1e-3 (batch and running), so that every eps here changes 1/sqrt(var + eps) visibly."""
    x, gamma, beta = random_inputs(SHAPE, (SHAPE[1],), (SHAPE[1],), dtype=dtype)
    x = x * 0.03
    ours, theirs = batch_norm_twins(SHAPE[1], dtype, running_var_range=(5e-4, 2e-3))
    check(lambda x, g, b: F.batch_norm(x, *ours, g, b, training, 0.1, eps, "relu"),
          lambda x, g, b: torch.relu(torch.nn.functional.batch_norm(x, *theirs, g, b, training, 0.1, eps)),
          [x, gamma, beta], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", MOMENTA)
def test_batch_norm_momentum_updates_the_running_statistics(impl, dtype, momentum):
    ours, theirs = batch_norm_twins(SHAPE[1], dtype)
    for seed in range(2):  # two updates: the second one starts from the first one's result
        (x,) = random_inputs(SHAPE, dtype=dtype, seed=seed)
        x = x * 2 + 0.5
        F.batch_norm(fastgan.tensor(x), *ours, training=True, momentum=momentum, eps=1e-5)
        torch.nn.functional.batch_norm(torch.tensor(x), *theirs, training=True, momentum=momentum, eps=1e-5)
        for what, a, b in zip(("running_mean", "running_var"), ours, theirs):
            assert_close(a.numpy(), b, f"{what} after update {seed + 1}", dtype)


@pytest.mark.parametrize("eps, momentum", [(1e-3, 0.3), (0.5, 0.9)])
def test_batch_norm_layer_passes_eps_and_momentum(impl, eps, momentum):
    ours, theirs = nn.BatchNorm2d(SHAPE[1], eps=eps, momentum=momentum), torch.nn.BatchNorm2d(SHAPE[1], eps, momentum)
    ours.astype(np.float64), theirs.double()
    (x,) = random_inputs(SHAPE)
    check(ours, theirs, [x * 0.03])
    assert_close(ours.running_mean.numpy(), theirs.running_mean, "running_mean", np.float64)
    assert_close(ours.running_var.numpy(), theirs.running_var, "running_var", np.float64)
    ours.eval(), theirs.eval()
    check(ours, theirs, [x * 0.03])
