"""fastgan: a compact GAN engine — a small autograd core and hand-written kernels, no framework.

    import fastgan
    from fastgan import nn, functional as F, optim
"""
import os

import numpy as np  # noqa: E402

from . import backend, dispatch

if not os.environ.get("FASTGAN_SYSTEM_MALLOC"):
    backend.keep_freed_cpu_memory()  # a training step's arrays are recycled, not page-faulted in afresh
from .tensor import Tensor, full, grad, is_grad_enabled, no_grad, ones, tensor, zeros  # first: the core
from .random import get_rng_state, manual_seed, rand, randn, set_rng_state, uniform
from . import autograd, functional, nn, optim, testing  # noqa: E402  (they build on the names above)
from .precision import autocast  # noqa: E402

# dtype names as torch spells them (`dtype=torch.float` in a learner's script); fastgan's dtypes are NumPy's
float32 = float = np.float32  # noqa: A001
float64 = double = np.float64
int64 = long = np.int64

__version__ = "0.1.0"
# (float, double and long stay out of __all__: `from fastgan import *` would shadow the builtin float)
__all__ = ["Tensor", "tensor", "grad", "zeros", "ones", "full", "randn", "rand", "uniform", "manual_seed", "get_rng_state",
           "set_rng_state", "no_grad", "is_grad_enabled", "autograd", "testing", "functional", "nn", "optim",
           "dispatch", "backend", "autocast", "float32", "float64", "int64"]
