"""A whole GAN training step (both players, both optimisers), fastgan vs PyTorch eager, in one process.

    python benchmarks/train_step.py                 # the 28×28 DCGAN (two Adams), batch 128, 2 threads
    python benchmarks/train_step.py --batch-size 64 --steps 30 --impl reference
    python benchmarks/train_step.py --model mlp     # the 2014 paper's MLP GAN (simultaneous SGD step), batch 100
    python benchmarks/train_step.py --model dcgan64 # the DCGAN tutorial's 64×64 RGB model (ngf = ndf = 64)

Both engines train the same model (same weights, batch and noise) with the same number of threads; the first steps
are checked to agree before anything is timed (the MLP GAN's with D's dropout off: the engines draw different
masks), then the engines take turns step by step. Prints the median step time, img/s, seconds per epoch (60000 //
batch steps for the DCGANs, 50000 // batch for the MLP GAN, which trains on train[0:50000]) and fastgan's speed
relative to torch.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["dcgan", "dcgan64", "mlp"], default="dcgan")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 for the DCGAN, 100 for the MLP GAN")
    p.add_argument("--steps", type=int, default=20, help="timed steps per engine (after 3 warm-up steps)")
    p.add_argument("--threads", type=int, default=2, help="threads for both engines (BLAS, OpenMP, torch)")
    p.add_argument("--impl", default=None, help="pin one fastgan kernel implementation (reference, cpu)")
    return p.parse_args()


def main():
    args = parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy and torch load their thread pools
    # torch brings its own libgomp, which fastgan._C then shares; bound its spin-wait so that neither engine's
    # OpenMP threads hold the cores while the other's BLAS runs (see benchmarks/kernels.py)
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    import numpy as np
    import torch

    import fastgan
    from fastgan import dispatch
    from fastgan.gan import simultaneous_step, train_step
    from fastgan.models import image_shape
    from test_dcgan_step import torch_train_step, twin_dcgans
    from test_mlp_gan import torch_simultaneous_step, twin_mlp_gans

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    if args.model in ("dcgan", "dcgan64"):
        shape = image_shape({"model": args.model})  # (1, 28, 28), or (3, 64, 64) for the tutorial's RGB model
        n, epoch_images = args.batch_size or 128, 60000
        title = f"DCGAN {shape[1]}x{shape[2]}" + (" RGB" if shape[0] == 3 else "")
        (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_dcgans(model=args.model)
        batches = [(np.tanh(rng.standard_normal((n, *shape))), rng.standard_normal((n, 100, 1, 1)))
                   for _ in range(4)]
        our_step, torch_step = train_step, torch_train_step
    else:
        n, epoch_images, title = args.batch_size or 100, 50000, "MLP GAN (2014 paper)"
        (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_mlp_gans()
        batches = [(rng.random((n, 1, 28, 28)), rng.uniform(-3 ** 0.5, 3 ** 0.5, (n, 100))) for _ in range(4)]
        our_step = lambda *a: simultaneous_step(*a, d_loss_scale=0.5)  # noqa: E731
        torch_step = torch_simultaneous_step
    batches = [(real.astype(np.float32), z.astype(np.float32)) for real, z in batches]

    def ours(i):
        real, z = batches[i % len(batches)]
        return our_step(G, D, opt_g, opt_d, fastgan.tensor(real), fastgan.tensor(z))

    def theirs(i):
        real, z = batches[i % len(batches)]
        return torch_step(tG, tD, topt_g, topt_d, torch.from_numpy(real), torch.from_numpy(z))

    with dispatch.use(args.impl):
        # validate: the first steps from identical weights must give the same losses (the MLP GAN's without
        # dropout: the two engines would draw different masks; the DCGAN has none, and its batch norm stays in
        # training mode)
        dropout = args.model == "mlp"
        D.train(not dropout), tD.train(not dropout)
        # the 64×64 model: Adam's first updates are nearly lr·sign(g), and over its 6 M parameters float32 rounding
        # flips enough signs that later losses drift apart by ~1e-3 between any two float32 engines (torch's float32
        # and float64 differ as much): only its first step is compared (tests/test_dcgan_step.py: float64, 3 steps)
        compared = 1 if args.model == "dcgan64" else 3
        for i in range(3):
            s, (ld, lg) = ours(i), theirs(i)
            if i < compared and not np.allclose([s["loss_d"], s["loss_g"]], [ld, lg], rtol=1e-3, atol=1e-4):
                sys.exit(f"validation failed at step {i}: fastgan {s['loss_d']:.5f}/{s['loss_g']:.5f} vs torch "
                         f"{ld:.5f}/{lg:.5f}")
        D.train(), tD.train()
        # the engines take turns, step by step, so that both see the same machine (shared hosts drift)
        samples = {"fastgan": [], "torch": []}
        for i in range(args.steps):
            for name, step in (("fastgan", ours), ("torch", theirs)):
                t0 = time.perf_counter()
                step(i)
                samples[name].append(time.perf_counter() - t0)
        times = {name: statistics.median(s) for name, s in samples.items()}
        pair_ratio = statistics.median(t / o for o, t in zip(samples["fastgan"], samples["torch"]))

    iters = epoch_images // n
    impl = args.impl or ",".join(sorted(set(dispatch.describe("cpu").values())))
    print(f"{title} training step, batch {n}, {args.threads} threads, fastgan kernels: {impl}")
    print(f"{'engine':10s} {'ms/step':>9s} {'img/s':>8s} {'s/epoch':>8s}")
    for name, t in times.items():
        print(f"{name:10s} {t * 1e3:9.1f} {n / t:8.0f} {t * iters:8.1f}")
    print(f"fastgan / torch throughput: {times['torch'] / times['fastgan']:.2f}x "
          f"(median of the per-step ratios: {pair_ratio:.2f}x)")


if __name__ == "__main__":
    main()
