"""Weight initialisation, drawing from fastgan's global generator (so `manual_seed` makes it reproducible).

Each function takes a Tensor (e.g. `m.weight`) or the array it holds (`m.weight.data`, as older torch code writes
it) and fills it in place."""
import numpy as np

from .. import backend
from ..random import generator
from ..tensor import Tensor


def _fill(tensor, values):
    if not isinstance(tensor, Tensor):  # the array itself, e.g. m.weight.data: written through
        tensor[...] = backend.xp(tensor).asarray(values.astype(tensor.dtype, copy=False))
        return tensor
    tensor.data = backend.xp(tensor.data).asarray(values.astype(tensor.dtype, copy=False))
    return tensor


def normal_(tensor, mean=0.0, std=1.0):
    return _fill(tensor, generator().normal(mean, std, tensor.shape))


def uniform_(tensor, low=0.0, high=1.0):
    return _fill(tensor, generator().uniform(low, high, tensor.shape))


def constant_(tensor, value):
    return _fill(tensor, np.full(tensor.shape, value))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def fan_in(weight):
    """Inputs feeding one output: in_features for Linear, C_in·kH·kW for Conv2d (dim 1 and the kernel)."""
    return int(np.prod(weight.shape[1:]))


def dcgan_init(module):
    """The DCGAN recipe: conv and conv-transpose weights ~ N(0, 0.02); batch-norm γ ~ N(1, 0.02), β = 0 (virtual
    batch norm too, as improved-gan initialises it)."""
    from .gan_layers import VirtualBatchNorm2d
    from .layers import BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d
    for m in module.modules():
        if isinstance(m, (Conv2d, ConvTranspose2d)):
            normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                constant_(m.bias, 0.0)
        elif isinstance(m, (BatchNorm1d, BatchNorm2d, VirtualBatchNorm2d)) and m.weight is not None:
            normal_(m.weight, 1.0, 0.02)
            constant_(m.bias, 0.0)
    return module


def orthogonal_(tensor, gain=1.0):
    """A (semi-)orthogonal matrix times `gain`, as torch.nn.init.orthogonal_ and TensorFlow's orthogonal initializer:
    the Q of the QR decomposition of a Gaussian matrix, signs fixed by R's diagonal so Q is uniformly distributed."""
    rows, cols = tensor.shape[0], int(np.prod(tensor.shape[1:]))
    q, r = np.linalg.qr(generator().standard_normal((max(rows, cols), min(rows, cols))))
    q *= np.sign(np.diag(r))
    return _fill(tensor, np.ascontiguousarray(gain * (q.T if rows < cols else q)).reshape(tensor.shape))
