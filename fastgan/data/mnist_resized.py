"""MNIST at another image size (64 for the 64×64 DCGAN, as pytorch/examples' dcgan/main.py trains it): resized once,
cached beside mnist.npz as ``mnist-<size>.npz``, and checked on every load.

Resizing is :func:`fastgan.data.resize.fit` (bilinear, Pillow) of every verified canonical image. The cache holds the
four arrays and the SHA-256 of each resized image array, written with it: a load recomputes them (a corrupt or
truncated cache fails loudly, as the MNIST cache does), and the labels, which resizing leaves alone, are checked
against the canonical MNIST digests.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_save_npz
from .imageset import ImageSet
from .mnist import EXPECTED_SHA256, MNIST, MNISTError, array_sha256, default_cache_dir, load_mnist
from .resize import resize_images

__all__ = ["load_mnist_resized", "resized_cache_path", "mnist_images", "RESIZE_METHOD"]

NATIVE_SIZE = 28
RESIZE_METHOD = "fastgan.data.resize.fit: Pillow bilinear, shorter side, center crop"
_IMAGES, _LABELS = ("x_train", "x_test"), ("y_train", "y_test")


def resized_cache_path(image_size: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir or default_cache_dir()>/mnist-<image_size>.npz``."""
    return (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / f"mnist-{image_size}.npz"


def _advice(path: Path) -> str:
    return f"Delete it (rm '{path}') and run again: fastgan then resizes MNIST again."


def _load_cache(path: Path, image_size: int) -> MNIST:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _IMAGES + _LABELS}
            digests = {k: str(npz[f"sha256_{k}"]) for k in _IMAGES}
    except Exception as err:  # noqa: BLE001 - bad zip, bad CRC, missing array, truncated: all "corrupt"
        raise MNISTError(f"resized MNIST cache {path} is corrupt or unreadable ({type(err).__name__}: {err}). "
                         + _advice(path)) from err
    for k in _IMAGES:
        x = arrays[k]
        if x.dtype != np.uint8 or x.shape[1:] != (image_size, image_size) or x.ndim != 3:
            raise MNISTError(f"resized MNIST cache {path}: {k} should be uint8 (N, {image_size}, {image_size}), got "
                             f"{x.dtype} {x.shape}. " + _advice(path))
    bad = [k for k in _IMAGES if array_sha256(arrays[k]) != digests[k]]
    bad += [k for k in _LABELS if array_sha256(arrays[k]) != EXPECTED_SHA256[k]]
    if bad:
        raise MNISTError(f"resized MNIST cache {path}: SHA-256 mismatch for {', '.join(bad)} (the file is corrupt). "
                         + _advice(path))
    return MNIST(**{k: arrays[k] for k in MNIST._fields})


def load_mnist_resized(image_size: int, data_dir: str | os.PathLike | None = None,
                       cache_dir: str | os.PathLike | None = None, progress: bool = True) -> MNIST:
    """MNIST with every image resized to image_size × image_size (uint8 (N, S, S); labels unchanged).

    28 is MNIST itself (:func:`fastgan.data.load_mnist`). Any other size is read from ``mnist-<size>.npz`` in the
    cache, or made once from the canonical MNIST (``data_dir``'s IDX files or the cache / download, as
    :func:`load_mnist`) and cached there.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"load_mnist_resized: image_size must be a positive integer, got {image_size!r}")
    if image_size == NATIVE_SIZE:
        return load_mnist(data_dir, cache_dir, progress)
    path = resized_cache_path(image_size, cache_dir)
    if path.exists():
        return _load_cache(path, image_size)
    mnist = load_mnist(data_dir, cache_dir, progress)
    resized = {k: resize_images(getattr(mnist, k), image_size, progress, f"Resizing MNIST {k} to {image_size}px")[:, 0]
               for k in _IMAGES}
    data = MNIST(resized["x_train"], mnist.y_train, resized["x_test"], mnist.y_test)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(path, **data._asdict(), **{f"sha256_{k}": np.array(array_sha256(resized[k])) for k in _IMAGES},
                        resize_method=np.array(RESIZE_METHOD))
    except OSError as err:
        warnings.warn(f"fastgan: could not write the resized MNIST cache {path} ({err}); it will be resized again "
                      "next time. Set FASTGAN_CACHE or pass cache_dir to use a writable directory.", RuntimeWarning,
                      stacklevel=2)
    return data


def mnist_images(image_size: int = NATIVE_SIZE, split: str = "train", data_dir=None, cache_dir=None,
                 progress: bool = True) -> ImageSet:
    """One MNIST split ("train": 60,000, "test": 10,000) at image_size as an ImageSet (N, 1, S, S) with labels."""
    if split not in ("train", "test"):
        raise ValueError(f"mnist_images: split must be 'train' or 'test', got {split!r}")
    mnist = load_mnist_resized(image_size, data_dir, cache_dir, progress)
    x, y = getattr(mnist, f"x_{split}"), getattr(mnist, f"y_{split}")
    size = "" if image_size == NATIVE_SIZE else f", resized to {image_size}×{image_size}"
    # every load is verified against the canonical digests, and the resizing is fixed: name and size identify it
    return ImageSet(x[:, None], f"MNIST {split} ({len(x)} images{size})", y, f"mnist-{split}-{image_size}px")
