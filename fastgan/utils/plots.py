"""Plot the training curves (Loss_D, Loss_G; D(x), D(G(z))) from the training loop's metric records."""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

from .atomic import atomic_write

__all__ = ["plot_losses", "read_jsonl"]

# (key in the records, legend label) for each panel; the first key found for the x axis is used.
_LOSS_SERIES = (("loss_d", "Loss_D"), ("loss_g", "Loss_G"))
_PROB_SERIES = (("d_x", "D(x)"), ("d_g_z", "D(G(z))"), ("d_g_z1", "D(G(z)) before G step"),
                ("d_g_z2", "D(G(z)) after G step"))
_X_KEYS = ("step", "iteration", "iter")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines metrics file: one JSON object per line, blank lines skipped.

    A malformed *last* line (a run killed mid-write) is skipped with a warning; a malformed line anywhere else
    raises ValueError naming the file and line.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        except ValueError as err:
            if i == last:
                warnings.warn(f"{path}:{i + 1}: skipping a malformed last line ({err})", RuntimeWarning,
                              stacklevel=3)
                continue
            raise ValueError(f"{path}:{i + 1}: not a JSON object ({err})") from None
        records.append(record)
    return records


def _number(value):
    """float(value) for a real number (bools excluded), else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v


def _series(records, x_key, key, index=None):
    """(xs, ys) of the records that have a number (or a list, picked by ``index``) under ``key``."""
    xs, ys = [], []
    for i, r in enumerate(records):
        value = r.get(key)
        if isinstance(value, (list, tuple)):
            value = value[index] if index is not None and len(value) > index else None
        elif index not in (None, 0):
            value = None
        y = _number(value)
        if y is None:
            continue
        x = _number(r.get(x_key)) if x_key is not None else float(i)
        xs.append(float(i) if x is None else x)
        ys.append(y)
    return xs, ys


def plot_losses(records, path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot Loss_D and Loss_G against the step and save the figure to ``path`` as a PNG, atomically.

    ``records``: a list of dicts as the training loop logs them (keys such as ``step``, ``epoch``, ``loss_d``,
    ``loss_g``, ``d_x``, ``d_g_z``), or the path of a JSON-lines file of them. Records without a loss (e.g. other
    events) are ignored. The x axis is ``step`` (else ``iteration``/``iter``, else the record's index). If the
    records have ``d_x`` / ``d_g_z`` (a number, or a pair: before/after the G step; or ``d_g_z1``/``d_g_z2``), a
    second panel shows D(x) and D(G(z)). Epoch boundaries are marked when there are few epochs.

    Uses matplotlib's Agg canvas directly (no pyplot, so a backend the caller chose is left alone); matplotlib
    is imported only when this is called. Missing parent directories are created. Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(records, (str, os.PathLike)):
        records = read_jsonl(records)
    records = [r for r in records if isinstance(r, dict)]
    x_key = next((k for k in _X_KEYS if any(_number(r.get(k)) is not None for r in records)), None)

    losses = [(label, *_series(records, x_key, key)) for key, label in _LOSS_SERIES]
    probs = [(label, *_series(records, x_key, key)) for key, label in _PROB_SERIES]
    if any(isinstance(r.get("d_g_z"), (list, tuple)) for r in records):
        # D(G(z)) logged as a pair (on the D step, on the G step), like the PyTorch DCGAN tutorial
        probs = [p for p in probs if p[0] != "D(G(z))"]
        probs[1:1] = [("D(G(z)) on D step", *_series(records, x_key, "d_g_z", 0)),
                      ("D(G(z)) on G step", *_series(records, x_key, "d_g_z", 1))]
    losses = [s for s in losses if s[1]]
    probs = [s for s in probs if s[1]]
    if not losses and not probs:
        raise ValueError("plot_losses: no records with loss_d, loss_g, d_x or d_g_z values to plot "
                         f"({len(records)} records)")

    panels = [p for p in (losses, probs) if p]
    fig = Figure(figsize=(10, 4 * len(panels)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    epoch_starts = _epoch_starts(records, x_key)
    for ax, series, ylabel in zip(axes, panels, ["loss" if losses else "probability", "probability"]):
        for label, xs, ys in series:
            ax.plot(xs, ys, label=label, linewidth=0.9, alpha=0.9)
        for x in epoch_starts:
            ax.axvline(x, color="0.8", linewidth=0.6, zorder=0)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    if panels[-1] is probs:
        axes[-1].set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel(x_key or "record")
    axes[0].set_title(title or ("Generator and Discriminator Loss During Training" if losses else "D outputs"))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _epoch_starts(records, x_key, max_epochs: int = 30):
    """x positions where a new epoch begins (not the first), if there are at most ``max_epochs`` epochs."""
    starts, previous = [], None
    for i, r in enumerate(records):
        epoch = _number(r.get("epoch"))
        if epoch is None or math.isnan(epoch):
            continue
        if previous is not None and epoch != previous:
            x = _number(r.get(x_key)) if x_key is not None else float(i)
            if x is not None:
                starts.append(x)
        previous = epoch
    return starts if len(starts) < max_epochs else []
