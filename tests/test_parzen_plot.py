"""`python -m fastgan.eval parzen-plot`: the parzen.json of several folders as a table and a picture."""
import json

import pytest

from fastgan.eval import __main__ as eval_cli
from fastgan.eval import parzen_plot
from fastgan.eval.runs import EvalError


def evaluated(folder, epoch, mean, ceiling=None, train_seed=None):
    """A folder as python -m fastgan.eval parzen leaves it (parzen.json, and the run's config.json if a seed is
    given)."""
    folder.mkdir()
    if train_seed is not None:
        (folder / "config.json").write_text(json.dumps({"model": "mlp", "seed": train_seed}))
    saved = {"model": {"sigma": 0.1668, "mean": mean, "stderr": 2.2}, "seed": 0, "epoch": epoch,
             "training_images_ceiling": None if ceiling is None else {"sigma": 0.1668, "mean": ceiling, "stderr": 2.1}}
    (folder / "parzen.json").write_text(json.dumps(saved))
    return str(folder)


def test_points_are_sorted_by_epoch_and_plotted(tmp_path, capsys):
    late = evaluated(tmp_path / "late", 1500, 221.1, ceiling=241.2)
    early = evaluated(tmp_path / "early", 100, 164.2)
    points = parzen_plot.read_points([late, early])
    assert [(p["epoch"], p["mean"], p["ceiling"]) for p in points] == [(100, 164.2, None), (1500, 221.1, (241.2, 2.1))]
    out = tmp_path / "pictures" / "parzen.png"
    assert eval_cli.main(["parzen-plot", late, early, "--out", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "164.2 ± 2.2" in table[1] and "221.1 ± 2.2" in table[2] and table[-1] == f"wrote {out}"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_with_different_training_seeds_are_separate_curves(tmp_path, capsys):
    a100 = evaluated(tmp_path / "a100", 100, 164.2, train_seed=0)
    b100 = evaluated(tmp_path / "b100", 100, 163.6, train_seed=1)
    a250 = evaluated(tmp_path / "a250", 250, 184.5, train_seed=0)
    loose = evaluated(tmp_path / "loose", 180, 178.7)  # no config.json: its own curve, last
    points = parzen_plot.read_points([b100, a250, loose, a100])
    assert [(seed, [p["epoch"] for p in run]) for seed, run in parzen_plot.curves(points)] == \
        [(0, [100, 250]), (1, [100]), (None, [180])]
    assert eval_cli.main(["parzen-plot", b100, a250, loose, a100, "--out", str(tmp_path / "p.png")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "training seed" in table[0] and table[3].split()[5] == "?"  # the loose folder, epoch 180


def test_folders_without_an_estimate_give_clear_errors(tmp_path, capsys):
    (tmp_path / "never").mkdir()
    assert eval_cli.main(["parzen-plot", str(tmp_path / "never"), "--out", str(tmp_path / "p.png")]) == 1
    assert "no parzen.json" in capsys.readouterr().err
    old = evaluated(tmp_path / "old", 7, 200.0)
    saved = json.loads((tmp_path / "old" / "parzen.json").read_text())
    del saved["epoch"]  # written before the estimate recorded the checkpoint's epochs
    (tmp_path / "old" / "parzen.json").write_text(json.dumps(saved))
    with pytest.raises(EvalError, match="write it again with python -m fastgan.eval parzen"):
        parzen_plot.read_points([old])
    assert not (tmp_path / "p.png").exists()
