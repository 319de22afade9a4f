"""MinibatchDiscrimination and VirtualBatchNorm2d: forward and every gradient against a torch implementation written
here (float64 tight, float32 for the real path), and against a direct NumPy computation of the paper's formula."""
import copy

import numpy as np
import pytest
import torch
from oracle import check, random_inputs

import fastgan
from fastgan import functional as F
from fastgan import nn, optim
from fastgan.gan import train_step
from fastgan.models import make_gan
from fastgan.models.dcgan import dcgan_generator
from fastgan.models.vbn_generator import VirtualBatchNormGenerator
from fastgan.nn.gan_layers import minibatch_discrimination

# --- minibatch discrimination -------------------------------------------------------------------------------------


def torch_minibatch_discrimination(x, T, bias=None):
    n, (a, b, c) = x.shape[0], T.shape
    M = (x @ T.reshape(a, b * c)).reshape(n, b, c)
    l1 = (M[:, None] - M[None]).abs().sum(3)                              # (N, N, B)
    others = 1 - torch.eye(n, dtype=x.dtype)[:, :, None]
    o = (torch.exp(-l1) * others).sum(1)
    return torch.cat([x, o if bias is None else o + bias], 1)


def numpy_minibatch_discrimination(x, T, bias=0.0):
    """The paper's formula, one pair of examples at a time."""
    M = np.einsum("na,abc->nbc", x, T)
    o = np.zeros((len(x), T.shape[1])) + bias
    for i in range(len(x)):
        for j in range(len(x)):
            if j != i:
                o[i] += np.exp(-np.abs(M[i] - M[j]).sum(axis=1))
    return np.concatenate([x, o], axis=1)


MBD_SHAPES = [(5, 7, 4, 3), (1, 6, 3, 2), (2, 3, 1, 1), (0, 4, 2, 2), (33, 5, 6, 5)]  # (N, A, B, C): batch 1 and empty included


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, a, b, c", MBD_SHAPES)
def test_minibatch_discrimination_matches_torch(impl, n, a, b, c, dtype):
    x, T, bias = random_inputs((n, a), (a, b, c), (b,), seed=n + a)
    # T scaled so that the L1 distances are O(1): exp(−distance) neither 0 nor 1 and every gradient matters
    check(minibatch_discrimination, torch_minibatch_discrimination, [x, 0.3 * T], dtype=dtype)
    check(minibatch_discrimination, torch_minibatch_discrimination, [x, 0.3 * T, bias], dtype=dtype)


@pytest.mark.parametrize("n, a, b, c", MBD_SHAPES)
def test_minibatch_discrimination_matches_numpy(n, a, b, c):
    x, T, bias = random_inputs((n, a), (a, b, c), (b,), seed=1)
    out = minibatch_discrimination(fastgan.tensor(x), fastgan.tensor(0.3 * T), fastgan.tensor(bias))
    np.testing.assert_allclose(out.numpy(), numpy_minibatch_discrimination(x, 0.3 * T, bias), rtol=1e-12, atol=1e-14)


def test_minibatch_discrimination_layer():
    fastgan.manual_seed(0)
    layer = nn.MinibatchDiscrimination(2 * 3 * 3, 100, 5)
    assert [name for name, _ in layer.named_parameters()] == ["theta", "log_scale", "bias"]
    assert layer.T.shape == (18, 100, 5)
    np.testing.assert_allclose(np.linalg.norm(layer.T.numpy(), axis=0), 1.0, rtol=1e-5)  # exp(s) = 1: unit columns
    layer.eval()                                                              # no initialisation from data here
    x = fastgan.randn(4, 2, 3, 3)                                             # flattened to 18 features
    out = layer(x)
    assert out.shape == (4, 118) and layer.initialised.item() == 0
    np.testing.assert_array_equal(out.numpy()[:, :18], x.numpy().reshape(4, 18))
    np.testing.assert_allclose(out.numpy(), numpy_minibatch_discrimination(
        x.numpy().reshape(4, 18).astype(np.float64), layer.T.numpy().astype(np.float64)), rtol=1e-4, atol=1e-5)
    # a collapsed batch (every example the same) scores N − 1 (+ β) on every kernel: D sees the collapse at once
    same = layer(fastgan.tensor(np.repeat(x.numpy()[:1], 4, axis=0)))
    np.testing.assert_allclose(same.numpy()[:, 18:], 3.0)
    with pytest.raises(ValueError, match=r"input \(4, 17\) does not have 18 features"):
        layer(fastgan.randn(4, 17))
    with pytest.raises(ValueError, match=r"kernel_dim \(C\) must be a positive integer, got 0"):
        nn.MinibatchDiscrimination(18, 100, 0)
    with pytest.raises(ValueError, match=r"bias \(3,\) does not match T \(18, 100, 5\)"):
        minibatch_discrimination(F.reshape(x, (4, 18)), layer.T, fastgan.zeros(3))


def nearest_distances(layer, x):
    """Per kernel, the mean over examples of the L1 distance to the nearest other example."""
    M = np.einsum("na,abc->nbc", x.astype(np.float64), layer.T.numpy().astype(np.float64))
    d = np.abs(M[:, None] - M[None]).sum(3) + np.where(np.eye(len(x), dtype=bool), np.inf, 0)[:, :, None]
    return d.min(axis=1).mean(axis=0)


def test_minibatch_discrimination_initialises_from_its_first_training_batch():
    fastgan.manual_seed(1)
    layer = nn.MinibatchDiscrimination(18, 7, 3)
    for batch in (fastgan.randn(1, 18), fastgan.randn(0, 18)):                # nothing to compare: no initialisation
        layer(batch)
        assert layer.initialised.item() == 0 and not layer.bias.numpy().any()
    x = fastgan.randn(6, 18)
    T0, theta0 = layer.T.numpy().copy(), layer.theta.numpy().copy()
    out = layer(x).numpy()[:, 18:]
    assert layer.initialised.item() == 1
    # T's kernels scaled (each by its own factor, through s) to a mean nearest-neighbour distance of 2, and o
    # centred on x
    np.testing.assert_allclose(nearest_distances(layer, x.numpy()), 2.0, rtol=1e-5)
    np.testing.assert_array_equal(layer.theta.numpy(), theta0)
    ratio = layer.T.numpy() / T0
    np.testing.assert_allclose(ratio, ratio[:1, :, :1] * np.ones_like(ratio), rtol=1e-5)
    np.testing.assert_allclose(np.exp(layer.log_scale.numpy()), ratio[0], rtol=1e-5)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(out, numpy_minibatch_discrimination(
        x.numpy().astype(np.float64), layer.T.numpy().astype(np.float64), layer.bias.numpy())[:, 18:], atol=1e-5)
    # once only: a later batch, or a copy loaded from the state dict, does not initialise again
    T1, bias1 = layer.T.numpy().copy(), layer.bias.numpy().copy()
    layer(3 * fastgan.randn(6, 18))
    np.testing.assert_array_equal(layer.T.numpy(), T1)
    copy = nn.MinibatchDiscrimination(18, 7, 3)
    copy.load_state_dict(layer.state_dict())
    copy(fastgan.randn(5, 18))
    np.testing.assert_array_equal(copy.T.numpy(), T1)
    np.testing.assert_array_equal(copy.bias.numpy(), bias1)
    with pytest.raises(ValueError, match=r"initialise: needs a batch of at least 2 examples, got \(1, 18\)"):
        copy.initialise(fastgan.randn(1, 18))


def test_minibatch_discrimination_is_initialised_on_the_real_batch():
    """In a training round D judges the real batch first, so the layer starts centred on real data."""
    G, D = make_gan("dcgan", minibatch=(6, 3))
    layer = next(m for m in D.modules() if isinstance(m, nn.MinibatchDiscrimination))
    real, z = fastgan.randn(8, 1, 28, 28), fastgan.randn(8, 100, 1, 1)
    expected = copy.deepcopy(D)
    with fastgan.no_grad():
        expected(real)                                       # the same weights, initialised from the real batch
    still = [optim.SGD(m.parameters(), lr=1e-12) for m in (G, D)]          # the step moves almost nothing
    train_step(G, D, *still, real, z)
    expected_layer = next(m for m in expected.modules() if isinstance(m, nn.MinibatchDiscrimination))
    np.testing.assert_allclose(layer.bias.numpy(), expected_layer.bias.numpy(), rtol=1e-6)
    np.testing.assert_allclose(layer.log_scale.numpy(), expected_layer.log_scale.numpy(), rtol=1e-6, atol=1e-9)


# --- virtual batch norm -------------------------------------------------------------------------------------------

EPS = 1e-5


def torch_vbn(x_ref, x, weight, bias):
    """improved-gan's VBN: the reference batch normalised by its own statistics; each example of x by the
    reference's blended with its own, weight 1/(R+1). Output: [x's, then x_ref's]."""
    def normalise(v, mean, mean_sq):
        return (v - mean) / torch.sqrt(EPS + mean_sq - mean ** 2) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    ref_mean, ref_mean_sq = x_ref.mean((0, 2, 3), keepdim=True), (x_ref ** 2).mean((0, 2, 3), keepdim=True)
    own = 1 / (x_ref.shape[0] + 1)
    mean = own * x.mean((2, 3), keepdim=True) + (1 - own) * ref_mean
    mean_sq = own * (x ** 2).mean((2, 3), keepdim=True) + (1 - own) * ref_mean_sq
    return torch.cat([normalise(x, mean, mean_sq), normalise(x_ref, ref_mean, ref_mean_sq)])


def fastgan_vbn(x_ref, x, weight, bias):
    """The layer's two passes, with γ and β swapped for the test's tensors (so their gradients can be read)."""
    layer = nn.VirtualBatchNorm2d(x.shape[1])
    layer.weight, layer.bias = weight, bias
    with nn.reference_pass(layer):
        reference_out = layer(x_ref)
    return F.cat([layer(x), reference_out])


def numpy_vbn(x_ref, x, weight, bias):
    """Each example's statistics computed over the values of the reference batch and of the example pooled."""
    out = np.empty_like(x)
    for i in range(len(x)):
        for c in range(x.shape[1]):
            pooled = np.concatenate([x_ref[:, c].ravel(), x[i, c].ravel()])
            out[i, c] = (x[i, c] - pooled.mean()) / np.sqrt(pooled.var() + EPS) * weight[c] + bias[c]
    return out


VBN_SHAPES = [((3, 2, 4, 5), (2, 2, 4, 5)), ((4, 3, 1, 1), (1, 3, 1, 1)), ((1, 1, 3, 2), (5, 1, 3, 2))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ref_shape, shape", VBN_SHAPES)
def test_virtual_batch_norm_matches_torch(ref_shape, shape, dtype):
    """Gradients reach the reference batch through its statistics, and γ and β from both passes."""
    x_ref, x, weight, bias = random_inputs(ref_shape, shape, shape[1:2], shape[1:2], seed=3)
    check(fastgan_vbn, torch_vbn, [x_ref, x + 0.5, weight, bias], dtype=dtype)


@pytest.mark.parametrize("ref_shape, shape", VBN_SHAPES)
def test_virtual_batch_norm_matches_numpy(ref_shape, shape):
    x_ref, x, weight, bias = random_inputs(ref_shape, shape, shape[1:2], shape[1:2], seed=4)
    out = fastgan_vbn(*(fastgan.tensor(v) for v in (x_ref, x, weight, bias)))
    np.testing.assert_allclose(out.numpy()[:len(x)], numpy_vbn(x_ref, x, weight, bias), rtol=1e-10, atol=1e-12)


def test_virtual_batch_norm_needs_a_reference_and_the_right_channels():
    layer = nn.VirtualBatchNorm2d(3)
    with pytest.raises(RuntimeError, match="no reference statistics.*reference_pass"):
        layer(fastgan.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"VirtualBatchNorm2d\(3\) expects \(N, 3, H, W\) input, got shape \(2, 4,"):
        layer(fastgan.randn(2, 4, 4, 4))
    with nn.reference_pass(layer):
        layer(fastgan.randn(5, 3, 4, 4))
    assert layer(fastgan.randn(2, 3, 4, 4)).shape == (2, 3, 4, 4)
    nn.forget_reference(layer)
    assert layer.reference is None


def test_vbn_generator_normalises_each_example_independently():
    """An example's output depends on its own z and the fixed reference batch only: not on its batch-mates, and
    the same in training and evaluation mode (there are no running statistics)."""
    fastgan.manual_seed(0)
    net = nn.init.dcgan_init(dcgan_generator(8, width=4, norm="virtual")).double()
    G = VirtualBatchNormGenerator(net, fastgan.randn(6, 8, 1, 1, dtype=np.float64))
    assert [name for name, _ in G.named_buffers()] == ["reference_input"]
    assert "reference_input" in G.state_dict()
    z = fastgan.randn(5, 8, 1, 1, dtype=np.float64)
    whole = G(z).numpy()
    np.testing.assert_allclose(G(fastgan.tensor(z.numpy()[2:3])).numpy(), whole[2:3], rtol=1e-12, atol=1e-14)
    G.eval()
    with fastgan.no_grad():
        np.testing.assert_allclose(G(z).numpy(), whole, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"input \(5, 9, 1, 1\) does not match the reference batch \(6, 8, 1, 1\)"):
        G(fastgan.randn(5, 9, 1, 1, dtype=np.float64))


def test_dcgan_init_initialises_virtual_batch_norm():
    fastgan.manual_seed(0)
    model = nn.init.dcgan_init(nn.Sequential(nn.VirtualBatchNorm2d(4096)))
    gamma, beta = model[0].weight.numpy(), model[0].bias.numpy()
    assert abs(gamma.mean() - 1) < 2e-3 and abs(gamma.std() - 0.02) < 2e-3 and not beta.any()
