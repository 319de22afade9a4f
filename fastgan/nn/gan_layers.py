"""Two layers from "Improved Techniques for Training GANs" (Salimans et al., 2016): minibatch discrimination (one
kernel of its own, the pairwise closeness, between existing ops) and virtual batch norm (existing ops only).

MinibatchDiscrimination (in D): lets D compare the examples of one batch, so that a collapsed G (many z, one x) is
easy to spot. With f(x_i) ∈ R^A the input features, a learned T ∈ R^{A×B×C} and a learned bias β ∈ R^B:

    M_i = f(x_i)·T ∈ R^{B×C}                    (row b: M_{i,b} ∈ R^C)
    c_b(x_i, x_j) = exp(−‖M_{i,b} − M_{j,b}‖_1)
    o(x_i)_b = Σ_{j≠i} c_b(x_i, x_j) + β_b      (j = i left out, as in the authors' code: it would add exp(0) = 1)
    output = concat(f(x_i), o(x_i)) ∈ R^{A+B}

The paper gives the formula; the authors' layer (improved-gan's nn.py) adds what makes it train, and so does this
one. o_b lies between β_b and β_b + N − 1 and enters a linear layer made for O(1) features, so its scale matters:
- T is weight-normalised: T[:, b, c] = θ[:, b, c] · exp(s_{b,c}) / ‖θ[:, b, c]‖, learned θ (A×B×C) and log-scale s
  (B×C). Adam then turns T's directions at its usual rate but changes its scale only as fast as s, in log steps.
- It initialises itself from the first batch it sees in training mode (fastgan's rounds judge the real batch
  first, gan.py): s_b is shifted so that the mean distance from an example to its nearest neighbour is 2 on every
  kernel (c_b ≈ e⁻² to the nearest, less to the others), then β = −mean_i o(x_i), so that o starts centred on real
  data. Without this, in the DCGAN's D (6,272 features) o was about 10 for real and fake batches alike at the
  start, and D's logit +7 for both.
Real and fake batches must pass separately (o compares the examples of one batch).

VirtualBatchNorm2d (in G): batch norm whose statistics do not depend on the other examples of the batch. A
reference batch, fixed once, passes first and each layer keeps its statistics (per channel, over N_ref·H·W):
μ_ref = E[x], s_ref = E[x²]. Then each example i is normalised with the statistics of the reference batch plus
itself, the example weighing as one more member of a batch of R + 1 (R = reference batch size), exactly as
improved-gan's VBN class (imagenet/model.py):

    a = 1/(R+1)
    μ_i = a·mean_{H,W}(x_i) + (1−a)·μ_ref          s_i = a·mean_{H,W}(x_i²) + (1−a)·s_ref
    y_i = γ·(x_i − μ_i)/sqrt(ε + s_i − μ_i²) + β     (biased variance, ε = 1e-5 inside the square root)

The reference batch itself is normalised with (μ_ref, s_ref) alone. μ_ref and s_ref stay in the graph: gradients
flow through them into G's weights, as in improved-gan's TensorFlow graph. The reference pass costs a second
forward (and backward) of G per step. Usage: run the reference batch inside `reference_pass(G)`, then the real
batch; models/vbn_generator.py does both in one forward.
"""
import contextlib
import math

import numpy as np

from .. import backend, dispatch
from .. import functional as F
from ..autograd import op
from ..kernels import reference
from ..tensor import Tensor, no_grad
from . import init
from .module import Module, Parameter


def closeness(M):
    """(N, B, C) rows M_{i,b} -> (N, B): o_{i,b} = Σ_{j≠i} exp(−‖M_{i,b} − M_{j,b}‖₁), one op whose kernels and
    derivative are in kernels/reference.py (minibatch_closeness_*)."""
    forward = dispatch.kernel("minibatch_closeness_forward", M.device)
    backward = dispatch.kernel("minibatch_closeness_backward", M.device)
    m = M.data
    return op(forward(m), (M,), lambda g: (backward(g, m),), "minibatch_closeness")


def minibatch_discrimination(x, T, bias=None):
    """(N, A) features, T (A, B, C) and bias β (B,) or None -> (N, A + B): the features followed by o(x_i)
    (formula in the module doc)."""
    if x.ndim != 2 or T.ndim != 3 or x.shape[1] != T.shape[0]:
        raise ValueError(f"minibatch_discrimination: input {x.shape} does not match T {T.shape} (expected "
                         f"(N, {T.shape[0] if T.ndim == 3 else 'A'}) and (A, B, C))")
    if bias is not None and bias.shape != (T.shape[1],):
        raise ValueError(f"minibatch_discrimination: bias {bias.shape} does not match T {T.shape} (expected "
                         f"({T.shape[1]},))")
    n, (a, b, c) = x.shape[0], T.shape
    M = F.reshape(F.matmul(x, F.reshape(T, (a, b * c))), (n, b, c))
    o = closeness(M)                                                                  # (N, B)
    return F.cat([x, o if bias is None else o + bias], dim=1)


class MinibatchDiscrimination(Module):
    """(N, A) or (N, ...) features (flattened to A) -> (N, A + B). See the module doc for the formula and the
    initialisation from the first training batch (`initialised`, a buffer, records that it happened)."""

    def __init__(self, in_features, out_features, kernel_dim):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features (B)", out_features),
                            ("kernel_dim (C)", kernel_dim)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"MinibatchDiscrimination: {name} must be a positive integer, got {value!r}")
        self.in_features, self.out_features, self.kernel_dim = in_features, out_features, kernel_dim
        self.theta = Parameter(np.zeros((in_features, out_features, kernel_dim), np.float32))
        init.normal_(self.theta, 0.0, 0.05)                                  # only its direction matters
        self.log_scale = Parameter(np.zeros((out_features, kernel_dim), np.float32))
        self.bias = Parameter(np.zeros(out_features, np.float32))
        self.register_buffer("initialised", Tensor(np.zeros(1, np.float32)))   # 1 once started from data

    def _flat(self, x):
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.in_features:
            raise ValueError(f"MinibatchDiscrimination: input {x.shape} does not have {self.in_features} features "
                             "per example")
        return F.reshape(x, (x.shape[0], self.in_features))

    @property
    def T(self):
        """θ · exp(s) / ‖θ‖, the norm over the A input features of each (kernel, dimension) column."""
        inverse_norm = F.sum(self.theta * self.theta, dim=0) ** -0.5                        # (B, C)
        return self.theta * F.reshape(F.exp(self.log_scale) * inverse_norm, (1,) + self.log_scale.shape)

    def initialise(self, x):
        """Set s and β from the batch x (N ≥ 2, real data) as the module doc says; nothing is recorded."""
        x = self._flat(x).detach()
        if x.shape[0] < 2:
            raise ValueError(f"MinibatchDiscrimination.initialise: needs a batch of at least 2 examples, got {x.shape}")
        xp = backend.xp(x.data)
        n, a, b, c = x.shape[0], self.in_features, self.out_features, self.kernel_dim
        with no_grad():
            M = (x.data @ self.T.data.reshape(a, b * c)).reshape(n, b, c)
        distances = reference.minibatch_distances(M)                                     # (B, N, N)
        distances[:, xp.arange(n), xp.arange(n)] = xp.inf                                # no example is its own
        nearest = distances.min(axis=2).mean(axis=1)                                     # (B,)
        scale = xp.where(nearest > 0, 2.0 / xp.maximum(nearest, 1e-30), 1.0).astype(self.theta.dtype)
        self.log_scale.data = self.log_scale.data + xp.log(scale)[:, None]   # distances scale with T: nearest 2
        o = dispatch.kernel("minibatch_closeness_forward", x.device)(M * scale[None, :, None])
        self.bias.data = -o.mean(axis=0).astype(self.bias.dtype)
        self.initialised.data = xp.ones(1, self.initialised.dtype)

    def forward(self, x):
        x = self._flat(x)
        if self.training and x.shape[0] >= 2 and not self.initialised.item():
            self.initialise(x)
        return minibatch_discrimination(x, self.T, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, B={self.out_features}, C={self.kernel_dim}"


def _channel_view(t):
    return F.reshape(t, (1, t.shape[0], 1, 1))


class VirtualBatchNorm2d(Module):
    """Batch norm with the statistics of a fixed reference batch plus the example itself (see the module doc).

    In a reference pass (`reference_pass(module)`), forward(x_ref) records the reference statistics and
    normalises x_ref with them; afterwards forward(x) normalises each example of x with the blend. Learnable
    γ (`weight`) and β (`bias`); no running statistics: training and evaluation compute the same thing.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.recording = False   # True during a reference pass
        self.reference = None    # (μ_ref, s_ref, R) of the last reference pass: Tensors still in the graph

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"VirtualBatchNorm2d({self.num_features}) expects (N, {self.num_features}, H, W) input, "
                             f"got shape {x.shape}")
        if self.recording:
            mean, mean_sq = F.mean(x, (0, 2, 3), keepdim=True), F.mean(x * x, (0, 2, 3), keepdim=True)
            self.reference = (mean, mean_sq, x.shape[0])
        elif self.reference is None:
            raise RuntimeError("VirtualBatchNorm2d: no reference statistics; run the reference batch through the "
                               "model inside nn.reference_pass(model) first")
        else:
            ref_mean, ref_mean_sq, count = self.reference
            own = 1.0 / (count + 1)
            mean = own * F.mean(x, (2, 3), keepdim=True) + (1 - own) * ref_mean
            mean_sq = own * F.mean(x * x, (2, 3), keepdim=True) + (1 - own) * ref_mean_sq
        inv_std = (mean_sq - mean * mean + self.eps) ** -0.5
        return (x - mean) * inv_std * _channel_view(self.weight) + _channel_view(self.bias)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}"


def _virtual_batch_norms(module):
    return [m for m in module.modules() if isinstance(m, VirtualBatchNorm2d)]


@contextlib.contextmanager
def reference_pass(module):
    """Within this block every VirtualBatchNorm2d of `module` records the statistics of what passes through it."""
    layers = _virtual_batch_norms(module)
    for layer in layers:
        layer.recording = True
    try:
        yield
    finally:
        for layer in layers:
            layer.recording = False


def forget_reference(module):
    """Drop the recorded reference statistics (and the graph they hold) of every VirtualBatchNorm2d of `module`."""
    for layer in _virtual_batch_norms(module):
        layer.reference = None
