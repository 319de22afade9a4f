"""`python -m fastgan.train`: a smoke run writes every artefact, resume is exact (after a kill anywhere), a run
folder is never overwritten or mixed, every value is checked before anything is written, and divergence stops the
run before a bad checkpoint is written."""
import json
import math
import os
import shlex

import numpy as np
import pytest

import fastgan
from conftest import load_checkpoint
from fastgan import checkpoint, train
from fastgan.data import MNISTError


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
            "checkpoint.json"} <= files
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
    real_step = train.ROUNDS["alternating"]
    monkeypatch.setitem(train.ROUNDS, "alternating", lambda *a, **k: {**real_step(*a, **k), "loss_d": float("nan")})
    assert run("--resume", out, "--epochs", "2") == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "Loss_D = nan" in err and "checkpoint of epoch 1" in err
    assert load(out)["epoch"] == 1


def test_dry_run_and_bad_arguments(tmp_path, capsys):
    assert run("--dry-run", "--epochs", "1", "--out", str(tmp_path / "dry")) == 0
    assert "fake_samples_epoch_001.png" in os.listdir(tmp_path / "dry")
    with pytest.raises(SystemExit) as exit_:
        run("--batch-size", "512", "--out", str(tmp_path / "x"))
    assert exit_.value.code == 2 and not os.path.exists(tmp_path / "x")
    assert "--batch-size 512 is larger than the 256 training images (--limit 256)" in capsys.readouterr().err
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


# --- the MLP on 20 images, 2 steps an epoch: the failure paths below train for seconds ---------------------------

@pytest.fixture
def quick(monkeypatch):
    """No loss plot (a second each): these tests are about the run folder and the guards."""
    monkeypatch.setattr(train, "plot_losses", lambda *args, **kwargs: None)


def mlp(*args):
    return train.main(["mnist", "--model", "mlp", "--no-progress", "--device", "cpu", "--limit", "20",
                       "--batch-size", "10", "--log-every", "1", *args])


def snapshot(folder):
    """Every file in the folder and its bytes (None if there is no folder)."""
    if not os.path.isdir(folder):
        return None
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def metric_records(run_dir):
    """metrics.jsonl without the wall-clock fields (the rest must match between runs to the last digit)."""
    records = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in records]


def assert_same_weights(a, b):
    a, b = load(a), load(b)
    assert a["epoch"] == b["epoch"]
    for key in ("G", "D"):
        for name in a[key]:
            np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=f"{key}.{name}")


REAL_STEP = train.ROUNDS["simultaneous"]  # the MLP's


def patch_step(monkeypatch, change):
    """Run change(call, G, D, stats) after every real MLP training step (call counts from 1; 2 steps an epoch).
    (Put back with restore_step: monkeypatch.undo() would also undo the synthetic data.)"""
    real_step, calls = REAL_STEP, []

    def step(G, D, *args, **kwargs):
        calls.append(None)
        stats = real_step(G, D, *args, **kwargs)
        return change(len(calls), G, D, stats) or stats
    monkeypatch.setitem(train.ROUNDS, "simultaneous", step)


def restore_step(monkeypatch):
    monkeypatch.setitem(train.ROUNDS, "simultaneous", REAL_STEP)


def interrupt_at(call):
    def change(n, G, D, stats):
        if n == call:
            raise KeyboardInterrupt
    return change


def resume_as_suggested(err):
    """Run the command the Ctrl-C message suggests; its return code."""
    command = shlex.split(err.split("continue with: ")[1].strip())
    assert command[:3] == ["python", "-m", "fastgan.train"]
    return train.main(command[3:] + ["--no-progress"])


# --- values are checked before any work ------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--log-every", "0"], "--log-every must be an integer >= 1, got 0"),
    (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
    (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--nz", "0"], "--nz must be an integer >= 1, got 0"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--batch-size", "1"], "--batch-size must be an integer >= 2 (batch norm needs two samples), got 1"),
    (["--batch-size", "21"], "--batch-size 21 is larger than the 20 training images (--limit 20): no full batch"),
    (["--limit", "0"], "--limit must be an integer >= 1, got 0"),
    (["--real-label", "0"], "--real-label must be in (0, 1], got 0.0"),
    (["--real-label", "1.5"], "--real-label must be in (0, 1], got 1.5"),
    (["--real-label", "nan"], "--real-label must be in (0, 1], got nan"),
    (["--model", "dcgan", "--beta1", "1"], "--beta1 must be in [0, 1), got 1.0"),
    (["--model", "dcgan", "--beta1", "-0.1"], "--beta1 must be in [0, 1), got -0.1"),
    (["--model", "dcgan", "--beta1", "nan"], "--beta1 must be in [0, 1), got nan"),
    (["--beta1", "0.9"], "--beta1 is Adam's; model mlp trains with sgd"),
    (["--eval-every", "-1"], "--eval-every must be an integer >= 0, got -1"),
    (["--eval-samples", "1"], "--eval-samples must be 0 (none) or an integer >= 2, got 1"),
    (["--overwrite", "--resume", "elsewhere"], "--resume continues the run in elsewhere itself: it cannot be "
                                               "combined with --out, --overwrite or --dry-run"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, capsys, flags, message):
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_:
        mlp("--epochs", "1", "--out", out, *flags)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.startswith("usage: python -m fastgan.train")
    assert not os.path.exists(out)


def test_overwrite_needs_out(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["mnist", "--overwrite"])
    assert exit_.value.code == 2 and "--overwrite replaces the run in the folder given by --out" in \
        capsys.readouterr().err


# --- a run folder is never overwritten or mixed ------------------------------------------------------------------

@pytest.mark.parametrize("marker", ["checkpoint.json", "metrics.jsonl", "config.json", "checkpoint.pkl"])
def test_out_refuses_a_folder_that_holds_a_run(tmp_path, capsys, marker):
    out = tmp_path / "run"
    out.mkdir()
    (out / marker).write_text("x")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    assert mlp("--epochs", "1", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert f"--out {out} already holds a run ({marker}); continue it with --resume {out}, or delete it and " \
           f"start afresh with --out {out} --overwrite" in err
    assert snapshot(out) == before


def test_out_may_be_an_empty_folder_but_not_a_file(tmp_path, capsys, quick):
    (tmp_path / "empty").mkdir()
    assert mlp("--epochs", "1", "--out", str(tmp_path / "empty")) == 0
    (tmp_path / "file").write_text("x")
    assert mlp("--epochs", "1", "--out", str(tmp_path / "file")) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def test_overwrite_replaces_the_run_and_nothing_else(tmp_path, quick):
    out, fresh = str(tmp_path / "run"), str(tmp_path / "fresh")
    assert mlp("--epochs", "2", "--seed", "1", "--out", out) == 0
    open(os.path.join(out, "notes.txt"), "w").write("mine")
    open(os.path.join(out, "parzen.json"), "w").write("{}")  # an estimate of the old checkpoint
    assert mlp("--epochs", "1", "--out", out, "--overwrite") == 0
    assert mlp("--epochs", "1", "--out", fresh) == 0
    assert metric_records(out) == metric_records(fresh)
    assert set(os.listdir(out)) == set(os.listdir(fresh)) | {"notes.txt"}
    assert_same_weights(out, fresh)


def test_a_failing_start_leaves_the_run_folder_as_it_was(tmp_path, monkeypatch, capsys, quick):
    out = str(tmp_path / "run")
    assert mlp("--epochs", "1", "--out", out) == 0
    before = snapshot(out)
    assert mlp("--resume", out, "--epochs", "1") == 1  # nothing left to train
    assert "has already trained 1 of 1 epochs; pass a larger --epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mlp("--resume", out, "--epochs", "2", "--seed", "7")
    assert "--seed 7 (the run has 0)" in capsys.readouterr().err

    def no_data(data_dir=None, progress=True):
        raise MNISTError("no MNIST here")
    monkeypatch.setattr(train, "load_mnist", no_data)
    assert mlp("--resume", out, "--epochs", "2") == 1
    assert "no MNIST here" in capsys.readouterr().err
    assert snapshot(out) == before


def test_resume_with_conflicting_flags_lists_them(tmp_path, capsys, quick):
    out = str(tmp_path / "run")
    assert mlp("--epochs", "1", "--out", out) == 0
    before = snapshot(out)
    with pytest.raises(SystemExit) as exit_:
        mlp("--resume", out, "--epochs", "2", "--lr", "0.5", "--seed", "3", "--model", "dcgan", "--batch-size", "20",
            "--noise", "normal")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"--resume {out}: a resumed run keeps its settings" in err
    for conflict in ("--lr 0.5 (the run has 0.1)", "--seed 3 (the run has 0)", "--model 'dcgan' (the run has 'mlp')",
                     "--batch-size 20 (the run has 10)", "--noise 'normal' (the run has 'uniform')"):
        assert conflict in err
    assert "--limit" not in err.splitlines()[-1] and "--log-every" not in err.splitlines()[-1]  # equal to the run's
    assert snapshot(out) == before
    assert mlp("--resume", out, "--epochs", "2", "--lr", "0.1", "--seed", "0") == 0  # the run's own values
    assert load(out)["epoch"] == 2


def test_a_run_stopped_before_its_first_checkpoint_is_taken_over(tmp_path, monkeypatch, capsys, quick):
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    assert mlp("--epochs", "2", "--out", straight) == 0
    patch_step(monkeypatch, interrupt_at(2))  # Ctrl-C in the first epoch: metrics lines, no checkpoint
    assert mlp("--epochs", "2", "--out", stopped) == 130
    assert "checkpoint.json" not in os.listdir(stopped) and os.path.getsize(os.path.join(stopped, "metrics.jsonl"))
    err = capsys.readouterr().err
    assert f"continue with: python -m fastgan.train mnist --resume {stopped} --device cpu" in err
    restore_step(monkeypatch)
    assert resume_as_suggested(err) == 0
    assert "starts again at epoch 0" in capsys.readouterr().out
    assert metric_records(stopped) == metric_records(straight)  # no line of the stopped attempt is left
    assert_same_weights(stopped, straight)


def test_ctrl_c_before_the_run_starts_writes_nothing(tmp_path, monkeypatch, capsys):
    def interrupted(data_dir=None, progress=True):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "load_mnist", interrupted)
    assert mlp("--epochs", "1", "--out", str(tmp_path / "run")) == 130
    assert "interrupted before the run started; nothing was written" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")


# --- resume after a kill anywhere --------------------------------------------------------------------------------

def test_resume_after_a_kill_in_mid_epoch_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys, quick):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    assert mlp("--epochs", "2", "--out", straight) == 0
    patch_step(monkeypatch, interrupt_at(4))  # epoch 1, step 1: a line of a half epoch after the checkpoint
    assert mlp("--epochs", "2", "--out", killed) == 130
    assert load(killed)["epoch"] == 1
    restore_step(monkeypatch)
    assert resume_as_suggested(capsys.readouterr().err) == 0
    assert metric_records(killed) == metric_records(straight)
    assert_same_weights(killed, straight)


def test_a_kill_while_a_checkpoint_is_written_keeps_the_previous_one(tmp_path, monkeypatch, capsys, quick):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    assert mlp("--epochs", "2", "--out", straight) == 0
    real_replace, commits = os.replace, []

    def replace(src, dst):  # killed after the tensors of epoch 2 are written, before checkpoint.json names them
        if str(dst).endswith("checkpoint.json"):
            commits.append(dst)
            if len(commits) == 2:
                raise KeyboardInterrupt
        return real_replace(src, dst)
    monkeypatch.setattr(checkpoint.os, "replace", replace)
    assert mlp("--epochs", "2", "--out", killed) == 130
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    assert load(killed)["epoch"] == 1
    assert len([f for f in os.listdir(killed) if f.endswith(".safetensors")]) == 2  # epoch 1's, and epoch 2's orphan
    open(os.path.join(killed, ".checkpoint.json.k1lled_x.tmp"), "w").write("{")  # as if killed by SIGKILL
    assert resume_as_suggested(capsys.readouterr().err) == 0
    assert not [f for f in os.listdir(killed) if f.endswith(".tmp")]
    assert len([f for f in os.listdir(killed) if f.endswith(".safetensors")]) == 1
    assert metric_records(killed) == metric_records(straight)
    assert_same_weights(killed, straight)


# --- divergence stops the run before a bad checkpoint --------------------------------------------------------------

@pytest.mark.parametrize("loss, value", [("loss_d", math.nan), ("loss_g", math.nan), ("loss_d", math.inf),
                                         ("loss_g", -math.inf), ("loss_d", 2e4), ("loss_g", -2e4)])
def test_a_diverged_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys, quick, loss,
                                                                     value):
    out = str(tmp_path / "run")
    patch_step(monkeypatch, lambda n, G, D, stats: {**stats, loss: value} if n == 4 else None)  # epoch 1, step 1
    assert mlp("--epochs", "2", "--out", out) == 1
    err = capsys.readouterr().err
    shown = {"loss_d": "Loss_D", "loss_g": "Loss_G"}[loss]
    assert "training diverged at epoch 1 step 1: " in err and f"{shown} = {value:.4g}" in err
    assert f"Stopped; the checkpoint of epoch 1 in {out} is kept. Try a lower --lr." in err
    assert load(out)["epoch"] == 1


def test_divergence_in_the_first_epoch_writes_no_checkpoint(tmp_path, monkeypatch, capsys, quick):
    out = str(tmp_path / "run")
    patch_step(monkeypatch, lambda n, G, D, stats: {**stats, "loss_g": 1e5} if n == 1 else None)
    assert mlp("--epochs", "2", "--out", out) == 1
    assert "diverged at epoch 0 step 0: Loss_D = " in capsys.readouterr().err
    assert not [f for f in os.listdir(out) if f.startswith("checkpoint")]


def break_after(call, what):
    """A change for patch_step: after update `call`, break G or D while its losses still look fine."""
    def change(n, G, D, stats):
        if n == call and what == "G weight":
            G[0].weight.data[0, 0] = np.nan
        elif n == call and what == "D logits":  # finite weights, but D's verdicts are off by orders of magnitude
            D[6].weight.data *= 1e9
    return change


@pytest.mark.parametrize("what, call, message", [
    ("G weight", 4, "training diverged in epoch 1: after its last step G.0.weight holds NaN or infinite values. "
                    "Stopped before its checkpoint; the checkpoint of epoch 1 in {out} is kept"),
    ("D logits", 2, "training diverged in epoch 0: after its last step D's logits on 20 training images reach "),
])
def test_weights_broken_by_an_epochs_last_step_are_never_saved(tmp_path, monkeypatch, capsys, quick, what, call,
                                                               message):
    out = str(tmp_path / "run")
    patch_step(monkeypatch, break_after(call, what))
    assert mlp("--epochs", "2", "--out", out) == 1
    assert message.format(out=out) in capsys.readouterr().err
    epochs_saved = call // 2 - 1
    assert not os.path.exists(os.path.join(out, f"fake_samples_epoch_{epochs_saved + 1:03d}.png"))
    if epochs_saved:
        assert load(out)["epoch"] == epochs_saved
    else:
        assert "checkpoint.json" not in os.listdir(out)


def test_the_reported_divergent_runs_stop_with_a_sound_checkpoint(tmp_path, capsys, quick):
    common = ["mnist", "--model", "mlp", "--no-progress", "--device", "cpu", "--limit", "200", "--batch-size", "100"]
    lr50, lr1e6 = str(tmp_path / "lr50"), str(tmp_path / "lr1e6")
    assert train.main(common + ["--epochs", "8", "--lr", "50", "--out", lr50]) == 1
    assert "diverged" in capsys.readouterr().err
    state = load(lr50)  # finite (checked on load), and D still judges the training images sanely
    assert 1 <= state["epoch"] < 8
    G, D = fastgan.models.MODELS["mlp"](100)
    D.load_state_dict(state["D"])
    images = fastgan.data.mnist_to_float(train.load_mnist().x_train[:64], (0, 1))
    with fastgan.no_grad():
        logits = D.eval()(fastgan.tensor(images)).numpy()
    assert np.abs(logits).max() <= train.DIVERGENCE_LIMIT

    assert train.main(common + ["--epochs", "3", "--lr", "1e6", "--out", lr1e6]) == 1
    assert "training diverged at epoch 0 step 1" in capsys.readouterr().err  # Loss_D ≈ 2e10: once meant rc 0
    assert "checkpoint.json" not in os.listdir(lr1e6)


# --- --precision bf16 -------------------------------------------------------------------------------------------------

def test_a_bf16_run_records_its_precision_and_resumes_exactly(tmp_path, capsys, quick):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert run("--precision", "bf16", "--epochs", "2", "--out", straight) == 0
    assert "bfloat16 products: " in capsys.readouterr().out  # and which path they take
    assert run("--precision", "bf16", "--epochs", "1", "--out", resumed) == 0
    assert json.load(open(os.path.join(resumed, "config.json")))["precision"] == "bf16"
    assert run("--resume", resumed, "--epochs", "2") == 0       # the precision comes back from the checkpoint
    assert load(resumed)["config"]["precision"] == "bf16"
    assert_same_weights(resumed, straight)
    assert metric_records(resumed) == metric_records(straight)


def test_bf16_trains_differently_from_fp32_and_keeps_float32_weights(tmp_path, quick):
    runs = {p: str(tmp_path / p) for p in ("fp32", "bf16")}
    for precision, out in runs.items():
        assert run("--precision", precision, "--epochs", "1", "--out", out) == 0
    fp32, bf16 = load(runs["fp32"]), load(runs["bf16"])
    name = next(iter(fp32["G"]))
    assert bf16["G"][name].dtype == np.float32
    assert not np.array_equal(fp32["G"][name], bf16["G"][name])   # the steps really ran in another precision


def test_bf16_resume_refuses_another_precision_and_a_gpu_without_every_bf16_kernel(tmp_path, capsys, monkeypatch, quick):
    out = str(tmp_path / "run")
    assert run("--precision", "bf16", "--epochs", "1", "--out", out) == 0
    with pytest.raises(SystemExit) as exit_:
        run("--resume", out, "--epochs", "2", "--precision", "fp32")
    assert exit_.value.code == 2 and "--precision 'fp32' (the run has 'bf16')" in capsys.readouterr().err
    monkeypatch.setattr(train, "choose_device", lambda flag: "cuda")   # as on a machine with a usable GPU
    describe = train.dispatch.describe                                   # whose implementations lack a kernel
    monkeypatch.setattr(train.dispatch, "describe", lambda device: {**describe("cpu"), "round_to_bfloat16": None}
                        if device == "cuda" else describe(device))
    with pytest.raises(SystemExit) as exit_:
        train.main(["mnist", "--precision", "bf16", "--device", "cuda", "--out", str(tmp_path / "gpu")])
    assert exit_.value.code == 2 and not os.path.exists(tmp_path / "gpu")
    assert "--precision bf16 --device cuda: no GPU implementation here provides round_to_bfloat16" in \
        capsys.readouterr().err
    auto = str(tmp_path / "auto")   # --device auto: a bf16 run falls back to the CPU
    assert train.main(["mnist", "--precision", "bf16", "--no-progress", "--limit", "256", "--batch-size", "64",
                       "--dry-run", "--epochs", "1", "--out", auto]) == 0
    assert json.load(open(os.path.join(auto, "config.json")))["device"] == "cpu"


def test_ring_is_one_run_of_the_toy_runner_and_unroll_is_refused_elsewhere(tmp_path, capsys):
    assert train.main(["ring", "--out", str(tmp_path), "--iters", "2", "--batch-size", "8", "--nz", "4",
                       "--unroll", "1", "--unroll-mode", "exact", "--no-progress"]) == 0
    assert os.listdir(tmp_path / "ring-unroll1-exact-seed0") and not os.path.exists(tmp_path / "ring-vanilla-seed0")
    assert "unrolled GAN, K = 1 (exact)" in open(tmp_path / "ring_table.md").read()
    with pytest.raises(SystemExit):
        train.main(["mnist", "--model", "mlp", "--unroll", "5", "--out", str(tmp_path / "m")])
    assert "--unroll (the unrolled GAN) trains on the 2-D toy data only" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "m")
