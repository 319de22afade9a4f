"""Kernel test cases and the one adapter that runs any kernel implementation on NumPy inputs.

    run_impl(impl, fn_name, *numpy_args)     converts the arrays to the implementation's carrier (NumPy for
                                             "reference"/"cpu"; CuPy for GPU implementations on a GPU; torch CPU
                                             tensors for "triton" under TRITON_INTERPRET=1), calls the kernel,
                                             copies in-place updates back into numpy_args, returns NumPy outputs
    check_against_reference(impl, fn_name, args, dtype)
                                             runs reference.py and `impl` on copies of args, compares the outputs
                                             and every array argument afterwards (in-place state such as running
                                             statistics and optimiser state, and inputs that must stay untouched)

The case tables (CONV_CASES, BN_CASES, BCE_CASES, ADAM_CASES, SGD_CASES) are shared by every implementation's
tests; an implementation joins by adding its name to a test module's parametrisation.
"""
import copy
from dataclasses import dataclass

import numpy as np

from fastgan import backend, dispatch
from fastgan.kernels import reference

# float32: kernels accumulate in fp32 in a different order than NumPy/BLAS; float64: accumulation-order noise only.
# atol is relative to the largest magnitude of the expected array (sums of many terms cancel).
TOLERANCE = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


# --- carriers -----------------------------------------------------------------------------------------------------

def carrier(impl):
    """(to, back, kind) for implementation `impl`: numpy -> its array type, that type -> numpy, the type's name."""
    if dispatch.DEVICE_OF[impl] == "cpu":
        return (lambda a: a), (lambda a: a), "numpy"
    if backend.cuda_available():
        import cupy
        return cupy.asarray, cupy.asnumpy, "cupy"
    import torch  # Triton's CPU interpreter takes torch tensors (tests only: fastgan never imports torch)
    return (lambda a: torch.from_numpy(a.copy())), (lambda t: t.numpy().copy()), "torch"


def run_impl(impl, fn_name, *args):
    """Run kernel `fn_name` of implementation `impl` on NumPy args; outputs come back as NumPy, and in-place
    updates of array arguments are copied back into them. Each output must be of the carrier's type (0-d for
    scalar losses), never a Python float or a NumPy array from a GPU kernel."""
    fn = getattr(dispatch.implementation(impl), fn_name)
    to, back, kind = carrier(impl)
    carried = [to(a) if isinstance(a, np.ndarray) else a for a in args]
    out = fn(*carried)
    for a, c in zip(args, carried):
        if isinstance(a, np.ndarray):
            a[...] = back(c)

    def convert(o):
        if o is None:
            return None
        if isinstance(o, tuple):
            return tuple(convert(x) for x in o)
        assert type(o).__module__.split(".")[0] == kind, f"{fn_name} returned a {type(o)}, expected a {kind} array"
        return np.asarray(back(o))
    return convert(out)


def assert_close(actual, expected, dtype, what, tol=None):
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != reference {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != reference {expected.dtype}"
    tol = tol or TOLERANCE[np.dtype(dtype).type]
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


def compare_outputs(actual, expected, dtype, what, tol=None):
    if expected is None:
        assert actual is None, f"{what}: expected no output"
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), f"{what}: expected {len(expected)} outputs"
        for i, (a, e) in enumerate(zip(actual, expected)):
            compare_outputs(a, e, dtype, f"{what}[{i}]", tol)
    else:
        assert_close(actual, expected, dtype, what, tol)


def check_against_reference(impl, fn_name, args, dtype, tol=None):
    """reference.fn_name and impl.fn_name on copies of args: same outputs, same array arguments afterwards.
    tol: dict(rtol=, atol=) instead of TOLERANCE[dtype] (e.g. for TF32 matrix products)."""
    ref_args, impl_args = copy.deepcopy(args), copy.deepcopy(args)
    expected = getattr(reference, fn_name)(*ref_args)
    actual = run_impl(impl, fn_name, *impl_args)
    compare_outputs(actual, expected, dtype, f"{impl}.{fn_name}", tol)
    for i, (a, e) in enumerate(zip(impl_args, ref_args)):
        if isinstance(e, np.ndarray):
            assert_close(a, e, dtype, f"{impl}.{fn_name}: argument {i} after the call", tol)
    return actual


# --- convolutions -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conv:
    """A conv2d (transposed=False, weight (cout, cin, k)) or conv_transpose2d (weight (cin, cout, k)) case."""
    name: str
    transposed: bool
    n: int
    cin: int
    hw: tuple
    cout: int
    k: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    output_padding: tuple = (0, 0)
    bias: bool = True
    dcgan: bool = False   # a DCGAN layer (at batch 2): float32 only, to keep the interpreter quick

    def inputs(self, dtype, seed=0):
        """(x, weight, bias or None, dy) with dy shaped like the reference output."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.n, self.cin) + self.hw).astype(dtype)
        w_shape = (self.cin, self.cout) + self.k if self.transposed else (self.cout, self.cin) + self.k
        weight = (rng.standard_normal(w_shape) / np.sqrt(self.cin * np.prod(self.k))).astype(dtype)
        bias = rng.standard_normal(self.cout).astype(dtype) if self.bias else None
        y = getattr(reference, self.fn + "_forward")(*self.forward_args(x, weight, bias))
        return x, weight, bias, rng.standard_normal(y.shape).astype(dtype)

    @property
    def fn(self):
        return "conv_transpose2d" if self.transposed else "conv2d"

    def forward_args(self, x, weight, bias):
        extra = (self.output_padding,) if self.transposed else ()
        return (x, weight, bias, self.stride, self.padding) + extra

    def backward_args(self, dy, x, weight):
        extra = (self.output_padding,) if self.transposed else ()
        return (dy, x, weight, self.stride, self.padding) + extra


def dcgan_layers(n, g_channels=(256, 128), label=""):
    """The DCGAN's six convolutions (models/dcgan.py) at batch n, the generator's channels g_channels."""
    g1, g2 = g_channels
    return [
        Conv(f"G1 convT 100->{g1} k7 1->7{label}", True, n, 100, (1, 1), g1, (7, 7), dcgan=True, bias=False),
        Conv(f"G2 convT {g1}->{g2} k4 s2 7->14{label}", True, n, g1, (7, 7), g2, (4, 4), (2, 2), (1, 1), dcgan=True,
             bias=False),
        Conv(f"G3 convT {g2}->1 k4 s2 14->28{label}", True, n, g2, (14, 14), 1, (4, 4), (2, 2), (1, 1), dcgan=True),
        Conv(f"D1 conv 1->64 k4 s2 28->14{label}", False, n, 1, (28, 28), 64, (4, 4), (2, 2), (1, 1), dcgan=True),
        Conv(f"D2 conv 64->128 k4 s2 14->7{label}", False, n, 64, (14, 14), 128, (4, 4), (2, 2), (1, 1), dcgan=True,
             bias=False),
        Conv(f"D3 conv 128->1 k7 7->1{label}", False, n, 128, (7, 7), 1, (7, 7), dcgan=True),
    ]


CONV_CASES = [
    # the DCGAN generator and discriminator layers at batch 2; the generator's channels are halved (256 -> 128,
    # 128 -> 64), which keeps several channel tiles but makes the interpreter 4x quicker on the largest layers
    *dcgan_layers(2, g_channels=(128, 64)),
    # odd shapes: non-square, strides 2-3, padding 2, output_padding, kernels 1-5, batch 1, one channel
    Conv("conv 5x7 s3 p2 k3x2 c1", False, 1, 1, (5, 7), 3, (3, 2), (3, 2), (2, 1)),
    Conv("conv 7x5 k5 s(1,3) p(2,1)", False, 2, 3, (7, 5), 5, (5, 5), (1, 3), (2, 1), bias=False),
    Conv("conv k1", False, 3, 2, (5, 7), 1, (1, 1)),
    Conv("conv k1 s2 (rows of dx get nothing)", False, 2, 3, (5, 7), 4, (1, 1), (2, 2)),
    Conv("conv k2 s3 p1 (k < s)", False, 1, 2, (8, 7), 3, (2, 2), (3, 3), (1, 1)),
    Conv("convT 5x7 k3 s3 p2 op1 c1", True, 1, 1, (5, 7), 2, (3, 3), (3, 3), (2, 2), (1, 1)),
    Conv("convT k(2,5) s(2,3) p(0,2) op(1,0)", True, 2, 3, (5, 7), 1, (2, 5), (2, 3), (0, 2), (1, 0), bias=False),
    Conv("convT k1", True, 3, 2, (5, 7), 4, (1, 1)),
    Conv("convT k2 s3 op2 (phases without taps)", True, 2, 3, (4, 3), 2, (2, 2), (3, 3), (0, 0), (2, 2)),
    Conv("convT 1x1 input k4 s2 p1", True, 1, 5, (1, 1), 3, (4, 4), (2, 2), (1, 1)),
    # an empty batch: empty y and dx, zero dweight and dbias
    Conv("conv empty batch", False, 0, 3, (7, 7), 4, (3, 3), (2, 2), (1, 1)),
    Conv("conv empty batch, whole-image kernel", False, 0, 6, (7, 7), 2, (7, 7)),
    Conv("convT empty batch", True, 0, 3, (5, 4), 2, (4, 4), (2, 2), (1, 1), (1, 0)),
    Conv("convT empty batch, 1x1 input", True, 0, 5, (1, 1), 4, (7, 7)),
]


# --- batch norm + activation ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchNorm:
    shape: tuple
    training: bool
    activation: object
    affine: bool = True
    running: bool = True

    def inputs(self, dtype, seed=0):
        """(x, weight, bias, running_mean, running_var, dy); x has |mean| > std, to test the two-pass statistics."""
        rng = np.random.default_rng(seed)
        c = self.shape[1]
        x = (3 + 2 * rng.standard_normal(self.shape)).astype(dtype)
        weight = (1 + 0.5 * rng.standard_normal(c)).astype(dtype) if self.affine else None
        bias = (0.5 * rng.standard_normal(c)).astype(dtype) if self.affine else None
        running_mean = rng.standard_normal(c).astype(dtype) if self.running else None
        running_var = (0.5 + rng.random(c)).astype(dtype) if self.running else None
        return x, weight, bias, running_mean, running_var, rng.standard_normal(self.shape).astype(dtype)


BN_CASES = [BatchNorm(shape, training, activation)
            for shape in ((6, 5), (3, 4, 5, 7)) for training in (True, False)
            for activation in (None, "relu", "leaky_relu")] + [
    BatchNorm((4, 3, 2, 3), True, "leaky_relu", affine=False, running=False),
    BatchNorm((2, 3), False, "relu", affine=False),
    BatchNorm((2, 70, 41, 1), True, "relu"),                                   # > one BLOCK per channel
    BatchNorm((5, 2, 15, 16), True, "leaky_relu"),   # 1200 values per channel: 1024-wide BLOCKs / CUDA blocks
    # empty batches: an empty y; in training no statistics (NaN mean and rstd) and the running ones unchanged
    BatchNorm((0, 4, 5, 5), True, "leaky_relu"), BatchNorm((0, 4, 5, 5), False, "relu"), BatchNorm((0, 3), True, None),
    BatchNorm((3, 2, 0, 4), True, "relu"),
]


# --- at the batch sizes a GPU trains with (tests/test_gpu.py: too slow for the interpreter and the emulator) ---------

GPU_BATCHES = (64, 128)
GPU_CONV_CASES = [case for n in GPU_BATCHES for case in dcgan_layers(n, label=f" batch {n}")]
# the DCGAN's batch norms (G after G1 and G2, D after D2): thousands of values per channel, so the CUDA kernels
# reduce with 1024-thread blocks and the Triton kernels loop in 1024-wide BLOCKs
GPU_BN_CASES = [BatchNorm(shape, training, activation) for n in GPU_BATCHES for shape, activation in
                (((n, 256, 7, 7), "relu"), ((n, 128, 14, 14), "relu"), ((n, 128, 7, 7), "leaky_relu"))
                for training in (True, False)]


# --- the loss ---------------------------------------------------------------------------------------------------------

def bce_inputs(n, dtype, seed=0):
    """Logits with the extremes (±100, ±1000, 0) and ordinary values; soft and hard targets."""
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal(n)
    logits[:10] = [100, -100, 1000, -1000, 0, 100, -100, 1000, -1000, 30][:n]
    target = rng.random(n)
    target[:10] = [1, 0, 0, 1, 0.5, 0.9, 0.1, 1, 0, 0.9][:n]
    target[10:20] = 0.9
    return logits.astype(dtype), target.astype(dtype)


BCE_CASES = [(n, reduction) for n in (0, 37, 2500) for reduction in ("mean", "sum", "none")]  # 0: NaN mean, 0 sum


# --- optimisers -------------------------------------------------------------------------------------------------------

ADAM_CASES = [dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
              dict(lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-8, weight_decay=0.01)]
SGD_CASES = [dict(momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False),
             dict(momentum=0.9, weight_decay=0.01, dampening=0.0, nesterov=False),
             dict(momentum=0.9, weight_decay=0.0, dampening=0.1, nesterov=False),
             dict(momentum=0.9, weight_decay=0.01, dampening=0.0, nesterov=True)]


def optim_inputs(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(3)]   # param and two gradients
