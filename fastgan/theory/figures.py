"""The pictures of the theory runs, drawn with matplotlib's Agg canvas (no pyplot) and written atomically."""
from pathlib import Path

import numpy as np

from fastgan.utils.atomic import atomic_write

DATA_COLOR, G_COLOR, D_COLOR = "black", "tab:green", "tab:blue"


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _densities_and_d(ax, x, p_data, p_g, d, d_star, legend=True):
    mass = np.flatnonzero(p_data + p_g >= 1e-3 * np.max(p_data + p_g))   # draw where the densities live
    ax.set_xlim(x[mass[0]], x[mass[-1]])
    ax.plot(x, p_data, color=DATA_COLOR, linestyle="--", linewidth=1.2, label="p_data")
    ax.plot(x, p_g, color=G_COLOR, linewidth=1.2, label="p_g")
    ax.plot(x, d, color=D_COLOR, linewidth=1.6, label="D(x), trained")
    ax.plot(x, d_star, color=D_COLOR, linestyle=":", linewidth=1.6, label="D*(x) = p_data/(p_data + p_g)")
    ax.set_ylim(-0.02, max(1.05, 1.05 * float(np.max(p_g)), 1.05 * float(np.max(p_data))))
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(loc="upper left", fontsize=7)


def plot_fixed_g(result, path):
    """D trained against a fixed p_g beside D*, and against p_g = p_data (D* = ½)."""
    fig = _figure(10, 3.6)
    axes = fig.subplots(1, 2)
    p_data = result["p_data"]
    for ax, key, p_g, title in ((axes[0], "different", result["p_g"], "p_g ≠ p_data"),
                                (axes[1], "same", p_data, "p_g = p_data")):
        r = result[key]
        _densities_and_d(ax, r["x"], p_data.pdf(r["x"]), p_g.pdf(r["x"]), r["d"], r["d_star"], key == "different")
        ax.set_title(f"{title}: V(D, G) = {r['value']:.4f}, −log 4 + 2·JSD = {r['c_of_g']:.4f}\n"
                     f"max |D − D*| on the support = {r['max_abs_d_error']:.3f}", fontsize=9)
        ax.set_xlabel("x")
    return _save(fig, path)


def plot_learning(result, path):
    """p_g and D converging (snapshots), and V(D, G) against −log 4 + 2·JSD(p_data ‖ p_g) over G's steps."""
    frames, curves, x = result["frames"], result["curves"], result["x"]
    fig = _figure(3.2 * len(frames), 6.2)
    grid = fig.add_gridspec(2, len(frames))
    p_data = result["p_data"].pdf(x)
    for i, frame in enumerate(frames):
        ax = fig.add_subplot(grid[0, i])
        _densities_and_d(ax, x, p_data, frame["p_g"], frame["d"], frame["d_star"], legend=i == 0)
        ax.set_title(f"G step {frame['g_step']}", fontsize=9)
    ax = fig.add_subplot(grid[1, :])
    ax.plot(curves["g_step"], curves["c_of_g"], color="tab:orange", linewidth=2.4, alpha=0.6,
            label="−log 4 + 2·JSD(p_data ‖ p_g)  (quadrature)")
    ax.plot(curves["g_step"], curves["value"], color=D_COLOR, linewidth=1.0, label="V(D, G) of the trained D")
    ax.axhline(-np.log(4), color="0.5", linestyle=":", linewidth=1, label="−log 4")
    ax.set_xlabel("G step")
    ax.set_ylabel("nats")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


G_COST_LABELS = {"minimax": "minimax: log(1 − D)", "non-saturating": "non-saturating: −log D",
                 "ml": "maximum likelihood: −exp(σ⁻¹(D))"}


def plot_g_losses(curves, path):
    """The three G costs and |dJ/ds| (the gradient G receives through D's logit) against D(G(z))."""
    fig = _figure(10, 3.8)
    cost_ax, grad_ax = fig.subplots(1, 2)
    d = curves["d"]
    for kind, label in G_COST_LABELS.items():
        cost_ax.plot(d, curves[kind]["cost"], linewidth=1.6, label=label)
        grad_ax.plot(d, np.abs(curves[kind]["grad"]), linewidth=1.6, label=label)
    cost_ax.set_ylim(-10, 5)
    cost_ax.set_title("G's cost J(G)", fontsize=10)
    grad_ax.set_yscale("log")
    grad_ax.set_ylim(1e-3, 1e3)
    grad_ax.set_title("|dJ/ds|, s = D's logit (by fastgan's backward)", fontsize=10)
    for ax in (cost_ax, grad_ax):
        ax.set_xlabel("D(G(z))")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if ax is cost_ax else "lower right")
    return _save(fig, path)


def _scatter(ax, samples, modes, limit):
    ax.scatter(modes[:, 0], modes[:, 1], s=40, color="tab:red", marker="+", linewidths=0.6, zorder=1)
    ax.scatter(samples[:, 0], samples[:, 1], s=2, color=G_COLOR, alpha=0.35, linewidths=0, zorder=2)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_snapshot_grid(rows, modes, path, limit=3.0, column_title="iter {:,}"):
    """One row per variant, one column per snapshot: rows = [(label, column keys, samples (S, N, 2), captions)],
    each column titled column_title.format(key) (the iteration, or the seed), each panel captioned below."""
    columns = max(len(keys) for _, keys, _, _ in rows)
    fig = _figure(1.9 * columns, 2.05 * len(rows) + 0.3)
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (label, keys, samples, captions) in enumerate(rows):
        for c in range(columns):
            ax = axes[r, c]
            if c >= len(keys):
                ax.axis("off")
                continue
            _scatter(ax, samples[c], modes, limit)
            ax.set_title(column_title.format(keys[c]), fontsize=8)
            ax.set_xlabel(captions[c], fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=8)
    return _save(fig, path)
