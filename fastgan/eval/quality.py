"""The quality report of a generator, judged by the cached MNIST classifier (classifier.py, metrics.py).

For N samples: the class histogram, how many digits hold ≥ 1 % of them, its KL to uniform, the Inception score, and
MNIST-FID against N test images — printed beside the real-vs-real floor (N training images against the same test
images, same extractor, same N: FID is biased upwards at small N) and the test images' own Inception score (≈ 9.8).
For a conditional run's samples also the per-class accuracy: the fraction the classifier assigns to the requested
digit, overall and per digit.

Both real subsets are fixed random ones (seed 0), never the first N: the first half of the MNIST test set comes from
cleaner writers than the second, and the first 2,000 test images against the last 2,000 training images give a
"floor" of 237 where random subsets give 25.
"""
import json
import os

import numpy as np

from fastgan.data.mnist import mnist_to_float
from fastgan.utils.atomic import atomic_write

from . import classifier as clf
from .metrics import (class_histogram, feature_statistics, frechet_distance, inception_score, kl_to_uniform,
                      modes_covered, per_class_accuracy)
from .runs import isolated_rng, requested_labels, sample_images

REPORT_NAME = "quality"
SUBSET_SEED = 0


class QualityEvaluator:
    """Holds the classifier and the reference statistics (computed once); call it on samples to get a report."""

    def __init__(self, model, test_accuracy, test_images, floor_images):
        self.model, self.test_accuracy = model, test_accuracy
        test_probs, test_features = clf.predict(model, test_images)
        self.test_stats = feature_statistics(test_features)
        self.test_inception_score = inception_score(test_probs)[0]
        _, floor_features = clf.predict(model, floor_images)
        self.floor = frechet_distance(*feature_statistics(floor_features), *self.test_stats)
        self.reference_images = len(test_images)

    @classmethod
    def from_mnist(cls, mnist, n, model=None, test_accuracy=None, classifier_path=None):
        """References from an MNIST object: n test images and n training images (the floor), fixed random subsets;
        the classifier from the cache unless given."""
        if model is None:
            model, test_accuracy = clf.load_classifier(classifier_path)
        n = min(n, len(mnist.x_test), len(mnist.x_train))
        pick = np.random.default_rng(SUBSET_SEED)  # its own generator: fastgan's random stream is not touched
        test = np.sort(pick.permutation(len(mnist.x_test))[:n])
        train = np.sort(pick.permutation(len(mnist.x_train))[:n])
        return cls(model, test_accuracy, mnist_to_float(mnist.x_test[test], (0, 1)),
                   mnist_to_float(mnist.x_train[train], (0, 1)))

    def __call__(self, samples, labels=None):
        """samples: (N, 784) or (N, 1, 28, 28) pixels in [0, 1] -> the report as a dict of plain numbers.
        labels: the (N,) digits a conditional G was asked for; the report then holds the per-class accuracy."""
        images = np.asarray(samples, dtype=np.float32).reshape(-1, 1, 28, 28)
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
                "reference_test_images": self.reference_images, "classifier_test_accuracy": self.test_accuracy}


def format_report(report):
    """A short table of the report."""
    hist = " ".join(f"{d}:{100 * h:.1f}%" for d, h in enumerate(report["class_histogram"]))
    accuracy = []
    if "per_class_accuracy" in report:
        digits = " ".join(f"{d}:{'-' if a is None else f'{100 * a:.1f}%'}"
                          for d, a in enumerate(report["per_class_accuracy_by_digit"]))
        accuracy = [f"  per-class acc.    {100 * report['per_class_accuracy']:.2f} % of the samples are the requested "
                    f"digit", f"  by digit          {digits}"]
    return [f"Sample quality by the MNIST classifier ({report['samples']} samples, "
            f"{report['reference_test_images']} test images)", *accuracy,
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
        """mnist: the MNIST digits (the references), or None when the run's data is not MNIST at 28×28."""
        self.config, self.mnist, self.run_dir = config, mnist, run_dir
        self.every, self.samples = config.get("eval_every", 0), config.get("eval_samples", 0)
        self.evaluator, self.unavailable = None, False  # built on first use: classifier + reference features

    def after_epoch(self, G, recipe, epoch, final, metrics_path):
        periodic = self.every > 0 and (epoch + 1) % self.every == 0
        if self.mnist is None:  # not MNIST at 28×28: the classifier's metrics do not apply
            return
        if self.samples <= 0 or self.unavailable or not (periodic or (final and clf.cached_classifier_exists())):
            return
        with isolated_rng(self.config["seed"]):  # the training run's random stream stays where it was
            if self.evaluator is None:
                try:
                    self.evaluator = QualityEvaluator.from_mnist(self.mnist, self.samples)
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
