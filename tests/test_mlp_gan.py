"""The 2014 MLP GAN: architecture and initialisation, its recipe (the lr/momentum schedule as a function of the step),
a `--model mlp` smoke run and exact resume."""
import json
import math
import os

import numpy as np
import pytest

import fastgan
from conftest import load_checkpoint
from fastgan import optim, train
from fastgan.gan import simultaneous_step
from fastgan.models import MODELS, RECIPES
from fastgan.models.mlp_gan import MLP_RECIPE, mlp_gan_mnist, pixel_logits


def test_architecture_and_initialisation():
    fastgan.manual_seed(0)
    mean = np.random.default_rng(0).random(784) * 0.5
    mean[:3] = [0.0, 1.0, 0.5]
    G, D = mlp_gan_mnist(pixel_mean=mean)
    assert MODELS["mlp"] is mlp_gan_mnist and RECIPES["mlp"] is MLP_RECIPE
    assert [p.shape for p in G.parameters()] == [(1200, 100), (1200,), (1200, 1200), (1200,), (784, 1200), (784,)]
    assert [p.shape for p in D.parameters()] == [(1200, 784), (1200,), (1200, 240), (1200,), (1, 240), (1,)]
    for net, irange in ((G, 0.05), (D, 0.005)):
        weights = [p.numpy() for p in net.parameters() if p.ndim == 2]
        assert all(np.abs(w).max() <= irange and np.abs(w).max() > 0.9 * irange for w in weights)
    bias = G[4].bias.numpy()
    np.testing.assert_allclose(bias[:3], [math.log(1e-3 / (1 - 1e-3)), math.log((1 - 1e-3) / 1e-3), 0], atol=1e-5)
    np.testing.assert_allclose(bias, pixel_logits(mean), rtol=1e-5, atol=1e-5)

    z = MLP_RECIPE.sample_noise(5, 100)
    assert z.shape == (5, 100) and np.abs(z.numpy()).max() <= math.sqrt(3)
    x = G(z)
    assert x.shape == (5, 1, 28, 28) and 0 <= x.numpy().min() and x.numpy().max() <= 1
    assert D(x).shape == (5, 1)
    # dropout is on in training mode (also while G trains), off in eval mode
    D.train()
    assert not np.array_equal(D(x).numpy(), D(x).numpy())
    D.eval()
    np.testing.assert_array_equal(D(x).numpy(), D(x).numpy())


def test_schedule_values():
    r = MLP_RECIPE
    assert r.schedule(0, 500, 250) == (0.1, 0.5)
    lr, _ = r.schedule(10 ** 6, 500, 250)
    assert lr == pytest.approx(0.1 / 1.000004 ** 10 ** 6) and lr == pytest.approx(0.1 * math.exp(-4), rel=1e-5)
    assert r.schedule(10 ** 7, 500, 250)[0] == 1e-6                        # the floor
    assert r.schedule(500, 500, 250)[1] == pytest.approx(0.5)             # the ramp starts after epoch 1 ...
    assert r.schedule(int(125.5 * 500), 500, 250)[1] == pytest.approx(0.6)  # ... is linear ...
    assert r.schedule(250 * 500, 500, 250)[1] == pytest.approx(0.7)       # ... ends at epoch 250
    assert r.schedule(400 * 500, 500, 400)[1] == pytest.approx(0.7)
    # a 25-epoch run compresses the ramp tenfold: epochs 0.1 → 25
    assert r.schedule(int(12.55 * 500), 500, 25)[1] == pytest.approx(0.6)
    assert r.schedule(25 * 500, 500, 25)[1] == pytest.approx(0.7)
    assert r.schedule(0, 500, 250, lr=0.05) == (0.05, 0.5)                 # --lr overrides the initial value

    G, D = mlp_gan_mnist()
    opts = [r.make_optimizer(m.parameters(), 0.1) for m in (G, D)]
    assert all(isinstance(o, optim.SGD) for o in opts)
    r.apply_schedule(opts, 250 * 500, 500, 250)
    assert all(o.momentum == pytest.approx(0.7) and o.lr == pytest.approx(0.1 / 1.000004 ** 125000) for o in opts)


def test_dcgan_recipe_keeps_the_old_choices():
    r = RECIPES["dcgan"]
    assert (r.optimizer, r.lr, r.beta1, r.batch_size, r.value_range, r.train_images, r.update, r.d_loss_scale) == \
        ("adam", 2e-4, 0.5, 128, (-1.0, 1.0), None, "alternating", 1.0)
    assert (MLP_RECIPE.update, MLP_RECIPE.d_loss_scale) == ("simultaneous", 0.5)  # the paper's code
    assert r.schedule(10 ** 6, 468, 5) == (2e-4, 0.0)
    fastgan.manual_seed(3)
    z = r.sample_noise(4, 100)
    fastgan.manual_seed(3)
    np.testing.assert_array_equal(z.numpy(), fastgan.randn(4, 100, 1, 1).numpy())  # the same draws as before


def torch_mlp_gan():
    """The 2014 MLP GAN in torch (maxout as a Linear and the max over each group of 5), for the twin tests."""
    import torch
    T = torch.nn

    class Maxout(T.Module):
        def __init__(self, in_features, units, pieces):
            super().__init__()
            self.pieces, self.linear = pieces, T.Linear(in_features, units * pieces)

        def forward(self, x):
            y = self.linear(x)
            return y.view(len(y), -1, self.pieces).amax(-1)

    G = T.Sequential(T.Linear(100, 1200), T.ReLU(), T.Linear(1200, 1200), T.ReLU(), T.Linear(1200, 784), T.Sigmoid(),
                     T.Unflatten(1, (1, 28, 28)))
    D = T.Sequential(T.Flatten(), T.Dropout(0.2), Maxout(784, 240, 5), T.Dropout(0.5), Maxout(240, 240, 5),
                     T.Dropout(0.5), T.Linear(240, 1))
    return G, D


def twins(ours, theirs, dtype, lr=0.1, momentum=0.5):
    """Give torch's (G, D) fastgan's weights; return both engines' (G, D, SGD of G, SGD of D)."""
    import torch
    for a, b in zip(ours, theirs):
        a.astype(dtype)
        b.to(torch.float64 if dtype == np.float64 else torch.float32)
        with torch.no_grad():
            for p, q in zip(a.parameters(), b.parameters()):
                q.copy_(torch.tensor(p.numpy()))
    return ((*ours, *[optim.SGD(m.parameters(), lr=lr, momentum=momentum) for m in ours]),
            (*theirs, *[torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum) for m in theirs]))


def twin_mlp_gans(dtype=np.float32):
    fastgan.manual_seed(0)
    return twins(mlp_gan_mnist(pixel_mean=np.linspace(0.01, 0.5, 784)), torch_mlp_gan(), dtype)


def torch_simultaneous_step(G, D, opt_g, opt_d, real, z):
    """The paper code's update in torch: ½·(BCE real + BCE fake) for D and BCE(fake, 1) for G, both from one
    forward pass, both players' gradients taken before either steps. Returns (D's objective, G's)."""
    import torch
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    fake_logits, real_logits = D(G(z)), D(real)
    d_obj = 0.5 * (bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits)))
    g_obj = bce(fake_logits, torch.ones_like(fake_logits))
    d_params, g_params = list(D.parameters()), list(G.parameters())
    grads = torch.autograd.grad(d_obj, d_params, retain_graph=True) + torch.autograd.grad(g_obj, g_params)
    for p, g in zip(d_params + g_params, grads):
        p.grad = g
    opt_d.step()
    opt_g.step()
    return d_obj.item(), g_obj.item()


@pytest.mark.parametrize("model", ["small", "paper"])
def test_simultaneous_step_matches_torch(model):
    """Two simultaneous rounds (½-scaled D objective, SGD with momentum) in fastgan and in torch, float64: both
    players' gradients come from one forward pass and G's goes through D before D's update. The paper's model runs
    with D in eval mode: the two engines' dropout masks differ."""
    torch = pytest.importorskip("torch")
    T = torch.nn
    if model == "small":
        fastgan.manual_seed(0)
        ours = (fastgan.nn.Sequential(fastgan.nn.Linear(8, 16), fastgan.nn.ReLU(), fastgan.nn.Linear(16, 12),
                                      fastgan.nn.Sigmoid()),
                fastgan.nn.Sequential(fastgan.nn.Linear(12, 10), fastgan.nn.LeakyReLU(0.2), fastgan.nn.Linear(10, 1)))
        (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twins(ours, (
            T.Sequential(T.Linear(8, 16), T.ReLU(), T.Linear(16, 12), T.Sigmoid()),
            T.Sequential(T.Linear(12, 10), T.LeakyReLU(0.2), T.Linear(10, 1))), np.float64)
        real_shape, nz = (5, 12), 8
    else:
        (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_mlp_gans(np.float64)
        D.eval(), tD.eval()
        real_shape, nz = (3, 1, 28, 28), 100
    rng = np.random.default_rng(1)
    for _ in range(2):
        real, z = rng.random(real_shape), rng.uniform(-1, 1, (real_shape[0], nz))
        stats = simultaneous_step(G, D, opt_g, opt_d, fastgan.tensor(real), fastgan.tensor(z), d_loss_scale=0.5)
        d_obj, g_obj = torch_simultaneous_step(tG, tD, topt_g, topt_d, torch.tensor(real), torch.tensor(z))
        np.testing.assert_allclose([stats["loss_d"], stats["loss_g"]], [d_obj, g_obj], rtol=1e-12)
    for ours, theirs in ((G, tG), (D, tD)):
        for a, b in zip(ours.parameters(), theirs.parameters()):
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)


# --- the command line ----------------------------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("synthetic_mnist")


def run(*args):
    return train.main(["mnist", "--model", "mlp", "--no-progress", "--limit", "200", "--log-every", "1", *args])


load = load_checkpoint


def test_smoke_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert run("--epochs", "1", "--out", out) == 0
    assert {"config.json", "real_samples.png", "fake_samples_epoch_001.png", "metrics.jsonl", "losses.png",
            "checkpoint.json"} <= set(os.listdir(out))
    config = json.load(open(os.path.join(out, "config.json")))
    assert (config["model"], config["batch_size"], config["lr"], config["schedule_epochs"]) == ("mlp", 100, 0.1, 1)
    steps = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl")) if "loss_d" in line]
    assert [r["step"] for r in steps] == [0, 1]  # 200 images, batch 100
    assert steps[0]["lr"] == 0.1 and steps[1]["lr"] == pytest.approx(0.1 / 1.000004)
    assert steps[0]["momentum"] == 0.5 and 0.5 < steps[1]["momentum"] < 0.7
    state = load(out)
    assert state["opt_g"]["lr"] == pytest.approx(0.1 / 1.000004) and state["opt_d"]["hyper"]["momentum"] > 0.5
    assert "[0/1][0/2] Loss_D:" in capsys.readouterr().out


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert run("--epochs", "2", "--out", straight) == 0

    real_save = train.save_checkpoint

    def save_then_interrupt(*a):  # Ctrl-C right after the first epoch's checkpoint
        real_save(*a)
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "save_checkpoint", save_then_interrupt)
    assert run("--epochs", "2", "--out", resumed) == 130
    assert load(resumed)["epoch"] == 1
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert train.main(["mnist", "--resume", resumed, "--no-progress"]) == 0

    a, b = load(straight), load(resumed)
    assert a["epoch"] == b["epoch"] == 2
    for model in ("G", "D"):
        for name in a[model]:
            np.testing.assert_array_equal(a[model][name], b[model][name], err_msg=name)
    for opt in ("opt_g", "opt_d"):
        assert a[opt]["lr"] == b[opt]["lr"] and a[opt]["hyper"] == b[opt]["hyper"]
    lines = [[line for line in open(os.path.join(d, "metrics.jsonl")) if "loss_d" in line] for d in (straight, resumed)]
    assert lines[0] == lines[1]


def test_noise_choice_is_kept_by_the_run_and_its_evaluation(tmp_path):
    from fastgan.eval.runs import load_generator, sample_images
    from fastgan.models import recipe_for

    default, normal = str(tmp_path / "default"), str(tmp_path / "normal")
    assert run("--epochs", "1", "--out", default) == 0
    assert run("--epochs", "1", "--out", normal, "--noise", "normal") == 0
    assert json.load(open(os.path.join(default, "config.json")))["noise"] == "uniform"  # the recipe's
    assert json.load(open(os.path.join(normal, "config.json")))["noise"] == "normal"
    assert recipe_for({"model": "mlp"}).noise == "uniform"  # a checkpoint from before the option existed
    G, config, recipe = load_generator(normal)
    assert config["noise"] == recipe.noise == "normal"
    # the evaluation draws the run's noise: G's samples match those of G fed N(0, 1) drawn the same way
    ours = sample_images(G, recipe, 100, 50, seed=3)
    fastgan.manual_seed(3)
    with fastgan.no_grad():
        direct = G(fastgan.randn(50, 100)).numpy().reshape(50, -1)
    np.testing.assert_allclose(ours, direct, rtol=1e-6, atol=1e-7)
