"""Mode collapse on the ring (and the grid): vanilla and unrolled GANs over several seeds, the table and pictures.

    sweep        every (variant, seed) run into OUT/<data>-<variant>-seed<k>/ (fastgan/theory/toy_run.py); a run
                 folder that already holds a finished run of the same settings is reused, so a sweep resumes, and
                 one that holds a shorter run of the same settings is continued to the new --iters
    summarise    per variant: modes covered, % high quality and KL to uniform, mean ± std over seeds (std with
                 ddof = 1), how many seeds covered every mode, seconds per run and ms per iteration
    OUT/<data>_table.md (the table and the speed), OUT/<data>_summary.json, OUT/<data>_snapshots.png (one row per
    variant, one column per snapshot — at most five, evenly spread — of one seed), OUT/<data>_final_seeds.png
    (one row per variant, the last samples of every seed)
"""
import dataclasses
import json
import math
import os

import numpy as np

from fastgan.data.toy import TOY_2D
from fastgan.utils.atomic import atomic_write

from . import figures
from .modes import mode_coverage
from .toy_run import RESULT, ToyRunConfig, extendable_result, finished_result, train_toy_gan

# Published rows on the ring with the same metric (2,500 samples, 3σ); "" where the source gives no number here.
PUBLISHED_RING = (
    ("GAN", "1", "", "VEEGAN paper"),
    ("GAN", "6.3", "", "PacGAN paper"),
    ("Unrolled GAN", "7.6", "35.6", "VEEGAN paper's measurement"),
    ("VEEGAN", "8", "52.9", "VEEGAN paper"),
    ("PacGAN2", "7.9", "95.6", "PacGAN paper"),
)
PLOT_LIMIT = {"ring": 3.0, "grid": 6.0}
FIGURE_COLUMNS = 5   # the snapshot picture shows at most this many snapshots, evenly spread, first and last among them


class SweepError(RuntimeError):
    """The sweep cannot run as asked; the message says why and what to do."""


def run_sweep(base, unrolls, seeds, out_root, progress=True, log=print):
    """Train (or reuse) every run; returns {variant label: [result per seed]}. base: a ToyRunConfig."""
    # seed by seed, every variant of a seed together: a sweep cut short still compares like with like
    configs = [dataclasses.replace(base, unroll=k, seed=s) for s in seeds for k in unrolls]
    for config in configs:                     # every setting and folder checked before the first run starts
        config.check()
        folder = os.path.join(out_root, config.name)
        if os.path.exists(os.path.join(folder, RESULT)) and finished_result(folder, config) is None \
                and extendable_result(folder, config) is None:
            raise SweepError(f"{folder} holds a run with other settings; choose another --out or remove it")
    results = {}
    for config in configs:
        folder = os.path.join(out_root, config.name)
        result = finished_result(folder, config)
        if result is None:
            earlier = extendable_result(folder, config)
            if earlier is not None:
                log(f"{config.name}: going on from the {earlier['config']['iters']:,} iterations in {folder}")
            result = train_toy_gan(config, folder, progress)
            log(f"{config.name}: {result['modes_covered']} modes, {100 * result['high_quality']:.1f} % high "
                f"quality, KL {result['kl_to_uniform']:.3f}, {result['train_seconds']:.0f} s "
                f"({result['ms_per_iter']:.1f} ms/iter)")
        else:
            log(f"{config.name}: reusing the finished run in {folder}")
        results.setdefault(config.label, []).append(result)
    return results


def _mean_std(values):
    values = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarise(results):
    """One row per variant: the mean ± std over seeds of each measure."""
    rows = []
    for label, runs in results.items():
        config = ToyRunConfig.from_dict(runs[0]["config"])
        modes = len(TOY_2D[config.data]().modes)
        row = {"variant": label, "unroll": config.unroll, "vanilla": config.variant == "vanilla",
               "seeds": len(runs), "iters": config.iters, "modes": modes,
               "all_modes_seeds": sum(r["modes_covered"] == modes for r in runs),
               "per_seed": [{"seed": r["config"]["seed"], "modes_covered": r["modes_covered"],
                             "high_quality": r["high_quality"], "kl_to_uniform": r["kl_to_uniform"]} for r in runs]}
        for key in ("modes_covered", "high_quality", "kl_to_uniform", "train_seconds", "ms_per_iter",
                    "cpu_ms_per_iter"):
            row[key] = _mean_std([r.get(key, math.nan) for r in runs])
        rows.append(row)
    return rows


def table_markdown(rows, data):
    """The measured rows (and, for the ring, the published ones) as a Markdown table."""
    lines = ["| method | modes covered | high-quality samples (%) | KL(modes ‖ uniform) | runs | source |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        (m, ms), (h, hs), (k, ks) = row["modes_covered"], row["high_quality"], row["kl_to_uniform"]
        lines.append(f"| {row['variant']} | {m:.1f} ± {ms:.1f} | {100 * h:.1f} ± {100 * hs:.1f} | {k:.3f} ± {ks:.3f} "
                     f"| {row['seeds']} seeds × {row['iters']:,} iters; all {row['modes']} modes on "
                     f"{row['all_modes_seeds']}/{row['seeds']} | fastgan (measured) |")
    if data == "ring":
        for method, modes, hq, source in PUBLISHED_RING:
            lines.append(f"| {method} | {modes} | {hq or '—'} | — | — | {source} |")
    return "\n".join(lines) + "\n"


def speed_lines(rows):
    """Seconds per run and ms per iteration (wall clock; CPU time of the process), and the ratio to vanilla."""
    lines = []
    vanilla = next((r for r in rows if r["vanilla"]), None)
    for row in rows:
        (ms, ms_std), (cpu, cpu_std) = row["ms_per_iter"], row["cpu_ms_per_iter"]
        ratio = ""
        if vanilla is not None and row is not vanilla:
            ratio = (f"; {ms / vanilla['ms_per_iter'][0]:.2f}× a vanilla step (CPU time: "
                     f"{cpu / vanilla['cpu_ms_per_iter'][0]:.2f}×)")
        lines.append(f"{row['variant']}: {row['train_seconds'][0]:.0f} s per run of {row['iters']:,} iterations, "
                     f"{ms:.2f} ± {ms_std:.2f} ms per iteration (CPU {cpu:.2f} ± {cpu_std:.2f} ms){ratio}")
    return lines


def _write_text(path, text):
    with atomic_write(path, "w") as f:
        f.write(text)


def write_report(results, out_root, data, figure_seed=0):
    """The table, the summary and the two pictures of a finished sweep; returns the rows."""
    rows = summarise(results)
    speed = "".join(f"- {line}\n" for line in speed_lines(rows))
    _write_text(os.path.join(out_root, f"{data}_table.md"), table_markdown(rows, data) + "\n" + speed)
    _write_text(os.path.join(out_root, f"{data}_summary.json"), json.dumps(rows, indent=1) + "\n")
    dataset = TOY_2D[data]()

    def caption(samples):
        report = mode_coverage(samples, dataset.modes, dataset.std)
        return f"{report.modes_covered} modes, {100 * report.high_quality:.0f} % HQ"

    snapshot_rows, final_rows = [], []
    for label, runs in results.items():
        by_seed = {r["config"]["seed"]: r for r in runs}
        seed = figure_seed if figure_seed in by_seed else min(by_seed)
        snapshots = np.load(os.path.join(out_root, _config_of(by_seed[seed]).name, "snapshots.npz"))
        shown = np.unique(np.linspace(0, len(snapshots["iters"]) - 1, FIGURE_COLUMNS).round().astype(int))
        samples = snapshots["samples"][shown]
        snapshot_rows.append((f"{label}\nseed {seed}", snapshots["iters"][shown].tolist(), samples,
                              [caption(s) for s in samples]))
        finals = [np.load(os.path.join(out_root, _config_of(r).name, "snapshots.npz"))["samples"][-1] for r in runs]
        final_rows.append((f"{label}\nlast iteration", [r["config"]["seed"] for r in runs], finals,
                           [caption(s) for s in finals]))
    limit = PLOT_LIMIT.get(data, 3.0)
    figures.plot_snapshot_grid(snapshot_rows, dataset.modes, os.path.join(out_root, f"{data}_snapshots.png"), limit)
    figures.plot_snapshot_grid(final_rows, dataset.modes, os.path.join(out_root, f"{data}_final_seeds.png"), limit,
                               column_title="seed {}")
    return rows


def _config_of(result):
    return ToyRunConfig.from_dict(result["config"])
