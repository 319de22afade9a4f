"""`python -m fastgan.train`: a smoke run writes every artefact, resume is exact, divergence stops cleanly."""
import json
import os

import numpy as np
import pytest

from conftest import load_checkpoint
from fastgan import train


pytestmark = pytest.mark.usefixtures("synthetic_mnist")


def run(*args):
    return train.main(["mnist", "--no-progress", "--device", "cpu", "--limit", "256", "--batch-size", "64",
                       "--log-every", "2", *args])


load = load_checkpoint


def test_smoke_run_writes_every_artefact(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert run("--epochs", "1", "--out", out) == 0
    files = set(os.listdir(out))
    assert {"config.json", "real_samples.png", "fake_samples_epoch_001.png", "metrics.jsonl", "losses.png",
            "checkpoint.pkl"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    steps = [r for r in records if "loss_d" in r]
    assert [r["iter"] for r in steps] == [0, 2, 3] and all(np.isfinite(r["loss_g"]) for r in steps)
    assert records[-1]["event"] == "epoch_end"
    assert "[0/1][0/4] Loss_D:" in capsys.readouterr().out
    assert load(out)["epoch"] == 1


def test_resume_gives_the_uninterrupted_result(tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert run("--epochs", "2", "--out", straight) == 0
    assert run("--epochs", "1", "--out", resumed) == 0
    assert run("--resume", resumed, "--epochs", "2") == 0
    a, b = load(straight), load(resumed)
    assert a["epoch"] == b["epoch"] == 2
    for model in ("G", "D"):
        for name in a[model]:
            np.testing.assert_array_equal(a[model][name], b[model][name], err_msg=name)
    assert open(os.path.join(straight, "metrics.jsonl")).read().count("loss_d") == \
        open(os.path.join(resumed, "metrics.jsonl")).read().count("loss_d")


def test_divergence_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    assert run("--epochs", "1", "--out", out) == 0
    real_step = train.STEPS["alternating"]
    monkeypatch.setitem(train.STEPS, "alternating", lambda *a, **k: {**real_step(*a, **k), "loss_d": float("nan")})
    assert run("--resume", out, "--epochs", "2") == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "Loss_D = nan" in err and "checkpoint of epoch 1" in err
    assert load(out)["epoch"] == 1


def test_dry_run_and_bad_arguments(tmp_path, capsys):
    assert run("--dry-run", "--epochs", "1", "--out", str(tmp_path / "dry")) == 0
    assert "fake_samples_epoch_001.png" in os.listdir(tmp_path / "dry")
    assert run("--batch-size", "512", "--out", str(tmp_path / "x")) == 1
    assert "--limit 256 is smaller than --batch-size 512" in capsys.readouterr().err
    assert run("--resume", str(tmp_path / "nothing")) == 1
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="^0$"):  # --help exits with status 0
        train.main(["--help"])


@pytest.mark.parametrize("interval, drawn_after", [(0, [1, 2, 3]), (1e9, [1, 3])])
def test_loss_plot_is_redrawn_at_most_once_per_interval_and_after_the_last_epoch(tmp_path, monkeypatch, interval,
                                                                                 drawn_after):
    drawn, real_plot = [], train.plot_losses

    def counting_plot(path, *args, **kwargs):
        with open(path) as f:
            drawn.append(sum('"epoch_end"' in line for line in f))  # the epochs finished when it is drawn
        return real_plot(path, *args, **kwargs)
    monkeypatch.setattr(train, "LOSS_PLOT_INTERVAL_S", interval)
    monkeypatch.setattr(train, "plot_losses", counting_plot)
    out = str(tmp_path / "run")
    assert run("--epochs", "3", "--out", out) == 0
    assert drawn == drawn_after and os.path.exists(os.path.join(out, "losses.png"))
