"""ImageSet: what every data source hands the training loop — uint8 images (N, C, H, W) and how to make them floats.

The images stay uint8 (a quarter of float32's memory, and a memory-mapped file for a large folder); a batch becomes
model input only when it is drawn: ``data.to_float(value_range, index=rows)``. Converting per batch or all at once
gives the same bits (the conversion is elementwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImageSet", "pixels_to_float"]


def pixels_to_float(pixels: np.ndarray, value_range: tuple[float, float] = (-1, 1), dtype=np.float32) -> np.ndarray:
    """uint8 pixels 0..255 onto ``value_range`` linearly, same shape, as ``x / 255 * (hi - lo) + lo`` in ``dtype``.

    For (-1, 1) this is bit-identical to torchvision's ``ToTensor()`` + ``Normalize(0.5, 0.5)``; 0 maps exactly to
    ``lo`` and 255 exactly to ``hi``.
    """
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with lo < hi, got {value_range}")
    dtype = np.dtype(dtype)
    out = np.asarray(pixels).astype(dtype)
    out /= dtype.type(255)
    out *= dtype.type(hi - lo)
    out += dtype.type(lo)
    return out


@dataclass(frozen=True)
class ImageSet:
    """N images as uint8 (N, C, H, W) (an ndarray or a read-only np.memmap), with where they came from.

    images       uint8 (N, C, H, W), C = 1 (grayscale) or 3 (RGB)
    description  one line for logs and errors: the source and what was done to it
    labels       (N,) class indices where the source has them (MNIST's digits), else None
    fingerprint  a short string that changes whenever the images would (a resumed run can check it still trains on
                 the data it started with), or None
    """

    images: np.ndarray
    description: str
    labels: np.ndarray | None = None
    fingerprint: str | None = None

    def __post_init__(self):
        x = self.images
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"ImageSet: images must be uint8 (N, C, H, W) with C = 1 or 3, got "
                             f"{getattr(x, 'dtype', type(x))} {np.shape(x)} ({self.description})")
        if self.labels is not None and len(self.labels) != len(x):
            raise ValueError(f"ImageSet: {len(x)} images but {len(self.labels)} labels ({self.description})")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    @property
    def nc(self) -> int:
        return self.images.shape[1]

    def head(self, n: int | None) -> ImageSet:
        """The first n images (all of them for None), without copying."""
        if n is None or n >= len(self):
            return self
        labels = None if self.labels is None else self.labels[:n]
        fingerprint = None if self.fingerprint is None else f"{self.fingerprint}[:{n}]"
        return ImageSet(self.images[:n], f"{self.description}, first {n}", labels, fingerprint)

    def to_float(self, value_range: tuple[float, float] = (-1, 1), dtype=np.float32, index=None) -> np.ndarray:
        """Images ``index`` (default: all; a slice or an integer array, e.g. one batch of a shuffled order) as
        ``dtype`` (n, C, H, W) in ``value_range`` (see :func:`pixels_to_float`)."""
        pixels = self.images if index is None else self.images[index]
        return pixels_to_float(pixels, value_range, dtype)
