"""The Parzen log-likelihood against the epochs trained: one point per evaluated checkpoint folder.

`python -m fastgan.eval parzen DIR` leaves DIR/parzen.json: the estimate, its standard error and the epochs the
checkpoint had. This gathers several such folders (copies of one run's checkpoint taken as it trained, or separate
runs) into a table and a picture, beside the paper's figure for the same estimate. Folders whose config.json
names different training seeds become separate curves, so runs of one recipe can be compared.
"""
import json
import os

from fastgan.utils.atomic import atomic_write

from .parzen import PAPER_TABLE1
from .runs import EvalError

# one colour per training seed, none of them the bands' green and red
CURVE_COLORS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def read_points(run_dirs):
    """One dict per folder (epoch, mean, stderr, sigma, seed of the samples, train_seed of the run or None,
    ceiling or None, run_dir), sorted by epoch."""
    points = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "parzen.json")
        if not os.path.isfile(path):
            raise EvalError(f"no parzen.json in {run_dir!r}: run python -m fastgan.eval parzen {run_dir} first")
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            model, ceiling = saved["model"], saved.get("training_images_ceiling")
            ceiling = None if ceiling is None else (float(ceiling["mean"]), float(ceiling["stderr"]))
            points.append({"epoch": int(saved["epoch"]), "mean": float(model["mean"]),
                           "stderr": float(model["stderr"]), "sigma": float(model["sigma"]),
                           "seed": saved.get("seed", 0), "train_seed": _training_seed(run_dir),
                           "ceiling": ceiling, "run_dir": run_dir})
        except (ValueError, KeyError, TypeError) as err:
            raise EvalError(f"{path} has no estimate with the epochs it was trained ({type(err).__name__}: {err}); "
                            f"write it again with python -m fastgan.eval parzen {run_dir}") from None
    return sorted(points, key=lambda p: p["epoch"])


def _training_seed(run_dir):
    """The --seed the run was trained with, from its config.json (None if the folder has no readable one)."""
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            return json.load(f).get("seed")
    except (OSError, ValueError, AttributeError):
        return None


def curves(points):
    """The points split by training seed: [(seed, points of that run in epoch order), ...], seeds in order and
    folders without a config.json (seed None) last."""
    seeds = sorted({p["train_seed"] for p in points}, key=lambda s: (s is None, s))
    return [(seed, [p for p in points if p["train_seed"] == seed]) for seed in seeds]


def format_table(points):
    lines = [f"  {'epochs':>7}  {'Parzen LL ± s.e.':>17}  {'σ':>6}  {'training seed':>13}  {'sample seed':>11}  "
             "folder"]
    for p in points:
        train_seed = "?" if p["train_seed"] is None else p["train_seed"]
        lines.append(f"  {p['epoch']:>7}  {p['mean']:>9.1f} ± {p['stderr']:<5.1f}  {p['sigma']:>6.4g}  "
                     f"{train_seed:>13}  {p['seed']:>11}  {p['run_dir']}")
    return lines


def plot_points(points, path, title=None):
    """Mean ± s.e. against epochs, one curve per training seed; the rows of the paper's Table 1 near them as bands
    (adversarial nets 225 ± 2, Deep GSN 214 ± 1.1), and the training-image ceiling if a folder has one. Written
    atomically as a PNG; returns the path."""
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
    for i, (seed, run) in enumerate(curves(points)):
        name = "fastgan" if seed is None else f"fastgan, training seed {seed}"
        ax.errorbar([p["epoch"] for p in run], [p["mean"] for p in run], yerr=[p["stderr"] for p in run],
                    fmt="o-", markersize=4, capsize=2, color=CURVE_COLORS[i % len(CURVE_COLORS)],
                    label=f"{name}: mean ± s.e.")
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("Parzen log-likelihood of the test set")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "Parzen-window log-likelihood against training")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path
