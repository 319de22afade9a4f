"""Parzen-window log-likelihood: a direct slow computation, σ selection, stability at σ = 0.1 in 784-d, and the
`python -m fastgan.eval parzen` command (including the errors for a bad run folder)."""
import json
import math
import os

import numpy as np
import pytest

from fastgan import checkpoint, train
from fastgan.data import MNIST
from fastgan.eval import __main__ as eval_cli
from fastgan.eval import parzen


def direct_log_likelihood(x, centers, sigma):
    """log p(x) by the definition, one pair at a time: log(1/M Σ_j Π_k N(x_k; μ_jk, σ²))."""
    out = []
    for xi in x:
        total = 0.0
        for mu in centers:
            density = 1.0
            for xk, mk in zip(xi, mu):
                density *= math.exp(-(xk - mk) ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
            total += density
        out.append(math.log(total / len(centers)))
    return np.array(out)


def test_matches_the_direct_computation():
    rng = np.random.default_rng(0)
    x, centers = rng.random((7, 5)), rng.random((11, 5))
    sigmas = [0.2, 0.5, 1.0]
    ours = parzen.parzen_log_likelihood(x, centers, sigmas, batch_size=3)  # batches of 3, 3, 1
    for k, sigma in enumerate(sigmas):
        np.testing.assert_allclose(ours[k], direct_log_likelihood(x, centers, sigma), rtol=1e-10)


def test_distances_from_one_gemm():
    rng = np.random.default_rng(1)
    x, centers = rng.random((6, 784)), rng.random((9, 784))
    direct = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(parzen.squared_distances(x, centers), direct, rtol=1e-12)
    assert (parzen.squared_distances(x, x).diagonal() >= 0).all()


def test_sigma_selection_finds_the_true_width():
    # well-separated centres (distance ≈ 11) and data = a centre + N(0, s²I): the best window is σ ≈ s
    rng = np.random.default_rng(2)
    centers = rng.random((50, 784))
    s = parzen.SIGMAS[4]  # 0.278
    validation = centers[rng.integers(0, 50, 200)] + s * rng.standard_normal((200, 784))
    sigma, means = parzen.select_sigma(validation, centers)
    assert sigma == pytest.approx(s) and int(np.argmax(means)) == 4


def test_stable_at_small_sigma_in_784_dimensions():
    # −‖x − μ‖²/(2σ²) ≈ −6,500 here: exp underflows to 0 and a naive log-mean-exp gives −inf
    rng = np.random.default_rng(3)
    x, centers = rng.random((4, 784)), rng.random((3, 784))
    ll = parzen.parzen_log_likelihood(x, centers, [0.1])[0]
    assert np.isfinite(ll).all()
    with np.errstate(divide="ignore"):
        d2 = ((x[:, None] - centers[None]) ** 2).sum(axis=2)
        naive = np.log(np.exp(-d2 / 0.02).mean(axis=1))
    assert np.isneginf(naive).all()
    # with one centre log p is exactly the Gaussian's log density
    one = parzen.parzen_log_likelihood(x, centers[:1], [0.1])[0]
    expected = -d2[:, 0] / 0.02 - 784 * math.log(0.1 * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(one, expected, rtol=1e-12)


def test_estimate_reports_mean_and_standard_error():
    rng = np.random.default_rng(4)
    centers, validation, test = rng.random((20, 8)), rng.random((10, 8)), rng.random((30, 8))
    result = parzen.parzen_estimate(centers, validation, test)
    ll = parzen.parzen_log_likelihood(test, centers, [result["sigma"]])[0]
    assert result["mean"] == pytest.approx(ll.mean())
    assert result["stderr"] == pytest.approx(ll.std() / math.sqrt(30))
    assert result["sigma"] in parzen.SIGMAS
    fixed = parzen.parzen_estimate(centers, validation, test, sigma=0.3)
    assert fixed["sigma"] == 0.3 and fixed["validation_means"] is None
    text = "\n".join(parzen.format_report(result, fixed))
    assert "Adversarial nets (paper, Table 1)" in text and "225 ± 2" in text and "sanity ceiling" in text


# --- the command -------------------------------------------------------------------------------------------------

def fake_mnist():
    """Random "digits" laid out like MNIST: 300 training images, validation rows 50000:51000, 40 test images."""
    rng = np.random.default_rng(0)
    x_train = np.zeros((51000, 28, 28), np.uint8)
    x_train[:300] = rng.integers(0, 256, (300, 28, 28))
    x_train[50000:] = rng.integers(0, 256, (1000, 28, 28))
    return MNIST(x_train, rng.integers(0, 10, 51000).astype(np.uint8),
                 rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), rng.integers(0, 10, 40).astype(np.uint8))


@pytest.fixture
def mlp_run(tmp_path, monkeypatch):
    data = fake_mnist()
    monkeypatch.setenv("FASTGAN_CACHE", str(tmp_path / "cache"))  # no cached classifier: no quality report
    monkeypatch.setattr(train, "load_mnist", lambda data_dir=None, progress=True: data)
    monkeypatch.setattr(eval_cli, "load_mnist", lambda data_dir=None, progress=True: data)
    out = str(tmp_path / "run")
    assert train.main(["mnist", "--model", "mlp", "--limit", "200", "--epochs", "1", "--no-progress",
                       "--out", out]) == 0
    return out


def test_parzen_command(mlp_run, capsys):
    assert eval_cli.main(["parzen", mlp_run, "--samples", "100", "--limit", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Adversarial nets (paper, Table 1)" in out and "this run" in out and "sanity ceiling" in out
    saved = json.load(open(os.path.join(mlp_run, "parzen.json")))
    assert saved["model"]["centers"] == 100 and saved["model"]["test_images"] == 20 and saved["epoch"] == 1
    assert np.isfinite(saved["model"]["mean"]) and np.isfinite(saved["training_images_ceiling"]["mean"])
    assert eval_cli.main(["parzen", mlp_run, "--samples", "50", "--limit", "5", "--sigma", "0.5",
                          "--no-ceiling", "--no-progress"]) == 0
    assert "σ = 0.5" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["parzen", "quality"])
def test_bad_run_folders_give_clear_errors(mlp_run, tmp_path, capsys, command):
    assert eval_cli.main([command, str(tmp_path / "empty")]) == 1
    assert "no checkpoint" in capsys.readouterr().err

    path = os.path.join(mlp_run, checkpoint.CHECKPOINT)
    record = json.load(open(path))

    def evaluate_with(config_change):
        json.dump({**record, "config": {**record["config"], **config_change}}, open(path, "w"))
        assert eval_cli.main([command, mlp_run]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        return err

    # an MLP checkpoint under the DCGAN's name: its tensors cannot fit
    assert "model 'dcgan' expects (N, 100, 1, 1); a checkpoint of another model?" in evaluate_with({"model": "dcgan"})
    assert "config names model 'wgan', not a model fastgan knows" in evaluate_with({"model": "wgan"})
    assert "config has nz = 0, not a positive integer" in evaluate_with({"nz": 0})

    open(path, "w").write("{not json")
    assert eval_cli.main([command, mlp_run]) == 1
    assert "checkpoint.json: unreadable" in capsys.readouterr().err
