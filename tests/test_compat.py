"""Code written for torch runs on fastgan with only its imports changed: the ops and methods such code calls,
each against torch, and the model and training step of pytorch/examples' dcgan/main.py, end to end."""

import numpy as np
import pytest
import torch

import fastgan
import fastgan.nn
import fastgan.optim
from fastgan import functional as F
from oracle import check, random_inputs

# --- shapes ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, dim", [((3, 1, 4, 1), None), ((3, 1, 4, 1), 1), ((3, 1, 4, 1), -1),
                                        ((3, 1, 4, 1), 0), ((3, 1, 4, 1), (1, 3)), ((1,), None), ((1,), 0),
                                        ((), None), ((0, 1), 1)])
def test_squeeze_matches_torch(shape, dim):
    x, = random_inputs(shape)
    torch_dim = () if dim is None else dim
    check(lambda x: x.squeeze(dim), lambda x: x.squeeze(torch_dim) if dim is not None else x.squeeze(), [x])


@pytest.mark.parametrize("shape, dim", [((3, 4), 0), ((3, 4), 2), ((3, 4), -1), ((3, 4), -3), ((), 0), ((), -1),
                                        ((1,), 1)])
def test_unsqueeze_matches_torch(shape, dim):
    x, = random_inputs(shape)
    check(lambda x: x.unsqueeze(dim), lambda x: x.unsqueeze(dim), [x])
    check(lambda x: F.unsqueeze(x, dim), lambda x: torch.unsqueeze(x, dim), [x], dtype=np.float32)


@pytest.mark.parametrize("op, dim", [("squeeze", 2), ("squeeze", -3), ("unsqueeze", 3), ("unsqueeze", -4)])
def test_squeeze_and_unsqueeze_name_a_bad_dim(op, dim):
    with pytest.raises(IndexError, match=rf"{op}: dim {dim} is out of range for a tensor of shape \(2, 1\)"):
        getattr(fastgan.zeros(2, 1), op)(dim)


def test_size_matches_torch():
    ours, theirs = fastgan.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    assert ours.size() == tuple(theirs.size()) and ours.size(0) == theirs.size(0) == 2
    assert ours.size(-1) == theirs.size(-1) == 4
    with pytest.raises(IndexError, match=r"size: dim 3 is out of range for a tensor of shape \(2, 3, 4\)"):
        ours.size(3)


# --- creating and filling --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs", [(((4,), 1.0), {}), (((2, 3), 7), {}), (((3,), 1), {"dtype": "float"}),
                                          (((5,), 0.5), {}), (((0,), 2.0), {}), (((2,), 1.5), {"dtype": "double"})])
def test_full_matches_torch(args, kwargs):
    ours = fastgan.full(*args, **{k: getattr(fastgan, v) for k, v in kwargs.items()})
    theirs = torch.full(*args, **{k: getattr(torch, v) for k, v in kwargs.items()})
    assert ours.dtype == np.dtype(str(theirs.dtype).replace("torch.", ""))
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_dtype_names_are_torchs():
    assert fastgan.float is fastgan.float32 is np.float32 and fastgan.double is fastgan.float64 is np.float64
    assert fastgan.long is np.int64
    assert fastgan.randn(4, 16, 1, 1).shape == (4, 16, 1, 1)


def test_fill_and_zero_match_torch():
    ours, theirs = fastgan.full((3,), 1.0), torch.full((3,), 1.0)
    assert ours.fill_(0.25) is ours
    theirs.fill_(0.25)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(ours.zero_().numpy(), theirs.zero_().numpy())


def test_normal_and_uniform_fill_in_place_with_the_right_statistics():
    fastgan.manual_seed(0)
    w = fastgan.zeros(200, 300, requires_grad=True)
    array = w.data
    w.normal_(1.0, 0.02)
    assert w.data is array and abs(array.mean() - 1.0) < 1e-3 and abs(array.std() - 0.02) < 1e-3
    w.uniform_(-2.0, 3.0)
    assert w.data is array and array.min() >= -2.0 and array.max() < 3.0 and abs(array.mean() - 0.5) < 0.02
    fastgan.manual_seed(0)
    first = fastgan.zeros(5).normal_().numpy()
    fastgan.manual_seed(0)
    assert np.array_equal(first, fastgan.zeros(5).normal_().numpy())  # drawn from fastgan's seeded generator


def test_in_place_write_on_an_op_result_is_refused():
    y = fastgan.randn(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"fill_\(\) on a tensor computed by 'mul': in-place writes are only "
                                           r"allowed on leaves"):
        y.fill_(0)


# --- initialisation and Module.apply ---------------------------------------------------------------------------

def test_init_functions_fill_a_tensor_or_its_array_as_torch():
    for name, args in [("zeros_", ()), ("ones_", ()), ("constant_", (0.3,))]:
        ours, theirs = fastgan.nn.Parameter(np.full((2, 3), 9, np.float32)), torch.full((2, 3), 9.0)
        getattr(torch.nn.init, name)(theirs, *args)
        np.testing.assert_array_equal(getattr(fastgan.nn.init, name)(ours, *args).numpy(), theirs.numpy())
        array = np.full((2, 3), 9, np.float32)  # m.weight.data, as older tutorials pass it: written through
        assert getattr(fastgan.nn.init, name)(array, *args) is array
        np.testing.assert_array_equal(array, theirs.numpy())
    weight = fastgan.nn.Conv2d(3, 64, 4).weight
    fastgan.nn.init.normal_(weight.data, 0.0, 0.02)
    assert abs(weight.numpy().std() - 0.02) < 2e-3


def test_apply_visits_children_first_as_torch():
    def visit(order):
        return lambda m: order.append(type(m).__name__)

    ours, theirs = [], []
    fastgan.nn.Sequential(fastgan.nn.Linear(2, 2), fastgan.nn.Sequential(fastgan.nn.ReLU(True), fastgan.nn.Tanh())
                          ).apply(visit(ours))
    torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.ReLU(True), torch.nn.Tanh())
                        ).apply(visit(theirs))
    assert ours == theirs == ["Linear", "ReLU", "Tanh", "Sequential", "Sequential"]


@pytest.mark.parametrize("ours, theirs", [(lambda: fastgan.nn.ReLU(True), lambda: torch.nn.ReLU()),
                                          (lambda: fastgan.nn.LeakyReLU(0.2, inplace=True),
                                           lambda: torch.nn.LeakyReLU(0.2, inplace=False))])
def test_inplace_activations_are_accepted_and_leave_their_input_alone(ours, theirs):
    x, = random_inputs((3, 4), dtype=np.float32)
    kept = x.copy()
    check(lambda x: ours()(x), lambda x: theirs()(x), [x], dtype=np.float32)  # (torch's in place on a leaf: error)
    layer, t = ours(), fastgan.tensor(x)
    layer(t)
    np.testing.assert_array_equal(t.numpy(), kept)  # fastgan never writes into its input
    assert "inplace=True" in repr(fastgan.nn.ReLU(True))


# --- BCE on probabilities and on logits ------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bce_loss_matches_torch(reduction, dtype):
    s, y = random_inputs((4, 5), (4, 5), dtype=dtype)
    p = 1 / (1 + np.exp(-3 * s))
    y = (y > 0).astype(dtype)
    y[0, :2] = 0.9  # a soft target
    check(lambda p, y: fastgan.nn.BCELoss(reduction=reduction)(p, y),
          lambda p, y: torch.nn.BCELoss(reduction=reduction)(p, y), [p, y], grad=[True, False], dtype=dtype)


def test_bce_loss_clamps_the_log_at_minus_100_as_torch():
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-300, 0.5])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    check(lambda p, y: F.binary_cross_entropy(p, y, "none"),
          lambda p, y: torch.nn.functional.binary_cross_entropy(p, y, reduction="none"), [p, y], grad=[True, False])
    assert F.binary_cross_entropy(fastgan.tensor(p[:1]), fastgan.tensor(y[:1])).item() == 100.0


def test_bce_loss_keeps_the_targets_it_was_given():
    p, label = fastgan.tensor(np.full(3, 0.25), requires_grad=True), fastgan.full((3,), 1.0, dtype=fastgan.double)
    loss = fastgan.nn.BCELoss()(p, label)
    label.fill_(0.0)  # written after the forward pass, before backward: the loss still uses the ones
    loss.backward()
    np.testing.assert_allclose(p.grad.numpy(), np.full(3, -1 / 0.25 / 3))


def test_bce_loss_names_bad_input():
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must hold probabilities in \[0, 1\], got "
                                         r"values in \[-1.0, 2.0\]; for logits use"):
        fastgan.nn.BCELoss()(fastgan.tensor([-1.0, 2.0]), fastgan.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target \(3,\) does not match input \(2,\)"):
        fastgan.nn.BCELoss()(fastgan.tensor([0.5, 0.5]), fastgan.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"BCELoss: reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"):
        fastgan.nn.BCELoss(reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_loss_matches_torch(reduction):
    s, y = random_inputs((6,), (6,))
    y = (y > 0).astype(np.float64)
    check(lambda s, y: fastgan.nn.BCEWithLogitsLoss(reduction=reduction)(s, y),
          lambda s, y: torch.nn.BCEWithLogitsLoss(reduction=reduction)(s, y), [s, y], grad=[True, False])


# --- pytorch/examples' dcgan/main.py -----------------------------------------------------------------------------

def dcgan_main(torch, nn, optim, nz=16, ngf=8, ndf=8, nc=3):
    """The model and training-step code of pytorch/examples' dcgan/main.py, written against `torch`, `nn` and
    `optim` exactly as that script imports them, at 32×32 (one layer fewer on each side) for a quick test."""
    def weights_init(m):
        classname = m.__class__.__name__
        if classname.find('Conv') != -1:
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
        elif classname.find('BatchNorm') != -1:
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)

    class Generator(nn.Module):
        def __init__(self, ngpu):
            super(Generator, self).__init__()
            self.ngpu = ngpu
            self.main = nn.Sequential(
                # the code z, nz x 1 x 1, becomes (ngf*4) x 4 x 4
                nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
                nn.BatchNorm2d(ngf * 4),
                nn.ReLU(True),
                # then (ngf*2) x 8 x 8
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * 2),
                nn.ReLU(True),
                # then ngf x 16 x 16
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf),
                nn.ReLU(True),
                # and the image, nc x 32 x 32, in [-1, 1]
                nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
                nn.Tanh()
            )

        def forward(self, input):
            return self.main(input)

    class Discriminator(nn.Module):
        def __init__(self, ngpu):
            super(Discriminator, self).__init__()
            self.ngpu = ngpu
            self.main = nn.Sequential(
                # the image, nc x 32 x 32, becomes ndf x 16 x 16
                nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
                nn.LeakyReLU(0.2, inplace=True),
                # then (ndf*2) x 8 x 8
                nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 2),
                nn.LeakyReLU(0.2, inplace=True),
                # then (ndf*4) x 4 x 4
                nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 4),
                nn.LeakyReLU(0.2, inplace=True),
                # and one probability of "real" per image
                nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False),
                nn.Sigmoid()
            )

        def forward(self, input):
            output = self.main(input)
            return output.view(-1, 1).squeeze(1)

    netG = Generator(0)
    netG.apply(weights_init)
    netD = Discriminator(0)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    fixed_noise = torch.randn(4, nz, 1, 1)
    real_label = 1.
    fake_label = 0.
    optimizerD = optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))

    def train_step(data):
        # (1) update D: maximise log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real_cpu = data[0]
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), real_label, dtype=torch.float)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()

        noise = torch.randn(b_size, nz, 1, 1)
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()

        # (2) update G: maximise log(D(G(z)))
        netG.zero_grad()
        label.fill_(real_label)  # fake labels are real for the generator's loss
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()

        with torch.no_grad():
            samples = netG(fixed_noise).detach().cpu()
        return errD.item(), errG.item(), D_x, D_G_z1, D_G_z2, samples

    return netG, netD, train_step


def test_dcgan_main_runs_on_fastgan_and_matches_torch(monkeypatch):
    fastgan.manual_seed(0)
    ours = dcgan_main(fastgan, fastgan.nn, fastgan.optim)  # = import fastgan as torch, fastgan.nn as nn, ...
    fastgan.manual_seed(0)
    theirs = dcgan_main(torch, torch.nn, torch.optim)
    for net_ours, net_theirs in zip(ours[:2], theirs[:2]):  # torch starts from fastgan's initial weights
        state = {k: torch.tensor(v) for k, v in net_ours.state_dict().items()}
        missing, unexpected = net_theirs.load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)

    rng = np.random.default_rng(0)
    images = [rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32) for _ in range(2)]
    noises = [rng.standard_normal((4, 16, 1, 1)).astype(np.float32) for _ in range(2)]
    fixed = rng.standard_normal((4, 16, 1, 1)).astype(np.float32)
    for step, (image, noise) in enumerate(zip(images, noises)):
        # the same noise in both (each framework's randn draws its own stream)
        monkeypatch.setattr(fastgan, "randn", lambda *shape: fastgan.tensor(noise))
        monkeypatch.setattr(torch, "randn", lambda *shape: torch.tensor(noise))
        *numbers_ours, samples_ours = ours[2]([fastgan.tensor(image), None])
        *numbers_theirs, samples_theirs = theirs[2]([torch.tensor(image), None])
        np.testing.assert_allclose(numbers_ours, numbers_theirs, rtol=2e-4 * (step + 1),
                                   err_msg="Loss_D, Loss_G, D(x), D(G(z)) before and after D's step")
        assert samples_ours.shape == tuple(samples_theirs.shape) == (4, 3, 32, 32) and not samples_ours.requires_grad
    assert all(np.isfinite(numbers_ours))
