"""`python -m fastgan.eval`: evaluate a training run.

    python -m fastgan.eval parzen RUN_DIR             Parzen-window log-likelihood, as Table 1 of the GAN paper
    python -m fastgan.eval quality RUN_DIR            class histogram, mode coverage, Inception score, MNIST-FID
                                                      (and a conditional run's per-class accuracy)
    python -m fastgan.eval sample RUN_DIR             a grid of samples (a conditional run: a row per digit, or
                                                      --digit D)
    python -m fastgan.eval train-classifier           train (or re-train) and cache the MNIST classifier
    python -m fastgan.eval time RUN_DIR               how long the run's epochs took (median and sum)
    python -m fastgan.eval parzen-plot DIR [DIR ...]  Parzen estimates already made, against the epochs trained
"""
import argparse
import json
import os
import sys
import time

from fastgan.checkpoint import CheckpointError
from fastgan.data import MNISTError, load_mnist
from fastgan.data.mnist import mnist_to_float
from fastgan.models import NUM_CLASSES, grid_labels, image_shape
from fastgan.utils.images import save_image_grid
from fastgan.utils.atomic import atomic_write

from . import classifier as clf
from . import parzen, parzen_plot, quality, timing
from .runs import EvalError, load_generator, requested_labels, sample_images


def build_parser():
    p = argparse.ArgumentParser(prog="python -m fastgan.eval", description="Evaluate a fastgan training run.")
    sub = p.add_subparsers(dest="command", required=True)

    pz = sub.add_parser("parzen", help="Parzen-window log-likelihood of the MNIST test set (2014 paper, Table 1)")
    pz.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by python -m fastgan.train")
    pz.add_argument("--samples", type=int, default=10000, help="samples of G as window centres (default: %(default)s)")
    pz.add_argument("--sigma", type=float, default=None,
                    help="use this σ instead of choosing it from logspace(−1, 0, 10) on the validation images")
    pz.add_argument("--limit", type=int, default=None,
                    help="use only the first N test images (and N validation images if N < 1000): quick checks "
                         "only, the first half of the MNIST test set is the cleaner one")
    pz.add_argument("--no-ceiling", action="store_true",
                    help="skip the same estimate with training images as centres (halves the time)")
    pz.add_argument("--seed", type=int, default=0, help="seed of the noise for the samples (default: %(default)s)")

    q = sub.add_parser("quality", help="class histogram, mode coverage, Inception score and MNIST-FID of samples")
    q.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by python -m fastgan.train")
    q.add_argument("--samples", type=int, default=10000,
                   help="samples (and test images for the FID) (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="seed of the noise for the samples (default: %(default)s)")
    q.add_argument("--digit", type=int, default=None,
                   help="a conditional run: ask G for this digit only (default: every digit in turn)")

    sa = sub.add_parser("sample", help="a grid of samples; a conditional run shows one row per digit (or --digit)")
    sa.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by python -m fastgan.train")
    sa.add_argument("--digit", type=int, default=None,
                    help="a conditional run: every sample of this digit (default: one row of 8 per digit)")
    sa.add_argument("--samples", type=int, default=None,
                    help="samples in the grid (default: 64; a conditional run without --digit: 80)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the noise for the samples (default: %(default)s)")
    sa.add_argument("--out", default=None,
                    help="the picture to write (default: RUN_DIR/samples.png, or samples_digit_D.png)")

    t = sub.add_parser("train-classifier", help="train the MNIST classifier and cache it (a few minutes)")
    t.add_argument("--epochs", type=int, default=clf.EPOCHS,
                   help="passes over the 60,000 training images (default: %(default)s)")
    t.add_argument("--force", action="store_true", help="retrain even if a valid cached classifier exists")

    tm = sub.add_parser("time", help="how long the run's epochs took: median epoch × epochs, and the plain sum")
    tm.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by python -m fastgan.train")
    tm.add_argument("--epochs", type=int, default=None,
                    help="only the first N epochs (default: all the run has finished)")

    pp = sub.add_parser("parzen-plot", help="the Parzen estimates of several folders (their parzen.json) against "
                                            "the epochs each had: a table and a picture")
    pp.add_argument("run_dirs", metavar="DIR", nargs="+", help="folders evaluated by python -m fastgan.eval parzen")
    pp.add_argument("--out", default="parzen.png", help="the picture to write (default: %(default)s)")
    pp.add_argument("--title", default=None, help="the picture's title")

    for s in (pz, q, t):
        s.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files instead of the cache")
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


MNIST_SHAPE = (1, 28, 28)


def require_mnist(config, metric, any_size=True):
    """EvalError unless the run learned MNIST (at 28×28 unless any_size): `metric` compares with MNIST's test
    digits (samples of another size are scaled to 28×28 for the classifier: fastgan.eval.quality)."""
    dataset, shape = config.get("dataset", "mnist"), image_shape(config)
    if dataset != "mnist" or not (any_size or shape == MNIST_SHAPE):
        needs = "MNIST (grayscale digits, at any size)" if any_size else "MNIST at 28×28"
        raise EvalError(f"{metric} needs a run on {needs}: it compares with the MNIST test digits, and this run "
                        f"trained model {config['model']} on {dataset} at {'×'.join(map(str, shape))}; its sample "
                        "grids, losses and `python -m fastgan.eval time` apply")


def run_parzen(args):
    if args.samples < 2 or (args.limit is not None and args.limit < 1):
        raise EvalError("--samples must be at least 2 and --limit at least 1")
    G, config, recipe = load_generator(args.run_dir)
    require_mnist(config, "the Parzen estimate (the 2014 paper's protocol, in 28×28 pixel space)", any_size=False)
    mnist = load_mnist(args.data_dir, progress=not args.no_progress)
    unit = lambda a: mnist_to_float(a, (0, 1), dtype="float64").reshape(len(a), -1)  # noqa: E731
    validation = unit(mnist.x_train[50000:51000][:args.limit])    # the first 1,000 of train[50000:60000]
    test = unit(mnist.x_test[:args.limit])
    started = time.perf_counter()
    centers = sample_images(G, recipe, config["nz"], args.samples, seed=args.seed)
    print(f"{len(centers)} samples of {config['model']} (after epoch {config['trained_epochs']}) from {args.run_dir}; "
          f"σ chosen on {len(validation)} validation images, scored on {len(test)} test images", flush=True)
    result = parzen.parzen_estimate(centers, validation, test, sigma=args.sigma)
    ceiling = None
    if not args.no_ceiling:  # train[0:N]: images every model saw in training, never the validation or test ones
        ceiling = parzen.parzen_estimate(unit(mnist.x_train[:min(args.samples, 50000)]), validation, test,
                                         sigma=args.sigma)
    lines = parzen.format_report(result, ceiling)
    print("\n".join(lines) + f"\n({time.perf_counter() - started:.0f} s)")
    with atomic_write(os.path.join(args.run_dir, "parzen.json"), "w") as f:
        json.dump({"model": result, "training_images_ceiling": ceiling, "seed": args.seed,
                   "epoch": config["trained_epochs"]}, f, indent=2)


def run_quality(args):
    if args.samples < 2:
        raise EvalError("--samples must be at least 2")
    G, config, recipe = load_generator(args.run_dir)
    require_mnist(config, "the quality report (MNIST classifier: FID, Inception score, digits covered)")
    conditional = check_digit(G, args.digit)
    mnist = load_mnist(args.data_dir, progress=not args.no_progress)
    model, test_accuracy = clf.load_or_train_classifier(mnist=mnist, progress=not args.no_progress)
    evaluator = quality.QualityEvaluator.from_mnist(mnist, args.samples, model, test_accuracy,
                                                    image_size=image_shape(config)[-1])
    n = evaluator.reference_images
    labels = requested_labels(n, args.digit) if conditional else None
    report = evaluator(sample_images(G, recipe, config["nz"], n, seed=args.seed, labels=labels), labels)
    print("\n".join(quality.write_report(args.run_dir, report)))


def check_digit(G, digit):
    """Whether G is conditional; EvalError for a --digit it cannot take."""
    conditional = getattr(G, "takes_labels", False)
    if digit is not None and not conditional:
        raise EvalError(f"--digit {digit}: this run's generator is not conditional (trained without --conditional); "
                        "it cannot be asked for a digit")
    if digit is not None and not 0 <= digit < NUM_CLASSES:
        raise EvalError(f"--digit must be in [0, {NUM_CLASSES}), got {digit}")
    return conditional


def run_sample(args):
    if args.samples is not None and args.samples < 1:
        raise EvalError(f"--samples must be at least 1, got {args.samples}")
    G, config, recipe = load_generator(args.run_dir)
    conditional = check_digit(G, args.digit)
    labels = None
    if conditional and args.digit is None and args.samples is None:
        labels = grid_labels(8).numpy()  # one row of 8 per digit
    elif conditional:
        labels = requested_labels(args.samples or 64, args.digit)
    n = len(labels) if labels is not None else args.samples or 64
    pixels = sample_images(G, recipe, config["nz"], n, seed=args.seed, labels=labels)
    out = args.out or os.path.join(args.run_dir, "samples.png" if args.digit is None else
                                   f"samples_digit_{args.digit}.png")
    save_image_grid(pixels.reshape((n,) + image_shape(config)), out, nrow=8, value_range=(0.0, 1.0))
    what = f" of digit {args.digit}" if args.digit is not None else " (a row per digit)" if labels is not None else ""
    print(f"wrote {out}: {n} samples{what} of {config['model']} after epoch {config['trained_epochs']}")


def run_train_classifier(args):
    if not args.force:
        try:
            _, test_accuracy = clf.load_classifier()
            print(f"a valid classifier is cached at {clf.classifier_path()} (test accuracy "
                  f"{100 * test_accuracy:.2f} %); --force retrains it")
            return
        except clf.ClassifierError:
            pass
    mnist = load_mnist(args.data_dir, progress=not args.no_progress)
    clf.train_and_cache(mnist=mnist, epochs=args.epochs, progress=not args.no_progress)


def run_time(args):
    print("\n".join(timing.format_timing(timing.timing_report(timing.epoch_seconds(args.run_dir, args.epochs)))))


def run_parzen_plot(args):
    points = parzen_plot.read_points(args.run_dirs)
    print("\n".join(parzen_plot.format_table(points)))
    print(f"wrote {parzen_plot.plot_points(points, args.out, args.title)}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    commands = {"parzen": run_parzen, "quality": run_quality, "sample": run_sample,
                "train-classifier": run_train_classifier,
                "time": run_time, "parzen-plot": run_parzen_plot}
    try:
        commands[args.command](args)
    except (EvalError, CheckpointError, clf.ClassifierError, MNISTError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
