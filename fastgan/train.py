"""`python -m fastgan.train mnist|folder|fake`: train a GAN, with a progress bar, pictures, metrics and exact resume.

`python -m fastgan.train ring|grid [--unroll K --unroll-mode exact|first-order]` trains on a 2-D toy mixture instead:
it is `python -m fastgan.theory ring|grid` (its options, table and pictures) with one seed and, unless --unroll is
given, the vanilla GAN only. Unrolling runs on the toy data only.

The data (fastgan/data/sources.py): MNIST (28×28, or resized with --image-size), a folder of the user's images
(`folder --data-dir DIR`, resized and center-cropped to --image-size, RGB or grayscale by --nc), or random images
(`fake`, for smoke tests). The classifier-based metrics (quality report, --eval-every) need MNIST (at any size: samples
of another size are scaled to 28×28 for the classifier).

A run folder (its format: fastgan/checkpoint.py) holds:
    config.json                  the settings of the run
    real_samples.png             a grid of training images
    fake_samples_epoch_NNN.png   64 samples from one fixed noise batch, after every epoch (a conditional run: 80,
                                 one row of 8 per requested digit)
    metrics.jsonl                one JSON line per logged step (and one per finished epoch, with its time)
    losses.png                   Loss_D and Loss_G (and D's outputs) against the step (redrawn after an epoch,
                                 at most once a minute, and always after the last)
    checkpoint.json + checkpoint-epoch-NNN-<sha>.safetensors
                                 G, D, both optimisers, the fixed noise and the RNG state after the last finished
                                 epoch (safetensors + JSON: nothing in them can run code), written atomically
    quality.json, quality.txt    the classifier-based sample quality at the end (MNIST at any size, if the MNIST
                                 classifier is cached)
    mnist_fid.png                MNIST-FID against the epoch (with --eval-every N)
`--resume RUN_DIR` continues from the checkpoint and gives exactly the result an uninterrupted run would have; a run
stopped before its first checkpoint starts again from its config.json. `--out` never replaces a run (unless
--overwrite says so), every argument is checked before anything is written, and a run that diverges stops before
its weights reach a checkpoint.

The GAN tutorial's toolbox (fastgan/gan.py, fastgan/models/): --d-steps K (K D-updates per round, each on a fresh
real batch), --label-smoothing, --g-loss feature-matching, --minibatch-disc B,C, --vbn, --conditional
cgan|projection|acgan (docs/training.md lists every option).

How a model is trained (optimiser, lr/momentum schedule, pixel range, noise, training subset) is its Recipe
(fastgan/models/recipe.py); --batch-size, --lr, --beta1 and --noise override the recipe's values.
"""
import argparse
import json
import math
import os
import shlex
import sys
import time

import numpy as np
from tqdm import tqdm

import fastgan
from fastgan import backend, dispatch
from fastgan.checkpoint import (CHECKPOINT, CONFIG, LEGACY_CHECKPOINT, METRICS, CheckpointError, load_checkpoint,
                                remove_run_files, remove_stale_files, run_markers, save_checkpoint)
from fastgan.data import DATASETS, FolderError, ImageSet, MNISTError, load_images, load_mnist
from fastgan.data.fake import DEFAULT_COUNT as FAKE_COUNT
from fastgan.data.mnist_resized import NATIVE_SIZE as MNIST_SIZE
from fastgan.data.sources import DEFAULTS as DATA_DEFAULTS
from fastgan.distributed.training import launch, parallel_for
from fastgan.gan import ALL_G_LOSSES, ROUNDS, Batch
from fastgan.eval.quality import TrainingQuality
from fastgan.models import (CONDITIONAL_KINDS, IMAGE_SIZES, MODEL_OPTIONS, MODELS, RECIPES, VBN_REFERENCE_SIZE,
                            build_gan, grid_labels, image_shape, random_labels, recipe_for)
from fastgan.utils.atomic import atomic_write
from fastgan.utils.images import save_image_grid
from fastgan.utils.plots import plot_losses

DEFAULT_EPOCHS = 5
LOSS_PLOT_INTERVAL_S = 60  # drawing losses.png takes about a second: a run of short epochs redraws it less often
FIXED_NOISE_SAMPLES = 64   # the sample grids; D's verdict on them (and on as many training images) is checked too
GRID_PER_CLASS = 8         # a conditional run's grids: one row of 8 samples per requested digit (80 samples)
# Settings that define the run; on --resume they come from the checkpoint, and a flag that contradicts one is an
# error. Only --epochs may change, and --data-dir (the same data, found elsewhere: its fingerprint must not change).
RUN_SETTINGS = ("dataset", "model", "batch_size", "lr", "beta1", "nz", "noise", "g_loss", "real_label", "seed",
                "limit", "data_dir", "log_every", "eval_every", "eval_samples", "image_size", "nc", "ngf", "ndf",
                "strict", "d_steps", "minibatch_disc", "vbn", "conditional", "sync_bn", "precision")
MAY_CHANGE_ON_RESUME = ("epochs", "data_dir")
# the parser's defaults are None so that the flags a user gave can be told apart; these fill the rest (batch size,
# lr, β1 and noise come from the model's recipe; image size, channels and widths from the model and the data set)
DEFAULTS = {"model": "dcgan", "nz": 100, "g_loss": "non-saturating", "real_label": 1.0, "seed": 0, "limit": None,
            "data_dir": None, "log_every": 50, "eval_every": 0, "eval_samples": 10000, "strict": False,
            "d_steps": 1, "minibatch_disc": None, "vbn": False, "conditional": None, "sync_bn": False,
            "precision": "fp32"}
# settings added after the first checkpoints were written: a config without them had these values
LATER_SETTINGS = {"image_size": None, "nc": None, "ngf": None, "ndf": None, "strict": False, "d_steps": 1,
                  "minibatch_disc": None, "vbn": False, "conditional": None, "sync_bn": False, "precision": "fp32"}
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}  # --precision -> fastgan.autocast's dtype
# Divergence: D's losses are binary cross-entropies on its logits s, about |s| when D is confidently wrong, and a
# healthy run keeps them between about 0.1 and 10. σ(s) is within float32 rounding of 0 or 1 beyond |s| ≈ 17, so a
# loss or a logit beyond 1e4 cannot come from a working D: it is a run whose weights are blowing up (at --lr 1e6
# Loss_G reached 4e15 with rc 0 before this check), and it only gets worse. (The ml loss −E exp(s) passes 1e4 only
# when D gives the fakes odds of 10⁴:1 of being real.)
DIVERGENCE_LIMIT = 1e4
DATA_NAMES = {"mnist": "MNIST", "folder": "an image folder", "fake": "fake data"}


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(minimum):
    return lambda v: _is_int(v) and v >= minimum


# key: (flag, test, what the value must be) -- checked on the command line and in a stored config alike
SETTING_RULES = {
    "dataset": ("dataset", lambda v: v in DATASETS, f"one of {DATASETS}"),
    "model": ("--model", lambda v: v in MODELS, f"one of {sorted(MODELS)}"),
    "noise": ("--noise", lambda v: v in ("normal", "uniform"), "'normal' or 'uniform'"),
    "g_loss": ("--g-loss", lambda v: v in ALL_G_LOSSES, f"one of {ALL_G_LOSSES}"),
    "epochs": ("--epochs", _int_at_least(1), "an integer >= 1"),
    "schedule_epochs": ("schedule_epochs", _int_at_least(1), "an integer >= 1"),
    "batch_size": ("--batch-size", _int_at_least(2), "an integer >= 2 (batch norm needs two samples)"),
    "lr": ("--lr", lambda v: _is_finite_number(v) and v > 0, "a finite number > 0"),
    "beta1": ("--beta1", lambda v: _is_finite_number(v) and 0 <= v < 1, "in [0, 1)"),
    "nz": ("--nz", _int_at_least(1), "an integer >= 1"),
    "real_label": ("--real-label", lambda v: _is_finite_number(v) and 0 < v <= 1, "in (0, 1]"),
    "seed": ("--seed", _int_at_least(0), "an integer >= 0"),
    "limit": ("--limit", _int_at_least(1), "an integer >= 1"),
    "data_dir": ("--data-dir", lambda v: isinstance(v, str), "a folder"),
    "log_every": ("--log-every", _int_at_least(1), "an integer >= 1"),
    "eval_every": ("--eval-every", _int_at_least(0), "an integer >= 0"),
    "eval_samples": ("--eval-samples", lambda v: _is_int(v) and (v == 0 or v >= 2), "0 (none) or an integer >= 2"),
    "image_size": ("--image-size", _int_at_least(1), "an integer >= 1"),
    "nc": ("--nc", lambda v: v in (1, 3), "1 (grayscale) or 3 (RGB)"),
    "ngf": ("--ngf", _int_at_least(1), "an integer >= 1"),
    "ndf": ("--ndf", _int_at_least(1), "an integer >= 1"),
    "strict": ("--strict", lambda v: isinstance(v, bool), "true or false"),
    "d_steps": ("--d-steps", _int_at_least(1), "an integer >= 1 (D updates per G update)"),
    "minibatch_disc": ("--minibatch-disc", lambda v: isinstance(v, (list, tuple)) and len(v) == 2
                       and all(_int_at_least(1)(b) for b in v), "two integers >= 1, B,C"),
    "vbn": ("--vbn", lambda v: isinstance(v, bool), "true or false"),
    "conditional": ("--conditional", lambda v: v in CONDITIONAL_KINDS, f"one of {CONDITIONAL_KINDS}"),
    "sync_bn": ("--sync-bn", lambda v: isinstance(v, bool), "true or false"),
    "precision": ("--precision", lambda v: v in PRECISIONS, f"one of {tuple(PRECISIONS)}"),
}


def setting_errors(settings):
    """One message per setting that breaks its rule (None means "not set" and passes)."""
    return [f"{flag} must be {requirement}, got {settings[key]!r}" for key, (flag, ok, requirement)
            in SETTING_RULES.items() if settings.get(key) is not None and not ok(settings[key])]


def minibatch_pair(text):
    """--minibatch-disc B,C -> [B, C] (a list: what the config's JSON gives back)."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"expected two integers >= 1 as B,C (e.g. 100,5), got {text!r}")
    return [int(p) for p in parts]


def build_parser():
    p = argparse.ArgumentParser(prog="python -m fastgan.train",
                                description="Train a GAN with fastgan (no framework: its own autograd and kernels).")
    p.add_argument("dataset", choices=DATASETS,
                   help="the data set to learn: mnist (fetched and cached on first use), folder (your images, with "
                        "--data-dir DIR) or fake (random images, for smoke tests)")
    p.add_argument("--model", choices=sorted(MODELS), help=f"architecture (default: {DEFAULTS['model']})")
    p.add_argument("--epochs", type=int,
                   help=f"total number of passes over the data, at least 1 (default: {DEFAULT_EPOCHS}; with --resume: "
                        "the new total)")
    p.add_argument("--batch-size", type=int, help="images per step (default: the model's recipe: dcgan 128, mlp 100)")
    p.add_argument("--lr", type=float, help="initial learning rate of both players (default: the recipe's: dcgan "
                                            "Adam 2e-4, mlp SGD 0.1 with decay)")
    p.add_argument("--beta1", type=float, help="Adam β1 (default: the recipe's, 0.5; β2 is 0.999)")
    p.add_argument("--nz", type=int, help=f"size of the noise vector z (default: {DEFAULTS['nz']})")
    p.add_argument("--noise", choices=["normal", "uniform"],
                   help="distribution of z, both of unit variance: N(0, 1) or U(−√3, √3) (default: the recipe's: "
                        "dcgan normal, mlp uniform)")
    p.add_argument("--g-loss", choices=ALL_G_LOSSES,
                   help="generator cost: non-saturating (default), minimax (zero-sum), ml (maximum likelihood) or "
                        "feature-matching (G matches the mean of D's intermediate features on real images)")
    p.add_argument("--real-label", type=float,
                   help=f"target for real images, in (0, 1]; 0.9 is one-sided label smoothing (default: "
                        f"{DEFAULTS['real_label']})")
    p.add_argument("--label-smoothing", type=float, metavar="ALPHA",
                   help="one-sided label smoothing: real images get the target 1 − ALPHA (0.1 is --real-label 0.9); "
                        "fakes keep 0")
    p.add_argument("--d-steps", type=int, metavar="K",
                   help="K updates of D, each on a fresh real batch, per update of G (default: 1); an epoch is "
                        "one pass of D over the data")
    p.add_argument("--minibatch-disc", type=minibatch_pair, metavar="B,C",
                   help="minibatch discrimination before D's last layer: B kernels of C dimensions (e.g. 100,5)")
    p.add_argument("--vbn", action="store_true", default=None,
                   help="virtual batch norm in G: a reference batch of noise fixed at the start (dcgan only)")
    p.add_argument("--conditional", choices=CONDITIONAL_KINDS,
                   help="train with the labels (dcgan on mnist): cgan (class given to G and D), projection (class "
                        "embedding projected on D's features) or acgan (D also classifies); grids show one digit "
                        "per row")
    p.add_argument("--precision", choices=list(PRECISIONS),
                   help="fp32 (default), or bf16: the training steps run under fastgan.autocast('bfloat16') -- "
                        "convolutions and matrix products on bfloat16 operands with float32 sums; batch-norm "
                        "statistics, the loss, the weights and Adam's state stay float32 (docs/precision.md)")
    p.add_argument("--seed", type=int, help=f"random seed: same seed, same run (default: {DEFAULTS['seed']})")
    p.add_argument("--out", default=None, help="run folder (default: runs/<dataset>-<model>-<date>-<time>); one that "
                                               "already holds a run is refused")
    p.add_argument("--overwrite", action="store_true",
                   help="with --out: delete the run already in that folder and start a new one there")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to compute: auto picks a GPU when CuPy finds one (default: %(default)s)")
    p.add_argument("--limit", type=int, help=f"train on the first N images only (smoke tests); fake: make N images "
                                             f"(default: {FAKE_COUNT})")
    p.add_argument("--data-dir", help="folder: the folder of images (PNG/JPEG, subfolders too); mnist: a folder with "
                                      "the MNIST IDX files (plain or .gz) to use instead of the download")
    p.add_argument("--image-size", type=int, metavar="S",
                   help=f"side of the square training images (default: the model's: "
                        f"{', '.join(f'{m} {s}' for m, s in sorted(IMAGE_SIZES.items()))}); mnist is resized once "
                        "and cached, a folder resized and center-cropped")
    p.add_argument("--nc", type=int, choices=[1, 3],
                   help="image channels: 1 grayscale, 3 RGB (default: dcgan and mlp 1; dcgan64 the data set's: "
                        "mnist 1, folder and fake 3)")
    p.add_argument("--ngf", type=int, help=f"--model dcgan64: width of G (default: {MODEL_OPTIONS['dcgan64']['ngf']})")
    p.add_argument("--ndf", type=int, help=f"--model dcgan64: width of D (default: {MODEL_OPTIONS['dcgan64']['ndf']})")
    p.add_argument("--strict", action="store_true", default=None,
                   help="folder: stop at an unreadable image file (default: skip it, with a warning that counts them)")
    p.add_argument("--log-every", type=int,
                   help=f"log line and metrics every N steps (default: {DEFAULTS['log_every']})")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="every N epochs add the classifier-based quality (MNIST-FID, ...) to the metrics and plot "
                        "mnist_fid.png (needs the cached classifier; default: 0, never)")
    p.add_argument("--eval-samples", type=int, metavar="N",
                   help="samples for the quality report written at the end of the run (if the classifier is cached) "
                        f"and for --eval-every; 0 turns both off (default: {DEFAULTS['eval_samples']})")
    p.add_argument("--sync-bn", action="store_true", default=None,
                   help="under mpiexec -n R: batch norm with the statistics of the global batch (default: each "
                        "rank's shard's, as PyTorch's DDP); docs/distributed.md")
    p.add_argument("--collective-timeout", type=float, metavar="S",
                   help="under mpiexec -n R: end the job when a rank waits more than S seconds for the others "
                        "(a stuck rank; default: wait as long as it takes)")
    p.add_argument("--dry-run", action="store_true", help="one step per epoch, no checkpoint: check that it all runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs and CI)")
    return p


# --- the run folder ----------------------------------------------------------------------------------------------

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


def previous_run(run_dir):
    """(checkpoint state or None, config) of the run in RUN_DIR, for --resume. A run stopped before its first
    checkpoint has only its config.json: it starts again from epoch 0 (state None)."""
    if os.path.isfile(os.path.join(run_dir, CHECKPOINT)) or os.path.isfile(os.path.join(run_dir, LEGACY_CHECKPOINT)):
        state = load_checkpoint(run_dir)  # CheckpointError for a pickle, a damaged file, another model ...
        config, where = dict(state["config"]), f"the checkpoint in {run_dir}"
    else:
        state, path = None, os.path.join(run_dir, CONFIG)
        if not os.path.isfile(path):
            raise TrainingError(f"no checkpoint in {run_dir!r} (expected {os.path.join(run_dir, CHECKPOINT)}), and no "
                                f"{CONFIG} of a run stopped before its first one: nothing to resume")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as err:
            raise TrainingError(f"{path} is unreadable ({type(err).__name__}: {err}); start a new run") from None
        if not isinstance(config, dict):
            raise TrainingError(f"{path} holds no settings (a JSON object); start a new run")
        config.pop("device", None)  # where it ran, not a setting of the run
        where = path
    for key, value in LATER_SETTINGS.items():  # a run from before these settings existed
        config.setdefault(key, value)
    missing = [k for k in RUN_SETTINGS + ("epochs", "schedule_epochs") if k not in config]
    problems = setting_errors(config) + ([f"missing settings {missing}"] if missing else [])
    if problems:
        raise TrainingError(f"{where} holds settings no run can have: {'; '.join(problems)}")
    return state, config


def check_new_run_folder(run_dir, overwrite):
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise TrainingError(f"--out {run_dir} is a file, not a folder")
    markers = run_markers(run_dir)
    if markers and not overwrite:
        raise TrainingError(f"--out {run_dir} already holds a run ({', '.join(markers)}); continue it with "
                            f"--resume {run_dir}, or delete it and start afresh with --out {run_dir} --overwrite")


def resume_command(dataset, run_dir, device, ranks=1):
    return ((f"mpiexec -n {ranks} " if ranks > 1 else "") + f"python -m fastgan.train {dataset} --resume "
            f"{shlex.quote(run_dir)}" + (f" --device {device}" if device != "auto" else ""))


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


def resolve_shape(config):
    """Fill the image size, channels and widths left to the model and the data set."""
    model = config["model"]
    if config.get("image_size") is None:
        config["image_size"] = IMAGE_SIZES[model]
    if config.get("nc") is None:  # a model with a fixed channel count draws grayscale
        config["nc"] = DATA_DEFAULTS[config["dataset"]]["nc"] if "nc" in MODEL_OPTIONS[model] else 1
    for key in ("ngf", "ndf"):
        if key in MODEL_OPTIONS[model] and config.get(key) is None:
            config[key] = MODEL_OPTIONS[model][key]
    return config


def classifier_applies(config):
    """Whether the MNIST classifier's metrics (quality report, --eval-every) apply: MNIST, at any size."""
    return config["dataset"] == "mnist"


def combination_errors(config):
    """One message per setting that does not fit the model or the data set (all settings filled in)."""
    model, dataset, size = config["model"], config["dataset"], config["image_size"]
    errors = [f"--{key} is an option of --model dcgan64; model {model} has fixed widths"
              for key in ("ngf", "ndf") if config.get(key) is not None and key not in MODEL_OPTIONS[model]]
    if size != IMAGE_SIZES[model]:
        errors.append(f"--image-size {size}: model {model} draws {IMAGE_SIZES[model]}×{IMAGE_SIZES[model]} images")
    if "nc" not in MODEL_OPTIONS[model] and config["nc"] != 1:
        errors.append(f"--nc {config['nc']}: model {model} draws grayscale images (nc 1); --model dcgan64 draws RGB")
    if dataset == "mnist" and config["nc"] != 1:
        errors.append(f"--nc {config['nc']}: MNIST is grayscale (nc 1)")
    if dataset == "fake" and config["data_dir"] is not None:
        errors.append("--data-dir: dataset fake makes random images; it reads no folder")
    if dataset == "folder" and config["data_dir"] is None:
        errors.append("dataset folder needs --data-dir DIR: the folder of images to learn")
    if config["strict"] and dataset != "folder":
        errors.append(f"--strict is for dataset folder (it stops at an unreadable image file); dataset {dataset} "
                      "reads no image files")
    if config["eval_every"] and not classifier_applies(config):
        errors.append(f"--eval-every: the classifier-based metrics need MNIST (at any size), not "
                      f"dataset {dataset} at {size}×{size} (its run has sample grids, losses and epoch times)")
    toolbox = [flag for key, flag in (("vbn", "--vbn"), ("minibatch_disc", "--minibatch-disc"),
                                      ("conditional", "--conditional")) if config.get(key)]
    if model == "dcgan64" and toolbox:
        errors.append(f"{', '.join(toolbox)}: the toolbox's options are the 28×28 models'; model dcgan64 does not "
                      "offer them (use --model dcgan)")
    if model == "mlp" and config.get("vbn"):
        errors.append("--vbn: model mlp's generator has no batch norm to make virtual (use --model dcgan)")
    if model == "mlp" and config.get("conditional"):
        errors.append("--conditional: model mlp has no conditional variant (use --model dcgan)")
    if config.get("conditional") and dataset != "mnist":
        errors.append(f"--conditional needs the class of every image: dataset {dataset} has no labels (use mnist)")
    return errors


def load_data(config, progress=True):
    """(the run's training images as an ImageSet: the recipe's subset, then the first --limit of them; the MNIST
    digits when the classifier's metrics apply, else None)."""
    mnist = None
    if classifier_applies(config):  # the test digits too: the quality report compares with them
        mnist = load_mnist(config["data_dir"], progress=progress)
    if mnist is not None and config["image_size"] == MNIST_SIZE:
        data = ImageSet(mnist.x_train[:, None], f"MNIST train ({len(mnist.x_train)} images)", mnist.y_train,
                        f"mnist-train-{MNIST_SIZE}px")  # as fastgan.data.mnist_images names it
    else:
        fake = config["dataset"] == "fake"
        data = load_images(config["dataset"], config["image_size"], config["nc"], config["data_dir"],
                           count=(config["limit"] or FAKE_COUNT) if fake else None, strict=bool(config["strict"]),
                           progress=progress)
    return data.head(RECIPES[config["model"]].train_images).head(config["limit"]), mnist


def diverged(value):
    return not (math.isfinite(value) and abs(value) <= DIVERGENCE_LIMIT)


def unfit_for_checkpoint(G, D, samples, probe, sample_labels=None, probe_labels=None):
    """Why the players' state after an epoch must not be saved (None if it may): weights or buffers that are not
    finite, samples that are not, or D's logits on fixed batches (real and generated) beyond the divergence limit.
    G and D are in eval mode (no dropout, batch norm on its running statistics), so the verdict is deterministic.
    A D told the class judges each batch with its labels."""
    for key, module in (("G", G), ("D", D)):
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not bool(backend.xp(t.data).isfinite(t.data).all()):
                return f"{key}.{name} holds NaN or infinite values"
    if not np.isfinite(samples.numpy()).all():
        return "G's samples of the fixed noise are not finite"
    for what, x, labels in (("training images", probe, probe_labels), ("G's samples", samples, sample_labels)):
        logits = (D(x, labels) if getattr(D, "takes_labels", False) else D(x)).numpy().astype(np.float64)
        largest = float(np.max(np.abs(logits))) if np.isfinite(logits).all() else math.inf
        if diverged(largest):
            return f"D's logits on {len(logits)} {what} reach {largest:.3g} (the limit is ±{DIVERGENCE_LIMIT:g})"
    return None


def run(config, run_dir, resume_state=None, progress=True, dry_run=False, device="cpu", data=None, mnist=None,
        parallel=None):
    """Train according to `config` in `run_dir` (on `data`, an ImageSet, with `mnist` for the classifier's
    metrics; else the data loaded here); returns (G, D). `parallel` (fastgan/distributed/training.py) makes this
    process one rank of a data-parallel run; by default it trains alone."""
    parallel = parallel or parallel_for(None)
    fastgan.manual_seed(config["seed"])
    recipe = recipe_for(config)
    play = ROUNDS[recipe.update]  # one round of the game: alternating or simultaneous updates
    if data is None:
        data, mnist = load_data(config, progress)
    xp = backend.array_module(device)
    extra = {"pixel_mean": data.to_float((0, 1)).mean(axis=0)} if recipe.pixel_mean_init else {}
    if config["vbn"]:  # the reference batch: the run's noise, fixed now and saved with G
        extra["reference_noise"] = recipe.sample_noise(VBN_REFERENCE_SIZE, config["nz"])
    G, D = build_gan(config, **extra)
    G.to(device), D.to(device)
    opt_g = recipe.make_optimizer(G.parameters(), config["lr"], config["beta1"])
    opt_d = recipe.make_optimizer(D.parameters(), config["lr"], config["beta1"])
    conditional = bool(config["conditional"])
    # a conditional run's grids: one row of GRID_PER_CLASS samples per requested digit
    fixed_labels = grid_labels(GRID_PER_CLASS).numpy() if conditional else None
    samples_shown = len(fixed_labels) if conditional else FIXED_NOISE_SAMPLES
    fixed_noise = recipe.sample_noise(samples_shown, config["nz"], device=device)
    first = data.to_float(recipe.value_range, index=slice(0, FIXED_NOISE_SAMPLES))
    probe = fastgan.Tensor(xp.asarray(first))  # real images D must still judge sanely
    probe_labels = data.labels[:FIXED_NOISE_SAMPLES] if conditional else None
    metrics_path = os.path.join(run_dir, METRICS)
    quality = TrainingQuality(config, mnist, run_dir)

    start_epoch = 0
    if resume_state is not None:
        G.load_state_dict(resume_state["G"])
        D.load_state_dict(resume_state["D"])
        opt_g.load_state_dict(resume_state["opt_g"])
        opt_d.load_state_dict(resume_state["opt_d"])
        fixed_noise = fastgan.tensor(resume_state["fixed_noise"], device=device)
        if conditional:
            fixed_labels = resume_state["fixed_labels"]
        fastgan.set_rng_state(resume_state["rng"])
        start_epoch = resume_state["epoch"]
    elif parallel.writes:
        save_image_grid(first, os.path.join(run_dir, "real_samples.png"), value_range=recipe.value_range)
    parallel.prepare((G, D), (opt_g, opt_d), config["sync_bn"])
    if parallel.writes:  # the lines the checkpoint covers (none for a fresh start, which may take over a run
        # stopped before its first)
        keep_metrics_lines(metrics_path, resume_state["metrics_lines"] if resume_state is not None else 0)

    batch, epochs, d_steps = config["batch_size"], config["epochs"], config["d_steps"]
    iters = len(data) // (batch * d_steps)  # rounds: every D update sees a full batch, one pass of D an epoch
    last_plot = -math.inf
    for epoch in range(start_epoch, epochs):
        kept = (f"the checkpoint of epoch {epoch} in {run_dir} is kept" if epoch and not dry_run
                else "no checkpoint was written")
        G.train(), D.train()
        order = fastgan.random.generator().permutation(len(data))
        bar = tqdm(range(1 if dry_run else iters), desc=f"epoch {epoch + 1}/{epochs}", unit="step",
                   disable=not (progress and parallel.writes), dynamic_ncols=True, file=sys.stderr)
        started = time.perf_counter()
        for i in bar:
            step = epoch * iters + i
            lr, momentum = recipe.apply_schedule((opt_g, opt_d), step, iters, config["schedule_epochs"], config["lr"])
            batches = []
            for k in range(i * d_steps, (i + 1) * d_steps):  # K consecutive batches of the shuffled order
                rows = parallel.shard(order[k * batch:(k + 1) * batch])  # all of it drawn, this rank's shard kept
                real = fastgan.Tensor(xp.asarray(data.to_float(recipe.value_range, index=rows)))
                z = parallel.shard(recipe.sample_noise(batch, config["nz"], device=device))
                if conditional:
                    batches.append(Batch(real, z, xp.asarray(data.labels[rows]),
                                         parallel.shard(random_labels(batch, device=device))))
                else:
                    batches.append(Batch(real, z))
            with fastgan.autocast(PRECISIONS[config["precision"]]):  # the steps only: samples and checks stay fp32
                stats = parallel.step(play, G, D, opt_g, opt_d, batches, config["g_loss"], config["real_label"],
                                      recipe.d_loss_scale)
            if diverged(stats["loss_d"]) or diverged(stats["loss_g"]):
                raise TrainingError(f"training diverged at epoch {epoch} step {i}: Loss_D = {stats['loss_d']:.4g}, "
                                    f"Loss_G = {stats['loss_g']:.4g} (NaN, infinite or beyond ±{DIVERGENCE_LIMIT:g}). "
                                    f"Stopped; {kept}. Try a lower --lr.")
            bar.set_postfix(Loss_D=f"{stats['loss_d']:.3f}", Loss_G=f"{stats['loss_g']:.3f}", refresh=False)
            if parallel.writes and (i % config["log_every"] == 0 or i == iters - 1):
                tqdm.write(log_line(epoch, epochs, i, iters, stats), file=sys.stdout)
                with open(metrics_path, "a") as f:
                    schedule = {"lr": lr, "momentum": momentum} if recipe.optimizer == "sgd" else {}
                    f.write(json.dumps({"epoch": epoch, "iter": i, "step": step, **stats, **schedule}) + "\n")
        bar.close()
        seconds = time.perf_counter() - started

        # the last update may have broken the weights that its (earlier) losses looked fine for: check before saving
        G.eval(), D.eval()
        with fastgan.no_grad():
            samples = G(fixed_noise, fastgan.tensor(fixed_labels, device=device)) if conditional else G(fixed_noise)
            unfit = unfit_for_checkpoint(G, D, samples, probe, fixed_labels, probe_labels)
        if unfit:
            raise TrainingError(f"training diverged in epoch {epoch}: after its last step {unfit}. Stopped before "
                                f"its checkpoint; {kept}. Try a lower --lr.")
        parallel.check_in_sync((opt_g, opt_d))
        if not parallel.writes:  # the files of the epoch are rank 0's
            continue
        steps = 1 if dry_run else iters
        with open(metrics_path, "a") as f:
            f.write(json.dumps({"epoch": epoch, "event": "epoch_end", "seconds": round(seconds, 3),
                                "images_per_second": round(steps * batch / seconds, 1)}) + "\n")
        print(f"epoch {epoch + 1}/{epochs}: {seconds:.1f} s, {steps * batch / seconds:.0f} img/s", flush=True)
        save_image_grid(samples.numpy(), os.path.join(run_dir, f"fake_samples_epoch_{epoch + 1:03d}.png"),
                        nrow=GRID_PER_CLASS, value_range=recipe.value_range)
        if epoch + 1 == epochs or time.monotonic() - last_plot >= LOSS_PLOT_INTERVAL_S:
            plot_losses(metrics_path, os.path.join(run_dir, "losses.png"),
                        title=f"{config['model']} on {DATA_NAMES[config['dataset']]}")
            last_plot = time.monotonic()
        if not dry_run:  # before the checkpoint: the metrics lines it counts include the quality record
            quality.after_epoch(G, recipe, epoch, epoch + 1 == epochs, metrics_path)
        if not dry_run:
            save_checkpoint(run_dir, {
                "epoch": epoch + 1, "config": config, "G": G.state_dict(), "D": D.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": fastgan.get_rng_state(),
                "fixed_noise": fixed_noise.numpy(), "metrics_lines": count_lines(metrics_path),
                **({"fixed_labels": fixed_labels} if conditional else {})})
    return G, D


def choose_device(flag):
    device = backend.normalize_device(flag)
    if device == "cuda" and not dispatch.available("cuda") and flag == "auto":
        device = "cpu"  # a GPU, but no kernels for it (e.g. no NVRTC): auto means "the best that runs"
    if device == "cuda" and not dispatch.available("cuda"):
        raise TrainingError("--device cuda: no GPU kernels are available on this machine (CuPy and a GPU "
                            "are needed); use --device cpu")
    return device


def device_for_precision(parser, config, device, flag):
    """The device a run of config's precision trains on: a bf16 run needs every bfloat16 kernel on its device;
    where the GPU's implementations lack one, --device auto falls back to the CPU, and --device cuda is refused."""
    if config["precision"] != "bf16" or device == "cpu":
        return device
    missing = [op for op, impl in dispatch.describe(device).items()
               if impl is None and (op.endswith("_bf16") or op == "round_to_bfloat16")]
    if not missing:
        return device
    if flag == "auto":
        return "cpu"
    parser.error(f"--precision bf16 --device cuda: no GPU implementation here provides {', '.join(missing)}; use "
                 "--device cpu, or --precision fp32 on the GPU")


def plan_run(parser, args, given):
    """(config, run_dir, checkpoint state or None) of the run the command line asks for; parser.error or
    TrainingError/CheckpointError if it cannot start. Reads, never writes."""
    if args.resume:
        run_dir = args.resume
        state, config = previous_run(run_dir)
        resolve_shape(config)  # a run from before the image settings: its model's and data set's own
        conflicts = [f"{SETTING_RULES[k][0]} {given[k]!r} (the run has {config.get(k)!r})" for k in given
                     if k not in MAY_CHANGE_ON_RESUME and given[k] != config.get(k)]
        if conflicts:
            parser.error(f"--resume {run_dir}: a resumed run keeps its settings, and these flags contradict them: "
                         f"{', '.join(conflicts)}; drop them (only --epochs may change), or start a new run with "
                         "--out")
        config.update({k: given[k] for k in MAY_CHANGE_ON_RESUME if k in given})
        done = state["epoch"] if state else 0
        if done >= config["epochs"]:
            raise TrainingError(f"{run_dir} has already trained {done} of {config['epochs']} epochs; pass a larger "
                                "--epochs to continue")
        print(f"resuming {run_dir} at epoch {done} of {config['epochs']}" if state else
              f"taking over {run_dir}: it stopped before its first checkpoint, so it starts again at epoch 0")
    else:
        state = None
        config = {**dict.fromkeys(RUN_SETTINGS), **DEFAULTS, "epochs": DEFAULT_EPOCHS, **given}
        run_dir = args.out or default_run_dir(config)
        check_new_run_folder(run_dir, args.overwrite)
    resolve_shape(config)
    resolve_recipe(config)
    if "beta1" in given and RECIPES[config["model"]].optimizer != "adam":
        parser.error(f"--beta1 is Adam's; model {config['model']} trains with {RECIPES[config['model']].optimizer} "
                     "(its momentum follows the recipe)")
    errors = combination_errors(config)
    if errors:
        parser.error("; ".join(errors))
    return config, run_dir, state


TOY_DATA = ("ring", "grid")


def train_toy(argv):
    """python -m fastgan.train ring|grid ...: the theory's toy runner, one seed and the vanilla GAN by default."""
    from fastgan.theory.__main__ import main as theory_main
    given = {a.split("=")[0] for a in argv}
    defaults = [item for flag, value in (("--seeds", "1"), ("--unroll", "0")) if flag not in given
                for item in (flag, value)]
    return theory_main(list(argv) + defaults)


def main(argv=None, comm=None):
    """The command; `comm` (fastgan.distributed) makes this process one rank of a data-parallel run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in TOY_DATA:
        if comm is not None and comm.size > 1:  # every rank would train the same runs into the same folders
            raise SystemExit(f"python -m fastgan.train {argv[0]} trains in one process: run it without mpiexec "
                             f"(its seeds and variants are separate runs; start several commands with --first-seed "
                             f"and --seeds to share them out)")
        return train_toy(argv)
    parser = build_parser()
    if any(a.split("=")[0] in ("--unroll", "--unroll-mode") for a in argv):
        parser.error("--unroll (the unrolled GAN) trains on the 2-D toy data only: python -m fastgan.train ring|grid "
                     "--unroll K (the MLP GAN's D has maxout units, which have no second derivative here)")
    args = parser.parse_args(argv)
    given = {k: getattr(args, k) for k in RUN_SETTINGS + ("epochs",) if getattr(args, k) is not None}
    if args.label_smoothing is not None:  # its other name: the target of real images, 1 − α
        if args.real_label is not None:
            parser.error(f"--label-smoothing {args.label_smoothing} sets the real target to 1 − ALPHA, as "
                         f"--real-label does: give one of them, not both")
        if not (_is_finite_number(args.label_smoothing) and 0 <= args.label_smoothing < 1):
            parser.error(f"--label-smoothing must be in [0, 1), got {args.label_smoothing!r}")
        given["real_label"] = 1 - args.label_smoothing
    errors = setting_errors(given)
    if errors:
        parser.error("; ".join(errors))
    if args.resume and (args.out or args.overwrite or args.dry_run):
        parser.error(f"--resume continues the run in {args.resume} itself: it cannot be combined with --out, "
                     "--overwrite or --dry-run")
    if args.overwrite and not args.out:
        parser.error("--overwrite replaces the run in the folder given by --out: name it with --out RUN_DIR")
    if args.collective_timeout is not None and not (math.isfinite(args.collective_timeout)
                                                    and args.collective_timeout > 0):
        parser.error(f"--collective-timeout must be a finite number of seconds > 0, got {args.collective_timeout!r}")
    parallel = parallel_for(comm, args.collective_timeout)  # this process alone, unless mpiexec started several
    parallel.announce()
    run_dir, started = None, False
    try:
        device = choose_device(args.device)
        config, run_dir, state = parallel.from_rank_zero(plan_run, parser, args, given)  # rank 0 reads and checks
        device = parallel.use_device(device_for_precision(parser, config, device, args.device))
        refused = parallel.refusals(config)
        if refused:
            parser.error("; ".join(refused))
        try:  # rank 0 first: a download into the cache happens once
            data, mnist = parallel.rank_zero_first(load_data, config, progress=not args.no_progress)
        except ValueError as err:  # an option the data set cannot take (the checks above should have said so)
            parser.error(str(err))
        if data.shape != image_shape(config):
            c, h, w = image_shape(config)
            parser.error(f"the images of {data.description} are {'×'.join(map(str, data.shape))} (channels×height×"
                         f"width); model {config['model']} takes {c}×{h}×{w}: choose --image-size and --nc to fit")
        if config.get("data_fingerprint") not in (None, data.fingerprint):
            raise TrainingError(f"--resume {run_dir}: the run trained on data with fingerprint "
                                f"{config['data_fingerprint']!r}, and {data.description} has {data.fingerprint!r}: "
                                "the images changed (an edited folder?); start a new run with --out")
        config["data_fingerprint"] = data.fingerprint
        mismatch = parallel.data_mismatch(data.fingerprint)
        if mismatch:
            raise TrainingError(mismatch)
        available = len(data)
        if config["batch_size"] > available:
            limit = f" (--limit {config['limit']})" if config["limit"] is not None else ""
            parser.error(f"--batch-size {config['batch_size']} is larger than the {available} training images{limit}: "
                         "no full batch to train on")
        if config["batch_size"] * config["d_steps"] > available:
            parser.error(f"--d-steps {config['d_steps']} × --batch-size {config['batch_size']} is more than the "
                         f"{available} training images: no full round (K fresh real batches) to train on")
        # everything is checked: from here on the run folder is written (by rank 0 alone)
        if parallel.writes:
            os.makedirs(run_dir, exist_ok=True)
            if args.overwrite:
                remove_run_files(run_dir)
            else:
                remove_stale_files(run_dir)  # what a process killed in mid-write left behind
            started = True
            with atomic_write(os.path.join(run_dir, CONFIG), "w") as f:
                json.dump({**config, "device": device}, f, indent=2)
        print(f"run folder: {run_dir}  (device: {device})")
        if config["precision"] == "bf16" and device == "cpu":
            native = dispatch.implementation("cpu")
            print(f"bfloat16 products: {native.bfloat16_path() if native else 'the NumPy reference'}")
        run(config, run_dir, state, progress=not args.no_progress, dry_run=args.dry_run, device=device, data=data,
            mnist=mnist, parallel=parallel)
    except (TrainingError, CheckpointError, MNISTError, FolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if not started:
            print("\ninterrupted before the run started; nothing was written", file=sys.stderr)
        elif args.dry_run:
            print(f"\ninterrupted; {run_dir} holds a dry run (nothing to resume)", file=sys.stderr)
        else:
            print(f"\ninterrupted; continue with: {resume_command(args.dataset, run_dir, args.device, parallel.size)}",
                  file=sys.stderr)
        return 130
    print(f"done: samples, metrics, loss curve and checkpoint are in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(launch(main))  # under mpiexec -n R: this rank's part of the run
