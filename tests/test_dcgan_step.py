"""Three whole DCGAN training steps (both players, both Adams) in fastgan and in torch, from the same weights, batch
and noise: every parameter and batch-norm statistic must match afterwards. The 28×28 DCGAN and the tutorial's 64×64
one (narrow, to stay fast: the layer structure, not the width, is what the test is about)."""
import numpy as np
import pytest
import torch

import fastgan
from fastgan import optim
from fastgan.gan import train_step
from fastgan.models import MODELS
from fastgan.models.dcgan64 import dcgan64

T = torch.nn


def torch_dcgan(nz=100):
    G = T.Sequential(T.ConvTranspose2d(nz, 256, 7, 1, 0, bias=False), T.BatchNorm2d(256), T.ReLU(),
                     T.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), T.BatchNorm2d(128), T.ReLU(),
                     T.ConvTranspose2d(128, 1, 4, 2, 1, bias=False), T.Tanh())
    D = T.Sequential(T.Conv2d(1, 64, 4, 2, 1, bias=False), T.LeakyReLU(0.2),
                     T.Conv2d(64, 128, 4, 2, 1, bias=False), T.BatchNorm2d(128), T.LeakyReLU(0.2),
                     T.Conv2d(128, 1, 7, 1, 0, bias=False), T.Flatten())
    return G, D


def torch_dcgan64(nz=100, ngf=64, ndf=64, nc=3):
    """The PyTorch DCGAN tutorial's Generator and Discriminator, written out (D without its final sigmoid)."""
    G = T.Sequential(T.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), T.BatchNorm2d(ngf * 8), T.ReLU(True),
                     T.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), T.BatchNorm2d(ngf * 4), T.ReLU(True),
                     T.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), T.BatchNorm2d(ngf * 2), T.ReLU(True),
                     T.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), T.BatchNorm2d(ngf), T.ReLU(True),
                     T.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), T.Tanh())
    D = T.Sequential(T.Conv2d(nc, ndf, 4, 2, 1, bias=False), T.LeakyReLU(0.2, inplace=True),
                     T.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), T.BatchNorm2d(ndf * 2), T.LeakyReLU(0.2, True),
                     T.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), T.BatchNorm2d(ndf * 4), T.LeakyReLU(0.2, True),
                     T.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), T.BatchNorm2d(ndf * 8), T.LeakyReLU(0.2, True),
                     T.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), T.Flatten())
    return G, D


TORCH_TWINS = {"dcgan": torch_dcgan, "dcgan64": torch_dcgan64}


def twin_dcgans(dtype=np.float32, model="dcgan", **options):
    """A DCGAN in fastgan and in torch with the same initial weights, each with its two Adams (DCGAN's settings).

    model: "dcgan" (28×28) or "dcgan64"; options: the builder's (nz, and ngf / ndf / nc for dcgan64)."""
    fastgan.manual_seed(0)
    G, D = MODELS[model](**options)
    G.astype(dtype), D.astype(dtype)
    tG, tD = TORCH_TWINS[model](**options)
    tG.to(torch.float64 if dtype == np.float64 else torch.float32)
    tD.to(torch.float64 if dtype == np.float64 else torch.float32)
    for ours, theirs in ((G, tG), (D, tD)):
        assert [p.shape for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]
        with torch.no_grad():
            for a, b in zip(ours.parameters(), theirs.parameters()):
                b.copy_(torch.tensor(a.numpy()))
    adams = [optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (G, D)]
    torch_adams = [torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (tG, tD)]
    return (G, D, *adams), (tG, tD, *torch_adams)


def torch_train_step_tensors(G, D, opt_g, opt_d, real, z, d_weight_grads_in_g_step=True):
    """The DCGAN examples' step. Their G step also computes D's weight gradients (then discarded: the next D step
    zeroes them); d_weight_grads_in_g_step=False freezes D there instead, as fastgan.gan.train_step does.
    Returns the three losses and D's three outputs as torch tensors, nothing read back to the host."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    opt_d.zero_grad()
    out_real = D(real)
    loss_real = bce(out_real, torch.ones_like(out_real))
    loss_real.backward()
    fake = G(z)
    out_fake = D(fake.detach())
    loss_fake = bce(out_fake, torch.zeros_like(out_fake))
    loss_fake.backward()
    opt_d.step()
    opt_g.zero_grad()
    D.requires_grad_(d_weight_grads_in_g_step)
    out = D(fake)
    loss_g = bce(out, torch.ones_like(out))
    loss_g.backward()
    D.requires_grad_(True)
    opt_g.step()
    return (loss_real, loss_fake, loss_g), (out_real, out_fake, out)


def torch_train_step(G, D, opt_g, opt_d, real, z, d_weight_grads_in_g_step=True):
    """torch_train_step_tensors -> (D's loss, G's loss) as floats."""
    (loss_real, loss_fake, loss_g), _ = torch_train_step_tensors(G, D, opt_g, opt_d, real, z,
                                                                 d_weight_grads_in_g_step)
    return (loss_real + loss_fake).item(), loss_g.item()


def state_pairs(ours, theirs):
    ours_state = ours.state_dict()
    # fastgan lists parameters then buffers; torch interleaves them per module: match by kind and order
    theirs_params = [p.detach() for p in theirs.parameters()]
    theirs_buffers = [b for n, b in theirs.named_buffers() if not n.endswith("num_batches_tracked")]
    names = list(ours_state)
    assert len(names) == len(theirs_params) + len(theirs_buffers)
    return list(zip(names, list(ours_state.values()), theirs_params + theirs_buffers))


MODEL_CASES = {"dcgan": ({}, (1, 28, 28)),
               "dcgan64": (dict(ngf=4, ndf=4, nc=3), (3, 64, 64))}  # every layer of the tutorial, 1/16 of its width


# float32: Adam divides by √v, so where a gradient is ~0 a rounding difference can move a weight by up to lr
# (2e-4) a step, in either direction; three steps bound the difference by ~1e-3. float64 is the tight check.
@pytest.mark.parametrize("model", list(MODEL_CASES))
@pytest.mark.parametrize("dtype, tol", [(np.float64, dict(rtol=1e-9, atol=1e-11)),
                                        (np.float32, dict(rtol=1e-3, atol=1.5e-3))])
def test_three_dcgan_steps_match_torch(model, dtype, tol):
    options, image = MODEL_CASES[model]
    (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_dcgans(dtype, model, **options)

    rng = np.random.default_rng(0)
    for step in range(3):
        real = np.tanh(rng.standard_normal((6, *image))).astype(dtype)
        z = rng.standard_normal((6, 100, 1, 1)).astype(dtype)
        stats = train_step(G, D, opt_g, opt_d, fastgan.tensor(real), fastgan.tensor(z))
        loss_d, loss_g = torch_train_step(tG, tD, topt_g, topt_d, torch.tensor(real), torch.tensor(z))
        np.testing.assert_allclose([stats["loss_d"], stats["loss_g"]], [loss_d, loss_g], **tol)

    for ours, theirs in ((G, tG), (D, tD)):
        for name, a, b in state_pairs(ours, theirs):
            np.testing.assert_allclose(a, b.numpy(), err_msg=name, **tol)


@pytest.mark.parametrize("nc", [1, 3])
def test_dcgan64_shapes_and_initialisation(nc):
    fastgan.manual_seed(0)
    G, D = dcgan64(nz=100, ngf=64, ndf=64, nc=nc)
    with fastgan.no_grad():
        x = G(fastgan.randn(2, 100, 1, 1))
        assert x.shape == (2, nc, 64, 64)
        assert D(x).shape == (2, 1)
    tG, tD = torch_dcgan64(ngf=64, ndf=64, nc=nc)
    for ours, theirs in ((G, tG), (D, tD)):  # the tutorial's parameter count: G 3.58 M (nc = 3), D 2.77 M
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    convs = [p.numpy() for p in G.parameters() + D.parameters() if p.ndim == 4]
    assert len(convs) == 10 and all(abs(w.std() - 0.02) < 0.002 and abs(w.mean()) < 0.002 for w in convs[1:-1])
    gammas = [p.numpy() for p in G.parameters() + D.parameters() if p.ndim == 1][::2]
    assert len(gammas) == 7 and all(abs(g.mean() - 1) < 0.01 for g in gammas)


def test_dcgan64_rejects_bad_options():
    with pytest.raises(ValueError, match=r"dcgan64: nc must be 1 \(grayscale\) or 3 \(RGB\), got 4"):
        dcgan64(nc=4)
    with pytest.raises(ValueError, match="dcgan64: ngf must be a positive integer, got 0"):
        dcgan64(ngf=0)
