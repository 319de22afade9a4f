"""`python -m fastgan.theory`: a smoke run of every command with tiny counts, resuming a sweep, bad settings."""
import json
import os

import numpy as np
import pytest

from fastgan.theory.__main__ import main


def no_temp_files(folder):
    return not [f for _, _, files in os.walk(folder) for f in files if f.endswith(".tmp")]


def test_g_losses_command(tmp_path, capsys):
    assert main(["g-losses", "--out", str(tmp_path)]) == 0
    assert {"g_losses.png", "g_losses.json"} <= set(os.listdir(tmp_path))
    saved = json.load(open(tmp_path / "g_losses.json"))
    assert set(saved) == {"d", "minimax", "non-saturating", "ml"}


def test_optimal_d_command(tmp_path, capsys):
    assert main(["optimal-d", "--out", str(tmp_path), "--d-steps", "40", "--g-steps", "3",
                 "--d-steps-per-g", "2"]) == 0
    assert {"optimal_d_fixed_g.png", "optimal_d_learning.png", "optimal_d.json"} <= set(os.listdir(tmp_path))
    numbers = json.load(open(tmp_path / "optimal_d.json"))
    assert numbers["fixed_g_same"]["c_of_g"] == pytest.approx(-np.log(4))
    assert numbers["learning"]["g_step"] == 3
    assert "−log 4 + 2·JSD" in capsys.readouterr().out


def ring(out, *extra):
    return main(["ring", "--out", str(out), "--iters", "4", "--snapshot-every", "2", "--seeds", "2",
                 "--unroll", "0", "2", "--batch-size", "16", "--nz", "8", "--log-every", "2", "--no-progress", *extra])


def test_ring_sweep_writes_runs_table_and_pictures_and_resumes(tmp_path, capsys):
    assert ring(tmp_path) == 0
    files = set(os.listdir(tmp_path))
    assert {"ring_table.md", "ring_summary.json", "ring_snapshots.png", "ring_final_seeds.png",
            "ring-vanilla-seed0", "ring-vanilla-seed1", "ring-unroll2-first-order-seed0",
            "ring-unroll2-first-order-seed1"} <= files
    run = tmp_path / "ring-unroll2-first-order-seed1"
    assert {"config.json", "metrics.jsonl", "snapshots.npz", "result.json"} <= set(os.listdir(run))
    snaps = np.load(run / "snapshots.npz")
    assert snaps["iters"].tolist() == [0, 2, 4] and snaps["samples"].shape == (3, 2500, 2)
    result = json.load(open(run / "result.json"))
    assert result["config"]["unroll"] == 2 and 0 <= result["modes_covered"] <= 8 and result["ms_per_iter"] > 0
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["iter"] for r in records if "loss_d" in r] == [0, 2]
    table = open(tmp_path / "ring_table.md").read()
    assert "unrolled GAN, K = 2 (first-order)" in table and "| VEEGAN | 8 | 52.9 |" in table
    assert no_temp_files(tmp_path)
    out = capsys.readouterr().out
    assert "× a vanilla step" in out
    assert "ms per iteration" in table

    before = os.path.getmtime(run / "result.json")
    assert ring(tmp_path) == 0                     # the same sweep again: every run is reused
    assert os.path.getmtime(run / "result.json") == before
    assert "reusing the finished run" in capsys.readouterr().out


def test_grid_command(tmp_path):
    assert main(["grid", "--out", str(tmp_path), "--iters", "2", "--seeds", "1", "--unroll", "1",
                 "--batch-size", "8", "--nz", "4", "--no-progress"]) == 0
    rows = json.load(open(tmp_path / "grid_summary.json"))
    assert rows[0]["modes"] == 25 and rows[0]["variant"] == "unrolled GAN, K = 1 (first-order)"


def test_a_sweep_never_overwrites_runs_of_other_settings(tmp_path, capsys):
    assert ring(tmp_path) == 0
    assert ring(tmp_path, "--lr-d", "3e-4") == 2
    assert "holds a run with other settings" in capsys.readouterr().err


def test_exact_unrolling_runs(tmp_path):
    assert main(["ring", "--out", str(tmp_path), "--iters", "2", "--seeds", "1", "--unroll", "2", "--unroll-mode",
                 "exact", "--batch-size", "8", "--nz", "4", "--no-progress"]) == 0
    rows = json.load(open(tmp_path / "ring_summary.json"))
    assert rows[0]["variant"] == "unrolled GAN, K = 2 (exact)"
    assert os.path.exists(tmp_path / "ring-unroll2-exact-seed0" / "result.json")


def test_bad_settings_are_refused(tmp_path, capsys):
    assert ring(tmp_path / "a", "--unroll", "-1") == 2
    assert "--unroll must be ≥ 0" in capsys.readouterr().err
    assert main(["ring", "--out", str(tmp_path / "b"), "--iters", "0", "--seeds", "0"]) == 2
    assert "--seeds and --snapshot-every must be ≥ 1" in capsys.readouterr().err
    assert ring(tmp_path / "c", "--lr-g", "0") == 2
    assert "--lr-g must be positive, got 0.0" in capsys.readouterr().err


def test_more_iterations_continue_a_finished_run_exactly(tmp_path, capsys):
    def run(out, iters):
        return main(["ring", "--out", str(out), "--iters", str(iters), "--snapshot-every", "3", "--seeds", "1",
                     "--unroll", "2", "--batch-size", "16", "--nz", "8", "--log-every", "1", "--no-progress"])

    assert run(tmp_path / "straight", 6) == 0
    assert run(tmp_path / "extended", 3) == 0
    log = tmp_path / "extended" / "ring-unroll2-first-order-seed0" / "metrics.jsonl"
    with open(log, "a") as f:                    # as if an earlier attempt to go on had been killed mid-way
        f.write('{"iter": 3, "loss_d": 1.0}\n{"iter": 4, "loss')
    assert run(tmp_path / "extended", 6) == 0
    assert "going on from the 3 iterations" in capsys.readouterr().out
    a, b = (tmp_path / name / "ring-unroll2-first-order-seed0" for name in ("straight", "extended"))
    for name in ("snapshots.npz", "state.npz"):
        x, y = np.load(a / name), np.load(b / name)
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{name}:{key}")
    ra, rb = (json.load(open(folder / "result.json")) for folder in (a, b))
    assert (ra["modes_covered"], ra["counts"], ra["config"]) == (rb["modes_covered"], rb["counts"], rb["config"])
    assert open(a / "metrics.jsonl").read() == open(b / "metrics.jsonl").read()


def test_a_run_killed_mid_way_goes_on_from_its_last_snapshot(tmp_path, monkeypatch, capsys):
    from fastgan.theory import toy_run

    def run(out):
        return main(["ring", "--out", str(out), "--iters", "6", "--snapshot-every", "2", "--seeds", "1",
                     "--unroll", "1", "--unroll-mode", "exact", "--batch-size", "8", "--nz", "4", "--log-every", "1",
                     "--no-progress"])

    assert run(tmp_path / "straight") == 0
    step, calls = toy_run.unrolled_step, []

    def killed_at_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return step(*args, **kwargs)
    monkeypatch.setattr(toy_run, "unrolled_step", killed_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed")
    folder = tmp_path / "killed" / "ring-unroll1-exact-seed0"
    assert json.load(open(folder / "result.json"))["config"]["iters"] == 4   # the last snapshot before the kill
    monkeypatch.setattr(toy_run, "unrolled_step", step)
    assert run(tmp_path / "killed") == 0
    assert "going on from the 4 iterations" in capsys.readouterr().out
    a = tmp_path / "straight" / "ring-unroll1-exact-seed0"
    for name in ("snapshots.npz", "state.npz"):
        x, y = np.load(a / name), np.load(folder / name)
        for key in x.files:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{name}:{key}")
    assert open(a / "metrics.jsonl").read() == open(folder / "metrics.jsonl").read()


def test_minibatch_discrimination_variant(tmp_path, capsys):
    """The vanilla GAN whose D compares the samples of a batch: its own folder and row, and only with --unroll 0."""
    args = ["ring", "--out", str(tmp_path), "--iters", "3", "--seeds", "1", "--batch-size", "8", "--nz", "4",
            "--no-progress", "--minibatch-disc", "4,2"]
    assert main(args + ["--unroll", "0", "1"]) == 2
    assert "--minibatch-disc is a variant of the vanilla GAN here: use it with --unroll 0" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
    assert main(args + ["--unroll", "0"]) == 0
    run = tmp_path / "ring-mbd4x2-seed0"
    result = json.load(open(run / "result.json"))
    assert result["config"]["minibatch"] == [4, 2]
    with np.load(run / "state.npz") as state:
        assert state["D.minibatch.initialised"] == 1          # started from real data before the first step
    rows = json.load(open(tmp_path / "ring_summary.json"))
    assert [r["variant"] for r in rows] == ["minibatch discrimination (B = 4, C = 2)"]
    assert "minibatch discrimination (B = 4, C = 2) |" in open(tmp_path / "ring_table.md").read()
    assert main(args + ["--unroll", "0", "--iters", "5"]) == 0     # goes on from the shorter run
    assert "going on from the 3 iterations" in capsys.readouterr().out
