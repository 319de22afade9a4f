"""The bfloat16 kernels (the *_bf16 ops of kernels/reference.py) against their specification.

Rounding: every implementation's round_to_bfloat16 is bit for bit ml_dtypes' (round to nearest, ties to even).

Products. Both sides round the same operands to the same bfloat16 values (the rounding is exact, tested first), and
a product of two bfloat16 values (8 significant bits each) is exact in float32 (24 bits). So a kernel and the
reference differ only in the order in which they add the same products in float32. For a sum of K terms t_i
computed in float32 in any order (u = 2^-24, float32's unit roundoff), the classical bound is

    |computed − exact| <= γ_K · Σ|t_i|,     γ_K = K·u / (1 − K·u)

so each output element is checked against γ_K times the same sum of |products| (the reference's op on the absolute
values of the rounded operands), with K the longest reduction of the case (+1 for a bias added to the sum). The
bound is loose for long sums (float32 errors grow like √K in practice) but needs no tuning, and it still separates a
kernel that forgets to round: a bfloat16 rounding moves each product by up to 2^-7 of itself, ~2^-8/√K of Σ|t_i|
even after cancellation, far above γ_K on the shapes below (test_forgetting_to_round_is_caught).

Against the exact product of the *unrounded* operands, the bound comes from bfloat16's 8-bit significand: each
operand is off by at most u_bf16 = 2^-8 relative (half the spacing 2^-7 of its 8-bit significand), so each
product by at most 2·2^-8 + 2^-16 relative, and

    |bf16 result − exact| <= (2^-7 + 2^-16 + γ_K) · Σ|t_i|.
"""
import contextlib
import copy
import os
import pathlib
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from fastgan import dispatch
from fastgan.kernels import reference
from kernel_cases import CONV_CASES, run_impl

U32 = 2.0 ** -24  # (every test body runs on each CPU implementation: the `impl` fixture of conftest.py)


def gamma(k):
    return k * U32 / (1 - k * U32)


# --- rounding ---------------------------------------------------------------------------------------------------

def awkward_floats():
    """Ties (both parities), values just off a tie, the largest finite float32 (rounds to inf), infinities, NaN,
    subnormals, signed zeros and random bit patterns."""
    bits = [0x3F808000, 0x3F818000, 0xBF808000, 0x3F808001, 0x3F807FFF, 0x7F7FFFFF, 0x7F7F7FFF, 0x7F800000,
            0xFF800000, 0x7FC00000, 0x7F800001, 0x00000001, 0x00008000, 0x00018000, 0x807FFFFF, 0x00000000,
            0x80000000, 0x3F800000]
    rng = np.random.default_rng(0)
    random = rng.integers(0, 2 ** 32, 5000, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([np.array(bits, np.uint32), random]).view(np.float32)


@pytest.mark.parametrize("shape", [(5018,), (2, 13, 193), ()], ids=str)
def test_round_to_bfloat16_is_ml_dtypes_rounding(impl, shape):
    x = awkward_floats()[:int(np.prod(shape))].reshape(shape)
    assert_ml_dtypes_rounding(run_impl(impl, "round_to_bfloat16", x), x)


def assert_ml_dtypes_rounding(got, x):
    """got is x rounded to bfloat16 as ml_dtypes rounds it, bit for bit (-0.0 too; NaN stays NaN), as float32."""
    with np.errstate(invalid="ignore"):  # (ml_dtypes warns about casting NaN, which it keeps)
        want = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    assert got.dtype == np.float32 and got.shape == x.shape
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_round_to_bfloat16_leaves_its_input_and_empty_arrays(impl):
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    before = x.copy()
    run_impl(impl, "round_to_bfloat16", x)
    np.testing.assert_array_equal(x, before)
    assert run_impl(impl, "round_to_bfloat16", np.zeros((0, 3), np.float32)).shape == (0, 3)


# --- the products, on every path -----------------------------------------------------------------------------------

# The CPU's bfloat16 hardware paths run where the CPU has them, and skip with the reason where it does not. The
# emulated GEMM path, which shares all of the AMX path's code but the instructions, runs everywhere.
HARDWARE = {"amx": "AMX", "avx512-bf16": "AVX-512-BF16"}


def native_cpu(path=""):
    """The native CPU module, after skipping the test where it, or the path `path`, cannot run here."""
    cpu = dispatch.implementation("cpu")
    if cpu is None:
        pytest.skip("fastgan's native CPU kernels (fastgan._C) are not built here")
    if path in HARDWARE and path not in cpu._BF16_PATHS:
        pytest.skip(f"this CPU has no {HARDWARE[path]}")
    return cpu


@pytest.fixture(params=["reference", "cpu", "cpu:float32", "cpu:avx512-bf16", "cpu:avx512-bf16+direct",
                        "cpu:emulated", "cpu:amx"])
def product_impl(request):
    """The implementations of the bfloat16 products: the reference, and the CPU's on each of its paths (cpu: the
    default, FASTGAN_BF16=auto; cpu:<path>: FASTGAN_BF16=<path>; +direct: with FASTGAN_CONV=direct, so that every
    convolution but the plain GEMMs runs on the direct kernels)."""
    name, _, path = request.param.partition(":")
    path, _, conv = path.partition("+")
    cpu = native_cpu(path) if name == "cpu" else None
    with dispatch.use(name), (cpu.use_bf16(path) if path else contextlib.nullcontext()), \
            (cpu.use_conv(conv) if conv else contextlib.nullcontext()):
        yield name


@pytest.fixture(params=["emulated", "avx512-bf16", "amx"])
def gemm_path(request):
    native_cpu(request.param)
    return request.param


def gemm_bound(a, b):
    """γ_K·(|bf16(a)|·|bf16(b)|): how far any order of the float32 sums may be from the reference's."""
    return gamma(a.shape[-1]) * (np.abs(reference.round_to_bfloat16(a)).astype(np.float64) @
                                 np.abs(reference.round_to_bfloat16(b)).astype(np.float64))


@pytest.mark.parametrize("mkn", [(1, 1, 1), (16, 32, 16), (17, 33, 15), (33, 70, 47), (64, 100, 31), (40, 1, 70),
                                 (5, 0, 3), (0, 4, 3), (3, 4, 0)], ids=str)
def test_gemm_bf16(gemm_path, mkn):
    """Every edge of the tiles: sizes below, at and past 16 (rows and columns) and 32 (K), and empty ones."""
    m, k, n = mkn
    rng = np.random.default_rng(m * 10000 + k * 100 + n)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    got = native_cpu().gemm_bf16(a, b, gemm_path)
    check_within(got, reference.matmul_bf16(a, b).astype(np.float64), gemm_bound(a, b), f"gemm_bf16 {gemm_path}")


def layouts(x):
    """x as a C-ordered, a Fortran-ordered and a strided (contiguous in neither dimension) array."""
    strided = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)[:, ::2]
    strided[...] = x
    return {"C": np.ascontiguousarray(x), "F": np.asfortranarray(x), "strided": strided}


@pytest.mark.parametrize("a_layout", ["C", "F", "strided"])
@pytest.mark.parametrize("b_layout", ["C", "F", "strided"])
def test_gemm_bf16_packs_every_layout(gemm_path, a_layout, b_layout):
    """Whole tiles and edge tiles of operands contiguous in rows, in columns or in neither (each packed its way)."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((40, 70)).astype(np.float32), rng.standard_normal((70, 50)).astype(np.float32)
    want = reference.matmul_bf16(a, b).astype(np.float64)
    got = native_cpu().gemm_bf16(layouts(a)[a_layout], layouts(b)[b_layout], gemm_path)
    check_within(got, want, gemm_bound(a, b), f"gemm_bf16 {gemm_path}, a {a_layout}, b {b_layout}")


def test_gemm_bf16_strides_stacks_and_out(gemm_path):
    """Transposed and strided views are read in place; stacks follow matmul's broadcasting; out is written."""
    cpu, rng = native_cpu(), np.random.default_rng(2)
    big = rng.standard_normal((70, 90)).astype(np.float32)
    a, b = big[::2, 1::3], big[:60:2, :41].T          # (35, 30) with strides (180, 3); (41, 30).T
    b = np.ascontiguousarray(b).T                     # (30, 41), Fortran order
    check_within(cpu.gemm_bf16(a, b, gemm_path), reference.matmul_bf16(a, b).astype(np.float64), gemm_bound(a, b),
                 "strided")
    stack = rng.standard_normal((3, 30, 7)).astype(np.float32)
    out = np.empty((3, 35, 7), np.float32)
    assert cpu.gemm_bf16(a, stack, gemm_path, out) is out
    check_within(out, reference.matmul_bf16(a, stack).astype(np.float64), gemm_bound(a, stack), "stack")


def test_gemm_bf16_does_not_depend_on_threads(gemm_path):
    cpu, rng = native_cpu(), np.random.default_rng(3)
    a, b = rng.standard_normal((100, 300)).astype(np.float32), rng.standard_normal((300, 90)).astype(np.float32)
    before = cpu.get_num_threads()
    try:
        cpu.set_num_threads(1)
        one = cpu.gemm_bf16(a, b, gemm_path)
        cpu.set_num_threads(2)
        np.testing.assert_array_equal(cpu.gemm_bf16(a, b, gemm_path), one)
    finally:
        cpu.set_num_threads(before)


def test_direct_bf16_kernels_do_not_depend_on_threads():
    """The direct convolutions and weight gradients on bfloat16 pairs, every gradient, bit for bit on 1, 2 and 3
    threads: an odd channel count (a channel beside a zero), an odd batch over several chunks of image pairs."""
    cpu, rng = native_cpu("avx512-bf16"), np.random.default_rng(4)
    x = rng.standard_normal((19, 23, 9, 9)).astype(np.float32)
    w, wt = (0.1 * rng.standard_normal(shape).astype(np.float32) for shape in ((40, 23, 4, 4), (23, 40, 4, 4)))

    def run():
        with cpu.use_bf16("avx512-bf16"), cpu.use_conv("direct"):
            y = cpu.conv2d_forward_bf16(x, w, None, (2, 2), (1, 1))
            yt = cpu.conv_transpose2d_forward_bf16(x, wt, None, (2, 2), (1, 1), (1, 1))
            return [y, yt, *cpu.conv2d_backward_bf16(np.cos(y), x, w, (2, 2), (1, 1)),
                    *cpu.conv_transpose2d_backward_bf16(np.cos(yt), x, wt, (2, 2), (1, 1), (1, 1))]
    before = cpu.get_num_threads()
    try:
        cpu.set_num_threads(1)
        one = run()
        for n in (2, 3):
            cpu.set_num_threads(n)
            for i, (a, b) in enumerate(zip(one, run(), strict=True)):
                np.testing.assert_array_equal(a, b, err_msg=f"output {i} with {n} threads")
    finally:
        cpu.set_num_threads(before)


def test_gemm_bf16_errors():
    cpu = native_cpu()
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"a is \(2, 3\) and b is \(4, 5\): their inner sizes differ"):
        cpu.gemm_bf16(a, np.ones((4, 5), np.float32), "emulated")
    with pytest.raises(TypeError, match="b must be float32, got float64"):
        cpu.gemm_bf16(a, np.ones((3, 5)), "emulated")
    with pytest.raises(ValueError, match="unknown path 'tiles'"):
        cpu.gemm_bf16(a, np.ones((3, 5), np.float32), "tiles")
    with pytest.raises(ValueError, match="out has the wrong shape"):
        cpu.gemm_bf16(a, np.ones((3, 5), np.float32), "emulated", np.empty((2, 4), np.float32))


def test_bf16_choice_errors():
    cpu = native_cpu()
    with pytest.raises(ValueError, match=r"^use_bf16='tiles': expected one of auto, float32, amx, avx512-bf16, "), \
            cpu.use_bf16("tiles"):
        pass
    for path, name in HARDWARE.items():
        if path not in cpu._BF16_PATHS:
            with pytest.raises(RuntimeError, match=rf"^use_bf16={path}: this CPU has no {name}; use auto"), \
                    cpu.use_bf16(path):
                pass
    assert cpu.bf16_choice() == cpu._bf16._stack[0]


def test_auto_is_avx512_bf16_where_the_cpu_has_it():
    cpu = native_cpu()
    with cpu.use_bf16("auto"):
        want = "avx512-bf16" if "avx512-bf16" in cpu._BF16_PATHS else None
        assert cpu._bf16_path() == want
        assert ("VDPBF16PS" in cpu.bfloat16_path()) == (want is not None)
    with cpu.use_bf16("float32"):
        assert cpu._bf16_path() is None


def test_which_kernel_each_path_runs(monkeypatch):
    """On "avx512-bf16" a convolution whose channels fill vectors runs on the direct kernels with bf16=True, a thin
    one on BLAS (never the bfloat16 GEMM); on "emulated" both run on the GEMM, the direct kernels never."""
    cpu = native_cpu()
    monkeypatch.setattr(cpu, "_DIRECT", True)   # the decisions only: the kernels are replaced by records
    monkeypatch.setattr(cpu, "_BF16_PATHS", ["emulated", "avx512-bf16"])
    called = []
    for name in ("direct_conv2d", "direct_conv_transpose2d", "direct_conv2d_weight_grad"):
        monkeypatch.setattr(cpu._C, name, lambda *args, name=name, bf16: called.append((name, bf16)))
    monkeypatch.setattr(cpu, "gemm_bf16", lambda a, b, path, out=None: called.append(("gemm_bf16", path)) or
                        np.matmul(a, b, out=out))
    rng = np.random.default_rng(0)
    wide, thin = rng.standard_normal((2, 32, 8, 8), np.float32), rng.standard_normal((2, 1, 8, 8), np.float32)
    w_wide, w_thin = rng.standard_normal((64, 32, 4, 4), np.float32), rng.standard_normal((64, 1, 4, 4), np.float32)
    for path, want in [("avx512-bf16", [("direct_conv2d", True)]), ("emulated", [("gemm_bf16", "emulated")] * 2)]:
        called.clear()
        with cpu.use_bf16(path), cpu.use_conv("auto"):
            cpu.conv2d_forward_bf16(wide, w_wide, None, (1, 1), (2, 2))
            cpu.conv2d_forward_bf16(thin, w_thin, None, (1, 1), (2, 2))
        assert called == want, path


@pytest.mark.parametrize("setting", ["emulated", "bogus"])
def test_fastgan_bf16_from_the_environment(setting):
    """`FASTGAN_BF16=... python -m fastgan.kernels` shows the path, or stops with the one-line error."""
    native_cpu()
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, FASTGAN_BF16=setting,
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "fastgan.kernels"], capture_output=True, text=True, env=env,
                          timeout=120)
    if setting == "bogus":
        assert done.returncode != 0 and "FASTGAN_BF16='bogus': expected one of auto" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert "FASTGAN_BF16=emulated: im2col + the emulated bfloat16 GEMM" in done.stdout


# --- the convolutions -------------------------------------------------------------------------------------------

def reduction_length(case):
    """The longest sum any output of the case's forward or backward is: over C·kh·kw taps (conv forward), O·kh·kw
    (its input gradient, at most), N·Ho·Wo pixels (weight and bias gradients), and the same with the roles of the
    input and output swapped for a transposed convolution; +1 for the bias."""
    x, weight, _, dy = case.inputs(np.float32)
    taps = int(np.prod(case.k))
    return max(x.shape[1] * taps, dy.shape[1] * taps, dy.shape[0] * dy.shape[2] * dy.shape[3],
               x.shape[0] * x.shape[2] * x.shape[3]) + 1


def magnitudes(fn_name, args, operands):
    """The fp32 op applied, in float64, to |rounded operands| (and |bias|): per output, Σ|t_i| of its sum."""
    absolute = [None if a is None else np.abs(reference.round_to_bfloat16(a)).astype(np.float64)
                for a in args[:operands]]
    rest = [np.abs(a).astype(np.float64) if isinstance(a, np.ndarray) else a for a in args[operands:]]
    return getattr(reference, fn_name)(*absolute, *rest)


def check_within(got, want, bound, what):
    """Every element of got within bound of want (None where the op returns None)."""
    if want is None:
        assert got is None, f"{what}: expected no output"
        return
    if isinstance(want, tuple):
        for i, (g, w, b) in enumerate(zip(got, want, bound, strict=True)):
            check_within(g, w, b, f"{what}[{i}]")
        return
    assert got.dtype == np.float32 and got.shape == want.shape, f"{what}: {got.dtype}{got.shape} vs {want.shape}"
    excess = np.abs(got.astype(np.float64) - want) - bound
    assert not (excess > 0).any(), (f"{what}: {int((excess > 0).sum())} of {got.size} elements beyond the bound, "
                                    f"worst by {excess.max():.3g}")


def conv_calls(case):
    """(kernel name, args, number of operands the bf16 op rounds) for the case's forward and backward."""
    x, weight, bias, dy = case.inputs(np.float32)
    return [(case.fn + "_forward", case.forward_args(x, weight, bias), 2),
            (case.fn + "_backward", case.backward_args(dy, x, weight), 3)]


def check_bf16_conv(impl, case, kernel=None):
    """impl's bf16 kernel (or `kernel`, a stand-in) against the bf16 reference, within γ_K·Σ|t_i| per element."""
    k = reduction_length(case)
    for fn, args, operands in conv_calls(case):
        want = getattr(reference, fn + "_bf16")(*copy.deepcopy(args))
        got = (kernel(fn, *copy.deepcopy(args)) if kernel else
               run_impl(impl, fn + "_bf16", *copy.deepcopy(args)))
        bound = magnitudes(fn, args, operands)
        check_within(got, want, scaled(bound, gamma(k)), f"{impl}.{fn}_bf16 ({case.name})")


def scaled(bound, factor):
    """bound (an array, None or a tuple of them) times factor."""
    if bound is None:
        return None
    if isinstance(bound, tuple):
        return tuple(scaled(b, factor) for b in bound)
    return bound * factor


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.name)
def test_bf16_conv_against_the_reference(product_impl, case):
    check_bf16_conv(product_impl, case)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.name)
def test_bf16_conv_against_the_exact_product(product_impl, case):
    """Against float64 products of the unrounded operands: within bfloat16's bound (the module docstring)."""
    factor = 2.0 ** -7 + 2.0 ** -16 + gamma(reduction_length(case))
    for fn, args, operands in conv_calls(case):
        exact = getattr(reference, fn)(*[None if a is None else a.astype(np.float64) if isinstance(a, np.ndarray)
                                         else a for a in args])
        got = run_impl(product_impl, fn + "_bf16", *copy.deepcopy(args))
        check_within(got, exact, scaled(magnitudes(fn, args, operands), factor), f"{product_impl}.{fn}_bf16")


@pytest.mark.parametrize("mask", [(False, True, True), (True, False, False), (False, False, False)], ids=str)
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[4], CONV_CASES[-1]], ids=lambda c: c.name)
def test_bf16_conv_output_mask(product_impl, case, mask):
    x, weight, _, dy = case.inputs(np.float32)
    fn = case.fn + "_backward_bf16"
    full = getattr(reference, fn)(*case.backward_args(dy, x, weight))
    got = run_impl(product_impl, fn, *case.backward_args(dy, x, weight), mask)
    for g, want, keep in zip(got, full, mask):
        assert (g is None) == (not keep)
        if keep:
            np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max(initial=0))))


def test_forgetting_to_round_is_caught():
    """The float32 op (operands not rounded) fails the bf16 check on an ordinary case: the tolerance is tight
    enough to see whether the kernel rounded."""
    case = next(c for c in CONV_CASES if c.name.startswith("conv 7x5 k5"))
    with pytest.raises(AssertionError, match="elements beyond the bound"):
        check_bf16_conv("float32", case, kernel=lambda fn, *args: getattr(reference, fn)(*args))


def test_bf16_conv_does_not_change_its_inputs(product_impl):
    case = CONV_CASES[4]
    for fn, args, _ in conv_calls(case):
        before = copy.deepcopy(args)
        run_impl(product_impl, fn + "_bf16", *args)
        for a, b in zip(args, before):
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b)


# --- matmul, and the ops that round their output -------------------------------------------------------------------

@pytest.mark.parametrize("shapes", [((5, 7), (7, 3)), ((2, 4, 33), (33, 6)), ((1, 1), (1, 1)), ((0, 4), (4, 2))],
                         ids=str)
def test_matmul_bf16(product_impl, shapes):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    want = reference.matmul_bf16(a, b)
    got = run_impl(product_impl, "matmul_bf16", a, b)
    bound = gamma(shapes[0][-1]) * (np.abs(reference.round_to_bfloat16(a)).astype(np.float64) @
                                    np.abs(reference.round_to_bfloat16(b)))
    check_within(got, want.astype(np.float64), bound, f"{product_impl}.matmul_bf16")


def is_bfloat16(a):
    return np.array_equal(a, reference.round_to_bfloat16(a), equal_nan=True)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
def test_batch_norm_act_forward_bf16_rounds_only_its_output(impl, training, activation):
    """y is the float32 kernel's y rounded to bfloat16; the statistics (and running ones) are the float32 ones."""
    rng = np.random.default_rng(2)
    x = (3 + 2 * rng.standard_normal((3, 5, 4, 7))).astype(np.float32)
    weight, bias = (1 + 0.5 * rng.standard_normal(5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    running = [rng.standard_normal(5).astype(np.float32), (0.5 + rng.random(5)).astype(np.float32)]
    args = (x, weight, bias, *running, training, 0.1, 1e-5, activation, 0.2)
    fp32_args, bf16_args = copy.deepcopy(args), copy.deepcopy(args)
    y32, mean32, rstd32 = reference.batch_norm_act_forward(*fp32_args)
    y, mean, rstd = run_impl(impl, "batch_norm_act_forward_bf16", *bf16_args)
    assert is_bfloat16(y)
    np.testing.assert_allclose(y, reference.round_to_bfloat16(y32), rtol=2.0 ** -8, atol=1e-6)
    np.testing.assert_allclose(mean, mean32, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rstd, rstd32, rtol=1e-5)
    for after, want in zip(bf16_args[3:5], fp32_args[3:5]):  # the running statistics, updated in float32
        np.testing.assert_allclose(after, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
def test_batch_norm_act_backward_bf16_rounds_only_dx(impl, training, activation):
    rng = np.random.default_rng(5)
    x, dy = (3 + 2 * rng.standard_normal((3, 5, 4, 7))).astype(np.float32), rng.standard_normal((3, 5, 4, 7))
    weight, bias = (1 + 0.5 * rng.standard_normal(5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    _, mean, rstd = reference.batch_norm_act_forward(x, weight, bias, None, None, True, 0.1, 1e-5, activation, 0.2)
    args = (dy.astype(np.float32), x, weight, bias, mean, rstd, training, activation, 0.2)
    dx32, dweight32, dbias32 = reference.batch_norm_act_backward(*args)
    dx, dweight, dbias = run_impl(impl, "batch_norm_act_backward_bf16", *args)
    assert is_bfloat16(dx)
    np.testing.assert_allclose(dx, reference.round_to_bfloat16(dx32), rtol=2.0 ** -7, atol=1e-6)
    np.testing.assert_allclose(dweight, dweight32, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dbias, dbias32, rtol=1e-5, atol=1e-5)


def test_leaky_relu_bf16_rounds_its_output_and_its_input_gradient(impl):
    x, dy = np.random.default_rng(3).standard_normal((2, 4, 3, 5, 5)).astype(np.float32)
    y = run_impl(impl, "leaky_relu_forward_bf16", x, 0.2)
    np.testing.assert_array_equal(y, reference.round_to_bfloat16(reference.leaky_relu_forward(x, 0.2)))
    dx = run_impl(impl, "leaky_relu_backward_bf16", dy, x, 0.2)
    np.testing.assert_array_equal(dx, reference.round_to_bfloat16(reference.leaky_relu_backward(dy, x, 0.2)))


def test_the_cpu_path_rounds_an_operand_once():
    """An array the cpu module rounded (or a batch norm / LeakyReLU wrote rounded) is not rounded again: the same
    array comes back, so the convolution reads it directly; any other array is rounded into a new one."""
    cpu = pytest.importorskip("fastgan.kernels.cpu", reason="the native CPU kernels are not built")
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 5)).astype(np.float32)
    once = cpu.round_to_bfloat16(x)
    assert once is not x and cpu.round_to_bfloat16(once) is once
    leaky = cpu.leaky_relu_forward_bf16(x, 0.2)
    assert cpu.round_to_bfloat16(leaky) is leaky
    copy_of_once = once.copy()           # the same values, but not known to be rounded: rounded again (to itself)
    again = cpu.round_to_bfloat16(copy_of_once)
    assert again is not copy_of_once and np.array_equal(again, once)


def test_gemm_bf16_peak(gemm_path):
    """The peak microkernel runs on every path it is asked for and counts what it did (a positive rate)."""
    cpu = native_cpu()
    flops = cpu._C.gemm_bf16_peak(gemm_path, 4)
    assert np.isfinite(flops) and flops > 0
    with pytest.raises(ValueError, match="gemm_bf16_peak: unknown path 'tiles'"):
        cpu._C.gemm_bf16_peak("tiles", 4)
