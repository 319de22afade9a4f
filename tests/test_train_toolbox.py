"""`python -m fastgan.train` with the GAN tutorial's toolbox: each option runs, is stored in the config, resumes
exactly (--vbn, --d-steps, --conditional) and is refused where it does not apply; a conditional run's grids,
checkpoint, samples and quality report know the requested digits."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import load_checkpoint
from fastgan import train
from fastgan.eval import __main__ as eval_cli
from fastgan.eval import classifier as clf

pytestmark = pytest.mark.usefixtures("synthetic_mnist")


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """No loss plot (a second each)."""
    monkeypatch.setattr(train, "plot_losses", lambda *args, **kwargs: None)


def dcgan(*args):
    return train.main(["mnist", "--no-progress", "--device", "cpu", "--limit", "32", "--batch-size", "8",
                       "--log-every", "1", "--eval-samples", "0", *args])


def config_of(run_dir):
    return json.load(open(os.path.join(run_dir, "config.json")))


def steps_logged(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl")) if "loss_d" in line]


@pytest.mark.parametrize("flags, key, value", [
    (["--d-steps", "2"], "d_steps", 2),
    (["--label-smoothing", "0.1"], "real_label", 0.9),
    (["--g-loss", "feature-matching"], "g_loss", "feature-matching"),
    (["--minibatch-disc", "20,3"], "minibatch_disc", [20, 3]),
    (["--vbn"], "vbn", True),
    (["--conditional", "cgan"], "conditional", "cgan"),
    (["--conditional", "projection"], "conditional", "projection"),
])
def test_each_option_trains_and_is_stored(tmp_path, flags, key, value):
    out = str(tmp_path / "run")
    assert dcgan("--epochs", "1", "--out", out, *flags) == 0
    assert config_of(out)[key] == value and load_checkpoint(out)["config"][key] == value
    steps = steps_logged(out)
    assert len(steps) == (2 if key == "d_steps" else 4) and all(np.isfinite(s["loss_g"]) for s in steps)


@pytest.mark.parametrize("flags", [["--vbn"], ["--d-steps", "2"], ["--conditional", "acgan"]])
def test_resume_gives_the_uninterrupted_result(tmp_path, flags):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert dcgan("--epochs", "2", "--out", straight, *flags) == 0
    assert dcgan("--epochs", "1", "--out", resumed, *flags) == 0
    assert dcgan("--resume", resumed, "--epochs", "2") == 0
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["epoch"] == b["epoch"] == 2
    for key in ("G", "D"):
        for name in a[key]:
            np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=f"{key}.{name}")
    assert steps_logged(straight) == [dict(s) for s in steps_logged(resumed)]
    if flags == ["--vbn"]:  # the reference batch is G's: fixed at the start, kept by the checkpoint
        assert a["G"]["reference_input"].shape == (64, 100, 1, 1)
        np.testing.assert_array_equal(a["G"]["reference_input"], b["G"]["reference_input"])


def test_a_conditional_run_knows_the_requested_digits(tmp_path, capsys):
    clf.save_classifier(clf.MNISTClassifier(), clf.classifier_path(), 0.99)  # untrained, but a classifier
    out = str(tmp_path / "run")
    assert dcgan("--epochs", "1", "--out", out, "--conditional", "acgan", "--eval-samples", "20") == 0
    state = load_checkpoint(out)
    np.testing.assert_array_equal(state["fixed_labels"], np.repeat(np.arange(10), 8))
    assert state["fixed_noise"].shape == (80, 100, 1, 1)
    grid = Image.open(os.path.join(out, "fake_samples_epoch_001.png"))
    assert grid.size == (8 * 30 + 2, 10 * 30 + 2)  # 8 columns, one row per digit
    assert {"class_acc_real", "class_acc_fake"} <= set(steps_logged(out)[0])
    report = json.load(open(os.path.join(out, "quality.json")))  # written by training, beside FID and coverage
    assert 0 <= report["per_class_accuracy"] <= 1 and len(report["per_class_accuracy_by_digit"]) == 10
    assert "mnist_fid" in report and "modes_covered" in report
    capsys.readouterr()

    assert eval_cli.main(["quality", out, "--samples", "10", "--digit", "3", "--no-progress"]) == 0
    assert "per-class acc." in capsys.readouterr().out
    by_digit = json.load(open(os.path.join(out, "quality.json")))["per_class_accuracy_by_digit"]
    assert by_digit[3] is not None and by_digit[:3] == [None] * 3
    assert eval_cli.main(["sample", out]) == 0
    assert Image.open(os.path.join(out, "samples.png")).size == (8 * 30 + 2, 10 * 30 + 2)
    assert eval_cli.main(["sample", out, "--digit", "7", "--samples", "16"]) == 0
    assert Image.open(os.path.join(out, "samples_digit_7.png")).size == (8 * 30 + 2, 2 * 30 + 2)
    assert eval_cli.main(["sample", out, "--digit", "10"]) == 1
    assert "--digit must be in [0, 10), got 10" in capsys.readouterr().err


def test_digit_needs_a_conditional_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert dcgan("--epochs", "1", "--out", out) == 0
    assert eval_cli.main(["sample", out, "--digit", "1"]) == 1
    assert "--digit 1: this run's generator is not conditional" in capsys.readouterr().err
    assert eval_cli.main(["sample", out]) == 0 and os.path.exists(os.path.join(out, "samples.png"))


@pytest.mark.parametrize("flags, message", [
    (["--model", "mlp", "--vbn"], "--vbn: model mlp's generator has no batch norm to make virtual"),
    (["--model", "mlp", "--conditional", "cgan"], "--conditional: model mlp has no conditional variant"),
    (["--d-steps", "0"], "--d-steps must be an integer >= 1 (D updates per G update), got 0"),
    (["--d-steps", "5"], "--d-steps 5 × --batch-size 8 is more than the 32 training images"),
    (["--label-smoothing", "0.1", "--real-label", "0.9"], "--label-smoothing 0.1 sets the real target to 1 − ALPHA, "
                                                          "as --real-label does: give one of them, not both"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
    (["--minibatch-disc", "20"], "argument --minibatch-disc: expected two integers >= 1 as B,C (e.g. 100,5), "
                                 "got '20'"),
    (["--minibatch-disc", "0,3"], "argument --minibatch-disc: expected two integers >= 1"),
    (["--model", "dcgan64", "--image-size", "64", "--vbn", "--minibatch-disc", "4,2"],
     "--vbn, --minibatch-disc: the toolbox's options are the 28×28 models'; model dcgan64 does not offer them"),
    (["--conditional", "bogus"], "argument --conditional: invalid choice: 'bogus'"),
])
def test_bad_toolbox_options_are_refused_before_anything_is_written(tmp_path, capsys, flags, message):
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_:
        dcgan("--epochs", "1", "--out", out, *flags)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err
    assert not os.path.exists(out)


def test_conditional_needs_labels(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["fake", "--conditional", "cgan", "--out", str(tmp_path / "run")])
    assert "--conditional needs the class of every image: dataset fake has no labels" in capsys.readouterr().err


def test_resume_refuses_other_toolbox_options(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert dcgan("--epochs", "1", "--out", out, "--conditional", "acgan") == 0
    with pytest.raises(SystemExit):
        dcgan("--resume", out, "--epochs", "2", "--conditional", "cgan", "--vbn", "--d-steps", "2",
              "--label-smoothing", "0.1")
    err = capsys.readouterr().err
    for conflict in ("--conditional 'cgan' (the run has 'acgan')", "--vbn True (the run has False)",
                     "--d-steps 2 (the run has 1)", "--real-label 0.9 (the run has 1.0)"):
        assert conflict in err
    assert load_checkpoint(out)["epoch"] == 1
