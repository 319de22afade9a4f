"""Atomic file writes.

Every file fastgan writes that someone may read later (the MNIST cache, checkpoints, sample grids, loss plots)
goes through :func:`atomic_write`: the data is written to a temporary file in the same directory, flushed and
fsync'ed, and only then renamed onto the final name with :func:`os.replace`. A reader therefore sees either the
old file or the complete new one, never a half-written file, even if the process is killed mid-write; on any
error the temporary file is removed and the final path is left untouched. Only a process killed outright (SIGKILL,
a power cut) leaves its temporary file behind: :func:`leftover_temporary_files` finds such files.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from typing import IO, Iterator

import numpy as np

__all__ = ["atomic_write", "atomic_save_npz", "leftover_temporary_files"]

_WRITE_MODES = {"w", "wt", "wb"}
# atomic_write's temporary name for FINAL: ".FINAL." + mkstemp's 8 random characters + ".tmp"
_TEMPORARY_NAME = re.compile(r"\.(?P<final>.+)\.[a-z0-9_]{8}\.tmp")


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask() is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: str) -> int:
    """Permissions the new file should get: those of the file it replaces, else what open() would give."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (best effort: not every OS/file system lets a directory be fsync'ed)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open ``path`` for writing, atomically.

    Yields a file object on a temporary file created (``tempfile.mkstemp``) next to ``path``, named after it.
    When the ``with`` block ends normally the file is flushed, fsync'ed, closed and renamed onto ``path``
    (``os.replace``: an existing file is replaced in one step). If the block raises (any exception, including
    KeyboardInterrupt) the temporary file is deleted, ``path`` is left as it was, and the exception propagates.

    ``mode`` is ``"wb"`` (default) or ``"w"``/``"wt"`` (text; ``encoding`` defaults to UTF-8). The parent
    directory must exist. The new file gets the permissions of the file it replaces, or the usual
    ``0o666 & ~umask`` for a new file (mkstemp's private 0o600 is not kept).
    """
    if mode not in _WRITE_MODES:
        raise ValueError(f"atomic_write: mode must be one of {sorted(_WRITE_MODES)}, got {mode!r}")
    final = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(final)
    if not name:
        raise ValueError(f"atomic_write: {os.fspath(path)!r} names a directory, not a file")
    file_mode = _final_mode(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, file_mode)
        except (OSError, AttributeError):  # AttributeError: no fchmod on this OS
            pass
        if "b" in mode:
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            yield f
            if not f.closed:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def leftover_temporary_files(directory: str | os.PathLike) -> list[tuple[str, str]]:
    """(path, final name) of each temporary file atomic_write left in ``directory`` (its writer was killed)."""
    found = []
    for entry in sorted(os.listdir(directory)):
        match = _TEMPORARY_NAME.fullmatch(entry)
        if match and os.path.isfile(os.path.join(directory, entry)):
            found.append((os.path.join(directory, entry), match["final"]))
    return found


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save ``arrays`` (keyword name -> array) to a compressed ``.npz`` at exactly ``path``, atomically.

    Unlike ``np.savez_compressed(str_path, ...)`` no ``.npz`` suffix is appended. Arrays are stored without
    pickling, so they load with ``np.load(path, allow_pickle=False)``.
    """
    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays)
