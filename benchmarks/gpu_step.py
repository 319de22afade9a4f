"""The whole 28×28 DCGAN training step on a GPU: fastgan vs PyTorch eager (and torch.compile), in one process.

    python3 benchmarks/gpu_step.py                                  # batches 64 and 128
    python3 benchmarks/gpu_step.py --batch-sizes 128 --steps 100 --compile
    python3 benchmarks/gpu_step.py --precision bf16                 # fastgan.autocast vs torch.autocast, bf16

Every engine trains the same model (same weights, batches and noise, all already on the GPU) with the same step:
D on a real and a fake batch, then G, both with Adam (torch's default, multi-tensor Adam). The work is the same on
both sides:

    G's step    fastgan freezes D's parameters while G's loss goes back through D, so it computes no gradient of
                D's weights there. torch's "same work" rows do the same (D's parameters requires_grad=False during
                G's backward); the row "torch eager, +D grads in G step" is the usual torch loop (pytorch/examples'
                dcgan), whose G backward also computes D's weight gradients and throws them away.
    read-backs  --readbacks stats (as training runs): both sides copy to the host what gan.train_step reports, six
                values per step (D's loss on the real and the fake batch, G's loss, D's mean output on its three
                batches) after the step: fastgan in one copy at the end of its round, torch in six .item() calls
                after its step, as the usual loop does; --readbacks none: no read-back, one device
                synchronisation after the step.
    cuDNN       torch.backends.cudnn.benchmark = True (cuDNN picks its fastest algorithms per shape).

Before anything is timed, the first steps of each fastgan implementation are checked against torch's (float32,
TF32 off). Rows:

    fastgan default   fastgan's default GPU kernels per op (cuda, then triton), and each implementation pinned
    torch eager       cuDNN/cuBLAS in strict float32 (TF32 off): the like-for-like comparison ("vs torch" is
                      against this row)
    torch eager tf32  torch's default precision (cuDNN convolutions in TF32): faster, ~1e-3 relative error
    torch.compile     the same modules compiled (float32, TF32 off), with --compile (it takes a minute or more)

--precision bf16 runs every fastgan step under fastgan.autocast("bfloat16") and every torch step under
torch.autocast("cuda", torch.bfloat16) (cache_enabled=False, as benchmarks/train_step.py says why): bfloat16
operands and float32 sums for the convolutions in both (docs/precision.md has what each fastgan implementation does
on a GPU), validated at bfloat16's level (losses within 2 %); the TF32 row is left out.

img/s is batch / median step time; "vs torch" is torch eager's time over this row's (> 1: faster than torch).
Exit status 1 if the GPU or torch's CUDA is missing, a fastgan GPU implementation does not load, or a validation
fails (those rows are not timed).
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests")]   # fastgan, test_dcgan_step
import fastgan  # noqa: E402  (before NumPy, as fastgan asks)
import numpy as np  # noqa: E402

from gpu_common import Verdict, best, gpu_implementations, require_gpu_and_torch  # noqa: E402
from validation import BF16_LOSSES  # noqa: E402

READBACKS = ("stats", "none")


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", default="64,128")
    p.add_argument("--steps", type=int, default=50, help="timed steps per engine (after --warmup steps)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--readbacks", default="stats,none", help="stats, none or both (comma-separated); see above")
    p.add_argument("--compile", action="store_true", help="add torch.compile (a minute or two of compiling)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: both engines under their autocast (bfloat16 products, float32 sums)")
    args = p.parse_args()
    args.readbacks = args.readbacks.split(",")
    if not set(args.readbacks) <= set(READBACKS):
        p.error(f"--readbacks takes {', '.join(READBACKS)}, got {args.readbacks}")
    return args


def mean_sigmoid_on_host(logits):
    """D's mean output from a host copy of its logits (one read-back), as gan.train_step computes it."""
    s = logits.astype(np.float64)
    return float(np.mean(0.5 * (1 + np.tanh(0.5 * s))))


def fastgan_steps(cupy):
    """step(G, D, opt_g, opt_d, real, z, readbacks) -> (loss_d, loss_g) or None, for each --readbacks."""
    from fastgan import functional as F
    from fastgan.gan import frozen, train_step

    def with_stats(G, D, opt_g, opt_d, real, z):
        s = train_step(G, D, opt_g, opt_d, real, z)   # its six statistics, in one read-back
        return s["loss_d"], s["loss_g"]

    def without_readbacks(G, D, opt_g, opt_d, real, z):   # gan.train_step without its statistics
        opt_d.zero_grad()
        F.binary_cross_entropy_with_logits(D(real), 1.0).backward()
        fake = G(z)
        F.binary_cross_entropy_with_logits(D(fake.detach()), 0.0).backward()
        opt_d.step()
        opt_g.zero_grad()
        with frozen(D):
            F.binary_cross_entropy_with_logits(D(fake), 1.0).backward()
        opt_g.step()
        cupy.cuda.Device().synchronize()
    return {"stats": with_stats, "none": without_readbacks}


def torch_steps(torch):
    """The same step in torch (tests/test_dcgan_step.py); d_grads_in_g_step: G's backward also computes D's weight
    gradients (the usual loop). With readbacks "stats", the six statistics fastgan's train_step reports."""
    from test_dcgan_step import torch_train_step_tensors

    def step(G, D, opt_g, opt_d, real, z, readbacks, d_grads_in_g_step=False):
        losses, outputs = torch_train_step_tensors(G, D, opt_g, opt_d, real, z, d_grads_in_g_step)
        if readbacks == "none":
            torch.cuda.synchronize()
            return None
        stats = [loss.item() for loss in losses] + \
            [mean_sigmoid_on_host(o.detach().cpu().numpy()) for o in outputs]
        return stats[0] + stats[1], stats[2]
    return step


def main():
    args = parse()
    torch, cupy = require_gpu_and_torch("gpu_step")
    verdict = Verdict("gpu_step")
    impls = [None] + gpu_implementations(verdict)

    from fastgan import dispatch
    from test_dcgan_step import twin_dcgans

    torch.backends.cudnn.benchmark = True
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"cupy {cupy.__version__}; fastgan GPU kernels: {', '.join(impls[1:])}")
    ours_by_readbacks, theirs_step = fastgan_steps(cupy), torch_steps(torch)

    def build(n):
        """Same-weight fastgan and torch models, their Adams, and 4 batches of (real, z) on the GPU for both."""
        (G, D, *opts), (tG, tD, *topts) = twin_dcgans()
        G.to("cuda"), D.to("cuda"), tG.cuda(), tD.cuda()
        rng = np.random.default_rng(0)
        host = [(np.tanh(rng.standard_normal((n, 1, 28, 28))).astype(np.float32),
                 rng.standard_normal((n, 100, 1, 1)).astype(np.float32)) for _ in range(4)]
        ours_data = [(fastgan.tensor(r, device="cuda"), fastgan.tensor(z, device="cuda")) for r, z in host]
        theirs_data = [(torch.from_numpy(r).cuda(), torch.from_numpy(z).cuda()) for r, z in host]
        return (G, D, *opts, ours_data), (tG, tD, *topts, theirs_data)

    bf16 = args.precision == "bf16"

    def fastgan_step(models, impl, readbacks):
        G, D, opt_g, opt_d, data = models
        step = ours_by_readbacks[readbacks]

        def run(i):
            with dispatch.use(impl), fastgan.autocast("bfloat16", enabled=bf16):
                return step(G, D, opt_g, opt_d, *data[i % len(data)])
        return run

    def torch_step(models, readbacks, G=None, D=None, d_grads_in_g_step=False):
        tG, tD, topt_g, topt_d, data = models
        G, D = (tG, tD) if G is None else (G, D)

        def run(i):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
                return theirs_step(G, D, topt_g, topt_d, *data[i % len(data)], readbacks, d_grads_in_g_step)
        return run

    def set_tf32(on):
        torch.backends.cudnn.allow_tf32 = on
        torch.backends.cuda.matmul.allow_tf32 = on

    def median_step_time(step):
        for i in range(args.warmup):
            step(i)
        cupy.cuda.Device().synchronize(), torch.cuda.synchronize()
        samples = []
        for i in range(args.steps):
            t0 = time.perf_counter()
            step(i)   # it reads back or synchronises, so it has finished when this returns
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    for n in (int(b) for b in args.batch_sizes.split(",")):
        # validate: from identical weights, each fastgan implementation's first steps give torch's losses
        valid = []
        for impl in impls:
            ours, theirs = build(n)
            set_tf32(False)
            step_ours, step_theirs = fastgan_step(ours, impl, "stats"), torch_step(theirs, "stats")
            try:
                for i in range(3):
                    (a, b), (c, d) = step_ours(i), step_theirs(i)
                    if not np.allclose([a, b], [c, d], **(BF16_LOSSES if bf16 else dict(rtol=2e-3, atol=2e-4))):
                        raise AssertionError(f"step {i} losses D {a:.5f}, G {b:.5f}; torch's {c:.5f}, {d:.5f}")
                valid.append(impl)
            except Exception as err:  # noqa: BLE001 - a failure of this row; the others are still measured
                verdict.fail(f"batch {n}, fastgan {impl or 'default'}: {type(err).__name__}: "
                             f"{str(err).splitlines()[0][:300]}")
        for readbacks in args.readbacks:
            rows = {}
            for impl in valid:
                rows[f"fastgan {impl or 'default'}"] = median_step_time(fastgan_step(build(n)[0], impl, readbacks))
            theirs = build(n)[1]
            set_tf32(False)
            rows["torch eager"] = median_step_time(torch_step(theirs, readbacks))
            rows["torch eager, +D grads in G step"] = median_step_time(
                torch_step(theirs, readbacks, d_grads_in_g_step=True))
            if not bf16:
                set_tf32(True)
                rows["torch eager tf32"] = median_step_time(torch_step(theirs, readbacks))
                set_tf32(False)
            if args.compile:
                try:
                    cG, cD = torch.compile(theirs[0]), torch.compile(theirs[1])
                    rows["torch.compile"] = median_step_time(torch_step(theirs, readbacks, cG, cD))
                except Exception as err:  # noqa: BLE001 - asked for, so its failure is a failure
                    verdict.fail(f"torch.compile at batch {n}: {type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:200]}")
            reference = rows["torch eager"]
            precision = "bfloat16 under both autocasts" if bf16 else "float32"
            print(f"\nDCGAN 28x28 training step on the GPU, batch {n}, {precision}, read-backs: "
                  f"{'the six statistics of gan.train_step' if readbacks == 'stats' else 'none (one sync)'} "
                  f"({args.steps} timed steps, median)")
            print(f"{'engine':34s} {'ms/step':>9s} {'img/s':>9s} {'vs torch':>9s}")
            for name, t in rows.items():
                print(f"{name:34s} {t * 1e3:9.2f} {n / t:9.0f} {reference / t:8.2f}x")
            fastest = best(rows, [f"fastgan {impl or 'default'}" for impl in valid])
            if fastest:
                print(f"fastgan's best: {fastest[0]}, {n / fastest[1]:.0f} img/s = {reference / fastest[1]:.2f}x "
                      f"torch eager (same work, {'bfloat16 autocast' if bf16 else 'strict float32'})")
    verdict.exit()


if __name__ == "__main__":
    main()
