"""Three whole DCGAN training steps (both players, both Adams) in fastgan and in torch, from the same weights, batch
and noise: every parameter and batch-norm statistic must match afterwards."""
import numpy as np
import pytest
import torch

import fastgan
from fastgan import optim
from fastgan.gan import train_step
from fastgan.models.dcgan import dcgan_mnist


def torch_dcgan(nz=100):
    T = torch.nn
    G = T.Sequential(T.ConvTranspose2d(nz, 256, 7, 1, 0, bias=False), T.BatchNorm2d(256), T.ReLU(),
                     T.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), T.BatchNorm2d(128), T.ReLU(),
                     T.ConvTranspose2d(128, 1, 4, 2, 1, bias=False), T.Tanh())
    D = T.Sequential(T.Conv2d(1, 64, 4, 2, 1, bias=False), T.LeakyReLU(0.2),
                     T.Conv2d(64, 128, 4, 2, 1, bias=False), T.BatchNorm2d(128), T.LeakyReLU(0.2),
                     T.Conv2d(128, 1, 7, 1, 0, bias=False), T.Flatten())
    return G, D


def twin_dcgans(dtype=np.float32):
    """The DCGAN in fastgan and in torch with the same initial weights, each with its two Adams (DCGAN's settings)."""
    fastgan.manual_seed(0)
    G, D = dcgan_mnist()
    G.astype(dtype), D.astype(dtype)
    tG, tD = torch_dcgan()
    tG.to(torch.float64 if dtype == np.float64 else torch.float32)
    tD.to(torch.float64 if dtype == np.float64 else torch.float32)
    for ours, theirs in ((G, tG), (D, tD)):
        with torch.no_grad():
            for a, b in zip(ours.parameters(), theirs.parameters()):
                b.copy_(torch.tensor(a.numpy()))
    adams = [optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (G, D)]
    torch_adams = [torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (tG, tD)]
    return (G, D, *adams), (tG, tD, *torch_adams)


def torch_train_step(G, D, opt_g, opt_d, real, z, d_weight_grads_in_g_step=True):
    """The DCGAN examples' step. Their G step also computes D's weight gradients (then discarded: the next D step
    zeroes them); d_weight_grads_in_g_step=False freezes D there instead, as fastgan.gan.train_step does."""
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
    return (loss_real + loss_fake).item(), loss_g.item()


def state_pairs(ours, theirs):
    ours_state = ours.state_dict()
    # fastgan lists parameters then buffers; torch interleaves them per module: match by kind and order
    theirs_params = [p.detach() for p in theirs.parameters()]
    theirs_buffers = [b for n, b in theirs.named_buffers() if not n.endswith("num_batches_tracked")]
    names = list(ours_state)
    return list(zip(names, list(ours_state.values()), theirs_params + theirs_buffers))


# float32: Adam divides by √v, so where a gradient is ~0 a rounding difference can move a weight by up to lr
# (2e-4) a step, in either direction; three steps bound the difference by ~1e-3. float64 is the tight check.
@pytest.mark.parametrize("dtype, tol", [(np.float64, dict(rtol=1e-9, atol=1e-11)),
                                        (np.float32, dict(rtol=1e-3, atol=1.5e-3))])
def test_three_dcgan_steps_match_torch(dtype, tol):
    (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_dcgans(dtype)

    rng = np.random.default_rng(0)
    for step in range(3):
        real = np.tanh(rng.standard_normal((6, 1, 28, 28))).astype(dtype)
        z = rng.standard_normal((6, 100, 1, 1)).astype(dtype)
        stats = train_step(G, D, opt_g, opt_d, fastgan.tensor(real), fastgan.tensor(z))
        loss_d, loss_g = torch_train_step(tG, tD, topt_g, topt_d, torch.tensor(real), torch.tensor(z))
        np.testing.assert_allclose([stats["loss_d"], stats["loss_g"]], [loss_d, loss_g], **tol)

    for ours, theirs in ((G, tG), (D, tD)):
        for name, a, b in state_pairs(ours, theirs):
            np.testing.assert_allclose(a, b.numpy(), err_msg=name, **tol)
