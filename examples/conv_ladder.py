"""A convolution ladder: the same convolution, rung by rung from Python loops to a register-tiled kernel, each rung
checked against the specification before it is timed.

    python examples/conv_ladder.py               # the DCGAN's strided layers at batch 128 (about a minute)
    python examples/conv_ladder.py --batch 64
    python examples/conv_ladder.py --small       # small sizes, seconds (FASTGAN_EXAMPLE_SMALL=1 does the same)

In the spirit of llm.c's dev/cuda: every rung computes the same three things of one convolution in float32,
    y   the forward pass, y = conv2d(x, W)
    dx  its input gradient for an upstream gradient dy (a transposed convolution's forward pass is this)
    dW  its weight gradient
and each is first compared with fastgan/kernels/reference.py run in float64, then timed. The rungs:
    1 naive loops     seven nested Python loops, one multiply-add at a time (the loops below: the whole
                      definition, and far too slow for real shapes; timed on the check shape only, and its time on
                      the DCGAN's layers extrapolated from that rate)
    2 im2col + GEMM   fastgan/kernels/reference.py, the specification: NumPy copies every patch into a column
                      matrix (im2col), and one BLAS matrix product does all the arithmetic
    3 native im2col   fastgan/kernels/cpu.py under use_conv("im2col") (FASTGAN_CONV=im2col does it for a whole
                      run): the copies in C++ (csrc/cpu/im2col.cpp, per-image products for thin layers), the
                      product still NumPy's BLAS
    4 direct tile     fastgan/kernels/cpu.py under use_conv("direct"): csrc/cpu/direct_conv.cpp sums each output
                      tile of 64 channels × 7 pixels in 28 of the 32 AVX-512 registers (register_tile.h), straight
                      from the image: no column matrix at all (direct_weight_grad.cpp likewise for dW). Skipped,
                      with the reason, on CPUs without AVX-512.
The shapes are the DCGAN's strided layers (fastgan/models/dcgan.py, kernel 4, stride 2, padding 1): D's two
convolutions, and G's two transposed convolutions as the convolutions they are the adjoints of. G's 256→128 layer
(7×7 → 14×14) is conv 128→256 (14×14 → 7×7) read backwards: G's forward pass is that conv's dx, G's input gradient
its y, G's weight gradient its dW (the same sum over the same shapes).

Every op of a convolution costs the same 2·N·O·Ho·Wo·C·kh·kw floating-point operations (one multiply-add per term of
the sum), so GFLOP/s compares the rungs directly. Times are medians; on a shared machine compare the ratios.
"""
import argparse
import os
import time

import fastgan  # noqa: F401  (before NumPy: see fastgan/__init__.py)
from fastgan import dispatch
from fastgan.kernels import reference

import numpy as np

STRIDE, PADDING, KERNEL = (2, 2), (1, 1), (4, 4)
OPS = ("y", "dx", "dW")


# --- rung 1: the definition, as loops ------------------------------------------------------------------------------
# y[b, o, p, q] = Σ_{c, i, j} x[b, c, r, t] · W[o, c, i, j],  r = p·s + i − pad, t = q·s + j − pad  (taps that land in
# the padding add nothing). For a loss L with dy = dL/dy, each term x[b, c, r, t] · W[o, c, i, j] contributes
#   dL/dx[b, c, r, t] += W[o, c, i, j] · dy[b, o, p, q]    and    dL/dW[o, c, i, j] += x[b, c, r, t] · dy[b, o, p, q].
def taps(x_shape, w_shape):
    """Every term of the sum: the indices (b, o, p, q, c, i, j) and the input pixel (r, t) it reads (inside x)."""
    (n, c, h, w), (o, _, kh, kw) = x_shape, w_shape
    (s, _), (pad, _) = STRIDE, PADDING
    ho, wo = (h + 2 * pad - kh) // s + 1, (w + 2 * pad - kw) // s + 1
    for b, oc, p, q, ic, i, j in np.ndindex(n, o, ho, wo, c, kh, kw):
        r, t = p * s + i - pad, q * s + j - pad
        if 0 <= r < h and 0 <= t < w:
            yield b, oc, p, q, ic, i, j, r, t


def naive_y(x, w, dy):
    y = np.zeros(dy.shape, x.dtype)
    for b, o, p, q, c, i, j, r, t in taps(x.shape, w.shape):
        y[b, o, p, q] += x[b, c, r, t] * w[o, c, i, j]
    return y


def naive_dx(x, w, dy):
    dx = np.zeros_like(x)
    for b, o, p, q, c, i, j, r, t in taps(x.shape, w.shape):
        dx[b, c, r, t] += w[o, c, i, j] * dy[b, o, p, q]
    return dx


def naive_dw(x, w, dy):
    dw = np.zeros_like(w)
    for b, o, p, q, c, i, j, r, t in taps(x.shape, w.shape):
        dw[o, c, i, j] += x[b, c, r, t] * dy[b, o, p, q]
    return dw


# --- rungs 2-4: fastgan's kernels (reference.py and cpu.py have the same functions) -----------------------------------
def kernel_ops(kernels):
    """y, dx and dW through a kernel module; output_mask asks the backward for one gradient only."""
    return {"y": lambda x, w, dy: kernels.conv2d_forward(x, w, None, STRIDE, PADDING),
            "dx": lambda x, w, dy: kernels.conv2d_backward(dy, x, w, STRIDE, PADDING, (True, False, False))[0],
            "dW": lambda x, w, dy: kernels.conv2d_backward(dy, x, w, STRIDE, PADDING, (False, True, False))[1]}


def cpu_ops(cpu, choice):
    """The native kernels with the convolutions run as `choice` (what FASTGAN_CONV=choice does for a whole run).
    Each call starts afresh: the columns a forward pass leaves for its backward pass are forgotten, so dW pays for
    its im2col as the reference's does."""
    def chosen(op):
        def run(x, w, dy):
            cpu.forget_columns()
            with cpu.use_conv(choice):
                return op(x, w, dy)
        return run
    return {name: chosen(op) for name, op in kernel_ops(cpu).items()}


NAIVE = {"y": naive_y, "dx": naive_dx, "dW": naive_dw}


def rungs():
    """[(name, {op: function} or None, why it is skipped)] — the ladder, bottom up."""
    ladder = [("1 naive loops", NAIVE, None),
              ("2 im2col + GEMM, NumPy", kernel_ops(reference), None)]
    cpu = dispatch.implementation("cpu")
    for name, choice in (("3 im2col in C++ + BLAS", "im2col"), ("4 direct register tile", "direct")):
        if cpu is None:
            ladder.append((name, None, f"fastgan._C is not built ({dispatch.why_unavailable('cpu')})"))
            continue
        try:
            with cpu.use_conv(choice):  # refused, with the reason, where this CPU cannot run it
                pass
            ladder.append((name, cpu_ops(cpu, choice), None))
        except RuntimeError as err:
            ladder.append((name, None, str(err)))
    return ladder


# --- validate, then time ----------------------------------------------------------------------------------------------
def inputs(rng, n, c, hw, o):
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((o, c) + KERNEL) / np.sqrt(c * KERNEL[0] * KERNEL[1])).astype(np.float32)
    ho = (hw + 2 * PADDING[0] - KERNEL[0]) // STRIDE[0] + 1
    dy = rng.standard_normal((n, o, ho, ho)).astype(np.float32)
    return x, w, dy


def truth(x, w, dy):
    """The specification's answers, in float64."""
    return {op: f(x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64))
            for op, f in kernel_ops(reference).items()}


def error(result, expected):
    """max |result − expected| relative to the largest |expected|; float32 rungs land near 1e-7."""
    assert result.shape == expected.shape and result.dtype == np.float32, (result.shape, result.dtype)
    return float(np.abs(result - expected).max() / np.abs(expected).max())


def median_ms(f, args, repeats):
    f(*args)  # warm-up: scratch buffers, thread start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def ratio(r):
    return f"{r:,.0f}×" if r >= 100 else f"{r:.2f}×"


def climb(title, x, w, dy, ladder, repeats, naive_rates=None):
    """Validate every rung on (x, w, dy), then time it; print one row per op and rung. With naive_rates ({op:
    multiply-adds per second}) the naive loops are not run but their time extrapolated; without, they run, and the
    rates they ran at are returned."""
    flop = 2.0 * dy.size * x.shape[1] * KERNEL[0] * KERNEL[1]
    print(f"\n{title}: x {x.shape}, W {w.shape}, y {dy.shape}; {flop / 1e9:.3g} GFLOP per op")
    print(f"  {'op':3s} {'rung':24s} {'ms':>12s} {'GFLOP/s':>9s} {'speed-up':>9s} {'error':>8s}")
    expected, rates = truth(x, w, dy), {}
    for op in OPS:
        before = None
        for name, ops, skipped in ladder:
            if ops is None:
                print(f"  {op:3s} {name:24s} {'skipped':>12s}")
                continue
            if ops is NAIVE and naive_rates:  # far too slow here: the check shape's rate
                ms, mark, err = 1e3 * flop / 2 / naive_rates[op], "~", "—"
            else:
                err = error(ops[op](x, w, dy), expected[op])  # validated before it is timed
                assert err < 1e-4, f"{name} computes {op} wrong: relative error {err:.2g}"
                ms, mark, err = median_ms(ops[op], (x, w, dy), repeats), "", f"{err:.1e}"
                if ops is NAIVE:
                    rates[op] = flop / 2 / (ms / 1e3)
            speed_up = mark + ratio(before / ms) if before else "—"
            print(f"  {op:3s} {name:24s} {mark + (f'{ms:,.0f}' if ms >= 100 else f'{ms:.2f}'):>12s} "
                  f"{flop / ms / 1e6:9.3g} {speed_up:>9s} {err:>8s}")
            before = ms
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="the DCGAN layers' batch (default: the train step's)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per op and rung (their median counts)")
    parser.add_argument("--small", action="store_true", default=os.environ.get("FASTGAN_EXAMPLE_SMALL", "0") != "0",
                        help="batch 2 and one timed call: seconds, for CI (also FASTGAN_EXAMPLE_SMALL=1)")
    args = parser.parse_args()
    batch, repeats = (2, 1) if args.small else (args.batch, args.repeats)
    rng = np.random.default_rng(0)
    ladder = rungs()
    print("float32 convolutions, kernel 4, stride 2, padding 1; speed-up: over the rung before;")
    print("error: max |rung − reference| / max |reference|, the reference run in float64")
    for name, _, skipped in ladder:
        if skipped:
            print(f"rung {name} is skipped: {skipped}")
    naive_rates = climb("check shape, every rung", *inputs(rng, 2, 3, 10, 5), ladder, repeats)
    for title, (c, hw, o) in [("D's conv 1→64, 28×28 → 14×14", (1, 28, 64)),
                              ("D's conv 64→128, 14×14 → 7×7", (64, 14, 128)),
                              ("G's convT 256→128 as conv 128→256, 14×14 → 7×7", (128, 14, 256)),
                              ("G's convT 128→1 as conv 1→128, 28×28 → 14×14", (1, 28, 128))]:
        climb(f"{title}, batch {batch}", *inputs(rng, batch, c, hw, o), ladder, repeats, naive_rates)
    print("\n~: the naive loops' time extrapolated from their rate on the check shape")


if __name__ == "__main__":
    main()
