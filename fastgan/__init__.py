"""fastgan: a compact GAN engine — a small autograd core and hand-written kernels, no framework.

    import fastgan
    from fastgan import nn, functional as F, optim
"""
import os

from . import backend, dispatch

if not os.environ.get("FASTGAN_SYSTEM_MALLOC"):
    backend.keep_freed_cpu_memory()  # a training step's arrays are recycled, not page-faulted in afresh
from .tensor import Tensor, is_grad_enabled, no_grad, ones, tensor, zeros  # first: the core
from .random import get_rng_state, manual_seed, rand, randn, set_rng_state, uniform
from . import functional, nn, optim  # noqa: E402  (they build on the names above)

__version__ = "0.1.0"
__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "rand", "uniform", "manual_seed", "get_rng_state",
           "set_rng_state", "no_grad", "is_grad_enabled", "functional", "nn", "optim", "dispatch", "backend"]
