"""The unrolled GAN's step on the ring, timed: vanilla, first-order and exact unrolling, and one D pass, in one process.

    python benchmarks/unrolled_step.py                  # K = 5, batch 512, the ring recipe, one BLAS thread
    python benchmarks/unrolled_step.py --unroll 3 --steps 20

A "D pass" is one training step of D alone on a fixed real and fake batch (forward on both, backward, Adam): the work
each look-ahead step adds. The lower bound of an unrolled step is a vanilla step plus K D passes; the exact step also
differentiates through each of them (a backward of the backward). The variants take turns step by step, so a load
that comes and goes touches all alike; wall-clock and CPU-time medians are printed with the load average.
"""
import argparse
import os
import statistics
import sys
import time

sys.path[:0] = [os.path.join(os.path.dirname(__file__), "..")]  # this checkout's fastgan

from threadpoolctl import threadpool_limits  # noqa: E402

import fastgan  # noqa: E402
from fastgan import optim  # noqa: E402
from fastgan.data.toy import TOY_2D  # noqa: E402
from fastgan.models.toy import toy_gan  # noqa: E402
from fastgan.theory.toy_run import ToyRunConfig, normal_noise  # noqa: E402
from fastgan.theory.unrolled import discriminator_loss, make_look_ahead, unrolled_step  # noqa: E402


def players(config):
    fastgan.manual_seed(0)
    G, D = toy_gan(config.nz, 2, config.hidden)
    betas = (config.beta1, config.beta2)
    return G, D, optim.Adam(G.parameters(), config.lr_g, betas, config.eps), \
        optim.Adam(D.parameters(), config.lr_d, betas, config.eps)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--unroll", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    config = ToyRunConfig()
    data = TOY_2D["ring"]()
    variants = {}
    for name, unroll, mode in (("vanilla", 0, None), ("first-order", args.unroll, "first-order"),
                               ("exact", args.unroll, "exact")):
        G, D, opt_g, opt_d = players(config)
        look_ahead = make_look_ahead(D, opt_d, mode) if unroll else None
        variants[name] = (lambda G=G, D=D, opt_g=opt_g, opt_d=opt_d, unroll=unroll, look_ahead=look_ahead:
                          unrolled_step(G, D, opt_g, opt_d, fastgan.Tensor(data.sample(config.batch_size)),
                                        normal_noise(config.batch_size, config.nz), unroll, look_ahead))
    G, D, _, opt_d = players(config)
    with fastgan.no_grad():   # a look-ahead step reuses the step's batch: so does the D pass
        fake = G(normal_noise(config.batch_size, config.nz))
    real = fastgan.Tensor(data.sample(config.batch_size))

    def d_pass():
        opt_d.zero_grad()
        discriminator_loss(D, real, fake)[0].backward()
        opt_d.step()
    variants["D pass"] = d_pass

    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    load = os.getloadavg()[0]
    with threadpool_limits(args.threads):
        for i in range(args.steps + 2):
            for name, step in variants.items():
                t, c = time.perf_counter(), time.process_time()
                step()
                if i >= 2:
                    wall[name].append(1e3 * (time.perf_counter() - t))
                    cpu[name].append(1e3 * (time.process_time() - c))
    med = {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in variants}
    print(f"ring, batch {config.batch_size}, K = {args.unroll}, {args.threads} BLAS thread(s), median of {args.steps} "
          f"steps; load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, (w, c) in med.items():
        print(f"  {name:12s} {w:8.1f} ms wall  {c:8.1f} ms CPU")
    for clock, k in (("wall", 0), ("CPU", 1)):
        vanilla, first, exact, d = (med[n][k] for n in ("vanilla", "first-order", "exact", "D pass"))
        bound = vanilla + args.unroll * d
        print(f"  {clock}: exact = {exact / vanilla:.2f}× vanilla, {exact / first:.2f}× first-order, "
              f"{exact / bound:.2f}× the bound vanilla + K D passes ({bound:.1f} ms; first-order "
              f"{first / bound:.2f}×); each exact look-ahead step ≈ {(exact - vanilla) / args.unroll / d:.2f} D passes")


if __name__ == "__main__":
    main()
