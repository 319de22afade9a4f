"""Tile a batch of images into one grid (like ``torchvision.utils.make_grid``) and save it as a PNG."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write

__all__ = ["make_grid", "save_image_grid"]


def _to_numpy(images) -> np.ndarray:
    """A NumPy array from a NumPy array, a fastgan Tensor (``.numpy()``), a CuPy array (``.get()``) or a list."""
    if isinstance(images, np.ndarray):
        return images
    if callable(getattr(images, "numpy", None)):
        return np.asarray(images.numpy())
    if type(images).__module__.split(".")[0] == "cupy":
        return images.get()
    return np.asarray(images)


def make_grid(images, nrow: int = 8, value_range: tuple[float, float] = (-1.0, 1.0), padding: int = 2,
              pad_value: float = 0.0) -> np.ndarray:
    """Tile ``images`` into one uint8 picture.

    ``images``: (N, C, H, W) with C = 1 or 3, or (N, H, W) (grayscale), any real dtype. Values are clipped to
    ``value_range = (lo, hi)`` and mapped to 0..255 as ``floor((x - lo) / (hi - lo) * 255 + 0.5)`` (what
    torchvision's ``save_image(..., normalize=True, value_range=...)`` does); NaN becomes ``lo``, +-inf the
    nearest end.

    The grid has ``min(nrow, N)`` columns and ``ceil(N / nrow)`` rows; every image is surrounded by ``padding``
    pixels of ``pad_value``, a brightness in [0, 1] (0 black, 1 white), so the grid is
    ``rows * (H + padding) + padding`` by ``cols * (W + padding) + padding``. Unused cells of the last row stay
    ``pad_value``. (Unlike torchvision, a single image is padded too, and grayscale stays single-channel.)

    Returns (Hg, Wg) uint8 for C = 1 or (N, H, W) input, (Hg, Wg, 3) for C = 3 (ready for ``PIL.Image``).
    """
    x = _to_numpy(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"make_grid: expected images of shape (N, C, H, W) with C = 1 or 3, or (N, H, W); "
                         f"got shape {x.shape}")
    n, c, h, w = x.shape
    if n == 0 or h == 0 or w == 0:
        raise ValueError(f"make_grid: no pixels to draw in images of shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
        raise ValueError(f"make_grid: expected real-valued images, got dtype {x.dtype} (shape {x.shape})")
    if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise ValueError(f"make_grid: nrow must be a positive integer, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"make_grid: padding must be a non-negative integer, got {padding!r}")
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"make_grid: value_range must be finite (lo, hi) with lo < hi, got {value_range!r}")
    if not 0.0 <= float(pad_value) <= 1.0:
        raise ValueError(f"make_grid: pad_value is a brightness in [0, 1], got {pad_value!r}")

    x = np.nan_to_num(x.astype(np.float64), nan=lo, posinf=hi, neginf=lo)
    x = (np.clip(x, lo, hi) - lo) / (hi - lo)
    pixels = np.floor(x * 255.0 + 0.5).astype(np.uint8)  # x in [0, 1], so 0..255 without wrap-around
    fill = np.uint8(math.floor(float(pad_value) * 255.0 + 0.5))

    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h + padding, w + padding
    grid = np.full((rows * cell_h + padding, cols * cell_w + padding, c), fill, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        top, left = r * cell_h + padding, q * cell_w + padding
        grid[top:top + h, left:left + w] = pixels[k].transpose(1, 2, 0)
    return grid[:, :, 0] if c == 1 else grid


def save_image_grid(images, path: str | os.PathLike, nrow: int = 8,
                    value_range: tuple[float, float] = (-1.0, 1.0), padding: int = 2,
                    pad_value: float = 0.0) -> Path:
    """:func:`make_grid` the images and write the result to ``path`` as a PNG, atomically.

    Grayscale input gives a grayscale ("L") PNG, 3-channel input an RGB PNG. Missing parent directories are
    created. Returns the path written.
    """
    grid = make_grid(images, nrow=nrow, value_range=value_range, padding=padding, pad_value=pad_value)
    from PIL import Image  # lazy: only needed when a file is written

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(grid)
    with atomic_write(path, "wb") as f:
        image.save(f, format="PNG")
    return path
