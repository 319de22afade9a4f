"""How long a run took, from the `epoch_end` lines of its metrics.jsonl (one per finished epoch, with its seconds).

The plain sum of a run's epochs says as much about the machine as about the engine: a run that shares its cores
with other work, or is resumed across several processes, has many slow epochs. The median epoch times the epochs
is the time the run takes with the machine to itself, and both are reported.
"""
import os
import statistics

from fastgan.utils.plots import read_jsonl

from .runs import EvalError


def epoch_seconds(run_dir, epochs=None):
    """Seconds of each of the first `epochs` epochs of the run (all finished epochs if None), in order.

    If an epoch's line appears more than once, its last time counts.
    """
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise EvalError(f"no metrics.jsonl in {run_dir!r}: time a folder written by python -m fastgan.train")
    try:
        records = read_jsonl(path)
    except ValueError as err:
        raise EvalError(str(err)) from None
    # metrics count epochs from 0
    seconds = {r["epoch"]: r["seconds"] for r in records if r.get("event") == "epoch_end"}
    finished = len(seconds) if epochs is None else epochs
    if finished < 1:
        raise EvalError(f"{path} has no finished epoch yet" if epochs is None else "--epochs must be at least 1")
    missing = [e + 1 for e in range(finished) if e not in seconds]
    if missing:
        listed = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise EvalError(f"{path} has the times of {len(seconds)} epochs, not of epochs {listed} "
                        f"(asked for the first {finished})")
    return [seconds[e] for e in range(finished)]


def timing_report(seconds):
    """Epochs, median epoch (s), median × epochs (min) and the plain sum (min) of a list of epoch times."""
    median = statistics.median(seconds)
    return {"epochs": len(seconds), "median_epoch_s": median,
            "median_times_epochs_min": median * len(seconds) / 60, "sum_min": sum(seconds) / 60}


def format_timing(report):
    return [f"{report['epochs']} epochs: median epoch {report['median_epoch_s']:.1f} s, "
            f"median × epochs {report['median_times_epochs_min']:.0f} min "
            f"(the epochs' times sum to {report['sum_min']:.0f} min)"]
