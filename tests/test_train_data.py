"""`python -m fastgan.train` on every data source: the 64×64 DCGAN on fake data, on a folder of images (with exact
resume, and a resume refused when the folder changed) and on MNIST resized to 64; the image settings checked
before anything is written; the MNIST-only metrics refused on other data with a message that says why."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import load_checkpoint
from test_train_cli import assert_same_weights
from fastgan import train
from fastgan.eval import __main__ as eval_cli

pytestmark = pytest.mark.usefixtures("synthetic_mnist")

SMALL = ["--model", "dcgan64", "--ngf", "4", "--ndf", "4", "--batch-size", "8", "--log-every", "1"]


@pytest.fixture
def quick(monkeypatch):
    """No loss plot (a second each)."""
    monkeypatch.setattr(train, "plot_losses", lambda *args, **kwargs: None)


def train_on(dataset, *args):
    return train.main([dataset, "--no-progress", "--device", "cpu", *args])


def make_folder(root, count=16):
    """count small pictures of mixed sizes and modes, two of them in a nested class folder."""
    rng = np.random.default_rng(1)
    for i in range(count):
        folder = root / ("cats" if i % 8 == 0 else "") / ("kittens" if i == 8 else "")
        folder.mkdir(parents=True, exist_ok=True)
        size = (40 + i, 30 + 2 * i)
        mode = ("RGB", "L", "RGBA")[i % 3]
        pixels = rng.integers(0, 256, size[::-1] + ((len(mode),) if mode != "L" else ()), dtype=np.uint8)
        Image.fromarray(pixels, mode).save(folder / f"image{i}.png")
    return root



def test_dcgan64_on_fake_data(tmp_path, capsys, quick):
    out = str(tmp_path / "run")
    assert train_on("fake", *SMALL, "--limit", "16", "--epochs", "1", "--out", out) == 0
    config = json.load(open(os.path.join(out, "config.json")))
    assert (config["dataset"], config["image_size"], config["nc"], config["ngf"], config["ndf"]) == \
        ("fake", 64, 3, 4, 4)
    assert config["data_fingerprint"] == "fake-16x3x64x64-seed0"
    state = load_checkpoint(out)  # validated against build_gan(config): the widths come from the config
    assert state["G"]["0.weight"].shape == (100, 32, 4, 4) and state["G"]["8.weight"].shape == (4, 3, 4, 4)
    assert {"real_samples.png", "fake_samples_epoch_001.png"} <= set(os.listdir(out))
    assert Image.open(os.path.join(out, "fake_samples_epoch_001.png")).mode == "RGB"
    capsys.readouterr()
    for verb in ("quality", "parzen"):  # the MNIST classifier's metrics do not apply to random RGB images
        assert eval_cli.main([verb, out, "--samples", "4", "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert "needs a run on MNIST" in err and "on fake at 3×64×64" in err
    assert eval_cli.main(["time", out]) == 0


def test_dcgan64_on_a_folder_resumes_exactly_and_refuses_a_changed_folder(tmp_path, capsys, quick):
    images = make_folder(tmp_path / "pictures")
    common = ["--data-dir", str(images), "--nc", "1", "--image-size", "64", *SMALL]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert train_on("folder", *common, "--epochs", "2", "--out", straight) == 0
    assert train_on("folder", *common, "--epochs", "1", "--out", resumed) == 0
    assert train_on("folder", "--resume", resumed, "--epochs", "2") == 0
    assert_same_weights(straight, resumed)
    config = json.load(open(os.path.join(straight, "config.json")))
    assert config["nc"] == 1 and config["data_fingerprint"].startswith("folder-")
    assert Image.open(os.path.join(straight, "real_samples.png")).mode == "L"

    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(images / "new.png")  # the folder changed
    before = sorted(os.listdir(resumed))
    capsys.readouterr()
    assert train_on("folder", "--resume", resumed, "--epochs", "3") == 1
    err = capsys.readouterr().err
    assert f"--resume {resumed}: the run trained on data with fingerprint" in err and "the images changed" in err
    assert sorted(os.listdir(resumed)) == before and load_checkpoint(resumed)["epoch"] == 2


def test_dcgan64_on_mnist_resized_to_64(tmp_path, quick):
    out = str(tmp_path / "run")
    assert train_on("mnist", *SMALL, "--image-size", "64", "--limit", "16", "--epochs", "1", "--out", out) == 0
    config = json.load(open(os.path.join(out, "config.json")))
    assert (config["nc"], config["image_size"], config["data_fingerprint"]) == (1, 64, "mnist-train-64px[:16]")
    assert load_checkpoint(out)["G"]["8.weight"].shape == (4, 1, 4, 4)


def test_a_run_from_before_the_image_settings_resumes(tmp_path, quick):
    out = str(tmp_path / "run")
    mlp = ["--model", "mlp", "--limit", "20", "--batch-size", "10"]
    assert train_on("mnist", *mlp, "--epochs", "1", "--out", out) == 0
    path = os.path.join(out, "checkpoint.json")
    record = json.load(open(path))
    for key in ("image_size", "nc", "ngf", "ndf", "strict", "data_fingerprint"):
        del record["config"][key]
    json.dump(record, open(path, "w"))
    assert train_on("mnist", "--resume", out, "--epochs", "2") == 0
    assert load_checkpoint(out)["config"]["image_size"] == 28


@pytest.mark.parametrize("dataset, flags, message", [
    ("mnist", ["--ngf", "8"], "--ngf is an option of --model dcgan64; model dcgan has fixed widths"),
    ("fake", ["--model", "dcgan64", "--image-size", "32"], "--image-size 32: model dcgan64 draws 64×64 images"),
    ("fake", ["--image-size", "64"], "--image-size 64: model dcgan draws 28×28 images"),
    ("fake", ["--nc", "3"], "--nc 3: model dcgan draws grayscale images (nc 1)"),
    ("mnist", ["--model", "dcgan64", "--image-size", "64", "--nc", "3"], "--nc 3: MNIST is grayscale (nc 1)"),
    ("fake", ["--data-dir", "somewhere"], "--data-dir: dataset fake makes random images; it reads no folder"),
    ("folder", ["--model", "dcgan64"], "dataset folder needs --data-dir DIR"),
    ("fake", ["--strict"], "--strict is for dataset folder"),
    ("fake", ["--eval-every", "1"], "--eval-every: the classifier-based metrics need MNIST (at any size), not "
                                    "dataset fake at 28×28"),
    ("fake", ["--model", "dcgan64", "--ngf", "0"], "--ngf must be an integer >= 1, got 0"),
    ("fake", ["--model", "dcgan64", "--batch-size", "8", "--limit", "4"],
     "--batch-size 8 is larger than the 4 training images (--limit 4)"),
])
def test_image_settings_are_checked_before_anything_is_written(tmp_path, capsys, dataset, flags, message):
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_:
        train_on(dataset, "--epochs", "1", "--out", out, *flags)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.startswith("usage: python -m fastgan.train")
    assert not os.path.exists(out)


def test_folder_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "run")
    assert train_on("folder", "--model", "dcgan64", "--data-dir", str(tmp_path / "empty"), "--out", out) == 1
    assert "no images in it or its subfolders" in capsys.readouterr().err and not os.path.exists(out)
