"""Rounds of the game (gan.py) against the same rounds written in torch, float64, on tiny twin models: K D-steps in
order, feature matching, cGAN / projection / AC-GAN losses, minibatch discrimination and virtual batch norm inside
a round, both update orders. After a round every parameter, gradient and batch-norm statistic must match."""
import numpy as np
import pytest
import torch
from oracle import check, random_inputs

import fastgan
from fastgan import backend, nn, optim
from fastgan.gan import (FEATURE_MATCHING, Batch, alternating_round, feature_matching_loss, simultaneous_round,
                         train_step)
from fastgan.models.conditional import ConditionalGenerator, LabelPlanesDiscriminator, ProjectionDiscriminator
from fastgan.models.discriminator import Discriminator
from fastgan.models.vbn_generator import VirtualBatchNormGenerator

T = torch.nn
TF = torch.nn.functional
NZ, CLASSES, N = 5, 10, 6  # noise size, classes, batch


def torch_feature_matching(real_features, fake_features):
    difference = fake_features.flatten(1).mean(0) - real_features.detach().flatten(1).mean(0)
    return (difference ** 2).sum()


@pytest.mark.parametrize("real_shape, fake_shape", [((5, 3, 2, 2), (4, 3, 2, 2)), ((1, 7), (3, 7)), ((2, 1), (2, 1))])
def test_feature_matching_loss_matches_torch(real_shape, fake_shape):
    real, fake = random_inputs(real_shape, fake_shape, seed=0)
    check(feature_matching_loss, torch_feature_matching, [real, fake], grad=[False, True])


def test_feature_matching_loss_refuses_different_features():
    with pytest.raises(ValueError, match=r"real features \(2, 3\) and fake features \(2, 4\) differ"):
        feature_matching_loss(fastgan.randn(2, 3), fastgan.randn(2, 4))


# --- the torch twins ----------------------------------------------------------------------------------------------

def torch_one_hot(labels, like):
    return TF.one_hot(labels, CLASSES).to(like.dtype)


class TorchVBN(T.Module):
    """Virtual batch norm in torch: records (μ, E[x²], R) in the reference pass, blends 1/(R+1) afterwards."""

    def __init__(self, features):
        super().__init__()
        self.weight, self.bias = T.Parameter(torch.ones(features)), T.Parameter(torch.zeros(features))
        self.recording, self.reference = False, None

    def forward(self, x):
        if self.recording:
            self.reference = (x.mean((0, 2, 3), keepdim=True), (x ** 2).mean((0, 2, 3), keepdim=True), len(x))
            mean, mean_sq = self.reference[:2]
        else:
            ref_mean, ref_mean_sq, r = self.reference
            mean = x.mean((2, 3), keepdim=True) / (r + 1) + ref_mean * r / (r + 1)
            mean_sq = (x ** 2).mean((2, 3), keepdim=True) / (r + 1) + ref_mean_sq * r / (r + 1)
        inv_std = (mean_sq - mean ** 2 + 1e-5) ** -0.5
        return (x - mean) * inv_std * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class TorchMinibatchDiscrimination(T.Module):
    def __init__(self, a, b, c):
        super().__init__()
        self.theta = T.Parameter(torch.zeros(a, b, c))
        self.log_scale = T.Parameter(torch.zeros(b, c))
        self.bias = T.Parameter(torch.zeros(b))

    def forward(self, x):
        n, (a, b, c) = len(x), self.theta.shape
        weight = self.theta * (self.log_scale.exp() / self.theta.norm(dim=0))       # weight-normalised T
        M = (x @ weight.reshape(a, b * c)).reshape(n, b, c)
        close = torch.exp(-(M[:, None] - M[None]).abs().sum(3)) * (1 - torch.eye(n, dtype=x.dtype)[:, :, None])
        return torch.cat([x, close.sum(1) + self.bias], 1)


class TorchG(T.Module):
    def __init__(self, net, conditional, reference=None):
        super().__init__()
        self.net, self.conditional, self.reference = net, conditional, reference

    def forward(self, z, labels):
        if self.conditional:
            z = torch.cat([z, torch_one_hot(labels, z)], 1)
        if self.reference is not None:
            vbns = [m for m in self.net.modules() if isinstance(m, TorchVBN)]
            for m in vbns:
                m.recording = True
            self.net(self.reference)
            for m in vbns:
                m.recording = False
        return self.net(z)


class TorchD(T.Module):
    """features → head, with the class as input planes (cgan), projected onto the features (projection), or
    predicted by the head (acgan). Returns (outputs, features)."""

    def __init__(self, features, head, kind):
        super().__init__()
        self.features, self.head, self.kind = features, head, kind
        if kind == "projection":
            self.embed = T.Parameter(torch.zeros(CLASSES, 4 * 3 * 3))

    def forward(self, x, labels):
        if self.kind == "cgan":
            x = torch.cat([x, torch_one_hot(labels, x)[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        f = self.features(x)
        out = self.head(f)
        if self.kind == "projection":
            out = out + (f.flatten(1) * (torch_one_hot(labels, f) @ self.embed)).sum(1, keepdim=True)
        return out, f


def twin_gans(kind=None, vbn=False, minibatch=False, seed=0):
    """Tiny twins (fastgan, torch) of G: z (5) → 6×6 image, D: conv 4/2/1 → BN+LeakyReLU (the features, 4×3×3)
    → [flatten → (MBD) → Linear]. kind: None, "cgan", "projection" or "acgan". Same weights in both."""
    fastgan.manual_seed(seed)
    conditional = kind is not None
    nz = NZ + (CLASSES if conditional else 0)
    if vbn:
        net = nn.Sequential(nn.Linear(nz, 18), nn.Unflatten(2, 3, 3), nn.VirtualBatchNorm2d(2), nn.ReLU(),
                            nn.Flatten(), nn.Linear(18, 36), nn.Tanh(), nn.Unflatten(1, 6, 6))
        tnet = T.Sequential(T.Linear(nz, 18), T.Unflatten(1, (2, 3, 3)), TorchVBN(2), T.ReLU(), T.Flatten(),
                            T.Linear(18, 36), T.Tanh(), T.Unflatten(1, (1, 6, 6)))
    else:
        net = nn.Sequential(nn.Linear(nz, 36), nn.Tanh(), nn.Unflatten(1, 6, 6))
        tnet = T.Sequential(T.Linear(nz, 36), T.Tanh(), T.Unflatten(1, (1, 6, 6)))
    reference = np.random.default_rng(seed).standard_normal((4, nz)) if vbn else None
    G = VirtualBatchNormGenerator(net, fastgan.tensor(reference)) if vbn else net
    G = ConditionalGenerator(G) if conditional else G
    tG = TorchG(tnet, conditional, None if reference is None else torch.tensor(reference))

    channels, outputs = 1 + (CLASSES if kind == "cgan" else 0), 1 + (CLASSES if kind == "acgan" else 0)
    features = [nn.Conv2d(channels, 4, 4, 2, 1), nn.BatchNorm2d(4, activation="leaky_relu", negative_slope=0.2)]
    tfeatures = T.Sequential(T.Conv2d(channels, 4, 4, 2, 1), T.BatchNorm2d(4), T.LeakyReLU(0.2))
    if minibatch:
        head = [nn.Flatten(), nn.MinibatchDiscrimination(36, 3, 2), nn.Linear(39, outputs)]
        thead = T.Sequential(T.Flatten(), TorchMinibatchDiscrimination(36, 3, 2), T.Linear(39, outputs))
    else:
        head, thead = [nn.Flatten(), nn.Linear(36, outputs)], T.Sequential(T.Flatten(), T.Linear(36, outputs))
    D = Discriminator(*features, *head, feature_layers=2, class_outputs=CLASSES if kind == "acgan" else 0)
    D = {"cgan": LabelPlanesDiscriminator, "projection": lambda body: ProjectionDiscriminator(body, 36)}.get(
        kind, lambda body: body)(D)
    tD = TorchD(tfeatures, thead, kind)
    if minibatch:   # initialised from data here, so that both start from the same T and β
        next(m for m in D.modules() if isinstance(m, nn.MinibatchDiscrimination)).initialise(fastgan.randn(4, 36))

    for ours, theirs in ((G, tG), (D, tD)):
        ours.double()
        theirs.double()
        with torch.no_grad():
            for p, q in zip(ours.parameters(), theirs.parameters()):
                assert p.shape == tuple(q.shape)
                q.copy_(torch.tensor(p.numpy()))
    sgd = {"lr": 0.1, "momentum": 0.5}
    return ((G, D, optim.SGD(G.parameters(), **sgd), optim.SGD(D.parameters(), **sgd)),
            (tG, tD, torch.optim.SGD(tG.parameters(), **sgd), torch.optim.SGD(tD.parameters(), **sgd)))


def torch_round(G, D, opt_g, opt_d, batches, kind, g_loss="non-saturating", real_label=1.0, d_loss_scale=1.0,
                simultaneous=False):
    """The round in torch, written out plainly. Returns (loss_d of the last D update, loss_g)."""
    acgan = kind == "acgan"

    def d_objective(out, labels, target):
        source = out[:, :1] if acgan else out
        loss = TF.binary_cross_entropy_with_logits(source, torch.full_like(source, target))
        return loss + TF.cross_entropy(out[:, 1:], labels) if acgan else loss

    def g_objective(out, f_fake, f_real, labels):
        if g_loss == FEATURE_MATCHING:
            loss = torch_feature_matching(f_real, f_fake)
        else:
            source = out[:, :1] if acgan else out
            loss = TF.binary_cross_entropy_with_logits(source, torch.ones_like(source))
        return loss + TF.cross_entropy(out[:, 1:], labels) if acgan else loss

    def d_update(real, z, real_labels, fake_labels):
        opt_d.zero_grad()
        loss_real = d_objective(D(real, real_labels)[0], real_labels, real_label)
        (loss_real * d_loss_scale).backward()
        fake = G(z, fake_labels)
        loss_fake = d_objective(D(fake.detach(), fake_labels)[0], fake_labels, 0.0)
        (loss_fake * d_loss_scale).backward()
        opt_d.step()
        return fake, d_loss_scale * (loss_real + loss_fake).item()

    for batch in batches[:len(batches) - simultaneous]:
        fake, loss_d = d_update(*batch)
    real, z, real_labels, fake_labels = batches[-1]
    if simultaneous:
        opt_d.zero_grad()
        opt_g.zero_grad()
        fake = G(z, fake_labels)
        out_real, f_real = D(real, real_labels)
        out_fake, f_fake = D(fake, fake_labels)
        d_obj = d_loss_scale * (d_objective(out_real, real_labels, real_label)
                                + d_objective(out_fake, fake_labels, 0.0))
        g_obj = g_objective(out_fake, f_fake, f_real, fake_labels)
        d_params, g_params = list(D.parameters()), list(G.parameters())
        grads = torch.autograd.grad(d_obj, d_params, retain_graph=True) + torch.autograd.grad(g_obj, g_params)
        for p, g in zip(d_params + g_params, grads):
            p.grad = g
        opt_d.step()
        opt_g.step()
        return d_obj.item(), g_obj.item()
    opt_g.zero_grad()
    D.requires_grad_(False)
    f_real = None
    if g_loss == FEATURE_MATCHING:
        with torch.no_grad():
            f_real = D(real, real_labels)[1]
    out, f_fake = D(fake, fake_labels)
    loss_g = g_objective(out, f_fake, f_real, fake_labels)
    loss_g.backward()
    D.requires_grad_(True)
    opt_g.step()
    return loss_d, loss_g.item()


def make_batches(k, conditional, seed=1):
    """k batches (real images, noise, real labels, requested labels) as NumPy arrays."""
    rng = np.random.default_rng(seed)
    return [(np.tanh(rng.standard_normal((N, 1, 6, 6))), rng.standard_normal((N, NZ)),
             rng.integers(0, CLASSES, N) if conditional else None, rng.integers(0, CLASSES, N) if conditional else None)
            for _ in range(k)]


def play_both(ours, theirs, batches, kind, simultaneous=False, **options):
    (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = ours, theirs
    play = simultaneous_round if simultaneous else alternating_round
    stats = play(G, D, opt_g, opt_d, [Batch(fastgan.tensor(r), fastgan.tensor(z),
                                            None if yr is None else fastgan.tensor(yr),
                                            None if yf is None else fastgan.tensor(yf)) for r, z, yr, yf in batches],
                 **options)
    as_torch = [tuple(None if a is None else torch.tensor(a) for a in batch) for batch in batches]
    loss_d, loss_g = torch_round(tG, tD, topt_g, topt_d, as_torch, kind, simultaneous=simultaneous, **options)
    np.testing.assert_allclose([stats["loss_d"], stats["loss_g"]], [loss_d, loss_g], rtol=1e-10)
    return stats


def assert_twins_match(ours, theirs):
    """Every parameter, its last gradient, and every batch-norm statistic."""
    for model, tmodel in zip(ours[:2], theirs[:2]):
        for (name, p), q in zip(model.named_parameters(), tmodel.parameters()):
            np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"∂{name}")
        tbuffers = {n: b for n, b in tmodel.named_buffers() if not n.endswith("num_batches_tracked")}
        # fastgan's own bookkeeping: VBN's reference batch, minibatch discrimination's "initialised" flag
        ours_buffers = {n: b for n, b in model.named_buffers()
                        if not n.endswith(("reference_input", "initialised"))}
        assert len(ours_buffers) == len(tbuffers)
        for (name, b), tb in zip(ours_buffers.items(), tbuffers.values()):
            np.testing.assert_allclose(b.numpy(), tb.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


# --- rounds -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("g_loss", ["non-saturating", FEATURE_MATCHING])
@pytest.mark.parametrize("vbn", [False, True])
def test_two_d_steps_then_g_matches_torch(g_loss, vbn):
    """K = 2: D updates on batch 1, then on batch 2, then G against the updated D on batch 2's fakes (and, for
    feature matching, batch 2's reals through the updated D); two rounds in a row."""
    ours, theirs = twin_gans(vbn=vbn)
    for seed in (1, 2):
        play_both(ours, theirs, make_batches(2, False, seed), None, g_loss=g_loss, real_label=0.9)
    assert_twins_match(ours, theirs)


@pytest.mark.parametrize("kind", ["cgan", "projection", "acgan"])
def test_conditional_rounds_match_torch(kind):
    ours, theirs = twin_gans(kind, minibatch=kind == "acgan")
    stats = play_both(ours, theirs, make_batches(2, True), kind, real_label=0.9)
    assert_twins_match(ours, theirs)
    assert ("class_acc_real" in stats) == (kind == "acgan") == ("class_acc_fake" in stats)


def test_acgan_class_accuracy_is_d_s():
    ours, _ = twin_gans("acgan")
    G, D, opt_g, opt_d = ours
    real, z, yr, yf = make_batches(1, True)[0]
    logits = D(fastgan.tensor(real)).numpy()[:, 1:]  # D before the round: class_acc_real is measured before its update
    stats = alternating_round(G, D, opt_g, opt_d, [Batch(*(fastgan.tensor(a) for a in (real, z, yr, yf)))])
    assert stats["class_acc_real"] == np.mean(logits.argmax(1) == yr)


@pytest.mark.parametrize("kind, g_loss", [(None, FEATURE_MATCHING), ("acgan", "non-saturating"),
                                          ("acgan", FEATURE_MATCHING)])
def test_simultaneous_rounds_match_torch(kind, g_loss):
    """K = 2 with simultaneous updates: one D update, then both players from one forward pass of the last batch
    (feature matching takes both feature sets from that pass)."""
    ours, theirs = twin_gans(kind)
    play_both(ours, theirs, make_batches(2, kind is not None), kind, simultaneous=True, g_loss=g_loss,
              d_loss_scale=0.5)
    assert_twins_match(ours, theirs)


def test_train_step_is_the_one_batch_round():
    first, _ = twin_gans()
    second, _ = twin_gans()
    real, z, _, _ = make_batches(1, False)[0]
    a = train_step(*first, fastgan.tensor(real), fastgan.tensor(z), real_label=0.9)
    b = alternating_round(*second, [Batch(fastgan.tensor(real), fastgan.tensor(z))], real_label=0.9)
    assert a == b
    for p, q in zip(first[0].parameters() + first[1].parameters(), second[0].parameters() + second[1].parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


@pytest.mark.parametrize("simultaneous", [False, True])
def test_a_round_reads_its_statistics_back_once(monkeypatch, simultaneous):
    """Every statistic of a round (K = 2, AC-GAN: its class accuracies too) comes to the host in one copy at the end,
    so a GPU is never made to wait for the host in the middle of a round."""
    (G, D, opt_g, opt_d), _ = twin_gans("acgan")
    batches = [Batch(*(fastgan.tensor(a) for a in batch)) for batch in make_batches(2, True)]
    copies = []
    to_numpy = backend.to_numpy
    monkeypatch.setattr(backend, "to_numpy", lambda array: copies.append(np.shape(array)) or to_numpy(array))
    stats = (simultaneous_round if simultaneous else alternating_round)(G, D, opt_g, opt_d, batches)
    assert copies == [(len(stats),)] and all(type(v) is float for v in stats.values())


def test_bad_rounds_are_refused_before_any_update():
    (G, D, opt_g, opt_d), _ = twin_gans("acgan")
    real, z, yr, yf = (fastgan.tensor(a) for a in make_batches(1, True)[0])
    before = [p.numpy().copy() for p in G.parameters() + D.parameters()]
    with pytest.raises(ValueError, match="at least one batch"):
        alternating_round(G, D, opt_g, opt_d, [])
    with pytest.raises(ValueError, match="unknown generator loss 'wasserstein'"):
        alternating_round(G, D, opt_g, opt_d, [Batch(real, z, yr, yf)], g_loss="wasserstein")
    with pytest.raises(TypeError, match=r"list of gan.Batch, got \['tuple'\]"):
        alternating_round(G, D, opt_g, opt_d, [(real, z)])
    with pytest.raises(ValueError, match="AC-GAN discriminator needs Batch.real_labels"):
        alternating_round(G, D, opt_g, opt_d, [Batch(real, z, None, yf)])
    with pytest.raises(ValueError, match="conditional generator needs Batch.fake_labels"):
        simultaneous_round(G, D, opt_g, opt_d, [Batch(real, z, yr, None)])
    for p, b in zip(G.parameters() + D.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 10\), got values from 0 to 12"):
        alternating_round(G, D, opt_g, opt_d, [Batch(real, z, yr, fastgan.tensor(np.array([0, 1, 2, 3, 4, 12])))])
