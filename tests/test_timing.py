"""`python -m fastgan.eval time`: a run's epoch times from metrics.jsonl, their median × epochs and their sum."""
import json

import pytest

from fastgan.eval import __main__ as eval_cli
from fastgan.eval import timing
from fastgan.eval.runs import EvalError


def write_metrics(run_dir, epoch_seconds):
    """A metrics.jsonl as training writes it: step lines, then one epoch_end line per finished epoch (from 0)."""
    with open(run_dir / "metrics.jsonl", "w") as f:
        for epoch, seconds in epoch_seconds:
            f.write(json.dumps({"epoch": epoch, "iter": 0, "step": epoch * 10, "loss_d": 0.7, "loss_g": 0.7}) + "\n")
            f.write(json.dumps({"epoch": epoch, "event": "epoch_end", "seconds": seconds}) + "\n")


def test_median_and_sum_of_the_epochs(tmp_path):
    write_metrics(tmp_path, [(0, 10.0), (1, 12.0), (2, 30.0), (3, 11.0), (1, 14.0)])  # epoch 1 written twice
    assert timing.epoch_seconds(tmp_path) == [10.0, 14.0, 30.0, 11.0]
    report = timing.timing_report(timing.epoch_seconds(tmp_path, epochs=3))
    assert report == {"epochs": 3, "median_epoch_s": 14.0, "median_times_epochs_min": 0.7, "sum_min": 0.9}


def test_time_command(tmp_path, capsys):
    write_metrics(tmp_path, [(e, 60.0 + e % 2) for e in range(5)])
    assert eval_cli.main(["time", str(tmp_path)]) == 0
    assert "5 epochs: median epoch 60.0 s, median × epochs 5 min (the epochs' times sum to 5 min)" in \
        capsys.readouterr().out


@pytest.mark.parametrize("epochs, message", [(None, "no metrics.jsonl"), (9, "not of epochs 6, 7, 8, 9")])
def test_missing_times_give_clear_errors(tmp_path, capsys, epochs, message):
    if epochs is not None:
        write_metrics(tmp_path, [(e, 1.0) for e in range(5)])
    with pytest.raises(EvalError, match=message):
        timing.epoch_seconds(tmp_path, epochs)
    assert eval_cli.main(["time", str(tmp_path)] + (["--epochs", str(epochs)] if epochs else [])) == 1
    assert message in capsys.readouterr().err


def test_a_line_cut_off_by_a_stopped_run_is_skipped(tmp_path):
    write_metrics(tmp_path, [(0, 10.0), (1, 12.0)])
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "iter"')
    with pytest.warns(RuntimeWarning, match="malformed last line"):
        assert timing.epoch_seconds(tmp_path) == [10.0, 12.0]
