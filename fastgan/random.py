"""One global random generator, seeded by `fastgan.manual_seed`, so that a run is reproducible and resumable."""
import contextlib

import numpy as np

from . import backend
from .tensor import Tensor

_generator = np.random.default_rng(0)


def manual_seed(seed):
    """Reseed every random draw fastgan makes (initialisation, noise, dropout, data shuffling)."""
    global _generator
    _generator = np.random.default_rng(int(seed))


def generator():
    return _generator


def get_rng_state():
    """A picklable snapshot of the generator; `set_rng_state` restores it (checkpoints use the pair)."""
    return _generator.bit_generator.state


def set_rng_state(state):
    _generator.bit_generator.state = state


@contextlib.contextmanager
def isolated_rng(seed=0):
    """Within this block fastgan's global generator is seeded with `seed`; the caller's state is restored after.

    Evaluating in the middle of training (drawing noise, even building a Module, whose initialisation draws
    numbers) must not move the training run's random stream, or resume would no longer be exact.
    """
    saved = get_rng_state()
    manual_seed(seed)
    try:
        yield
    finally:
        set_rng_state(saved)


def _draw(sample, shape, dtype, device, requires_grad):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
    values = sample(shape).astype(dtype or np.float32, copy=False)
    values = backend.array_module(device).asarray(values)  # drawn on the host: same numbers on every device
    return Tensor(values, requires_grad=requires_grad)


def randn(*shape, dtype=None, device="cpu", requires_grad=False):
    """Standard normal samples."""
    return _draw(_generator.standard_normal, shape, dtype, device, requires_grad)


def rand(*shape, dtype=None, device="cpu", requires_grad=False):
    """Uniform samples in [0, 1)."""
    return _draw(_generator.random, shape, dtype, device, requires_grad)


def uniform(*shape, low=0.0, high=1.0, dtype=None, device="cpu", requires_grad=False):
    """Uniform samples in [low, high)."""
    return _draw(lambda s: _generator.uniform(low, high, s), shape, dtype, device, requires_grad)
