"""Classifier-based metrics: Fréchet distance (vs scipy), Inception score and coverage on constructed inputs, the
MNIST classifier (trained for a few seconds on real MNIST), its checksummed cache, and the quality report that
training writes."""
import json
import os

import numpy as np
import pytest
import scipy.linalg

import fastgan
from fastgan import train
from fastgan.data import MNIST, MNISTError, load_mnist
from fastgan.data.mnist import mnist_to_float
from fastgan.eval import __main__ as eval_cli
from fastgan.eval import classifier as clf
from fastgan.eval import metrics


# --- Fréchet distance ----------------------------------------------------------------------------------------------

def scipy_frechet(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_is_zero_for_identical_sets():
    f = np.random.default_rng(0).standard_normal((300, 16))
    assert metrics.frechet_distance_of_features(f, f) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_matches_scipy():
    rng = np.random.default_rng(1)
    f1 = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12))
    f2 = rng.standard_normal((300, 12)) * 1.5 + 0.3
    ours = metrics.frechet_distance_of_features(f1, f2)
    assert ours == pytest.approx(scipy_frechet(f1, f2), rel=1e-8)


def test_frechet_distance_of_known_gaussians():
    # 1-D: (μ₁ − μ₂)² + (s₁ − s₂)²;  rank-deficient covariances (fewer samples than features) stay finite
    assert metrics.frechet_distance([1.0], [[4.0]], [0.0], [[1.0]]) == pytest.approx(1 + 1)
    rng = np.random.default_rng(2)
    assert np.isfinite(metrics.frechet_distance_of_features(rng.random((10, 128)), rng.random((10, 128))))
    with pytest.raises(ValueError, match=r"frechet_distance: shapes do not match: μ \(3,\) \(2,\), Σ \(3, 3\) \(2, 2\)"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


# --- Inception score and coverage ------------------------------------------------------------------------------

def test_inception_score_on_constructed_probabilities():
    sure_and_balanced = np.eye(10)[np.arange(1000) % 10]
    assert metrics.inception_score(sure_and_balanced)[0] == pytest.approx(10, rel=1e-6)
    assert metrics.inception_score(np.full((1000, 10), 0.1))[0] == pytest.approx(1)
    assert metrics.inception_score(np.eye(10)[np.zeros(1000, int)])[0] == pytest.approx(1)  # one mode only
    five = np.eye(10)[np.arange(1000) % 5]
    assert metrics.inception_score(five, splits=1)[0] == pytest.approx(5, rel=1e-6)


def test_histogram_coverage_and_kl():
    probs = np.eye(10)[np.r_[np.zeros(500, int), np.ones(495, int), np.full(5, 2)]]
    hist = metrics.class_histogram(probs)
    np.testing.assert_allclose(hist[:3], [0.5, 0.495, 0.005])
    assert metrics.modes_covered(hist) == 2  # digit 2 has 0.5 % < 1 %
    assert metrics.kl_to_uniform(np.full(10, 0.1)) == pytest.approx(0)
    assert metrics.kl_to_uniform(np.eye(10)[3]) == pytest.approx(np.log(10))
    assert metrics.kl_to_uniform([0.5, 0.5, 0, 0]) == pytest.approx(np.log(2))


def test_per_class_accuracy():
    requested = np.array([0, 0, 0, 0, 1, 1, 3])
    predicted = np.array([0, 0, 0, 5, 2, 1, 3])   # class 0: 3 of 4, class 1: 1 of 2, class 3: 1 of 1, 2: never asked
    overall, per_class = metrics.per_class_accuracy(np.eye(10)[predicted], requested)
    assert overall == pytest.approx(5 / 7)
    np.testing.assert_allclose(per_class[[0, 1, 3]], [0.75, 0.5, 1.0])
    assert np.isnan(per_class[2]) and np.isnan(per_class[9]) and per_class.shape == (10,)
    with pytest.raises(ValueError, match=r"one integer class per sample \(7\).*float64"):
        metrics.per_class_accuracy(np.eye(10)[predicted], requested.astype(float))


# --- the classifier ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist():
    try:
        return load_mnist(progress=False)
    except MNISTError as err:
        pytest.skip(f"real MNIST is not available here (fetch failed: {err})")


def test_classifier_learns_mnist_in_seconds(mnist):
    # 3 passes over 5,000 training images (≈ 10 s on one core): ≥ 95 % on 2,000 test images (it gets 96.7 %)
    model = clf.train_classifier(mnist_to_float(mnist.x_train[:5000], (0, 1)), mnist.y_train[:5000], epochs=3,
                                 lr=2e-3, progress=False)
    assert clf.accuracy(model, mnist_to_float(mnist.x_test[:2000], (0, 1)), mnist.y_test[:2000]) >= 0.95


def test_random_shift_moves_each_image_by_at_most_the_margin():
    x = np.zeros((200, 1, 9, 9), np.float32)
    x[:, 0, 4, 4] = np.arange(1, 201)  # one lit pixel in the centre of each image, each a different value
    y = clf.random_shift(x, 2, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    n, _, rows, cols = np.nonzero(y)
    assert list(n) == list(range(200)) and np.array_equal(y[n, 0, rows, cols], x[:, 0, 4, 4])  # moved, not lost
    assert np.abs(rows - 4).max() == 2 and np.abs(cols - 4).max() == 2
    assert len(set(zip(rows, cols))) == 25  # every offset in [-2, 2]² occurs
    assert clf.random_shift(x, 0, None) is x


def test_cache_checksum_and_retraining(tmp_path, monkeypatch):
    path = tmp_path / clf.CACHE_NAME
    with pytest.raises(clf.ClassifierError, match="no cached MNIST classifier at .*mnist_classifier"):
        clf.load_classifier(path)
    model = clf.MNISTClassifier()
    clf.save_classifier(model, path, 0.991)
    rng_state = fastgan.get_rng_state()
    loaded, accuracy = clf.load_classifier(path)
    assert accuracy == 0.991 and fastgan.get_rng_state() == rng_state  # loading draws no training randomness
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]

    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(clf.ClassifierError, match="does not match its SHA-256 checksum"):
        clf.load_classifier(path)
    retrained = []
    monkeypatch.setattr(clf, "train_and_cache", lambda p, mnist, **kw: retrained.append(p) or ("model", 0.99))
    assert clf.load_or_train_classifier(path, log=lambda msg: None) == ("model", 0.99) and retrained == [path]

    clf.save_classifier(model, path, 0.991)
    os.remove(str(path) + ".sha256")
    with pytest.raises(clf.ClassifierError, match="the checksum file .* is missing or empty"):
        clf.load_classifier(path)


# --- the quality report written by training -----------------------------------------------------------------------

@pytest.fixture
def scored_digits(tmp_path, monkeypatch):
    """300 random training and 30 test "digits" behind training and the eval CLI (MNIST resized too), an empty
    cache holding an untrained classifier (but a classifier)."""
    from fastgan.data import mnist_resized
    rng = np.random.default_rng(0)
    data = MNIST(rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), rng.integers(0, 10, 300).astype(np.uint8),
                 rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), rng.integers(0, 10, 30).astype(np.uint8))
    monkeypatch.setenv("FASTGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(train, "load_mnist", lambda data_dir=None, progress=True: data)
    monkeypatch.setattr(mnist_resized, "load_mnist", lambda data_dir=None, cache_dir=None, progress=True: data)
    monkeypatch.setattr(eval_cli, "load_mnist", lambda data_dir=None, progress=True: data)
    clf.save_classifier(clf.MNISTClassifier(), clf.classifier_path(), 0.99)
    return data


def test_training_writes_the_quality_report(tmp_path, monkeypatch, capsys, scored_digits):
    args = ["mnist", "--model", "mlp", "--limit", "200", "--no-progress", "--eval-every", "1", "--eval-samples", "20"]

    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert train.main([*args, "--epochs", "2", "--out", straight]) == 0
    out = capsys.readouterr().out
    assert "epoch 1: MNIST-FID" in out and "Inception score" in out and "real-vs-real floor" in out
    assert {"quality.json", "quality.txt", "mnist_fid.png"} <= set(os.listdir(straight))
    report = json.load(open(os.path.join(straight, "quality.json")))
    assert report["samples"] == 20 and len(report["class_histogram"]) == 10
    assert sum(report["class_histogram"]) == pytest.approx(1) and report["mnist_fid"] >= 0
    records = [json.loads(line) for line in open(os.path.join(straight, "metrics.jsonl"))]
    assert [r["epochs_done"] for r in records if r.get("event") == "quality"] == [1, 2]

    # evaluating draws its own noise and restores the RNG: an interrupted and resumed run is still exact
    real_save = train.save_checkpoint

    def save_then_interrupt(*a):
        real_save(*a)
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "save_checkpoint", save_then_interrupt)
    assert train.main([*args, "--epochs", "2", "--out", resumed]) == 130
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert train.main(["mnist", "--resume", resumed, "--no-progress"]) == 0
    assert json.load(open(os.path.join(resumed, "quality.json"))) == report

    assert eval_cli.main(["quality", straight, "--samples", "20", "--no-progress"]) == 0
    assert "MNIST-FID" in capsys.readouterr().out


# --- MNIST at another size ------------------------------------------------------------------------------------------

def test_samples_of_another_size_are_judged_at_28_like_the_floor():
    """A generator that draws its training digits exactly, at 64×64, scores its floor: the samples are scaled to 28×28
    the way the floor's training digits went 28 → 64 → 28."""
    from fastgan.data.resize import resize_images
    from fastgan.eval.quality import QualityEvaluator, format_report, to_mnist_size
    rng = np.random.default_rng(3)
    digits = np.zeros((40, 28, 28), np.uint8)
    for i, d in enumerate(digits):  # bars of different places and widths: features that differ between images
        d[4 + i % 9:12 + i % 13, 3 + i % 7:20 - i % 5] = rng.integers(120, 256)
    data = MNIST(digits, rng.integers(0, 10, 40).astype(np.uint8), digits[::-1].copy(),
                 rng.integers(0, 10, 40).astype(np.uint8))
    model = clf.MNISTClassifier()
    at_64 = QualityEvaluator.from_mnist(data, 40, model, 0.99, image_size=64)  # 40 of 40: every training digit
    at_28 = QualityEvaluator.from_mnist(data, 40, model, 0.99)
    drawn = resize_images(digits, 64).astype(np.float64) / 255  # (40, 1, 64, 64) in [0, 1]
    report = at_64(drawn.reshape(40, -1))
    assert report["image_size"] == 64 and report["samples"] == 40
    assert report["mnist_fid"] == pytest.approx(report["mnist_fid_floor"], abs=1e-6)
    assert report["mnist_fid_floor"] != pytest.approx(at_28.floor, abs=1e-3)  # the round trip changed the digits
    assert "samples 64×64 → 28×28" in "\n".join(format_report(report))
    small = to_mnist_size(drawn, 64)
    assert small.shape == (40, 1, 28, 28) and small.dtype == np.float32
    assert np.abs(small - digits[:, None] / 255).mean() < 0.05  # near the digits they were made from
    assert to_mnist_size(digits / 255, 28).shape == (40, 1, 28, 28)
    with pytest.raises(ValueError, match=r"expected .*28×28 images, got shape \(40, 1, 64, 64\)"):
        to_mnist_size(drawn, 28)


def test_a_run_on_mnist_at_64_gets_the_quality_report(tmp_path, monkeypatch, capsys, scored_digits):
    monkeypatch.setattr(train, "plot_losses", lambda *args, **kwargs: None)
    out = str(tmp_path / "run")
    assert train.main(["mnist", "--model", "dcgan64", "--image-size", "64", "--ngf", "4", "--ndf", "4",
                       "--batch-size", "8", "--limit", "16", "--epochs", "1", "--eval-every", "1",
                       "--eval-samples", "20", "--no-progress", "--out", out]) == 0
    assert "epoch 1: MNIST-FID" in capsys.readouterr().out
    report = json.load(open(os.path.join(out, "quality.json")))
    assert report["image_size"] == 64 and report["samples"] == 20
    assert eval_cli.main(["quality", out, "--samples", "20", "--no-progress"]) == 0
    assert "samples 64×64 → 28×28" in capsys.readouterr().out
    assert eval_cli.main(["parzen", out, "--samples", "4", "--no-progress"]) == 1
    assert "needs a run on MNIST at 28×28" in capsys.readouterr().err
