"""The whole 28×28 DCGAN training step (both players, both Adams), fastgan vs PyTorch eager, in one process.

    python benchmarks/train_step.py                 # batch 128, 2 threads
    python benchmarks/train_step.py --batch-size 64 --steps 30 --impl reference

Both engines train the same model (same weights, batch and noise) with the same number of threads; the first steps
are checked to agree before anything is timed, then the engines take turns step by step. Prints the median step time, img/s, seconds per MNIST epoch
(60000 // batch steps) and fastgan's speed relative to torch.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
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
    from fastgan.gan import train_step
    from test_dcgan_step import torch_train_step, twin_dcgans

    torch.set_num_threads(args.threads)
    (G, D, opt_g, opt_d), (tG, tD, topt_g, topt_d) = twin_dcgans()
    rng = np.random.default_rng(0)
    n = args.batch_size
    batches = [(np.tanh(rng.standard_normal((n, 1, 28, 28))).astype(np.float32),
                rng.standard_normal((n, 100, 1, 1)).astype(np.float32)) for _ in range(4)]

    def ours(i):
        real, z = batches[i % len(batches)]
        return train_step(G, D, opt_g, opt_d, fastgan.tensor(real), fastgan.tensor(z))

    def theirs(i):
        real, z = batches[i % len(batches)]
        return torch_train_step(tG, tD, topt_g, topt_d, torch.from_numpy(real), torch.from_numpy(z))

    with dispatch.use(args.impl):
        # validate: the first steps from identical weights must give the same losses
        for i in range(3):
            s, (ld, lg) = ours(i), theirs(i)
            if not np.allclose([s["loss_d"], s["loss_g"]], [ld, lg], rtol=1e-3, atol=1e-4):
                sys.exit(f"validation failed at step {i}: fastgan {s['loss_d']:.5f}/{s['loss_g']:.5f} vs torch "
                         f"{ld:.5f}/{lg:.5f}")
        # the engines take turns, step by step, so that both see the same machine (shared hosts drift)
        samples = {"fastgan": [], "torch": []}
        for i in range(args.steps):
            for name, step in (("fastgan", ours), ("torch", theirs)):
                t0 = time.perf_counter()
                step(i)
                samples[name].append(time.perf_counter() - t0)
        times = {name: statistics.median(s) for name, s in samples.items()}
        pair_ratio = statistics.median(t / o for o, t in zip(samples["fastgan"], samples["torch"]))

    iters = 60000 // n
    impl = args.impl or ",".join(sorted(set(dispatch.describe("cpu").values())))
    print(f"DCGAN 28x28 training step, batch {n}, {args.threads} threads, fastgan kernels: {impl}")
    print(f"{'engine':10s} {'ms/step':>9s} {'img/s':>8s} {'s/epoch':>8s}")
    for name, t in times.items():
        print(f"{name:10s} {t * 1e3:9.1f} {n / t:8.0f} {t * iters:8.1f}")
    print(f"fastgan / torch throughput: {times['torch'] / times['fastgan']:.2f}x "
          f"(median of the per-step ratios: {pair_ratio:.2f}x)")


if __name__ == "__main__":
    main()
