"""benchmarks/toolbox_table.py: trains, resumes and scores each configuration once, skips what is measured or held
by another queue, records failures, and writes the table of the measured runs (and the 64×64 run against torch).

Training and scoring run in this process (on the synthetic digits of the `synthetic_mnist` fixture, scored by an
untrained classifier); only the torch comparison of the 64×64 model runs as the script runs it, in a subprocess."""
import fcntl
import json
import os
import sys

import pytest

from conftest import load_checkpoint
from fastgan import train
from fastgan.eval import __main__ as eval_cli
from fastgan.eval import classifier as clf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import toolbox_table  # noqa: E402

pytestmark = pytest.mark.usefixtures("synthetic_mnist")
# the fixture's MNIST has 10 test images: a quality report takes at most 10 samples
QUICK = ["--limit", "32", "--batch-size", "8", "--epochs", "1", "--samples", "10"]


@pytest.fixture
def commands(monkeypatch):
    """Run fastgan.train and fastgan.eval in this process (the fixture's digits); returns the commands run."""
    monkeypatch.setattr(train, "plot_losses", lambda *args, **kwargs: None)  # a second each
    clf.save_classifier(clf.MNISTClassifier(), clf.classifier_path(), 0.99)  # untrained, but a classifier
    run_as_script, seen = toolbox_table.run_command, []

    def in_process(argv, threads, capture=False):
        seen.append(argv[1:])
        modules = {"fastgan.train": train.main, "fastgan.eval": eval_cli.main}
        if argv[1] == "-m":
            return modules[argv[2]](argv[3:]), None
        return run_as_script(argv, threads, capture)
    monkeypatch.setattr(toolbox_table, "run_command", in_process)
    return seen


def table(root):
    return open(os.path.join(root, "table.md")).read()


def row(root, name):
    return next(line for line in table(root).splitlines() if line.startswith(f"| {name} |"))


def trainings(seen):
    return [argv for argv in seen if argv[1] == "fastgan.train"]


def test_measures_each_config_once_and_writes_the_table(tmp_path, commands):
    root = str(tmp_path / "table")
    assert toolbox_table.main(["--out-root", root, "--configs", "default,cgan", *QUICK]) == 0
    assert [a[1:3] for a in commands] == [["fastgan.train", "mnist"]] * 2  # each scored by its training
    report = json.load(open(os.path.join(root, "cgan-seed0", "quality.json")))
    cells = [c.strip() for c in row(root, "cgan").split("|")[1:-1]]
    assert cells[:3] == ["cgan", "`--conditional cgan`", "0"]
    assert cells[3] == f"{report['mnist_fid']:.2f} ({report['mnist_fid_floor']:.2f})"
    assert cells[6] == f"{100 * report['per_class_accuracy']:.1f} %" and cells[8] == "1"  # threads
    assert [c.strip() for c in row(root, "default").split("|")][7] == "–"  # no per-class accuracy
    not_yet = table(root).split("Not measured yet:")[1]
    assert "- acgan, seed 0: not started" in not_yet and "| acgan |" not in table(root)
    assert os.path.getsize(os.path.join(root, "toolbox_grids.png")) > 0
    record = json.load(open(os.path.join(root, "default-seed0", "table_run.json")))
    assert [(a["threads"], a["status"], a["epochs_after"]) for a in record["attempts"]] == [(1, "ok", 1)]

    commands.clear()
    assert toolbox_table.main(["--out-root", root, "--configs", "default,cgan", *QUICK]) == 0
    assert commands == []  # measured already

    os.remove(os.path.join(root, "default-seed0", "quality.json"))
    assert toolbox_table.main(["--out-root", root, "--configs", "default,cgan", *QUICK]) == 0
    assert [a[1:3] for a in commands] == [["fastgan.eval", "quality"]]  # only the missing score


def test_an_interrupted_run_is_resumed(tmp_path, commands):
    root = str(tmp_path / "table")
    run_dir = os.path.join(root, "vbn-seed0")
    assert train.main(["mnist", "--no-progress", "--limit", "32", "--batch-size", "8", "--eval-samples", "10",
                       "--epochs", "1", "--out", run_dir, "--vbn"]) == 0  # as if stopped after its first epoch
    assert toolbox_table.main(["--out-root", root, "--configs", "vbn", *QUICK, "--epochs", "2"]) == 0
    assert trainings(commands)[0][2:5] == ["mnist", "--resume", run_dir]
    assert load_checkpoint(run_dir)["epoch"] == 2 and "| vbn | `--vbn` | 0 |" in table(root)


def test_a_run_held_by_another_queue_is_skipped(tmp_path, commands, capsys):
    root = str(tmp_path / "table")
    os.makedirs(os.path.join(root, "locks"))
    with open(os.path.join(root, "locks", "default-seed0.lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert toolbox_table.main(["--out-root", root, "--configs", "default", *QUICK]) == 0
    assert commands == [] and "default, seed 0: another process is running it, skipped" in capsys.readouterr().out
    assert "- default, seed 0: not started" in table(root)


def test_a_failed_run_is_recorded_and_skipped(tmp_path, commands, monkeypatch, capsys):
    root = str(tmp_path / "table")
    monkeypatch.setattr(train, "main", lambda argv: 1)
    assert toolbox_table.main(["--out-root", root, "--configs", "acgan", *QUICK]) == 0
    assert "- acgan, seed 0: failed (training exited with status 1; see its log)" in table(root)
    commands.clear()
    assert toolbox_table.main(["--out-root", root, "--configs", "acgan", *QUICK]) == 0
    assert commands == [] and "--retry-failed runs it again" in capsys.readouterr().out
    assert toolbox_table.main(["--out-root", root, "--configs", "acgan", *QUICK, "--retry-failed"]) == 0
    assert len(trainings(commands)) == 1


def test_the_64px_run_is_scored_and_timed_against_torch(tmp_path, commands):
    root = str(tmp_path / "table")
    assert toolbox_table.main(["--out-root", root, "--configs", "dcgan64-mnist64", "--limit", "8", "--batch-size",
                               "4", "--dcgan64-epochs", "1", "--torch-steps", "1", "--samples", "10"]) == 0
    assert [a[1] if a[0] == "-m" else a[0] for a in commands] == ["fastgan.train",
                                                                  os.path.join("benchmarks", "train_step.py")]
    assert commands[1][1:] == ["--model", "dcgan64", "--nc", "1", "--batch-size", "4", "--threads", "1",
                               "--steps", "1"]
    text = table(root)
    assert "dcgan64-mnist64 (`--model dcgan64`, seed 0): 1/1 epochs trained" in text
    report = json.load(open(os.path.join(root, "dcgan64-mnist64-seed0", "quality.json")))  # written by its training
    assert report["image_size"] == 64 and f"MNIST-FID {report['mnist_fid']:.2f} (floor " in text
    assert "benchmarks/train_step.py, same model, batch and threads: fastgan " in text and " s/epoch, torch " in text
    assert "DCGAN 64x64 grey training step, batch 4, 1 threads" in open(
        os.path.join(root, "dcgan64-mnist64-seed0", "torch_step.txt")).read()


@pytest.mark.parametrize("flags, message", [
    (["--configs", "default,dropout"], "--configs: unknown dropout; choose from default, cgan"),
    (["--configs", "vbn,vbn"], "--configs names a configuration twice: vbn,vbn"),
    (["--seeds", "0,one"], "--seeds must be comma-separated integers, got '0,one'"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
])
def test_bad_options_are_refused(tmp_path, flags, message, capsys):
    with pytest.raises(SystemExit):
        toolbox_table.main(["--out-root", str(tmp_path), *flags])
    assert message in capsys.readouterr().err


def test_the_bf16_row_trains_in_mixed_precision_only_when_asked(tmp_path, commands):
    root = str(tmp_path / "table")
    assert toolbox_table.main(["--out-root", root, "--configs", "bf16", *QUICK]) == 0
    train_argv = trainings(commands)[0]
    assert train_argv[train_argv.index("--precision") + 1] == "bf16"
    assert row(root, "bf16").split("|")[2].strip() == "`--precision bf16`"
    assert toolbox_table.main(["--out-root", root, "--report-only", *QUICK]) == 0
    assert "| bf16 |" in table(root)  # measured, so reported; never trained by the default list
    assert "bf16" not in toolbox_table.parse(["--out-root", root]).configs


def test_several_seeds_are_summarised_and_later_seeds_listed_only_once_started(tmp_path, commands):
    root = str(tmp_path / "table")
    assert toolbox_table.main(["--out-root", root, "--configs", "default", "--seeds", "0,1", *QUICK]) == 0
    reports = [json.load(open(os.path.join(root, f"default-seed{s}", "quality.json"))) for s in (0, 1)]
    fids = [r["mnist_fid"] for r in reports]
    mean, std = sum(fids) / 2, abs(fids[0] - fids[1]) / 2 ** 0.5
    assert f"| default | 2 | {mean:.2f} ± {std:.2f} |" in table(root)
    not_yet = table(root).split("Not measured yet:")[1]
    assert "- cgan, seed 0: not started" in not_yet and "cgan, seed 1" not in not_yet
