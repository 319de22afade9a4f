"""Fused batch-norm + activation and fused sigmoid-BCE against torch, for every kernel implementation."""
import numpy as np
import pytest
import torch

import fastgan
import fastgan.functional as F
from oracle import assert_close, check, random_inputs

TORCH_ACTIVATION = {None: lambda y, a: y, "relu": lambda y, a: torch.relu(y),
                    "leaky_relu": lambda y, a: torch.nn.functional.leaky_relu(y, a)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(8, 5), (1, 3, 4, 5), (4, 1, 3, 3), (3, 7, 5, 2)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
def test_batch_norm_act(impl, dtype, shape, training, activation):
    c = shape[1]
    x, gamma, beta = random_inputs(shape, (c,), (c,), dtype=dtype)
    x = x * 2 + 0.5
    rng = np.random.default_rng(5)
    stats = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    ours_stats = [fastgan.tensor(s.copy()) for s in stats]
    torch_stats = [torch.tensor(s.copy()) for s in stats]
    check(lambda x, g, b: F.batch_norm(x, *ours_stats, g, b, training, 0.1, 1e-5, activation, 0.2),
          lambda x, g, b: TORCH_ACTIVATION[activation](
              torch.nn.functional.batch_norm(x, *torch_stats, g, b, training, 0.1, 1e-5), 0.2),
          [x, gamma, beta], dtype=dtype)
    for ours, theirs in zip(ours_stats, torch_stats):  # running statistics updated (unbiased variance) as torch
        assert_close(ours.numpy(), theirs, "running statistics", dtype)


def test_batch_norm_without_affine_or_running_stats(impl):
    (x,) = random_inputs((6, 4, 3, 3))
    check(lambda x: F.batch_norm(x, None, None, training=True, activation="relu"),
          lambda x: torch.relu(torch.nn.functional.batch_norm(x, None, None, training=True)), [x])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sigmoid_bce(impl, dtype, reduction):
    (logits,) = random_inputs((64, 1), dtype=dtype)
    logits = logits * 5
    logits[:4, 0] = [100, -100, 1000, -1000]  # far tails: finite loss, exact gradients
    target = (np.random.default_rng(3).random((64, 1)) > 0.5).astype(dtype)
    target[:2] = 0.9  # soft targets (one-sided label smoothing)
    check(lambda s, y: F.binary_cross_entropy_with_logits(s, y, reduction),
          lambda s, y: torch.nn.functional.binary_cross_entropy_with_logits(s, y, reduction=reduction),
          [logits, target], grad=[True, False], dtype=dtype)


def test_sigmoid_bce_scalar_target(impl):
    (logits,) = random_inputs((5, 3))
    check(lambda s: F.binary_cross_entropy_with_logits(s, 0.9),
          lambda s: torch.nn.functional.binary_cross_entropy_with_logits(s, torch.full_like(s, 0.9)), [logits])


@pytest.mark.parametrize("shape", [(0, 4, 5, 5), (0, 3), (2, 4, 0, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_on_an_empty_batch(impl, shape, training):
    """torch: an empty output, zero gradients for γ and β, and the running statistics left as they were."""
    c = shape[1]
    x, gamma, beta = random_inputs(shape, (c,), (c,))
    stats = random_inputs((c,), (c,), seed=5)
    stats[1] = np.abs(stats[1]) + 0.5
    ours_stats = [fastgan.tensor(s.copy()) for s in stats]
    torch_stats = [torch.tensor(s.copy()) for s in stats]
    check(lambda x, g, b: F.batch_norm(x, *ours_stats, g, b, training, activation="relu"),
          lambda x, g, b: torch.relu(torch.nn.functional.batch_norm(x, *torch_stats, g, b, training)),
          [x, gamma, beta])
    for ours, theirs in zip(ours_stats, torch_stats):
        assert_close(ours.numpy(), theirs, "running statistics", np.float64)


def test_batch_norm_layer_on_an_empty_batch_and_one_value_per_channel(impl):
    layer = fastgan.nn.BatchNorm2d(4).eval()
    assert layer(fastgan.zeros(0, 4, 5, 5)).shape == (0, 4, 5, 5)
    layer.train()
    assert layer(fastgan.zeros(0, 4, 5, 5)).shape == (0, 4, 5, 5)
    with pytest.raises(ValueError, match="expected more than 1 value per channel when training"):
        layer(fastgan.zeros(1, 4, 1, 1))


@pytest.mark.parametrize("shape", [(), (0,), (0, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sigmoid_bce_on_0d_and_empty_logits(impl, shape, reduction):
    (logits,) = random_inputs(shape)
    target = np.full(shape, 0.9)
    check(lambda s, y: F.binary_cross_entropy_with_logits(s, y, reduction),
          lambda s, y: torch.nn.functional.binary_cross_entropy_with_logits(s, y, reduction=reduction),
          [logits, target], grad=[True, False])
