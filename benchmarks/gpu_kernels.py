"""fastgan's GPU kernels one by one against torch/cuDNN, at the DCGAN's shapes (batch 128 by default).

    python benchmarks/gpu_kernels.py [--batch 128] [--reps 50]

Each row runs one kernel of each fastgan GPU implementation (cuda, triton) and the torch equivalent on the same
CuPy/torch data, checks that the outputs agree, then times it: CUDA events around each call, the L2 cache flushed
(a 256 MiB memset) before each, the median of --reps calls. torch runs with cudnn.benchmark on (cuDNN picks its
fastest algorithm per shape) and in strict float32 (TF32 off), except in the "torch tf32" column (cuDNN's default
precision). Where fastgan fuses what torch does in several kernels, the torch side is the unfused sequence a torch
user runs: batch norm then ReLU, the loss then its gradient. The "best" column names the fastgan implementation of
the fastest time and its speed relative to torch (strict float32).

Exit status 1 if anything failed: no usable GPU, torch without CUDA, a fastgan GPU implementation that does not
load, or any kernel that raised or disagreed with torch (its cell says ERROR or MISMATCH; the table is printed
first, the reasons after it).
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fastgan  # noqa: E402,F401  (before NumPy, as fastgan asks)
import numpy as np  # noqa: E402

from gpu_common import Verdict, best, gpu_implementations, require_gpu_and_torch  # noqa: E402


def measure(verdict, what, run, disagreement, bench):
    """bench(run), the median µs, once run()'s output passes disagreement(output) (None: it agrees with torch, else
    how not); otherwise the cell says MISMATCH or ERROR and the verdict records the failure (`what` names the
    kernel and the implementation). The other cells of the table are still measured."""
    try:
        wrong = disagreement(run())
    except Exception as err:  # noqa: BLE001 - a failure of this cell, recorded, not the end of the table
        verdict.fail(f"{what} raised {type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}")
        return "ERROR"
    if wrong is not None:
        verdict.fail(f"{what} disagrees with torch: {wrong}")
        return "MISMATCH"
    return bench(run)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=50)
    args = p.parse_args()
    from fastgan import dispatch
    torch, cupy = require_gpu_and_torch("gpu_kernels")
    verdict = Verdict("gpu_kernels")
    tF = torch.nn.functional
    impls = {name: dispatch.implementation(name) for name in gpu_implementations(verdict)}
    torch.backends.cudnn.benchmark = True
    # CuPy's events sit on the legacy default stream; torch must launch there too for them to time its kernels
    assert torch.cuda.current_stream().cuda_stream == 0, "torch is not on the default stream"
    flush = cupy.empty(64 * 2 ** 20, np.int32)   # 256 MiB, larger than any GPU's L2

    def bench(fn):
        for _ in range(3):
            fn()
        start, end, times = cupy.cuda.Event(), cupy.cuda.Event(), []
        for _ in range(args.reps):
            flush.fill(0)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end))
        return statistics.median(times) * 1e3   # µs

    def set_tf32(on):
        torch.backends.cudnn.allow_tf32 = on
        torch.backends.cuda.matmul.allow_tf32 = on

    rng = np.random.default_rng(0)

    def data(*shape, scale=1.0):
        a = (scale * rng.standard_normal(shape)).astype(np.float32)
        return cupy.asarray(a), torch.from_numpy(a).cuda()

    def mismatch(ours, theirs):
        """None when every output agrees with torch's, else which one does not and by how much."""
        ours = [cupy.asnumpy(o) for o in (ours if isinstance(ours, tuple) else (ours,))]
        theirs = [t.detach().cpu().numpy() for t in (theirs if isinstance(theirs, tuple) else (theirs,))]
        if len(ours) != len(theirs):
            return f"{len(ours)} outputs, torch has {len(theirs)}"
        for i, (o, t) in enumerate(zip(ours, theirs)):
            if o.size != t.size:
                return f"output {i} has {o.size} values, torch's {t.size}"
            scale = max(1.0, float(np.abs(t).max()))
            if not np.allclose(o.reshape(t.shape), t, rtol=1e-3, atol=1e-3 * scale):
                return f"output {i}: max |difference| {float(np.abs(o.reshape(t.shape) - t).max()):.3g} " \
                       f"(torch's largest |value| {scale:.3g})"
        return None

    rows = []   # (name, {column: µs or note})

    def row(name, ours, theirs, tf32_matters=False):
        """ours(module) -> output on CuPy arrays; theirs() -> the same in torch."""
        set_tf32(False)
        expected = theirs()
        cells = {impl: measure(verdict, f"{name}: fastgan {impl}", lambda module=module: ours(module),
                               lambda out: mismatch(out, expected), bench)
                 for impl, module in impls.items()}
        cells["torch"] = bench(theirs)
        if tf32_matters:
            set_tf32(True)
            cells["torch tf32"] = bench(theirs)
            set_tf32(False)
        rows.append((name, cells))

    n = args.batch
    convs = [  # name, transposed, cin, cout, k, stride, padding, input hw
        ("G1 convT 100->256 k7", True, 100, 256, 7, 1, 0, 1), ("G2 convT 256->128 k4s2", True, 256, 128, 4, 2, 1, 7),
        ("G3 convT 128->1 k4s2", True, 128, 1, 4, 2, 1, 14), ("D1 conv 1->64 k4s2", False, 1, 64, 4, 2, 1, 28),
        ("D2 conv 64->128 k4s2", False, 64, 128, 4, 2, 1, 14), ("D3 conv 128->1 k7", False, 128, 1, 7, 1, 0, 7)]
    for name, transposed, cin, cout, k, s, pad, hw in convs:
        x, tx = data(n, cin, hw, hw)
        w, tw = data(*((cin, cout) if transposed else (cout, cin)), k, k, scale=0.05)
        kind = "conv_transpose2d" if transposed else "conv2d"
        extra = ((0, 0),) if transposed else ()
        t_fn = tF.conv_transpose2d if transposed else tF.conv2d
        row(f"{name} fwd", lambda m: getattr(m, kind + "_forward")(x, w, None, (s, s), (pad, pad), *extra),
            lambda: t_fn(tx, tw, None, s, pad), tf32_matters=True)
        ty = t_fn(tx.requires_grad_(), tw.requires_grad_(), None, s, pad)
        dy, tdy = data(*ty.shape)
        row(f"{name} bwd", lambda m: getattr(m, kind + "_backward")(dy, x, w, (s, s), (pad, pad), *extra)[:2],
            lambda: torch.autograd.grad(ty, (tx, tw), tdy, retain_graph=True), tf32_matters=True)
        tx.requires_grad_(False), tw.requires_grad_(False)

    for shape, act in (((n, 256, 7, 7), "relu"), ((n, 128, 14, 14), "relu"), ((n, 128, 7, 7), "leaky_relu")):
        c = shape[1]
        x, tx = data(*shape)
        g, tg = data(c)
        b, tb = data(c)
        t_act = tF.relu if act == "relu" else (lambda v: tF.leaky_relu(v, 0.2))

        def bn_ours(m, x=x, g=g, b=b, act=act, c=c):
            return m.batch_norm_act_forward(x, g, b, cupy.zeros(c, np.float32), cupy.ones(c, np.float32), True,
                                            0.1, 1e-5, act, 0.2)[0]

        def bn_theirs(tx=tx, tg=tg, tb=tb, t_act=t_act, c=c):
            return t_act(tF.batch_norm(tx, torch.zeros(c, device="cuda"), torch.ones(c, device="cuda"), tg, tb,
                                       True, 0.1, 1e-5))
        label = f"BN+{act} {'x'.join(map(str, shape[1:]))}"
        row(f"{label} fwd", bn_ours, bn_theirs)
        mean = x.mean(axis=(0, 2, 3))                                 # the batch statistics the backward reuses
        rstd = 1 / cupy.sqrt(x.var(axis=(0, 2, 3)) + 1e-5)
        for t in (tx, tg, tb):
            t.requires_grad_()
        ty = bn_theirs()
        dy, tdy = data(*shape)
        row(f"{label} bwd", lambda m, dy=dy, x=x, g=g, b=b, mean=mean, rstd=rstd, act=act:
            m.batch_norm_act_backward(dy, x, g, b, mean, rstd, True, act, 0.2),
            lambda ty=ty, tx=tx, tg=tg, tb=tb, tdy=tdy: torch.autograd.grad(ty, (tx, tg, tb), tdy, retain_graph=True))

    s, ts = data(n, 1, scale=3.0)
    y = cupy.full((n, 1), 0.9, np.float32)
    ts.requires_grad_()

    def bce_theirs():
        loss = tF.binary_cross_entropy_with_logits(ts, torch.full_like(ts, 0.9))
        return loss, torch.autograd.grad(loss, ts)[0]
    row(f"sigmoid-BCE ({n}, 1) loss+grad", lambda m: m.sigmoid_bce_forward(s, y, "mean"), bce_theirs)

    for size in (256 * 128 * 16, 100 * 256 * 49):   # G2's and G1's weights
        p0 = rng.standard_normal(size).astype(np.float32)
        grad, tgrad = data(size)
        tp = torch.nn.Parameter(torch.from_numpy(p0).cuda())
        tp.grad = tgrad
        topt = torch.optim.Adam([tp], lr=2e-4, betas=(0.5, 0.999), fused=True)

        def adam_ours(m, state, grad=grad):
            m.adam_step(state[0], grad, state[1], state[2], 1, 2e-4, 0.5, 0.999, 1e-8, 0.0)
            return state[0]

        def adam_theirs(topt=topt, tp=tp):
            topt.step()
            return tp
        expected = adam_theirs().detach().clone()   # the first step from p0; then only the time counts
        name = f"Adam step, {size} floats"
        cells = {}
        for impl, m in impls.items():
            state = [cupy.asarray(p0), cupy.zeros(size, np.float32), cupy.zeros(size, np.float32)]
            cells[impl] = measure(verdict, f"{name}: fastgan {impl}", lambda m=m, state=state: adam_ours(m, state),
                                  lambda out: mismatch(out, expected), bench)
        cells["torch"] = bench(adam_theirs)
        rows.append((name, cells))

    columns = list(impls) + ["torch", "torch tf32"]
    print(f"fastgan GPU kernels vs torch {torch.__version__} on {torch.cuda.get_device_name()}, batch {n}, float32; "
          f"µs per call (median of {args.reps}, L2 flushed; torch with cudnn.benchmark)")
    print(f"{'kernel':36s}" + "".join(f"{c:>12s}" for c in columns) + f"  {'best of fastgan / torch':s}")
    for name, cells in rows:
        line = f"{name:36s}"
        for c in columns:
            v = cells.get(c, "")
            line += f"{v:12.1f}" if isinstance(v, float) else f"{v:>12s}"
        fastest = best(cells, list(impls))
        line += f"  {fastest[0]} {cells['torch'] / fastest[1]:.2f}x" if fastest else ""
        print(line)
    print("best of fastgan / torch: the fastest fastgan implementation, named, and torch's time over its time "
          "(> 1: fastgan is faster; strict float32 on both sides).")
    verdict.exit()


if __name__ == "__main__":
    main()
