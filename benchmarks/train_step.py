"""A whole GAN training step (both players, both optimisers), fastgan vs PyTorch eager, in one process.

    python benchmarks/train_step.py                 # the 28×28 DCGAN (two Adams), batch 128, 2 threads
    python benchmarks/train_step.py --numpy-first   # the same, NumPy imported before fastgan (as most scripts do)
    python benchmarks/train_step.py --batch-size 64 --steps 30 --impl reference
    python benchmarks/train_step.py --model mlp     # the 2014 paper's MLP GAN (simultaneous SGD step), batch 100
    python benchmarks/train_step.py --model dcgan64 # the DCGAN tutorial's 64×64 RGB model (ngf = ndf = 64)
    python benchmarks/train_step.py --model dcgan64 --nc 1 --threads 1   # the same on grey images (MNIST-64)
    FASTGAN_CONV=im2col python benchmarks/train_step.py   # no direct convolutions (=direct: every one direct)
    python benchmarks/train_step.py --precision bf16  # fastgan.autocast("bfloat16") vs torch.autocast bf16
    python benchmarks/train_step.py --precision bf16 --with-fp32   # and each engine's bf16 against its fp32
    python benchmarks/train_step.py --profile 5     # then where fastgan's time goes, over 5 more of its steps

Both engines train the same model (same weights, batch and noise) with the same number of threads; the first steps
are checked to agree before anything is timed (the MLP GAN's with D's dropout off: the engines draw different
masks), then the engines take turns step by step. Prints the median step time, img/s, seconds per epoch (60000 //
batch steps for the DCGANs, 50000 // batch for the MLP GAN, which trains on train[0:50000]) and fastgan's speed
relative to torch, with the machine's load average before and after.

The DCGAN's recipes differ in one piece of work: in G's step, torch's (the DCGAN examples') backward pass also
computes D's weight gradients, which nobody uses (D's next step zeroes them); fastgan's freezes D and skips them.
So the DCGAN step is timed in four variants: each engine's recipe, and each engine doing the other's work. The
recipe ratio compares the two recipes; the same-work ratios compare the engines on equal work (both skip D's
weight gradients in G's step, or both compute them). The MLP GAN's simultaneous step does the same work in both.

--precision bf16 runs every step of fastgan under fastgan.autocast("bfloat16") and every step of torch under
torch.autocast("cpu", dtype=torch.bfloat16): in both, the convolutions take bfloat16 operands and sum in float32,
and batch norm's statistics, the loss and Adam stay float32 (docs/precision.md). What each engine then computes
depends on the CPU: fastgan's bf16 products are its direct convolutions on VDPBF16PS where the CPU has AVX-512-BF16,
else its float32 kernels on operands rounded to bfloat16 (FASTGAN_BF16 chooses: docs/precision.md); torch's are
oneDNN's bf16 convolutions, which on a CPU without bf16 arithmetic convert to float32 inside the kernel too. The
first steps are validated at bfloat16's level (losses within 2 %).
"""
import argparse
import contextlib
import os
import statistics
import sys
import time
from unittest import mock

sys.path[:0] = [os.path.join(os.path.dirname(__file__), "..", d) for d in ("", "tests")]  # this checkout's fastgan


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["dcgan", "dcgan64", "mlp"], default="dcgan")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 for the DCGAN, 100 for the MLP GAN")
    p.add_argument("--steps", type=int, default=20, help="timed steps per engine (after 3 warm-up steps)")
    p.add_argument("--threads", type=int, default=2, help="threads for both engines (BLAS, OpenMP, torch)")
    p.add_argument("--nc", type=int, choices=[1, 3], default=None,
                   help="--model dcgan64: image channels, 1 as for MNIST-64 or 3 as for RGB folders (default: 3)")
    p.add_argument("--impl", default=None, help="pin one fastgan kernel implementation (reference, cpu)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: both engines under their autocast (bfloat16 products, float32 sums)")
    p.add_argument("--with-fp32", action="store_true",
                   help="with --precision bf16: also time each engine's recipe in fp32, and print bf16's speed over "
                        "fp32 for each engine")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="after timing, profile this many fastgan steps (its recipe, cProfile) and print the functions "
                        "that took the most time, native kernels included")
    p.add_argument("--numpy-first", action="store_true",
                   help="import NumPy before fastgan, as a user's script usually does (default: fastgan first)")
    return p.parse_args()


def main():
    args = parse()
    if args.nc is not None and args.model != "dcgan64":
        sys.exit(f"--nc {args.nc}: only --model dcgan64 has a channel option (the {args.model} model is grey)")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy and torch load their thread pools
    # torch brings its own libgomp, which fastgan._C then shares; bound its spin-wait so that neither engine's
    # OpenMP threads hold the cores while the other's BLAS runs (see benchmarks/kernels.py)
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    load_before = os.getloadavg()[0]
    if args.numpy_first:
        import numpy as np
        import fastgan
    else:
        assert "numpy" not in sys.modules, "the modules imported so far must not include NumPy"
        import fastgan
        import numpy as np
    import torch

    from fastgan import dispatch, gan
    from fastgan.gan import simultaneous_step, train_step
    from fastgan.models import image_shape
    from test_dcgan_step import torch_train_step, twin_dcgans
    from test_mlp_gan import torch_simultaneous_step, twin_mlp_gans
    from validation import BF16_LOSSES

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    if args.model in ("dcgan", "dcgan64"):
        options = {} if args.nc is None else {"nc": args.nc}
        shape = image_shape({"model": args.model, **options})  # (1, 28, 28), or (nc, 64, 64): the tutorial's model
        n, epoch_images = args.batch_size or 128, 60000
        channels = {1: " grey", 3: " RGB"}[shape[0]] if args.model == "dcgan64" else ""
        title = f"DCGAN {shape[1]}x{shape[2]}{channels}"
        (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_dcgans(model=args.model, **options)
        batches = [(np.tanh(rng.standard_normal((n, *shape))), rng.standard_normal((n, 100, 1, 1)))
                   for _ in range(4)]

        def fastgan_with_d_weight_grads(*a):
            with mock.patch.object(gan, "frozen", contextlib.nullcontext):  # D stays trainable in G's step
                return train_step(*a)
        ours = {"fastgan": train_step, "fastgan, G step also computes D's weight grads": fastgan_with_d_weight_grads}
        theirs = {"torch": torch_train_step,
                  "torch, G step skips D's weight grads": lambda *a: torch_train_step(*a, False)}
        # (label, fastgan variant, torch variant): the recipe first
        ratios = [("recipe (torch's G step computes D's weight gradients, fastgan's skips them)",
                   "fastgan", "torch"),
                  ("same work: both skip D's weight gradients in G's step",
                   "fastgan", "torch, G step skips D's weight grads"),
                  ("same work: both compute D's weight gradients in G's step",
                   "fastgan, G step also computes D's weight grads", "torch")]
    else:
        n, epoch_images, title = args.batch_size or 100, 50000, "MLP GAN (2014 paper)"
        (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_mlp_gans()
        batches = [(rng.random((n, 1, 28, 28)), rng.uniform(-3 ** 0.5, 3 ** 0.5, (n, 100))) for _ in range(4)]
        ours = {"fastgan": lambda *a: simultaneous_step(*a, d_loss_scale=0.5)}
        theirs = {"torch": torch_simultaneous_step}
        ratios = [("recipe (the same work in both)", "fastgan", "torch")]
    batches = [(real.astype(np.float32), z.astype(np.float32)) for real, z in batches]

    bf16 = args.precision == "bf16"
    fp32_variants = {}  # variant -> the bf16 variant it is the fp32 twin of
    if bf16 and args.with_fp32:
        ours["fastgan, fp32"], theirs["torch, fp32"] = ours["fastgan"], theirs["torch"]
        fp32_variants = {"fastgan, fp32": "fastgan", "torch, fp32": "torch"}

    def run(name, i):
        real, z = batches[i % len(batches)]
        if name in ours:
            with fastgan.autocast("bfloat16", enabled=bf16 and name not in fp32_variants):
                return ours[name](G, D, opt_g, opt_d, fastgan.tensor(real), fastgan.tensor(z))
        # cache_enabled=False: autocast otherwise keeps the bf16 copy of each weight until the block ends, and the G
        # step, inside the same block, would then see D's weights from before D's update
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and name not in fp32_variants,
                            cache_enabled=False):
            return theirs[name](tG, tD, topt_g, topt_d, torch.from_numpy(real), torch.from_numpy(z))

    with dispatch.use(args.impl):
        # validate: from identical weights, the first steps must give the same losses, every variant at least once
        # (the MLP GAN's without dropout: the two engines would draw different masks; the DCGAN has none, and its
        # batch norm stays in training mode)
        dropout = args.model == "mlp"
        D.train(not dropout), tD.train(not dropout)
        # the 64×64 model: Adam's first updates are nearly lr·sign(g), and over its 6 M parameters float32 rounding
        # flips enough signs that later losses drift apart by ~1e-3 between any two float32 engines (torch's float32
        # and float64 differ as much): only its first step is compared (tests/test_dcgan_step.py: float64, 3 steps)
        compared = 1 if args.model == "dcgan64" else 3
        pairs = [(a, b) for _, a, b in ratios]
        for i in range(max(3, len(pairs))):
            mine, other = pairs[i % len(pairs)]
            s, (ld, lg) = run(mine, i), run(other, i)
            tol = BF16_LOSSES if bf16 else dict(rtol=1e-3, atol=1e-4)
            if i < compared and not np.allclose([s["loss_d"], s["loss_g"]], [ld, lg], **tol):
                sys.exit(f"validation failed at step {i} ({mine} vs {other}): fastgan {s['loss_d']:.5f}/"
                         f"{s['loss_g']:.5f} vs torch {ld:.5f}/{lg:.5f}")
        D.train(), tD.train()
        # the variants take turns, step by step, so that all of them see the same machine (shared hosts drift)
        samples = {name: [] for name in (*ours, *theirs)}
        for i in range(args.steps):
            for name in samples:
                t0 = time.perf_counter()
                run(name, i)
                samples[name].append(time.perf_counter() - t0)
    times = {name: statistics.median(s) for name, s in samples.items()}

    iters = epoch_images // n
    impl = args.impl or ",".join(sorted(set(dispatch.describe("cpu").values())))
    if "cpu" in impl.split(","):  # how its float32 convolutions ran: FASTGAN_CONV=auto|im2col|direct
        impl = impl.replace("cpu", f"cpu (FASTGAN_CONV={dispatch.implementation('cpu').conv_choice()})")
    order = "NumPy imported before fastgan" if args.numpy_first else "fastgan imported before NumPy"
    print(f"{title} training step, batch {n}, {args.threads} threads, fastgan kernels: {impl}; {order}")
    if bf16:
        cpu = dispatch.implementation("cpu")
        print("precision bf16: fastgan.autocast('bfloat16') vs torch.autocast('cpu', torch.bfloat16); fastgan's bf16 "
              f"products: {cpu.bfloat16_path() if cpu else 'the NumPy reference'}")
    print(f"{'variant':48s} {'ms/step':>9s} {'img/s':>8s} {'s/epoch':>8s}")
    for name, t in times.items():
        print(f"{name:48s} {t * 1e3:9.1f} {n / t:8.0f} {t * iters:8.1f}")
    print("fastgan / torch throughput (median of the per-step ratios in brackets):")
    for label, mine, other in ratios:
        per_step = statistics.median(t / o for o, t in zip(samples[mine], samples[other], strict=True))
        print(f"  {times[other] / times[mine]:.2f}x ({per_step:.2f}x)  {label}")
    if fp32_variants:
        print("bf16 / fp32 throughput of each engine's recipe (median of the per-step ratios in brackets):")
        for fp32, twin in fp32_variants.items():
            per_step = statistics.median(f / b for b, f in zip(samples[twin], samples[fp32], strict=True))
            print(f"  {times[fp32] / times[twin]:.2f}x ({per_step:.2f}x)  {twin}")
    print(f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    if args.profile:
        profile(lambda: [run("fastgan", i) for i in range(args.profile)], args.profile)


def profile(steps, count, rows=15):
    """Where fastgan's steps spend their time: the functions with the most time of their own (a native kernel's
    whole call counts as its own time), per step."""
    import cProfile
    import pstats
    profiler = cProfile.Profile()
    profiler.runcall(steps)
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    print(f"\nprofile of {count} fastgan steps ({1e3 * total / count:.1f} ms per step under cProfile), by own time:")
    print(f"{'ms/step':>8s} {'share':>6s} {'calls/step':>10s}  function")
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:rows]
    for (file, line, name), (_, calls, own, _, _) in top:
        where = name if file == "~" else f"{os.path.basename(file)}:{line} {name}"
        print(f"{1e3 * own / count:8.2f} {own / total:6.1%} {calls / count:10.1f}  {where}")


if __name__ == "__main__":
    main()
