"""A small MNIST classifier, trained with fastgan itself: the feature extractor behind the quality metrics.

    x ∈ [0,1]^(1×28×28) → standardise ((x − 0.1307) / 0.3081, the MNIST pixel mean and std)
      → Conv 3×3, 32, pad 1 (28×28) → ReLU → Conv 3×3, 64, stride 2, pad 1 (14×14) → ReLU → flatten (12,544)
      → Linear 128 → ReLU            = φ(x), the 128 features that MNIST-FID compares
      → Linear 10                    = the logits; softmax gives p(y|x) for the histogram and the Inception score

Trained on all 60,000 training images with softmax cross-entropy and Adam (lr 1e-3, halved every epoch), batch
64, 6 epochs, seed 0, each image moved by a random shift of up to 2 pixels each way every time it is seen, by
`python -m fastgan.eval train-classifier` (about 5 minutes on 2 CPU cores). Its test accuracy must reach 99 % for
it to be cached. Without the shifts, 4 epochs gave 99.03–99.09 % on AVX-512 machines and 98.96 % on one without
(the same seed, but other kernels round differently): too close to the bar. With them it gets 99.13 % after 4
epochs and 99.20 % after 6 there. The shifts teach it that a digit moved by a pixel is the same digit.

Cache: $FASTGAN_CACHE (default ~/.cache/fastgan)/mnist_classifier.npz, and beside it mnist_classifier.npz.sha256
(the file's SHA-256, `sha256sum` format). Both are written atomically, the weights first; a missing or
mismatching checksum means the weights are corrupt (or half-updated) and they are retrained.
"""
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

import fastgan
from fastgan import functional as F
from fastgan import nn, optim
from fastgan.data.mnist import default_cache_dir
from fastgan.utils.atomic import atomic_save_npz, atomic_write

from .runs import isolated_rng

CACHE_NAME = "mnist_classifier.npz"
VERSION = 2            # bump when the architecture or the recipe changes: old caches are retrained
MIN_ACCURACY = 0.99    # a classifier below this is not cached
EPOCHS = 6
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FEATURES = 128


class ClassifierError(RuntimeError):
    """The cached classifier is missing, corrupt or not good enough; the message says which and what to do."""


class MNISTClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 14 * 14, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x):
        """φ(x): the penultimate layer's 128 activations."""
        return self.body((x - MNIST_MEAN) * (1 / MNIST_STD))

    def forward(self, x):
        return self.head(self.features(x))


def softmax(logits):
    """Row-wise softmax of a NumPy array, shifted by the row max so exp never overflows."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predict(model, images, batch_size=500):
    """(probabilities (N, 10), features (N, 128)) for images (N, 1, 28, 28) in [0, 1], as float64 arrays."""
    model.eval()
    probs, feats = [], []
    with fastgan.no_grad():
        for start in range(0, len(images), batch_size):
            x = fastgan.tensor(np.asarray(images[start:start + batch_size], dtype=np.float32))
            phi = model.features(x)
            probs.append(softmax(model.head(phi).numpy().astype(np.float64)))
            feats.append(phi.numpy().astype(np.float64))
    return np.concatenate(probs), np.concatenate(feats)


def accuracy(model, images, labels):
    probs, _ = predict(model, images)
    return float(np.mean(probs.argmax(axis=1) == np.asarray(labels)))


def random_shift(images, max_shift, rng):
    """Each image (N, C, H, W) moved by its own (dy, dx) ∈ [−max_shift, max_shift]², zeros shifted in."""
    if max_shift == 0:
        return images
    s, (n, _, h, w) = max_shift, images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (s, s), (s, s)))
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))  # where each image's window starts in the padded frame
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train_classifier(images, labels, epochs=EPOCHS, batch_size=64, lr=1e-3, max_shift=2, seed=0, progress=True):
    """Train a fresh MNISTClassifier on images (N, 1, 28, 28) in [0, 1] with integer labels; returns it."""
    with isolated_rng(seed):  # seeded, and the caller's random stream is left as it was
        return _train(images, labels, epochs, batch_size, lr, max_shift, progress)


def _train(images, labels, epochs, batch_size, lr, max_shift, progress):
    from tqdm import tqdm  # only needed while training

    model = MNISTClassifier()
    opt = optim.Adam(model.parameters(), lr=lr)
    labels = np.asarray(labels, dtype=np.int64)
    steps = len(images) // batch_size
    rng = fastgan.random.generator()  # the seeded stream: the order of the images and their shifts
    for epoch in range(epochs):
        model.train()
        opt.lr = lr * 0.5 ** epoch
        order = rng.permutation(len(images))
        bar = tqdm(range(steps), desc=f"classifier epoch {epoch + 1}/{epochs}", unit="step", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)
        for i in bar:
            batch = order[i * batch_size:(i + 1) * batch_size]
            opt.zero_grad()
            x = random_shift(images[batch], max_shift, rng)
            loss = F.cross_entropy(model(fastgan.tensor(x)), labels[batch])
            loss.backward()
            opt.step()
            if i % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.close()
    model.eval()
    return model


# --- the cache -----------------------------------------------------------------------------------------------------

def classifier_path(cache_dir=None):
    return Path(cache_dir) / CACHE_NAME if cache_dir is not None else default_cache_dir() / CACHE_NAME


def _checksum_path(path):
    return Path(str(path) + ".sha256")


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_classifier(model, path, test_accuracy):
    """Write the weights, then their checksum, each atomically (a crash in between leaves a mismatch: retrain)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"weight/{k}": v for k, v in model.state_dict().items()}
    atomic_save_npz(path, **arrays, version=np.array(VERSION), test_accuracy=np.array(test_accuracy))
    with atomic_write(_checksum_path(path), "w") as f:
        f.write(f"{_file_sha256(path)}  {path.name}\n")


def load_classifier(path=None):
    """(model, test_accuracy) from the cache; ClassifierError if it is missing, corrupt or outdated."""
    path = classifier_path() if path is None else Path(path)
    retrain = "train it with: python -m fastgan.eval train-classifier"
    if not path.is_file():
        raise ClassifierError(f"no cached MNIST classifier at {path}; {retrain}")
    try:
        expected = _checksum_path(path).read_text().split()[0]
    except (OSError, IndexError) as err:
        raise ClassifierError(f"the checksum file {_checksum_path(path)} is missing or empty ({err}); "
                              f"{retrain}") from None
    if _file_sha256(path) != expected:
        raise ClassifierError(f"{path} does not match its SHA-256 checksum (corrupt or half-written); {retrain}")
    try:
        with np.load(path, allow_pickle=False) as saved:
            if int(saved["version"]) != VERSION:
                raise ClassifierError(f"{path} holds a classifier of version {int(saved['version'])}, this fastgan "
                                      f"needs version {VERSION}; {retrain}")
            with isolated_rng():  # building the Module draws initial weights: leave the caller's stream alone
                model = MNISTClassifier()
            model.load_state_dict({k[len("weight/"):]: saved[k] for k in saved.files if k.startswith("weight/")})
            test_accuracy = float(saved["test_accuracy"])
    except ClassifierError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise ClassifierError(f"{path} is unreadable ({type(err).__name__}: {err}); {retrain}") from err
    model.eval()
    return model, test_accuracy


def train_and_cache(path=None, mnist=None, epochs=EPOCHS, progress=True, log=print):
    """Train on all 60,000 training images, check the test accuracy, cache; returns (model, test_accuracy)."""
    from fastgan.data import load_mnist
    from fastgan.data.mnist import mnist_to_float

    path = classifier_path() if path is None else Path(path)
    mnist = load_mnist(progress=progress) if mnist is None else mnist
    started = time.perf_counter()
    model = train_classifier(mnist_to_float(mnist.x_train, (0, 1)), mnist.y_train, epochs=epochs, progress=progress)
    test_accuracy = accuracy(model, mnist_to_float(mnist.x_test, (0, 1)), mnist.y_test)
    log(f"classifier: test accuracy {100 * test_accuracy:.2f} % after {epochs} epochs "
        f"({time.perf_counter() - started:.0f} s)")
    if test_accuracy < MIN_ACCURACY:
        raise ClassifierError(f"the classifier reached only {100 * test_accuracy:.2f} % test accuracy (< "
                              f"{100 * MIN_ACCURACY:.0f} %); not cached. Train longer: --epochs {epochs + 2}")
    save_classifier(model, path, test_accuracy)
    log(f"classifier cached: {path} (+ .sha256)")
    return model, test_accuracy


def load_or_train_classifier(path=None, mnist=None, progress=True, log=print):
    """The cached classifier, retrained (and cached again) if it is missing or corrupt."""
    try:
        return load_classifier(path)
    except ClassifierError as err:
        log(f"{err}\nretraining it now (a few minutes) ...")
        return train_and_cache(path, mnist, progress=progress, log=log)


def cached_classifier_exists(path=None):
    path = classifier_path() if path is None else Path(path)
    return path.is_file() and _checksum_path(path).is_file()


__all__ = ["MNISTClassifier", "ClassifierError", "predict", "accuracy", "train_classifier", "classifier_path",
           "save_classifier", "load_classifier", "train_and_cache", "load_or_train_classifier"]
