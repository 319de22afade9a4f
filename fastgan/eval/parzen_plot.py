"""The Parzen log-likelihood against the epochs trained: one point per evaluated checkpoint folder.

`python -m fastgan.eval parzen DIR` leaves DIR/parzen.json: the estimate, its standard error and the epochs the
checkpoint had. This gathers several such folders (copies of one run's checkpoint taken as it trained, or separate
runs) into a table and a picture, beside the paper's figure for the same estimate.
"""
import json
import os

from fastgan.utils.atomic import atomic_write

from .parzen import PAPER_TABLE1
from .runs import EvalError


def read_points(run_dirs):
    """One dict per folder (epoch, mean, stderr, sigma, seed, ceiling or None, run_dir), sorted by epoch."""
    points = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "parzen.json")
        if not os.path.isfile(path):
            raise EvalError(f"no parzen.json in {run_dir!r}: run python -m fastgan.eval parzen {run_dir} first")
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            model, ceiling = saved["model"], saved.get("training_images_ceiling")
            points.append({"epoch": int(saved["epoch"]), "mean": float(model["mean"]),
                           "stderr": float(model["stderr"]), "sigma": float(model["sigma"]),
                           "seed": saved.get("seed", 0), "ceiling": None if ceiling is None else
                           (float(ceiling["mean"]), float(ceiling["stderr"])), "run_dir": run_dir})
        except (ValueError, KeyError, TypeError) as err:
            raise EvalError(f"{path} has no estimate with the epochs it was trained ({type(err).__name__}: {err}); "
                            f"write it again with python -m fastgan.eval parzen {run_dir}") from None
    return sorted(points, key=lambda p: p["epoch"])


def format_table(points):
    lines = [f"  {'epochs':>7}  {'Parzen LL ± s.e.':>17}  {'σ':>6}  {'seed':>4}  folder"]
    for p in points:
        lines.append(f"  {p['epoch']:>7}  {p['mean']:>9.1f} ± {p['stderr']:<5.1f}  {p['sigma']:>6.4g}  "
                     f"{p['seed']:>4}  {p['run_dir']}")
    return lines


def plot_points(points, path, title=None):
    """Mean ± s.e. against epochs, the rows of the paper's Table 1 near them as bands (adversarial nets 225 ± 2,
    Deep GSN 214 ± 1.1), and the training-image ceiling if a folder has one. Written atomically as a PNG; returns
    the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not points:
        raise EvalError("no points to plot: give at least one folder with a parzen.json")
    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    lowest = min(p["mean"] - p["stderr"] for p in points)
    for (name, mean, err), color in zip(PAPER_TABLE1, ("0.6", "0.6", "tab:green", "tab:red")):
        if mean >= lowest - 10:  # rows far below the curve would only stretch the axis
            ax.axhspan(mean - err, mean + err, color=color, alpha=0.15, linewidth=0)
            ax.axhline(mean, color=color, linestyle="--", linewidth=1, label=f"{name} (paper): {mean} ± {err}")
    ceilings = [p["ceiling"] for p in points if p["ceiling"] is not None]
    if ceilings:
        mean, err = ceilings[-1]
        ax.axhline(mean, color="0.3", linestyle=":", linewidth=1,
                   label=f"training images as centres: {mean:.1f} ± {err:.1f}")
    ax.errorbar([p["epoch"] for p in points], [p["mean"] for p in points], yerr=[p["stderr"] for p in points],
                fmt="o-", markersize=4, capsize=2, color="tab:blue", label="fastgan: mean ± s.e.")
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("Parzen log-likelihood of the test set")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "Parzen-window log-likelihood against training")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path
