"""Fake data: uniformly random uint8 images of any size, the same for the same seed (pytorch/examples' `fake`).

For smoke tests and benchmarks: nothing to download or decode, and a loss curve that means nothing. The images come
from their own NumPy generator, so drawing them does not move fastgan's global random stream.
"""
import numpy as np

from .imageset import ImageSet

__all__ = ["fake_images"]

DEFAULT_COUNT = 1000  # torchvision's FakeData default


def fake_images(count=DEFAULT_COUNT, image_size=64, nc=3, seed=0) -> ImageSet:
    """``count`` random images (count, nc, H, W); image_size is the side of a square or (H, W)."""
    h, w = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    for name, value in (("count", count), ("image height", h), ("image width", w)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"fake_images: {name} must be a positive integer, got {value!r}")
    if nc not in (1, 3):
        raise ValueError(f"fake_images: nc must be 1 (grayscale) or 3 (RGB), got {nc!r}")
    images = np.random.default_rng(seed).integers(0, 256, (count, nc, h, w), dtype=np.uint8)
    return ImageSet(images, f"fake data ({count} random {nc}×{h}×{w} images, seed {seed})",
                    fingerprint=f"fake-{count}x{nc}x{h}x{w}-seed{seed}")
