"""The layers a GAN needs, each a thin Module over one functional op."""
import math

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


def _empty(*shape):
    return Parameter(np.zeros(shape, dtype=np.float32))


def _torch_default_init(weight, bias):
    """U(±1/√fan_in) for weight and bias: torch's default for Linear and convolutions."""
    bound = 1.0 / math.sqrt(init.fan_in(weight))
    init.uniform_(weight, -bound, bound)
    if bias is not None:
        init.uniform_(bias, -bound, bound)


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty(out_features, in_features)
        self.bias = _empty(out_features) if bias else None
        _torch_default_init(self.weight, self.bias)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        kh, kw = F._pair(kernel_size, "kernel_size")
        self.stride, self.padding = stride, padding
        self.weight = _empty(out_channels, in_channels, kh, kw)
        self.bias = _empty(out_channels) if bias else None
        _torch_default_init(self.weight, self.bias)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        o, i, kh, kw = self.weight.shape
        return f"{i}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}"


class ConvTranspose2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, bias=True):
        super().__init__()
        kh, kw = F._pair(kernel_size, "kernel_size")
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.weight = _empty(in_channels, out_channels, kh, kw)
        self.bias = _empty(out_channels) if bias else None
        _torch_default_init(self.weight, self.bias)

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)

    def extra_repr(self):
        i, o, kh, kw = self.weight.shape
        return f"{i}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}"


class _BatchNorm(Module):
    """Batch norm with an optional fused activation ("relu" or "leaky_relu") applied in the same kernel."""
    expected_ndim = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 activation=None, negative_slope=0.2):
        super().__init__()
        if activation not in F.ACTIVATIONS:
            raise ValueError(f"{type(self).__name__}: activation must be one of {F.ACTIVATIONS}, got {activation!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.activation, self.negative_slope = activation, negative_slope
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        if x.ndim != self.expected_ndim:
            raise ValueError(f"{type(self).__name__} expects {self.expected_ndim}-D input, got shape {x.shape}")
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_batch_stats,
                            self.momentum, self.eps, self.activation, self.negative_slope)

    def extra_repr(self):
        act = f", activation={self.activation!r}" if self.activation else ""
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}{act}"


class BatchNorm1d(_BatchNorm):
    expected_ndim = 2


class BatchNorm2d(_BatchNorm):
    expected_ndim = 4


class _Stateless(Module):
    """A layer that is just a function of its input."""
    op = None

    def forward(self, x):
        return type(self).op(x)


class ReLU(_Stateless):
    op = staticmethod(F.relu)

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace  # accepted for torch code, but fastgan never overwrites its input: a new array

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Tanh(_Stateless):
    op = staticmethod(F.tanh)


class Sigmoid(_Stateless):
    op = staticmethod(F.sigmoid)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace  # accepted for torch code, but fastgan never overwrites its input: a new array

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Maxout(Module):
    """Linear(in, units·pieces) followed by the max over each group of `pieces` (Goodfellow et al., 2013)."""

    def __init__(self, in_features, units, pieces):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = Linear(in_features, units * pieces)

    def forward(self, x):
        return F.maxout(self.linear(x), self.pieces)

    def extra_repr(self):
        return f"units={self.units}, pieces={self.pieces}"


class Flatten(Module):
    def forward(self, x):
        return F.flatten(x, 1)


class Unflatten(Module):
    """(N, prod(shape)) -> (N, *shape)."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return F.reshape(x, (x.shape[0],) + self.shape)
