"""The GAN tutorial's toolbox on MNIST, measured: train each configuration, score it, and write the table.

    python benchmarks/toolbox_table.py --out-root runs/toolbox              # the whole table, 5 epochs, seed 0
    python benchmarks/toolbox_table.py --out-root runs/toolbox --reverse    # the same list from its end
    python benchmarks/toolbox_table.py --out-root runs/toolbox --configs cgan,acgan --seeds 0,1,2
    python benchmarks/toolbox_table.py --out-root runs/toolbox --configs dcgan64-mnist64   # the 64×64 run
    python benchmarks/toolbox_table.py --out-root runs/toolbox --configs default,bf16 --seeds 0,1,2   # bf16 vs fp32
    python benchmarks/toolbox_table.py --out-root runs/toolbox --report-only                # just the table

For each configuration (in the fixed order of CONFIGS) and seed, in OUT_ROOT/<config>-seed<S>/:
  1. train: `python -m fastgan.train mnist --epochs E --seed S <flags> --out RUN_DIR`; a run that was interrupted
     is continued with --resume (exactly: same result as an uninterrupted run), a finished one is skipped;
  2. score: `python -m fastgan.eval quality RUN_DIR --seed S` (MNIST-FID with its floor, Inception score, digits
     covered, and the per-class accuracy of a conditional run), unless the run's own report is already there;
  3. the 64×64 DCGAN (dcgan64-mnist64: MNIST resized to 64, one channel) is scored the same way (its samples scaled
     to 28×28 for the classifier: fastgan/eval/quality.py) and also timed: torch trains the same model on the same
     batch with the same threads in benchmarks/train_step.py, whose output is kept as torch_step.txt for the
     seconds per epoch of both engines; it is reported below the table.
Every training and scoring runs in its own process with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = --threads (the
kernels' OpenMP threads, which also run NumPy's BLAS: fastgan/kernels/blas_threads.py). A lock file per run
(OUT_ROOT/locks/) lets several queues share one OUT_ROOT: a run that another process holds is skipped, never run
twice at once. A run that fails is recorded and skipped by later passes (--retry-failed tries it again).

The report, rewritten after every run: OUT_ROOT/table.md (the measured rows, then mean ± std over seeds for the
configurations measured on several; configurations not measured yet are listed below the table as such) and
OUT_ROOT/toolbox_grids.png (the last sample grid of each measured run). The
seconds per epoch are the median of the run's own epoch times (metrics.jsonl; a shared machine makes some epochs
slow), and each run's table_run.json records the threads and the load average at the start and end of each attempt.
"""
import argparse
import fcntl
import json
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # this checkout's fastgan

# (name, flags of python -m fastgan.train): the default DCGAN recipe, each toolbox option alone, the conditional GANs
CONFIGS = [
    ("default", []),
    ("cgan", ["--conditional", "cgan"]),
    ("acgan", ["--conditional", "acgan"]),
    ("projection", ["--conditional", "projection"]),
    ("label-smoothing", ["--label-smoothing", "0.1"]),
    ("d-steps-2", ["--d-steps", "2"]),
    ("feature-matching", ["--g-loss", "feature-matching"]),
    ("minibatch-disc", ["--minibatch-disc", "100,5"]),
    ("vbn", ["--vbn"]),
]
# the DCGAN tutorial's 64×64 model on MNIST resized to 64 (one channel): scored, and timed against torch
DCGAN64 = ("dcgan64-mnist64", ["--model", "dcgan64"])
# the default recipe in mixed precision (docs/precision.md), scored like the table's rows: beside the default's seeds
BF16 = ("bf16", ["--precision", "bf16"])
ALL = dict(CONFIGS + [BF16, DCGAN64])
TABLE, MONTAGE, RECORD, TORCH_STEP = "table.md", "toolbox_grids.png", "table_run.json", "torch_step.txt"


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out-root", required=True, help="the folder of the runs, their locks and the report")
    p.add_argument("--configs", default=",".join(name for name, _ in CONFIGS),
                   help=f"comma-separated, run in this order (default: the table: %(default)s; also {BF16[0]}, "
                        f"{DCGAN64[0]})")
    p.add_argument("--reverse", action="store_true", help="walk the configurations from the end of the list")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, each a run of every config (default: 0)")
    p.add_argument("--epochs", type=int, default=5, help="epochs of each table run (default: %(default)s)")
    p.add_argument("--dcgan64-epochs", type=int, default=3, help="epochs of the 64×64 run (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="threads of each process (default: %(default)s)")
    p.add_argument("--samples", type=int, default=10000,
                   help="samples (and test images) of the quality report (default: %(default)s)")
    p.add_argument("--torch-steps", type=int, default=20,
                   help="timed steps per engine in the 64×64 model's torch comparison (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (quick checks)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: the recipe's, 128)")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs whose last attempt failed")
    p.add_argument("--report-only", action="store_true", help="train nothing: write the report of what is there")
    args = p.parse_args(argv)
    names = args.configs.split(",")
    unknown = [n for n in names if n not in ALL]
    if unknown:
        p.error(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(ALL)}")
    if len(set(names)) != len(names):
        p.error(f"--configs names a configuration twice: {args.configs}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    for flag in ("epochs", "dcgan64_epochs", "threads", "samples"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    args.configs = names[::-1] if args.reverse else names
    return args


def run_command(argv, threads, capture=False):
    """Run argv (a python -m module or a script of this checkout) in ROOT with `threads` threads; (exit status,
    its output if captured)."""
    env = dict(os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    print("$ " + " ".join(argv[1:]), flush=True)
    done = subprocess.run(argv, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE if capture else None)
    return done.returncode, done.stdout


class Run:
    """One configuration and seed: its folder, what it has done, and the record of its attempts (table_run.json)."""

    def __init__(self, out_root, name, seed, epochs, samples):
        self.name, self.seed, self.epochs, self.samples, self.flags = name, seed, epochs, samples, ALL[name]
        self.dir = os.path.join(out_root, f"{name}-seed{seed}")
        self.lock_path = os.path.join(out_root, "locks", f"{name}-seed{seed}.lock")
        self.timed = name == DCGAN64[0]  # also timed against torch, and reported below the table

    def file(self, name):
        return os.path.join(self.dir, name)

    def epochs_done(self):
        """The epoch of the run's last checkpoint (0 if it has none)."""
        try:
            with open(self.file("checkpoint.json")) as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError):
            return 0

    def started(self):
        return os.path.exists(self.file("config.json"))

    def record(self):
        try:
            with open(self.file(RECORD)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"attempts": []}

    def add_attempt(self, attempt):
        from fastgan.utils.atomic import atomic_write
        record = self.record()
        record["attempts"].append(attempt)
        os.makedirs(self.dir, exist_ok=True)
        with atomic_write(self.file(RECORD), "w") as f:
            json.dump(record, f, indent=2)

    def failed(self):
        attempts = self.record()["attempts"]
        return bool(attempts) and attempts[-1].get("status") != "ok"

    def quality(self):
        """The run's quality report if it scores the last checkpoint's G with the samples asked for, else None.
        (Training writes its own report after the last epoch's grid and before its checkpoint: a report newer than
        the grid of the checkpoint's epoch judged that G.)"""
        try:
            grid = self.file(f"fake_samples_epoch_{self.epochs_done():03d}.png")
            fresh = os.path.getmtime(self.file("quality.json")) >= os.path.getmtime(grid)
            with open(self.file("quality.json")) as f:
                report = json.load(f)
        except (OSError, ValueError):
            return None
        return report if fresh and report.get("samples") == self.samples else None

    def torch_step(self):
        try:
            with open(self.file(TORCH_STEP)) as f:
                return f.read()
        except OSError:
            return None

    def finished(self):
        """Trained for its epochs, scored, and timed against torch if it is timed."""
        return (self.epochs_done() >= self.epochs and self.quality() is not None and
                (not self.timed or self.torch_step() is not None))


def train_argv(run, args):
    if run.started():  # interrupted (or shorter): continue it; the checkpoint holds every other setting
        return [sys.executable, "-m", "fastgan.train", "mnist", "--resume", run.dir, "--epochs", str(run.epochs),
                "--no-progress"]
    extra = [] if args.limit is None else ["--limit", str(args.limit)]
    extra += [] if args.batch_size is None else ["--batch-size", str(args.batch_size)]
    extra += [] if args.samples == 10000 else ["--eval-samples", str(args.samples)]  # its own report at the end
    return [sys.executable, "-m", "fastgan.train", "mnist", "--epochs", str(run.epochs), "--seed", str(run.seed),
            *run.flags, *extra, "--no-progress", "--out", run.dir]


def measure(run, args):
    """Train, then score or time against torch, whatever of it is not done yet; returns the attempt's record."""
    attempt = {"threads": args.threads, "load_start": round(os.getloadavg()[0], 2),
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "epochs_before": run.epochs_done()}
    status = "ok"
    if run.epochs_done() < run.epochs:
        rc, _ = run_command(train_argv(run, args), args.threads)
        status = "ok" if rc == 0 else f"training exited with status {rc}"
    if status == "ok" and run.quality() is None:
        rc, _ = run_command([sys.executable, "-m", "fastgan.eval", "quality", run.dir, "--seed", str(run.seed),
                             "--samples", str(args.samples), "--no-progress"], args.threads)
        status = "ok" if rc == 0 else f"eval quality exited with status {rc}"
    if status == "ok" and run.timed and run.torch_step() is None:
        status = time_against_torch(run, args)
    attempt.update(status=status, epochs_after=run.epochs_done(), load_end=round(os.getloadavg()[0], 2),
                   ended=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    return attempt


def time_against_torch(run, args):
    """benchmarks/train_step.py on the run's model, batch and threads: both engines' seconds per epoch."""
    with open(run.file("config.json")) as f:
        config = json.load(f)
    rc, output = run_command([sys.executable, os.path.join("benchmarks", "train_step.py"), "--model", "dcgan64",
                              "--nc", str(config["nc"]), "--batch-size", str(config["batch_size"]),
                              "--threads", str(args.threads), "--steps", str(args.torch_steps)],
                             args.threads, capture=True)
    print(output, end="", flush=True)
    if rc != 0:
        return f"benchmarks/train_step.py exited with status {rc}"
    from fastgan.utils.atomic import atomic_write
    with atomic_write(run.file(TORCH_STEP), "w") as f:
        f.write(output)
    return "ok"


def seconds_per_epoch(run):
    """Median of the run's own epoch times (None before its first epoch)."""
    from fastgan.eval.runs import EvalError
    from fastgan.eval.timing import epoch_seconds, timing_report
    try:
        return timing_report(epoch_seconds(run.dir, run.epochs_done() or None))["median_epoch_s"]
    except EvalError:
        return None


def engine_seconds_per_epoch(output):
    """{"fastgan": s, "torch": s} from benchmarks/train_step.py's table (each engine's own recipe)."""
    found = {}
    for line in output.splitlines():
        for engine in ("fastgan", "torch"):
            cells = line.split()
            if line.startswith(engine + " ") and len(cells) == 4:  # variant, ms/step, img/s, s/epoch
                found[engine] = float(cells[3])
    return found


def run_state(run):
    if run.failed():
        return f"failed ({run.record()['attempts'][-1]['status']}; see its log)"
    done = run.epochs_done()
    if done >= run.epochs:
        return "trained, not yet measured"
    return f"{done}/{run.epochs} epochs trained" if run.started() else "not started"


def threads_and_load(run):
    attempts = [a for a in run.record()["attempts"] if a.get("epochs_after", 0) > a.get("epochs_before", 0)]
    threads = sorted({a["threads"] for a in attempts}) or ["?"]
    loads = [a[k] for a in attempts for k in ("load_start", "load_end")]
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "?"
    return ",".join(map(str, threads)), load


def report(out_root, runs):
    """Write OUT_ROOT/table.md and OUT_ROOT/toolbox_grids.png from the runs measured so far; returns the table."""
    from fastgan.utils.atomic import atomic_write
    lines = ["| config | flags | seed | MNIST-FID (floor) | IS | digits covered | per-class acc. | s/epoch | threads | "
             "load |", "|---|---|---|---|---|---|---|---|---|---|"]
    pending, grids = [], []
    for run in (r for r in runs if not r.timed):
        quality = run.quality()
        if not run.finished() or quality is None:
            pending.append(f"- {run.name}, seed {run.seed}: {run_state(run)}")
            continue
        accuracy = quality.get("per_class_accuracy")
        threads, load = threads_and_load(run)
        lines.append(f"| {run.name} | `{' '.join(run.flags) or '(none)'}` | {run.seed} | "
                     f"{quality['mnist_fid']:.2f} ({quality['mnist_fid_floor']:.2f}) | "
                     f"{quality['inception_score']:.2f} | {quality['modes_covered']}/10 | "
                     f"{'–' if accuracy is None else f'{100 * accuracy:.1f} %'} | {seconds_per_epoch(run):.0f} | "
                     f"{threads} | {load} |")
        grids.append((f"{run.name} (seed {run.seed}): FID {quality['mnist_fid']:.1f}",
                      run.file(f"fake_samples_epoch_{run.epochs:03d}.png")))
    text = [f"Toolbox on MNIST, epochs per run: {runs[0].epochs if runs else '?'}; scored by python -m fastgan.eval "
            "quality; s/epoch: the median epoch of the run.", "", *lines, *over_seeds(runs)]
    if pending:
        text += ["", "Not measured yet:", *pending]
    for run in (r for r in runs if r.timed):
        text += ["", *dcgan64_lines(run)]
    with atomic_write(os.path.join(out_root, TABLE), "w") as f:
        f.write("\n".join(text) + "\n")
    if grids:
        write_montage(grids, os.path.join(out_root, MONTAGE))
    return "\n".join(text)


def over_seeds(runs):
    """The configurations measured on more than one seed: mean ± std (ddof 1) of each score, as table lines."""
    import statistics
    by_config = {}
    for run in runs:
        quality = run.quality() if not run.timed and run.finished() else None
        if quality is not None:
            by_config.setdefault(run.name, []).append(quality)
    several = {name: reports for name, reports in by_config.items() if len(reports) > 1}
    if not several:
        return []

    def spread(reports, key, scale=1.0, digits=2):
        values = [scale * r[key] for r in reports if r.get(key) is not None]
        return "–" if not values else f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
    lines = ["", "Over seeds (mean ± std, ddof 1), for the configurations measured on more than one:", "",
             "| config | seeds | MNIST-FID | IS | per-class acc. (%) |", "|---|---|---|---|---|"]
    for name, reports in several.items():
        lines.append(f"| {name} | {len(reports)} | {spread(reports, 'mnist_fid')} | "
                     f"{spread(reports, 'inception_score')} | {spread(reports, 'per_class_accuracy', 100, 1)} |")
    return lines


def dcgan64_lines(run):
    done, measured = run.epochs_done(), engine_seconds_per_epoch(run.torch_step() or "")
    if not done:
        return [f"{run.name}, seed {run.seed}: {run_state(run)}"]
    threads, load = threads_and_load(run)
    lines = [f"{run.name} (`{' '.join(run.flags)}`, seed {run.seed}): {done}/{run.epochs} epochs trained, "
             f"median epoch {seconds_per_epoch(run):.0f} s with {threads} thread(s) (load {load}); "
             f"last grid: {run.file(f'fake_samples_epoch_{done:03d}.png')}"]
    quality = run.quality()
    if quality is not None:
        lines.append(f"scored after epoch {done} (samples 64×64 → 28×28): MNIST-FID {quality['mnist_fid']:.2f} (floor "
                     f"{quality['mnist_fid_floor']:.2f}), IS {quality['inception_score']:.2f}, "
                     f"{quality['modes_covered']}/10 digits")
    if {"fastgan", "torch"} <= set(measured):
        lines.append(f"benchmarks/train_step.py, same model, batch and threads: fastgan {measured['fastgan']:.0f} "
                     f"s/epoch, torch {measured['torch']:.0f} s/epoch: fastgan's throughput "
                     f"{measured['torch'] / measured['fastgan']:.2f}x torch's ({run.file(TORCH_STEP)})")
    return lines


def write_montage(grids, path):
    """The sample grids side by side, each titled, three to a row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    from fastgan.utils.atomic import atomic_write
    columns = min(3, len(grids))
    rows = -(-len(grids) // columns)
    fig = Figure(figsize=(3.2 * columns, 3.7 * rows), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, grid) in zip(axes, grids):
        ax.imshow(imread(grid), cmap="gray")
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")


def take_lock(run):
    """An open lock file, held (flock) until closed; None if another process holds it."""
    os.makedirs(os.path.dirname(run.lock_path), exist_ok=True)
    handle = open(run.lock_path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def main(argv=None):
    args = parse(argv)
    os.makedirs(os.path.join(args.out_root, "locks"), exist_ok=True)
    def run(name, seed):
        return Run(args.out_root, name, seed, args.dcgan64_epochs if name == DCGAN64[0] else args.epochs,
                   args.samples)
    runs = [run(name, seed) for seed in args.seeds for name in args.configs]
    every_run = [run(name, seed) for seed in args.seeds for name in (*[n for n, _ in CONFIGS], BF16[0], DCGAN64[0])]

    def reported():
        """What the report lists (checked when it is written): what was started, and for the first seed the
        table's configurations and those asked for."""
        return [r for r in every_run if r.started() or (
            r.seed == args.seeds[0] and ((not r.timed and r.name != BF16[0]) or r.name in args.configs))]

    for run in ([] if args.report_only else runs):
        if run.finished():
            print(f"{run.name}, seed {run.seed}: measured already, skipped", flush=True)
            continue
        if run.failed() and not args.retry_failed:
            print(f"{run.name}, seed {run.seed}: {run_state(run)}: skipped (--retry-failed runs it again)", flush=True)
            continue
        lock = take_lock(run)
        if lock is None:
            print(f"{run.name}, seed {run.seed}: another process is running it, skipped", flush=True)
            continue
        with lock:
            if run.epochs_done() > run.epochs:
                print(f"{run.name}, seed {run.seed}: trained for {run.epochs_done()} epochs, more than "
                      f"--epochs {run.epochs}: skipped", flush=True)
                continue
            print(f"== {run.name}, seed {run.seed} ({run.dir})", flush=True)
            run.add_attempt(measure(run, args))
        report(args.out_root, reported())
    print(report(args.out_root, reported()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
