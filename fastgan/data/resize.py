"""One decoded picture → one training image: upright, in the model's channels, resized and center-cropped.

What torchvision's ``Resize(size)`` + ``CenterCrop(size)`` do to a PIL image (the tutorial's transform), with the same
arithmetic: the shorter side becomes ``size`` (the longer ``int(size · long / short)``), bilinear (Pillow filters
with a support widened by the scale when it shrinks, so downscaling is antialiased), then the central size × size
square (its top-left corner at ``round((H − size) / 2), round((W − size) / 2)``).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

__all__ = ["MODES", "fit", "to_mode", "resize_images"]

MODES = {1: "L", 3: "RGB"}  # channels → the Pillow mode an image is converted to
EXIF_ORIENTATION = 0x0112


def to_mode(image: Image.Image, nc: int) -> Image.Image:
    """``image`` upright (its EXIF orientation applied) in mode "L" (nc = 1) or "RGB" (nc = 3).

    Alpha is dropped as Pillow's ``convert`` drops it (what torchvision's image loader does); palette images go
    through RGBA (so that a transparency entry is read, not warned about); 16-bit grayscale keeps its top 8 bits
    (Pillow's own conversion would clip every value above 255 to white).
    """
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        image = Image.fromarray(pixels.astype(np.uint8), "L")
    return image if image.mode == MODES[nc] else image.convert(MODES[nc])


def fit(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bilinear), then crop the central size × size square."""
    w, h = image.size
    short, long = min(w, h), max(w, h)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    if (new_w, new_h) != (size, size):
        image = image.crop((left, top, left + size, top + size))
    return image


def resize_images(images: np.ndarray, size: int, progress: bool = False, desc: str = "Resizing") -> np.ndarray:
    """uint8 images (N, H, W) or (N, C, H, W), C = 1 or 3, through :func:`fit`: uint8 (N, C, size, size)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in MODES:
        raise ValueError(f"resize_images: expected uint8 images (N, H, W) or (N, C, H, W) with C = 1 or 3, got "
                         f"{x.dtype} {np.shape(images)}")
    from tqdm.auto import tqdm
    out = np.empty((len(x), x.shape[1], size, size), np.uint8)
    for i in tqdm(range(len(x)), desc=desc, unit="img", disable=not progress, leave=False):
        picture = Image.fromarray(x[i, 0] if x.shape[1] == 1 else x[i].transpose(1, 2, 0), MODES[x.shape[1]])
        fitted = np.asarray(fit(picture, size))
        out[i] = fitted[None] if fitted.ndim == 2 else fitted.transpose(2, 0, 1)
    return out
