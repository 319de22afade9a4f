"""`python -m fastgan.train` on the GPU, end to end, without MNIST: one epoch of the DCGAN on synthetic digits.

    python3 benchmarks/gpu_train.py                          # 12800 synthetic images, batch 128: 100 steps
    python3 benchmarks/gpu_train.py --data mnist --images 60000   # real MNIST, from fastgan's cache (see below)

A GPU machine without the network cannot fetch MNIST, so by default the run trains on random 28×28 "digits" made
here (the same shapes and pixel range: it checks that training runs on cuda and how fast, not what it learns).
--data mnist uses the real set from its cache file (mnist.npz, in $FASTGAN_CACHE or ~/.cache/fastgan: copy it
from a machine that has trained once). The run folder is made in a temporary directory; only its small files
(config, metrics, sample grids, loss plot; never the checkpoint) are copied to --results. Exit status 1 if the run
failed, did not run on cuda, or recorded no finished epoch.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fastgan  # noqa: E402,F401  (before NumPy, as fastgan asks)
import numpy as np  # noqa: E402

from gpu_common import fail  # noqa: E402

SMALL = 2 ** 20   # files up to 1 MiB come back with the results
METRICS = "metrics.jsonl"   # the run folder's log (fastgan/train.py)


def synthetic_mnist(images, seed=0):
    """An MNIST-shaped data set of random uint8 images and labels."""
    from fastgan.data import MNIST
    rng = np.random.default_rng(seed)
    return MNIST(rng.integers(0, 256, (images, 28, 28), dtype=np.uint8), rng.integers(0, 10, images, dtype=np.uint8),
                 rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10, dtype=np.uint8))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=["synthetic", "mnist"], default="synthetic")
    p.add_argument("--images", type=int, default=12800, help="training images (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--results", default=os.path.join(os.environ.get("OUT") or "build", "gpu_train"),
                   help="folder for the run's small files (default: $OUT/gpu_train)")
    args = p.parse_args()

    from fastgan import backend, train
    if not backend.cuda_status().usable:
        fail("gpu_train", f"no GPU that fastgan can use: {backend.cuda_status().detail}")
    if args.data == "synthetic":
        data = synthetic_mnist(args.images)
        train.load_mnist = lambda data_dir=None, progress=True: data
    run_dir = os.path.join(tempfile.mkdtemp(prefix="fastgan-gpu-train-"), "run")
    try:
        status = train.main(["mnist", "--device", "cuda", "--epochs", str(args.epochs), "--batch-size",
                             str(args.batch_size), "--limit", str(args.images), "--eval-samples", "0",
                             "--no-progress", "--log-every", "25", "--out", run_dir])
        problems = [] if status == 0 else [f"fastgan.train exited with status {status}"]
        if os.path.isdir(run_dir):
            os.makedirs(args.results, exist_ok=True)
            for name in sorted(os.listdir(run_dir)):
                path = os.path.join(run_dir, name)
                if os.path.isfile(path) and os.path.getsize(path) <= SMALL and not name.startswith("checkpoint"):
                    shutil.copy(path, os.path.join(args.results, name))
            problems += check_run(run_dir)
        else:
            problems.append(f"no run folder was made at {run_dir}")
    finally:
        shutil.rmtree(os.path.dirname(run_dir), ignore_errors=True)
    if problems:
        print("FAIL gpu_train: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"gpu_train: OK ({args.data} data); the run's small files are in {args.results}")
    return 0


def check_run(run_dir):
    """What is wrong with a finished run folder: not on cuda, or no epoch recorded as finished."""
    problems = []
    with open(os.path.join(run_dir, "config.json")) as f:
        device = json.load(f).get("device")
    if device != "cuda":
        problems.append(f"the run trained on {device!r}, not on cuda")
    metrics = os.path.join(run_dir, METRICS)
    epochs = []
    if os.path.exists(metrics):
        with open(metrics) as f:
            epochs = [r for r in map(json.loads, f) if r.get("event") == "epoch_end"]
    if not epochs:
        problems.append(f"{METRICS} records no finished epoch")
    for record in epochs:
        print(f"epoch {record['epoch'] + 1}: {record['seconds']} s, {record['images_per_second']} img/s")
    return problems


if __name__ == "__main__":
    sys.exit(main())
