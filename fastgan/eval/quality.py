"""The quality report of a generator, judged by the cached MNIST classifier (classifier.py, metrics.py).

For N samples: the class histogram, how many digits hold ≥ 1 % of them, its KL to uniform, the Inception score, and
MNIST-FID against N test images — printed beside the real-vs-real floor (N training images against the same test
images, same extractor, same N: FID is biased upwards at small N) and the test images' own Inception score (≈ 9.8).
For a conditional run's samples also the per-class accuracy: the fraction the classifier assigns to the requested
digit, overall and per digit.

Both real subsets are fixed random ones (seed 0), never the first N: the first half of the MNIST test set comes from
cleaner writers than the second, and the first 2,000 test images against the last 2,000 training images give a
"floor" of 237 where random subsets give 25.

A run on MNIST at another size (e.g. 64×64 for the DCGAN tutorial's model) is judged by the same classifier: its
samples are rounded to 8 bits and scaled to 28×28 by Pillow's Lanczos filter (of Pillow's filters the one that
loses least on the way back: benchmarks/downscale_floor.py, docs/evaluation.md). The floor then scores training digits
that went the same way, 28 → S → 28: what a generator that drew its training images exactly would get. The test
images stay MNIST's own.
"""
import json
import os

import numpy as np
from PIL import Image

from fastgan.data.mnist import mnist_to_float
from fastgan.data.mnist_resized import NATIVE_SIZE as MNIST_SIZE
from fastgan.data.resize import resize_images
from fastgan.utils.atomic import atomic_write

from . import classifier as clf
from .metrics import (class_histogram, feature_statistics, frechet_distance, inception_score, kl_to_uniform,
                      modes_covered, per_class_accuracy)
from .runs import isolated_rng, requested_labels, sample_images

REPORT_NAME = "quality"
SUBSET_SEED = 0


def to_mnist_size(images, size):
    """Grayscale pixels in [0, 1] ((N, size·size) or (N, 1, size, size)) as (N, 1, 28, 28) float32 in [0, 1]: as they
    are at size 28, else rounded to 8 bits and resized (fastgan.data.resize, as MNIST was resized to `size`)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim < 2 or x[0].size != size * size:
        raise ValueError(f"to_mnist_size: expected grayscale {size}×{size} images, got shape {x.shape}")
    x = x.reshape(-1, 1, size, size)
    if size == MNIST_SIZE:
        return x.astype(np.float32)
    pixels = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return mnist_to_float(downscale(pixels[:, 0]), (0, 1))  # as the floor's digits are made


def downscale(pixels):
    """uint8 grayscale squares (N, S, S) → (N, 28, 28) by Pillow's Lanczos filter."""
    return np.stack([np.asarray(Image.fromarray(p, "L").resize((MNIST_SIZE, MNIST_SIZE), Image.LANCZOS))
                     for p in pixels]) if len(pixels) else np.zeros((0, MNIST_SIZE, MNIST_SIZE), np.uint8)


class QualityEvaluator:
    """Holds the classifier and the reference statistics (computed once); call it on samples to get a report."""

    def __init__(self, model, test_accuracy, test_images, floor_images, image_size=MNIST_SIZE):
        """test_images, floor_images: (N, 1, 28, 28) in [0, 1]; image_size: the side of the samples to judge."""
        self.model, self.test_accuracy, self.image_size = model, test_accuracy, image_size
        test_probs, test_features = clf.predict(model, test_images)
        self.test_stats = feature_statistics(test_features)
        self.test_inception_score = inception_score(test_probs)[0]
        _, floor_features = clf.predict(model, floor_images)
        self.floor = frechet_distance(*feature_statistics(floor_features), *self.test_stats)
        self.reference_images = len(test_images)

    @classmethod
    def from_mnist(cls, mnist, n, model=None, test_accuracy=None, classifier_path=None, image_size=MNIST_SIZE):
        """References from an MNIST object: n test images and n training images (the floor; resized 28 → image_size
        → 28 for samples of another size), fixed random subsets; the classifier from the cache unless given."""
        if model is None:
            model, test_accuracy = clf.load_classifier(classifier_path)
        n = min(n, len(mnist.x_test), len(mnist.x_train))
        pick = np.random.default_rng(SUBSET_SEED)  # its own generator: fastgan's random stream is not touched
        test = np.sort(pick.permutation(len(mnist.x_test))[:n])
        train = np.sort(pick.permutation(len(mnist.x_train))[:n])
        floor = mnist.x_train[train]
        if image_size != MNIST_SIZE:
            floor = downscale(resize_images(floor, image_size)[:, 0])  # up as training scales MNIST, then down
        return cls(model, test_accuracy, mnist_to_float(mnist.x_test[test], (0, 1)), mnist_to_float(floor, (0, 1)),
                   image_size)

    def __call__(self, samples, labels=None):
        """samples: (N, S·S) or (N, 1, S, S) pixels in [0, 1], S the evaluator's image_size -> the report as a dict of
        plain numbers. labels: the (N,) digits a conditional G was asked for; the report then holds the per-class
        accuracy."""
        images = to_mnist_size(samples, self.image_size)
        probs, features = clf.predict(self.model, images)
        histogram = class_histogram(probs, 10)
        score, score_std = inception_score(probs)
        accuracy = {}
        if labels is not None:
            overall, by_digit = per_class_accuracy(probs, np.asarray(labels), 10)
            accuracy = {"per_class_accuracy": overall,  # None: a digit that was not requested
                        "per_class_accuracy_by_digit": [None if np.isnan(a) else round(float(a), 5) for a in by_digit]}
        return {**accuracy, "samples": len(images), "class_histogram": [round(float(h), 5) for h in histogram],
                "modes_covered": modes_covered(histogram), "kl_to_uniform": kl_to_uniform(histogram),
                "inception_score": score, "inception_score_std": score_std,
                "mnist_fid": frechet_distance(*feature_statistics(features), *self.test_stats),
                "mnist_fid_floor": self.floor, "test_inception_score": self.test_inception_score,
                "reference_test_images": self.reference_images, "classifier_test_accuracy": self.test_accuracy,
                "image_size": self.image_size}


def format_report(report):
    """A short table of the report."""
    hist = " ".join(f"{d}:{100 * h:.1f}%" for d, h in enumerate(report["class_histogram"]))
    accuracy = []
    if "per_class_accuracy" in report:
        digits = " ".join(f"{d}:{'-' if a is None else f'{100 * a:.1f}%'}"
                          for d, a in enumerate(report["per_class_accuracy_by_digit"]))
        accuracy = [f"  per-class acc.    {100 * report['per_class_accuracy']:.2f} % of the samples are the requested "
                    f"digit", f"  by digit          {digits}"]
    size = report.get("image_size", MNIST_SIZE)
    scaled = [] if size == MNIST_SIZE else [f"  scaled            samples {size}×{size} → 28×28; the floor's training "
                                            f"digits 28 → {size} → 28"]
    return [f"Sample quality by the MNIST classifier ({report['samples']} samples, "
            f"{report['reference_test_images']} test images)", *scaled, *accuracy,
            f"  class histogram   {hist}",
            f"  modes covered     {report['modes_covered']}/10 digits with ≥ 1 % of the samples; "
            f"KL to uniform {report['kl_to_uniform']:.4f}",
            f"  Inception score   {report['inception_score']:.3f} ± {report['inception_score_std']:.3f}"
            f"   (real test images: {report['test_inception_score']:.3f}; at most 10)",
            f"  MNIST-FID         {report['mnist_fid']:.3f}   (real-vs-real floor, train vs test: "
            f"{report['mnist_fid_floor']:.3f})"]


def write_report(run_dir, report, name=REPORT_NAME):
    """RUN_DIR/quality.json (the numbers) and RUN_DIR/quality.txt (the table), atomically; returns the table."""
    lines = format_report(report)
    with atomic_write(os.path.join(run_dir, name + ".json"), "w") as f:
        json.dump(report, f, indent=2)
    with atomic_write(os.path.join(run_dir, name + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def plot_fid(records, path):
    """MNIST-FID (and its floor) against the epoch, from the metric records with event "quality"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    points = [(r["epochs_done"], r["mnist_fid"], r["mnist_fid_floor"]) for r in records if r.get("event") == "quality"]
    if not points:
        return None
    epochs, fid, floor = zip(*points)
    fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(epochs, fid, "o-", label="MNIST-FID of samples")
    ax.plot(epochs, floor, "--", color="0.5", label="real-vs-real floor")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("MNIST-FID (classifier features)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


class TrainingQuality:
    """The quality report during and after training (python -m fastgan.train --eval-every N / --eval-samples N).

    Every `eval_every` epochs: a "quality" record in metrics.jsonl and the plot mnist_fid.png. After the last epoch:
    quality.json / quality.txt, if the MNIST classifier is cached. The samples come from a fixed seed and the
    training RNG is restored afterwards, so evaluating changes nothing about the run (resume stays exact).
    """

    def __init__(self, config, mnist, run_dir):
        """mnist: the MNIST digits (the references), or None when the run's data is not MNIST (at any size)."""
        self.config, self.mnist, self.run_dir = config, mnist, run_dir
        self.every, self.samples = config.get("eval_every", 0), config.get("eval_samples", 0)
        self.evaluator, self.unavailable = None, False  # built on first use: classifier + reference features

    def after_epoch(self, G, recipe, epoch, final, metrics_path):
        periodic = self.every > 0 and (epoch + 1) % self.every == 0
        if self.mnist is None:  # not MNIST: the classifier's metrics do not apply
            return
        if self.samples <= 0 or self.unavailable or not (periodic or (final and clf.cached_classifier_exists())):
            return
        with isolated_rng(self.config["seed"]):  # the training run's random stream stays where it was
            if self.evaluator is None:
                try:
                    self.evaluator = QualityEvaluator.from_mnist(self.mnist, self.samples,
                                                                 image_size=self.config["image_size"])
                except clf.ClassifierError as err:
                    print(f"quality evaluation skipped: {err}", flush=True)
                    self.unavailable = True
                    return
            n = self.evaluator.reference_images
            labels = requested_labels(n) if getattr(G, "takes_labels", False) else None
            report = self.evaluator(sample_images(G, recipe, self.config["nz"], n, seed=self.config["seed"],
                                                  labels=labels), labels)
        if periodic:
            with open(metrics_path, "a") as f:
                f.write(json.dumps({"epoch": epoch, "event": "quality", "epochs_done": epoch + 1, **report}) + "\n")
            with open(metrics_path) as f:
                plot_fid([json.loads(line) for line in f if line.strip()], os.path.join(self.run_dir, "mnist_fid.png"))
            accuracy = (f", {100 * report['per_class_accuracy']:.1f} % the requested digit"
                        if "per_class_accuracy" in report else "")
            print(f"epoch {epoch + 1}: MNIST-FID {report['mnist_fid']:.3f} (floor {report['mnist_fid_floor']:.3f}), "
                  f"IS {report['inception_score']:.3f}, {report['modes_covered']}/10 digits{accuracy}", flush=True)
        if final:
            print("\n".join(write_report(self.run_dir, report)), flush=True)
