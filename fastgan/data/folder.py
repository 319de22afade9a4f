"""A folder of the user's own pictures as training images, decoded once into a cached array.

:func:`load_folder` takes every image file under the folder, at any depth (class folders, folders of folders; names
starting with "." are skipped), in sorted order, and makes each one training image (:mod:`fastgan.data.resize`):
upright, grayscale (nc = 1) or RGB (nc = 3), its shorter side resized to image_size and center-cropped square, so
pictures of mixed sizes and shapes all fit. Pillow decodes them once, with a progress bar, into

    <cache>/folders/<folder name>-<hash of its path>/<size>px-<rgb|gray>-<fingerprint>.npy   uint8 (N, C, S, S)
                                                                                    .json  what it holds

where the fingerprint hashes every file's path, size and modification time and the settings. The next run with
the same folder and settings reads the array (memory-mapped when it is large: it is never all in RAM then); adding,
removing or changing a file changes the fingerprint, and the folder is decoded again (the stale array of the same
settings is deleted).

A file Pillow cannot read (corrupt, truncated, not really an image) is skipped with a warning that counts the
skipped files and names the first; the .json lists them all. That is the default. ``strict=True`` (``--strict``)
stops at the first such file instead, before anything is cached.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ..utils.atomic import atomic_write
from .imageset import ImageSet
from .mnist import default_cache_dir
from .resize import MODES, fit, to_mode

__all__ = ["FolderError", "IMAGE_EXTENSIONS", "load_folder", "list_images", "folder_cache_paths"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
FORMAT_VERSION = 1  # part of the fingerprint: raise it when decoding changes, and every folder is prepared again
# an array larger than this fraction of the machine's memory is memory-mapped instead of read in
IN_MEMORY_FRACTION = 0.25
# what Pillow raises on a file it cannot decode (UnidentifiedImageError is an OSError)
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)


class FolderError(RuntimeError):
    """The image folder cannot be used; the message names the folder or file and what to do."""


def list_images(root: Path) -> tuple[list[tuple[str, int, int]], list[str]]:
    """(images, others) under root: images as sorted (relative path, size in bytes, mtime in ns), and the relative
    paths of the other files (not an image extension). Follows symbolic links, each directory once."""
    images, others, seen = [], [], set()
    for directory, subdirs, files in os.walk(root, followlinks=True):
        st = os.stat(directory)
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
            subdirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                others.append(rel)
                continue
            try:
                st = os.stat(path)
            except OSError:  # a dangling link: an unreadable file like any other
                images.append((rel, -1, -1))
                continue
            images.append((rel, st.st_size, st.st_mtime_ns))
    return sorted(images), sorted(others)


def _settings_tag(image_size: int, nc: int) -> str:
    return f"{image_size}px-{'rgb' if nc == 3 else 'gray'}"


def folder_cache_paths(root: Path, image_size: int, nc: int, files, cache_dir=None) -> tuple[Path, Path]:
    """(.npy, .json) of the cache entry for this folder's current files and these settings."""
    root = Path(os.path.realpath(root))
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    where = base / "folders" / f"{root.name or 'root'}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
    h = hashlib.sha256(f"fastgan folder v{FORMAT_VERSION} {image_size} {nc}\n".encode())
    for rel, size, mtime in files:
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    stem = f"{_settings_tag(image_size, nc)}-{h.hexdigest()[:16]}"
    return where / f"{stem}.npy", where / f"{stem}.json"


def _decode(path: Path, image_size: int, nc: int) -> np.ndarray:
    """One file → uint8 (C, S, S). Raises one of UNREADABLE if Pillow cannot read it."""
    with Image.open(path) as image:
        if image.format in ("JPEG", "MPO"):  # a JPEG much larger than needed: decode it at a reduced scale
            image.draft(MODES[nc], (image_size, image_size))
        pixels = np.asarray(fit(to_mode(image, nc), image_size))
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _npy_header(shape: tuple) -> bytes:
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _prepare(root: Path, files, image_size: int, nc: int, npy: Path, meta: Path, strict: bool, progress: bool):
    """Decode every file into npy (streamed: one image in memory at a time) and describe it in meta."""
    from tqdm.auto import tqdm

    npy.parent.mkdir(parents=True, exist_ok=True)
    skipped, count, shape = [], 0, (nc, image_size, image_size)
    header = _npy_header((len(files), *shape))
    with atomic_write(npy, "wb") as f:
        f.write(header)
        for rel, _, _ in tqdm(files, desc=f"Preparing {root.name or root}", unit="img", disable=not progress,
                              file=sys.stderr, dynamic_ncols=True):
            try:
                pixels = _decode(root / rel, image_size, nc)
            except UNREADABLE as err:
                if strict:
                    raise FolderError(f"image folder {root}: cannot read {rel} ({type(err).__name__}: {err}); "
                                      "remove or repair it, or leave out strict (--strict) to skip unreadable "
                                      "files") from err
                skipped.append({"path": rel, "error": f"{type(err).__name__}: {err}"})
                continue
            f.write(pixels.tobytes())
            count += 1
        if count == 0:
            raise FolderError(f"image folder {root}: none of its {len(files)} image files could be read (the first, "
                              f"{skipped[0]['path']}: {skipped[0]['error']})")
        if count < len(files):  # fewer rows than announced: rewrite the header (numpy pads it for exactly this)
            new_header = _npy_header((count, *shape))
            if len(new_header) != len(header):
                raise RuntimeError(f"numpy's .npy header changed length ({len(header)} → {len(new_header)} bytes)")
            f.seek(0)
            f.write(new_header)
            f.truncate(len(header) + count * int(np.prod(shape)))
    record = {"format_version": FORMAT_VERSION, "root": str(root), "image_size": image_size, "nc": nc,
              "files": len(files), "images": count, "skipped": skipped, "array": npy.name}
    with atomic_write(meta, "w") as f:
        json.dump(record, f, indent=1)
    for stale in npy.parent.glob(f"{_settings_tag(image_size, nc)}-*"):  # this folder's older contents
        if stale not in (npy, meta) and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)
    return record


def _read_record(npy: Path, meta: Path, count_files: int):
    """The cache entry's record if the entry is complete and consistent, else None (then it is made again)."""
    try:
        record = json.loads(meta.read_text())
        rows = len(np.load(npy, mmap_mode="r", allow_pickle=False))  # reads the header, checks the file's length
        if record["format_version"] == FORMAT_VERSION and record["files"] == count_files and rows == record["images"]:
            return record
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def load_folder(root: str | os.PathLike, image_size: int = 64, nc: int = 3, cache_dir=None, strict: bool = False,
                progress: bool = True, mmap: bool | None = None) -> ImageSet:
    """The images under ``root`` as an ImageSet uint8 (N, nc, image_size, image_size), decoded once and cached.

    ``strict``: stop at the first unreadable file (default: skip unreadable files, with a warning that counts them).
    ``mmap``: memory-map the cached array (True), read it into memory (False), or decide by its size (None: mapped
    when it is larger than a quarter of the machine's memory). ``cache_dir``: default ``$FASTGAN_CACHE`` or
    ``~/.cache/fastgan``. Raises :class:`FolderError` for a missing or empty folder, or one with no readable image.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"load_folder: image_size must be a positive integer, got {image_size!r}")
    if nc not in MODES:
        raise ValueError(f"load_folder: nc must be 1 (grayscale) or 3 (RGB), got {nc!r}")
    root = Path(root).expanduser()
    if not root.exists():
        raise FolderError(f"image folder {root}: no such folder")
    if not root.is_dir():
        raise FolderError(f"image folder {root}: is a file, not a folder of images")
    files, others = list_images(root)
    if not files:
        found = f"it holds {len(others)} other files, e.g. {others[0]}" if others else "it is empty"
        raise FolderError(f"image folder {root}: no images in it or its subfolders ({found}); expected files ending in "
                          + ", ".join(IMAGE_EXTENSIONS))

    npy, meta = folder_cache_paths(root, image_size, nc, files, cache_dir)
    record = _read_record(npy, meta, len(files)) if npy.exists() and meta.exists() else None
    if record is None:
        if progress:
            print(f"fastgan: decoding {len(files)} images from {root} into {npy} (once: later runs read it)",
                  file=sys.stderr, flush=True)
        try:
            record = _prepare(root, files, image_size, nc, npy, meta, strict, progress)
        except OSError as err:  # the cache's side: reading the pictures is guarded file by file
            raise FolderError(f"image folder {root}: cannot write its cache {npy} ({err}); set FASTGAN_CACHE "
                              "(or pass cache_dir) to a writable directory with room for it") from err
    skipped = record["skipped"]
    if skipped and strict:
        first = skipped[0]
        raise FolderError(f"image folder {root}: cannot read {first['path']} ({first['error']}) and "
                          f"{len(skipped) - 1} more (listed in {meta}); remove or repair them, or leave out strict "
                          "(--strict) to skip unreadable files")
    if skipped:
        warnings.warn(f"image folder {root}: skipped {len(skipped)} of {record['files']} image files that Pillow "
                      f"cannot read (the first: {skipped[0]['path']}: {skipped[0]['error']}; all are listed in "
                      f"{meta}). Pass strict=True (--strict) to stop at an unreadable file instead.", RuntimeWarning,
                      stacklevel=2)
    if mmap is None:
        mmap = npy.stat().st_size > IN_MEMORY_FRACTION * _memory_bytes()
    images = np.load(npy, mmap_mode="r" if mmap else None, allow_pickle=False)
    mode = "grayscale" if nc == 1 else "RGB"
    return ImageSet(images, f"image folder {root} ({len(images)} images, {mode}, {image_size}×{image_size})",
                    fingerprint=f"folder-{npy.stem}")
