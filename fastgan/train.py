"""`python -m fastgan.train mnist`: train a GAN on real MNIST, with a progress bar, pictures, metrics and exact resume.

A run folder holds:
    config.json                  the settings of the run
    real_samples.png             a grid of training images
    fake_samples_epoch_NNN.png   64 samples from one fixed noise batch, after every epoch
    metrics.jsonl                one JSON line per logged step (and one per finished epoch, with its time)
    losses.png                   Loss_D and Loss_G (and D's outputs) against the step (redrawn after an epoch,
                                 at most once a minute, and always after the last)
    checkpoint.pkl               G, D, both optimisers and the RNG state, written atomically after every epoch
    quality.json, quality.txt    the classifier-based sample quality at the end (if the MNIST classifier is cached)
    mnist_fid.png                MNIST-FID against the epoch (with --eval-every N)
`--resume RUN_DIR` continues from the checkpoint and gives exactly the result an uninterrupted run would have.

How a model is trained (optimiser, lr/momentum schedule, pixel range, noise, training subset) is its Recipe
(fastgan/models/recipe.py); --batch-size, --lr, --beta1 and --noise override the recipe's values.
"""
import argparse
import json
import math
import os
import pickle
import sys
import time

import numpy as np
from tqdm import tqdm

import fastgan
from fastgan import backend, dispatch
from fastgan.data import MNISTError, load_mnist
from fastgan.data.mnist import mnist_to_float
from fastgan.gan import G_LOSSES, STEPS
from fastgan.eval.quality import TrainingQuality
from fastgan.models import MODELS, RECIPES, recipe_for
from fastgan.utils.atomic import atomic_write
from fastgan.utils.images import save_image_grid
from fastgan.utils.plots import plot_losses

DEFAULT_EPOCHS = 5
CHECKPOINT = "checkpoint.pkl"
METRICS = "metrics.jsonl"
LOSS_PLOT_INTERVAL_S = 60  # drawing losses.png takes about a second: a run of short epochs redraws it less often
# Settings that define the run; on --resume they come from the checkpoint (only --epochs may be raised).
RUN_SETTINGS = ("dataset", "model", "batch_size", "lr", "beta1", "nz", "noise", "g_loss", "real_label", "seed",
                "limit", "data_dir", "log_every", "eval_every", "eval_samples")


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


def build_parser():
    p = argparse.ArgumentParser(prog="python -m fastgan.train",
                                description="Train a GAN with fastgan (no framework: its own autograd and kernels).")
    p.add_argument("dataset", choices=["mnist"], help="the data set to learn (MNIST is fetched and cached on first use)")
    p.add_argument("--model", choices=sorted(MODELS), default="dcgan", help="architecture (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"total number of passes over the data (default: {DEFAULT_EPOCHS}; with --resume: the new total)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step (default: the model's recipe: dcgan 128, mlp 100)")
    p.add_argument("--lr", type=float, default=None, help="initial learning rate of both players (default: the "
                                                          "recipe's: dcgan Adam 2e-4, mlp SGD 0.1 with decay)")
    p.add_argument("--beta1", type=float, default=None, help="Adam β1 (default: the recipe's, 0.5; β2 is 0.999)")
    p.add_argument("--nz", type=int, default=100, help="size of the noise vector z (default: %(default)s)")
    p.add_argument("--noise", choices=["normal", "uniform"], default=None,
                   help="distribution of z, both of unit variance: N(0, 1) or U(−√3, √3) (default: the recipe's: "
                        "dcgan normal, mlp uniform)")
    p.add_argument("--g-loss", choices=G_LOSSES, default="non-saturating",
                   help="generator cost: non-saturating (default), minimax (zero-sum) or ml (maximum likelihood)")
    p.add_argument("--real-label", type=float, default=1.0,
                   help="target for real images; 0.9 is one-sided label smoothing (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same run (default: %(default)s)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<dataset>-<model>-<date>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to compute: auto picks a GPU when CuPy finds one (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke tests)")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (plain or .gz) to use instead "
                                                    "of the download")
    p.add_argument("--log-every", type=int, default=50, help="log line and metrics every N steps (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="every N epochs add the classifier-based quality (MNIST-FID, ...) to the metrics and plot "
                        "mnist_fid.png (needs the cached classifier; default: 0, never)")
    p.add_argument("--eval-samples", type=int, default=10000, metavar="N",
                   help="samples for the quality report written at the end of the run (if the classifier is cached) "
                        "and for --eval-every; 0 turns both off (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="one step per epoch, no checkpoint: check that it all runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs and CI)")
    return p


# --- the run folder ----------------------------------------------------------------------------------------------

def save_checkpoint(run_dir, state):
    with atomic_write(os.path.join(run_dir, CHECKPOINT)) as f:
        pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_checkpoint(run_dir):
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise TrainingError(f"no checkpoint in {run_dir!r} (expected {path}): nothing to resume")
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
        state["epoch"], state["config"]  # noqa: B018 - the keys every checkpoint has
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise TrainingError(f"checkpoint {path} is unreadable ({err}); start a new run or restore the file") from err
    return state


def keep_metrics_lines(path, count):
    """Drop metric lines logged after the checkpoint (an interrupted epoch), so a resumed run's file is exact."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()[:count]
    with atomic_write(path, "w") as f:
        f.writelines(lines)


def count_lines(path):
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def default_run_dir(config):
    return os.path.join("runs", f"{config['dataset']}-{config['model']}-{time.strftime('%Y%m%d-%H%M%S')}")


# --- training ------------------------------------------------------------------------------------------------------

def log_line(epoch, epochs, i, iters, stats):
    return (f"[{epoch}/{epochs}][{i}/{iters}] Loss_D: {stats['loss_d']:.4f} Loss_G: {stats['loss_g']:.4f} "
            f"D(x): {stats['d_x']:.4f} D(G(z)): {stats['d_g_z1']:.4f} / {stats['d_g_z2']:.4f}")


def resolve_recipe(config):
    """Fill the settings left to the model's recipe (batch size, lr, β1, noise) and fix the schedule's length."""
    recipe = RECIPES[config["model"]]
    config["noise"] = config.get("noise") or recipe.noise
    for key in ("batch_size", "lr") + (("beta1",) if recipe.optimizer == "adam" else ()):
        if config.get(key) is None:
            config[key] = getattr(recipe, key)
    config.setdefault("schedule_epochs", config["epochs"])
    return config


def check_config(config):
    if config["batch_size"] < 2:
        raise TrainingError(f"--batch-size must be at least 2 (batch norm needs two samples), got {config['batch_size']}")
    if config["epochs"] < 1:
        raise TrainingError(f"--epochs must be at least 1, got {config['epochs']}")
    if config.get("eval_every", 0) < 0 or config.get("eval_samples", 0) < 0:
        raise TrainingError("--eval-every and --eval-samples must be at least 0")
    if config["limit"] is not None and config["limit"] < config["batch_size"]:
        raise TrainingError(f"--limit {config['limit']} is smaller than --batch-size {config['batch_size']}: "
                            "no full batch to train on")


def run(config, run_dir, resume_state=None, progress=True, dry_run=False, device="cpu"):
    """Train according to `config` in `run_dir`; returns the final (G, D)."""
    fastgan.manual_seed(config["seed"])
    recipe = recipe_for(config)
    play = STEPS[recipe.update]  # one round of the game: alternating or simultaneous updates
    mnist = load_mnist(config["data_dir"], progress=progress)
    images = mnist_to_float(mnist.x_train[:recipe.train_images][:config["limit"]], value_range=recipe.value_range)
    xp = backend.array_module(device)
    if recipe.pixel_mean_init:
        G, D = MODELS[config["model"]](config["nz"], pixel_mean=recipe.to_unit(images).mean(axis=0))
    else:
        G, D = MODELS[config["model"]](config["nz"])
    G.to(device), D.to(device)
    opt_g = recipe.make_optimizer(G.parameters(), config["lr"], config["beta1"])
    opt_d = recipe.make_optimizer(D.parameters(), config["lr"], config["beta1"])
    fixed_noise = recipe.sample_noise(64, config["nz"], device=device)
    metrics_path = os.path.join(run_dir, METRICS)
    quality = TrainingQuality(config, mnist, run_dir)

    start_epoch = 0
    if resume_state is not None:
        G.load_state_dict(resume_state["G"])
        D.load_state_dict(resume_state["D"])
        opt_g.load_state_dict(resume_state["opt_g"])
        opt_d.load_state_dict(resume_state["opt_d"])
        fixed_noise = fastgan.tensor(resume_state["fixed_noise"], device=device)
        fastgan.set_rng_state(resume_state["rng"])
        start_epoch = resume_state["epoch"]
        keep_metrics_lines(metrics_path, resume_state["metrics_lines"])
    else:
        save_image_grid(images[:64], os.path.join(run_dir, "real_samples.png"), value_range=recipe.value_range)

    batch, epochs = config["batch_size"], config["epochs"]
    iters = len(images) // batch  # every step sees a full batch
    last_plot = -math.inf
    for epoch in range(start_epoch, epochs):
        G.train(), D.train()
        order = fastgan.random.generator().permutation(len(images))
        bar = tqdm(range(1 if dry_run else iters), desc=f"epoch {epoch + 1}/{epochs}", unit="step",
                   disable=not progress, dynamic_ncols=True, file=sys.stderr)
        started = time.perf_counter()
        for i in bar:
            step = epoch * iters + i
            lr, momentum = recipe.apply_schedule((opt_g, opt_d), step, iters, config["schedule_epochs"], config["lr"])
            real = fastgan.Tensor(xp.asarray(images[order[i * batch:(i + 1) * batch]]))
            z = recipe.sample_noise(batch, config["nz"], device=device)
            stats = play(G, D, opt_g, opt_d, real, z, config["g_loss"], config["real_label"], recipe.d_loss_scale)
            if not (math.isfinite(stats["loss_d"]) and math.isfinite(stats["loss_g"])):
                last = f"the checkpoint of epoch {epoch} in {run_dir} is kept" if epoch else "no checkpoint was written yet"
                raise TrainingError(f"training diverged at epoch {epoch} step {i}: Loss_D = {stats['loss_d']}, "
                                    f"Loss_G = {stats['loss_g']}. Stopped; {last}. Try a lower --lr.")
            bar.set_postfix(Loss_D=f"{stats['loss_d']:.3f}", Loss_G=f"{stats['loss_g']:.3f}", refresh=False)
            if i % config["log_every"] == 0 or i == iters - 1:
                tqdm.write(log_line(epoch, epochs, i, iters, stats), file=sys.stdout)
                with open(metrics_path, "a") as f:
                    schedule = {"lr": lr, "momentum": momentum} if recipe.optimizer == "sgd" else {}
                    f.write(json.dumps({"epoch": epoch, "iter": i, "step": step, **stats, **schedule}) + "\n")
        bar.close()
        seconds = time.perf_counter() - started
        steps = 1 if dry_run else iters
        with open(metrics_path, "a") as f:
            f.write(json.dumps({"epoch": epoch, "event": "epoch_end", "seconds": round(seconds, 3),
                                "images_per_second": round(steps * batch / seconds, 1)}) + "\n")
        print(f"epoch {epoch + 1}/{epochs}: {seconds:.1f} s, {steps * batch / seconds:.0f} img/s", flush=True)

        G.eval()
        with fastgan.no_grad():
            samples = G(fixed_noise).numpy()
        save_image_grid(samples, os.path.join(run_dir, f"fake_samples_epoch_{epoch + 1:03d}.png"),
                        value_range=recipe.value_range)
        if epoch + 1 == epochs or time.monotonic() - last_plot >= LOSS_PLOT_INTERVAL_S:
            plot_losses(metrics_path, os.path.join(run_dir, "losses.png"), title=f"{config['model']} on MNIST")
            last_plot = time.monotonic()
        if not dry_run:  # before the checkpoint: the metrics lines it counts include the quality record
            quality.after_epoch(G, recipe, epoch, epoch + 1 == epochs, metrics_path)
        if not dry_run:
            save_checkpoint(run_dir, {
                "epoch": epoch + 1, "config": config, "G": G.state_dict(), "D": D.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": fastgan.get_rng_state(),
                "fixed_noise": fixed_noise.numpy(), "metrics_lines": count_lines(metrics_path)})
    return G, D


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        device = backend.normalize_device(args.device)
        if device == "cuda" and not dispatch.available("cuda") and args.device == "auto":
            device = "cpu"  # a GPU, but no kernels for it (e.g. no NVRTC): auto means "the best that runs"
        if device == "cuda" and not dispatch.available("cuda"):
            raise TrainingError("--device cuda: no GPU kernels are available on this machine (CuPy and a GPU "
                                "are needed); use --device cpu")
        if args.resume:
            state = load_checkpoint(args.resume)
            config, run_dir = dict(state["config"]), args.resume
            config["epochs"] = args.epochs or config["epochs"]
            if state["epoch"] >= config["epochs"]:
                raise TrainingError(f"{run_dir} has already trained {state['epoch']} of {config['epochs']} epochs; "
                                    "pass a larger --epochs to continue")
            print(f"resuming {run_dir} at epoch {state['epoch']} of {config['epochs']}")
        else:
            state = None
            config = {k: getattr(args, k) for k in RUN_SETTINGS}
            config["epochs"] = args.epochs or DEFAULT_EPOCHS
            run_dir = args.out or default_run_dir(config)
        resolve_recipe(config)
        check_config(config)
        os.makedirs(run_dir, exist_ok=True)
        with atomic_write(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump({**config, "device": device}, f, indent=2)
        print(f"run folder: {run_dir}  (device: {device})")
        run(config, run_dir, state, progress=not args.no_progress, dry_run=args.dry_run, device=device)
    except (TrainingError, MNISTError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m fastgan.train {args.dataset} --resume {run_dir}",
              file=sys.stderr)
        return 130
    print(f"done: samples, metrics, loss curve and checkpoint are in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
