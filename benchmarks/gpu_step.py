"""The whole 28×28 DCGAN training step on a GPU: fastgan vs PyTorch eager (and torch.compile), in one process.

    python benchmarks/gpu_step.py                          # batches 64, 128, 512
    python benchmarks/gpu_step.py --batch-sizes 128 --steps 100 --no-compile

Every engine trains the same model (same weights, batches and noise, all already on the GPU) with the same step:
D on a real and a fake batch, then G, both with Adam, and the losses read back every step (gan.train_step's
statistics; torch reads its two losses). Before anything is timed, the first steps of each fastgan implementation
are checked to agree with torch (float32, TF32 off). Rows:

    fastgan <impl>    fastgan's default GPU kernels (cuda, then triton), and each implementation pinned
    torch eager       cuDNN/cuBLAS in strict float32 (TF32 off), the like-for-like comparison
    torch eager tf32  torch's defaults (cuDNN convolutions in TF32): faster, ~1e-3 relative error
    torch.compile     the same modules compiled (float32, TF32 off), when compiling works here

img/s is batch / median step time; "vs torch" is fastgan's img/s over torch eager's (> 1: fastgan is faster).
Without a GPU it prints why and exits 0.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests")]   # fastgan, test_dcgan_step


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", default="64,128,512")
    p.add_argument("--steps", type=int, default=50, help="timed steps per engine (after --warmup steps)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-compile", action="store_true", help="leave out torch.compile (it takes a minute or two)")
    return p.parse_args()

from gpu_common import require_gpu_and_torch  # noqa: E402


def skip(reason):
    print(f"SKIP gpu_step: {reason}")
    sys.exit(0)


def main():
    args = parse()
    torch, cupy = require_gpu_and_torch("gpu_step")

    import fastgan
    from fastgan import dispatch
    from fastgan.gan import train_step
    from test_dcgan_step import torch_train_step, twin_dcgans

    impls = [None] + [name for name in ("cuda", "triton") if dispatch.implementation(name) is not None]
    if impls == [None]:
        skip("no GPU kernel implementation of fastgan loads here (python -m fastgan.kernels)")
    print(f"GPU: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}; torch {torch.__version__}, "
          f"cupy {cupy.__version__}; fastgan GPU kernels: {', '.join(impls[1:])}")

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

    def fastgan_step(models, impl):
        G, D, opt_g, opt_d, data = models

        def step(i):
            with dispatch.use(impl):
                s = train_step(G, D, opt_g, opt_d, *data[i % len(data)])
            return s["loss_d"], s["loss_g"]
        return step

    def torch_step(models, G=None, D=None):
        tG, tD, topt_g, topt_d, data = models
        G, D = (tG, tD) if G is None else (G, D)
        return lambda i: torch_train_step(G, D, topt_g, topt_d, *data[i % len(data)])

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
            step(i)   # every step reads its losses back, so it has finished when this returns
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    failures = []
    for n in (int(b) for b in args.batch_sizes.split(",")):
        rows = {}
        # validate: from identical weights, each fastgan implementation's first steps give torch's losses
        for impl in impls:
            ours, theirs = build(n)
            set_tf32(False)
            step_ours, step_theirs = fastgan_step(ours, impl), torch_step(theirs)
            for i in range(3):
                (a, b), (c, d) = step_ours(i), step_theirs(i)
                if not np.allclose([a, b], [c, d], rtol=2e-3, atol=2e-4):
                    failures.append(f"batch {n}, fastgan {impl or 'default'}: step {i} losses {a:.5f}/{b:.5f}, "
                                    f"torch {c:.5f}/{d:.5f}")
                    break
            else:
                rows[f"fastgan {impl or 'default'}"] = median_step_time(step_ours)
        ours, theirs = build(n)
        set_tf32(False)
        rows["torch eager"] = median_step_time(torch_step(theirs))
        set_tf32(True)
        rows["torch eager tf32"] = median_step_time(torch_step(theirs))
        set_tf32(False)
        if not args.no_compile:
            try:
                cG, cD = torch.compile(theirs[0]), torch.compile(theirs[1])
                rows["torch.compile"] = median_step_time(torch_step(theirs, cG, cD))
            except Exception as err:  # noqa: BLE001 - report and go on: compile support varies by machine
                print(f"torch.compile failed at batch {n}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
        reference = rows["torch eager"]
        print(f"\nDCGAN 28x28 training step on the GPU, batch {n}, float32 ({args.steps} timed steps, median)")
        print(f"{'engine':20s} {'ms/step':>9s} {'img/s':>9s} {'vs torch':>9s}")
        for name, t in rows.items():
            print(f"{name:20s} {t * 1e3:9.2f} {n / t:9.0f} {reference / t:8.2f}x")
    if failures:
        print("\nVALIDATION FAILED (these rows were not timed):\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
