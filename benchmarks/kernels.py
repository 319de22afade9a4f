"""Every kernel at the 28x28 DCGAN's shapes: each fastgan implementation beside its PyTorch equivalent, one process.

    python benchmarks/kernels.py                          # all kernels, batch 64 and 128, 2 threads
    python benchmarks/kernels.py --model dcgan64          # at the shapes of the DCGAN tutorial's 64×64 RGB model
    python benchmarks/kernels.py --kernel batch_norm_act_forward --batch-size 128 --repeats 50
    python benchmarks/kernels.py --precision bf16         # the convolutions' *_bf16 kernels beside torch's bf16
    FASTGAN_BF16=amx python benchmarks/kernels.py --precision bf16     # ... on the AMX GEMM (csrc/cpu/gemm_bf16.cpp)
    FASTGAN_BF16=float32 python benchmarks/kernels.py --precision bf16 # ... as float32 kernels on rounded operands
    python benchmarks/kernels.py --model dcgan64 --conv-choices direct,im2col   # where the direct kernels win

For every case, each available implementation (reference, cpu, ...) is first checked against the reference on the
same inputs; then all of them and torch are timed, in blocks of calls that take turns (so that a busy machine
slows them alike), after a warm-up. Prints the median time, the throughput (GFLOP/s for convolutions, GB/s of
compulsory traffic for the memory-bound kernels) and the speed relative to torch (>1: faster than torch).

--precision bf16 times the convolutions' bfloat16 kernels (fastgan's *_bf16: bfloat16 operands, float32 sums and
float32 results, on the path FASTGAN_BF16 chooses) beside torch's convolutions on bfloat16 tensors (bfloat16
operands, float32 sums inside oneDNN, bfloat16 results: what torch.autocast runs). The header gives the
arithmetic peak of fastgan's bfloat16 GEMM path, measured by a microkernel (tile products on tiles held in place).
"""
import argparse
import os
import statistics
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, nargs="+", default=[64, 128])
    p.add_argument("--kernel", action="append", help="only this kernel (repeatable); default: all")
    p.add_argument("--threads", type=int, default=2, help="threads for every engine (OpenMP, BLAS, torch)")
    p.add_argument("--repeats", type=int, default=21, help="timed calls per implementation and case")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--model", default="dcgan", choices=["dcgan", "dcgan64"], help="whose layer shapes to run")
    p.add_argument("--conv-choices", help="comma-separated FASTGAN_CONV values (auto, im2col, direct): the cpu "
                   "convolutions once under each, side by side (direct needs AVX-512)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: the convolutions' bfloat16 kernels against torch's bfloat16 convolutions")
    args = p.parse_args()
    if args.precision == "bf16":
        if args.dtype != "float32":
            p.error("--precision bf16 takes float32 inputs (--dtype float32)")
        wrong = [k for k in args.kernel or [] if not k.startswith("conv")]
        if wrong:
            p.error(f"--precision bf16 times the convolutions only, not {', '.join(wrong)}")
    return args


ARGS = parse()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)  # before numpy, fastgan._C and torch start their thread pools
# torch brings its own libgomp.so.1, and fastgan._C then shares it (same soname), so fastgan.kernels.cpu cannot give
# it the passive wait policy it normally uses. Left spinning (libgomp's default), our OpenMP threads would fight
# OpenBLAS's threads for the cores in every GEMM of a convolution. A bounded spin serves both engines: it does not
# measurably slow torch, and the threads sleep soon after a kernel ends.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fastgan import dispatch  # noqa: E402
from validation import mismatch  # noqa: E402

TF = torch.nn.functional
DTYPE = np.dtype(ARGS.dtype)
TORCH_DTYPE = torch.float32 if DTYPE == np.float32 else torch.float64
BF16 = ARGS.precision == "bf16"


# --- cases: (label, args for fastgan's kernel, torch callable, work) ------------------------------------------------
# work = ("flop", n) or ("byte", n): what the throughput column counts.

def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(DTYPE)


def _t(a):
    """The torch twin of a NumPy input: the same values, in bfloat16 under --precision bf16."""
    return None if a is None else torch.from_numpy(a).to(torch.bfloat16) if BF16 else torch.from_numpy(a)


# (kind, C_in, C_out, k, stride, padding, input H=W): G's three transposed convs, then D's three convs
DCGAN_CONVS = [("convT", 100, 256, 7, 1, 0, 1), ("convT", 256, 128, 4, 2, 1, 7), ("convT", 128, 1, 4, 2, 1, 14),
               ("conv", 1, 64, 4, 2, 1, 28), ("conv", 64, 128, 4, 2, 1, 14), ("conv", 128, 1, 7, 1, 0, 7)]
# the 64×64 model (ngf = ndf = 64, nc = 3): G's five transposed convs, then D's five convs
DCGAN64_CONVS = [("convT", 100, 512, 4, 1, 0, 1), ("convT", 512, 256, 4, 2, 1, 4), ("convT", 256, 128, 4, 2, 1, 8),
                 ("convT", 128, 64, 4, 2, 1, 16), ("convT", 64, 3, 4, 2, 1, 32),
                 ("conv", 3, 64, 4, 2, 1, 64), ("conv", 64, 128, 4, 2, 1, 32), ("conv", 128, 256, 4, 2, 1, 16),
                 ("conv", 256, 512, 4, 2, 1, 8), ("conv", 512, 1, 4, 1, 0, 4)]


def conv_cases(n, transposed, backward):
    rng = np.random.default_rng(0)
    for kind, cin, cout, k, s, p, hw in SHAPES["convs"]:
        if (kind == "convT") != transposed:
            continue
        x = _rand(rng, (n, cin, hw, hw))
        w = _rand(rng, (cin, cout, k, k) if transposed else (cout, cin, k, k), 0.05)
        tx, tw = _t(x), _t(w)
        if transposed:
            y_hw = (hw - 1) * s - 2 * p + k
            macs = n * cin * hw * hw * cout * k * k
        else:
            y_hw = (hw + 2 * p - k) // s + 1
            macs = n * cout * y_hw * y_hw * cin * k * k
        label = f"N={n} {kind} {cin}->{cout} k{k}s{s}p{p} {hw}x{hw}->{y_hw}x{y_hw}"
        geometry = ((s, s), (p, p), (0, 0)) if transposed else ((s, s), (p, p))
        if not backward:
            fn = TF.conv_transpose2d if transposed else TF.conv2d
            yield label, (x, w, None) + geometry, (lambda fn=fn, tx=tx, tw=tw, s=s, p=p: fn(tx, tw, None, s, p)), \
                ("flop", 2 * macs)
        else:
            dy = _rand(rng, (n, cout, y_hw, y_hw))
            tdy = _t(dy)

            def torch_bwd(tdy=tdy, tx=tx, tw=tw, s=s, p=p, cout=cout):
                return torch.ops.aten.convolution_backward(tdy, tx, tw, [cout], [s, s], [p, p], [1, 1], transposed,
                                                           [0, 0], 1, [True, True, True])
            yield label, (dy, x, w) + geometry, torch_bwd, ("flop", 4 * macs)


# the DCGAN's three batch norms: G after its first and second transposed convs (ReLU), D after its second conv (leaky)
DCGAN_BNS = [((256, 7, 7), "relu"), ((128, 14, 14), "relu"), ((128, 7, 7), "leaky_relu")]
DCGAN64_BNS = [((512, 4, 4), "relu"), ((256, 8, 8), "relu"), ((128, 16, 16), "relu"), ((64, 32, 32), "relu"),
               ((128, 16, 16), "leaky_relu"), ((256, 8, 8), "leaky_relu"), ((512, 4, 4), "leaky_relu")]


def _torch_act(y, activation):
    return torch.relu_(y) if activation == "relu" else TF.leaky_relu_(y, 0.2)


def batch_norm_cases(n, backward):
    rng = np.random.default_rng(1)
    for chw, act in SHAPES["bns"]:
        c = chw[0]
        x = _rand(rng, (n,) + chw)
        gamma, beta = 1 + _rand(rng, (c,), 0.1), _rand(rng, (c,), 0.1)
        rm, rv = np.zeros(c, DTYPE), np.ones(c, DTYPE)
        tx, tg, tb, trm, trv = _t(x), _t(gamma), _t(beta), _t(rm.copy()), _t(rv.copy())
        label = f"BN+{act} {(n,) + chw}"
        if not backward:
            yield label, (x, gamma, beta, rm, rv, True, 0.1, 1e-5, act, 0.2), \
                (lambda tx=tx, tg=tg, tb=tb, trm=trm, trv=trv, act=act:
                 _torch_act(torch.ops.aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)[0], act)), \
                ("byte", 2 * x.nbytes)
        else:
            from fastgan.kernels import reference
            _, mean, rstd = reference.batch_norm_act_forward(x, gamma, beta, None, None, True, 0.1, 1e-5, act, 0.2)
            dy = _rand(rng, x.shape)
            ty, smean, sinvstd = torch.ops.aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)
            ty = _torch_act(ty, act)
            tdy = _t(dy)

            def torch_bwd(tdy=tdy, ty=ty, tx=tx, tg=tg, trm=trm, trv=trv, smean=smean, sinvstd=sinvstd, act=act):
                g = torch.ops.aten.threshold_backward(tdy, ty, 0) if act == "relu" else \
                    torch.ops.aten.leaky_relu_backward(tdy, ty, 0.2, True)
                return torch.ops.aten.native_batch_norm_backward(g, tx, tg, trm, trv, smean, sinvstd, True, 1e-5,
                                                                 [True, True, True])
            yield label, (dy, x, gamma, beta, mean, rstd, True, act, 0.2), torch_bwd, ("byte", 3 * x.nbytes)


def leaky_relu_cases(n, backward):
    rng = np.random.default_rng(4)
    shape = (n, *SHAPES["leaky"])   # D's first layer, which has no batch norm to fuse the activation into
    x, dy = _rand(rng, shape), _rand(rng, shape)
    tx, tdy = _t(x), _t(dy)
    if not backward:
        yield f"LeakyReLU {shape}", (x, 0.2), (lambda: TF.leaky_relu(tx, 0.2)), ("byte", 2 * x.nbytes)
    else:
        yield f"LeakyReLU {shape}", (dy, x, 0.2), (lambda: torch.ops.aten.leaky_relu_backward(tdy, tx, 0.2, False)), \
            ("byte", 3 * x.nbytes)


def sigmoid_bce_cases(n):
    rng = np.random.default_rng(2)
    for shape in [(n, 1), (n, 784)]:   # D's logits; and a per-pixel loss, large enough to measure bandwidth
        s, y = _rand(rng, shape, 3.0), (rng.random(shape) > 0.5).astype(DTYPE)
        ts, ty = _t(s).requires_grad_(), _t(y)

        def torch_fused(ts=ts, ty=ty):  # the same work: the mean loss and d loss / d logits
            return torch.autograd.grad(TF.binary_cross_entropy_with_logits(ts, ty), ts)
        yield f"sigmoid-BCE mean {shape}", (s, y, "mean"), torch_fused, ("byte", 3 * s.nbytes)


def _dcgan_parameter_shapes(which):
    if ARGS.model != "dcgan":
        from fastgan.models import MODELS
        return [p.shape for p in MODELS[ARGS.model]()[0 if which == "G" else 1].parameters()]
    if which == "G":
        return [(100, 256, 7, 7), (256,), (256,), (256, 128, 4, 4), (128,), (128,), (128, 1, 4, 4)]
    return [(64, 1, 4, 4), (128, 64, 4, 4), (128,), (128,), (1, 128, 7, 7)]


def adam_cases(n):
    if n != ARGS.batch_size[0]:
        return  # the parameters do not depend on the batch: one set of rows is enough
    rng = np.random.default_rng(3)
    for which in ("G", "D"):
        shapes = _dcgan_parameter_shapes(which)
        params = [_rand(rng, s, 0.05) for s in shapes]
        grads = [_rand(rng, s, 0.01) for s in shapes]
        state = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
        tparams = [torch.nn.Parameter(_t(p.copy())) for p in params]
        for tp, g in zip(tparams, grads, strict=True):
            tp.grad = _t(g)
        opt = torch.optim.Adam(tparams, lr=2e-4, betas=(0.5, 0.999))
        total = sum(p.size for p in params)
        # one "call" updates every parameter of the network, as an optimiser step does
        yield f"Adam step, {which}'s {total} parameters", \
            [(p, g, m, v, 5, 2e-4, 0.5, 0.999, 1e-8, 0.0) for p, g, (m, v) in zip(params, grads, state, strict=True)], \
            opt.step, ("byte", 7 * total * DTYPE.itemsize)


SHAPES = {"dcgan": dict(convs=DCGAN_CONVS, bns=DCGAN_BNS, leaky=(64, 14, 14)),
          "dcgan64": dict(convs=DCGAN64_CONVS, bns=DCGAN64_BNS, leaky=(64, 32, 32))}[ARGS.model]

KERNELS = {
    "conv_transpose2d_forward": lambda n: conv_cases(n, True, False),
    "conv_transpose2d_backward": lambda n: conv_cases(n, True, True),
    "conv2d_forward": lambda n: conv_cases(n, False, False),
    "conv2d_backward": lambda n: conv_cases(n, False, True),
    "batch_norm_act_forward": lambda n: batch_norm_cases(n, False),
    "batch_norm_act_backward": lambda n: batch_norm_cases(n, True),
    "leaky_relu_forward": lambda n: leaky_relu_cases(n, False),
    "leaky_relu_backward": lambda n: leaky_relu_cases(n, True),
    "sigmoid_bce_forward": sigmoid_bce_cases,
    "adam_step": adam_cases,
}


# --- validation and timing ------------------------------------------------------------------------------------------

def _call(fn, args):
    if isinstance(args, list):  # a list of calls (the optimiser step over all parameters)
        return [fn(*a) for a in args]
    return fn(*args)


def _copy_args(args):
    """Fresh copies of the array arguments, so that in-place kernels validate from the same state."""
    if isinstance(args, list):
        return [_copy_args(a) for a in args]
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _flatten(out, args):
    """The arrays a kernel produced: its return values, or (in-place kernels) its updated arguments."""
    if isinstance(args, list):
        return [x for a in args for x in a if isinstance(x, np.ndarray)]
    values = out if isinstance(out, tuple) else (out,)
    return [np.asarray(v) for v in values if v is not None] + [a for a in args if isinstance(a, np.ndarray)]


def _timed(op, name, fn, args):
    """One call to time. The cpu convs keep a forward's im2col for its backward; a real step never runs a forward
    twice on one input, so a timed conv call first drops what the call before left."""
    if name.startswith("cpu") and op.startswith("conv"):
        from fastgan.kernels import cpu
        return lambda: (cpu.forget_columns(), _call(fn, args))
    return lambda: _call(fn, args)


def validate(op, impl_fns, args):
    reference = impl_fns["reference"]
    ref_args = _copy_args(args)
    expected = _flatten(_call(reference, ref_args), ref_args)
    # bf16: the same products, summed in another order (a GEMM path of its own): float32 errors of long sums
    tol = (dict(rtol=1e-3, atol=1e-3) if BF16 else dict(rtol=1e-4, atol=1e-5) if DTYPE == np.float32 else
           dict(rtol=1e-10, atol=1e-12))
    for name, fn in impl_fns.items():
        if name == "reference":
            continue
        mine = _copy_args(args)
        got = _flatten(_call(fn, mine), mine)
        difference = mismatch(got, expected, **tol)
        if difference:
            sys.exit(f"{op}: implementation {name!r} disagrees with the reference ({difference})")


def time_blocks(fns, repeats, blocks=3, warmup=2):
    """{name: median seconds}. Each function runs in blocks of consecutive calls (after a warm-up), the blocks of
    all functions taking turns, so that a busy machine slows them alike. Consecutive calls, not strict alternation:
    each engine's thread pool may linger after a call (spinning OpenMP threads), which would tax whichever engine
    runs next, something that never happens in a real program that uses one engine."""
    samples = {name: [] for name in fns}
    per_block = max(1, repeats // blocks)
    for _ in range(blocks):
        for name, fn in fns.items():
            for r in range(warmup + per_block):
                t0 = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - t0
                if r >= warmup:
                    samples[name].append(elapsed)
    return {name: statistics.median(s) for name, s in samples.items()}


def implementations(op, names):
    """{column: kernel} of each implementation; with --conv-choices, a convolution's cpu column becomes one column
    per choice, cpu:<choice>, each run under cpu.use_conv(choice)."""
    kernel = op + "_bf16" if BF16 else op
    fns = {}
    for name in names:
        fn = dispatch.kernel(kernel, "cpu", impl=name)
        if name == "cpu" and ARGS.conv_choices and op.startswith("conv"):
            from fastgan.kernels import cpu
            for choice in ARGS.conv_choices.split(","):
                try:
                    with cpu.use_conv(choice):
                        pass
                except (ValueError, RuntimeError) as err:  # a bad choice, or direct without AVX-512
                    sys.exit(f"--conv-choices {ARGS.conv_choices}: {err}")
                fns[f"cpu:{choice}"] = (lambda *a, fn=fn, choice=choice: _under_conv(cpu, choice, fn, a))
        else:
            fns[name] = fn
    return fns


def _under_conv(cpu, choice, fn, args):
    with cpu.use_conv(choice):
        return fn(*args)


def print_bf16_path():
    """How fastgan's bf16 products run here, and the arithmetic peak of its bfloat16 GEMM path."""
    from fastgan.kernels import cpu
    print(f"# fastgan cpu: {cpu.bfloat16_path()}")
    path = cpu._bf16_path()
    if path:
        repeats = 20 if path == "emulated" else 200000
        peak = cpu._C.gemm_bf16_peak(path, repeats)
        what = ("VDPBF16PS on registers" if path == "avx512-bf16" else "tile products on tiles in place")
        print(f"# arithmetic peak of the {path} path ({what}, {ARGS.threads} threads): {peak / 1e12:.3f} TFLOP/s")


def main():
    torch.set_num_threads(ARGS.threads)
    torch.set_default_dtype(TORCH_DTYPE)
    impls = dispatch.available("cpu")
    kernels = ARGS.kernel or [k for k in KERNELS if k.startswith("conv") or not BF16]
    for k in kernels:
        if k not in KERNELS:
            sys.exit(f"unknown kernel {k!r}: expected one of {', '.join(KERNELS)}")
    print(f"# {ARGS.model} shapes, {'bf16 products' if BF16 else ARGS.dtype}, {ARGS.threads} threads, median of "
          f"{ARGS.repeats} calls; implementations: {', '.join(impls)}; torch {torch.__version__}")
    if BF16:
        print_bf16_path()
    for op in kernels:
        fns = implementations(op, dispatch.available("cpu"))
        impls = list(fns)
        cols = "".join(f"{name:>12s} {'':>9s}" for name in impls)
        print(f"\n{op}")
        print(f"  {'case':52s}{cols}{'torch':>12s} {'':>9s}  " + "  ".join(f"{n}/torch" for n in impls))
        for n in ARGS.batch_size:
            for label, args, torch_fn, (unit, amount) in KERNELS[op](n):
                validate(op, fns, args)
                timed = {name: _timed(op, name, fn, args) for name, fn in fns.items()}
                timed["torch"] = torch_fn
                with torch.no_grad() if op != "sigmoid_bce_forward" else torch.enable_grad():
                    t = time_blocks(timed, ARGS.repeats)
                rate = (lambda s: f"{amount / s / 1e9:6.1f} " + ("GF/s" if unit == "flop" else "GB/s"))
                row = "".join(f"{t[name] * 1e3:9.3f} ms {rate(t[name]):>9s}  " for name in impls)
                row += f"{t['torch'] * 1e3:9.3f} ms {rate(t['torch']):>9s}  "
                row += "  ".join(f"{t['torch'] / t[name]:8.2f}x" for name in impls)
                print(f"  {label:52s}{row}")


if __name__ == "__main__":
    main()
