"""Small helpers: atomic file writes (atomic), image grids (images), loss plots (plots).

Only the dependency-free atomic writers are imported here; import ``fastgan.utils.images`` / ``fastgan.utils.plots``
explicitly (they load Pillow / matplotlib lazily, when first used).
"""
from .atomic import atomic_save_npz, atomic_write

__all__ = ["atomic_write", "atomic_save_npz"]
