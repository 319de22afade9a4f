"""The data sets `python -m fastgan.train` can learn, behind one call: :func:`load_images` → an ImageSet.

    mnist    MNIST's 60,000 training digits, grayscale, at image_size (28 as stored; other sizes resized once and
             cached); data_dir: a folder of the four IDX files instead of the download
    folder   the pictures in data_dir (any depth), RGB or grayscale, resized and center-cropped, decoded once
    fake     random images, deterministic by seed (count of them)
"""
from .fake import DEFAULT_COUNT, fake_images
from .folder import load_folder
from .mnist_resized import NATIVE_SIZE, mnist_images

__all__ = ["DATASETS", "DEFAULTS", "load_images"]

DATASETS = ("mnist", "folder", "fake")
DEFAULTS = {"mnist": dict(image_size=NATIVE_SIZE, nc=1), "folder": dict(image_size=64, nc=3),
            "fake": dict(image_size=64, nc=3)}  # (image_size, nc) where the caller leaves them None


def load_images(dataset, image_size=None, nc=None, data_dir=None, cache_dir=None, count=None, seed=0, strict=False,
                progress=True):
    """The training images of ``dataset`` ("mnist", "folder" or "fake") as an ImageSet (N, nc, S, S) uint8.

    image_size / nc: None for the data set's own (mnist 28 / 1, folder and fake 64 / 3). data_dir: required for
    folder, optional for mnist (IDX files), not for fake. count: fake's number of images (default 1000). strict:
    folder stops at an unreadable file instead of skipping it. Options a data set has no use for raise ValueError.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    image_size = DEFAULTS[dataset]["image_size"] if image_size is None else image_size
    nc = DEFAULTS[dataset]["nc"] if nc is None else nc
    unused = [name for name, value, used_by in (("count", count, "fake"), ("strict", strict, "folder"))
              if value and dataset != used_by]
    if dataset == "fake" and data_dir is not None:
        unused.append("data_dir")
    if unused:
        raise ValueError(f"dataset {dataset!r} takes no {' or '.join(unused)}")
    if dataset == "mnist":
        if nc != 1:
            raise ValueError(f"dataset 'mnist' is grayscale: nc must be 1, got {nc}")
        return mnist_images(image_size, "train", data_dir, cache_dir, progress)
    if dataset == "folder":
        if data_dir is None:
            raise ValueError("dataset 'folder' needs data_dir (--data-dir): the folder of images to learn")
        return load_folder(data_dir, image_size, nc, cache_dir, strict, progress)
    return fake_images(DEFAULT_COUNT if count is None else count, image_size, nc, seed)
