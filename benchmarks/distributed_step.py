"""A data-parallel DCGAN step: R ranks × T threads against one process × R·T threads, on the same global batch.

    python benchmarks/distributed_step.py                     # 2 ranks × 1 thread vs 1 process × 2 threads, batch 128
    python benchmarks/distributed_step.py --sync-bn --rounds 3
    mpiexec -n 2 python benchmarks/distributed_step.py --worker --threads 1     # one configuration by hand

The driver runs three configurations, each in its own processes (mpiexec for the ranks), one after the other,
`--rounds` times in turn (the host's speed drifts: compare configurations of the same round): R ranks × T threads,
one process × R·T threads, and one process × T threads (over which the ideal speed-up of the ranks is R). Each
trains the 28×28 DCGAN (float32, two Adams) on the same random global batches, checks after the warm-up that the
ranks hold the same weights, then times the steps. Printed per configuration: the median ms/step and img/s, and
per step the bytes and milliseconds of each kind of collective (gradients: one all-reduce per player; sync_bn: one
per batch norm forward and one per backward; buffers: the running statistics without sync BN; metrics: the step's
losses) and, for comparison, one all-reduce of each player's gradient bytes alone after a barrier: the transfer
itself, without the wait for a slower rank that the step's all-reduces include.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time

HERE = os.path.abspath(__file__)


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=2, help="processes of the data-parallel configuration")
    p.add_argument("--threads", type=int, default=1, help="threads per rank (the single process gets ranks × this)")
    p.add_argument("--batch-size", type=int, default=128, help="the global batch (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (after 3 warm-up steps)")
    p.add_argument("--rounds", type=int, default=2, help="times each configuration runs, in turn")
    p.add_argument("--sync-bn", action="store_true", help="batch norm over the global batch")
    p.add_argument("--bucket-bytes", type=int, default=None, help="split the gradient buffer into such messages")
    p.add_argument("--worker", action="store_true", help="run one configuration here (under mpiexec for ranks)")
    return p.parse_args()


def worker(args):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy and the kernels load their thread pools
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), ".."))
    import fastgan
    import numpy as np
    from fastgan import distributed
    from fastgan.gan import train_step
    from fastgan.models.recipe import DCGAN_RECIPE
    from fastgan.models.dcgan import dcgan_mnist

    comm = distributed.init()
    fastgan.manual_seed(0)
    G, D = dcgan_mnist()
    opt_g, opt_d = (DCGAN_RECIPE.make_optimizer(m.parameters(), 2e-4) for m in (G, D))
    dp = distributed.DataParallel(comm, (G, D), (opt_g, opt_d), sync_bn=args.sync_bn, bucket_bytes=args.bucket_bytes)
    rng = np.random.default_rng(0)
    batches = [(np.tanh(rng.standard_normal((args.batch_size, 1, 28, 28))).astype(np.float32),
                rng.standard_normal((args.batch_size, 100, 1, 1)).astype(np.float32)) for _ in range(4)]

    def step(i):
        real, z = batches[i % len(batches)]
        return dp.step(train_step, G, D, opt_g, opt_d, fastgan.tensor(dp.shard(real)), fastgan.tensor(dp.shard(z)))

    for i in range(3):
        step(i)
    dp.check_in_sync()
    comm.traffic.clear()
    comm.barrier()
    times = []
    for i in range(args.steps):
        started = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - started)
    traffic = {tag: {"calls": c / args.steps, "bytes": b / args.steps, "ms": 1e3 * s / args.steps}
               for tag, (c, b, s) in comm.traffic.items() if tag != "barrier"}

    alone = {}  # one all-reduce of each player's gradient bytes, the ranks having just met at a barrier
    for name, model in (("G", G), ("D", D)):
        flat = np.zeros(sum(p.numel() for p in model.parameters()), np.float32)
        seconds = []
        for _ in range(10):
            comm.barrier()
            started = time.perf_counter()
            comm.allreduce(flat, "alone")
            seconds.append(time.perf_counter() - started)
        alone[name] = {"bytes": flat.nbytes, "ms": 1e3 * statistics.median(seconds)}
    if comm.rank == 0:
        print("RESULT " + json.dumps({"ranks": comm.size, "threads": args.threads, "batch": args.batch_size,
                                      "ms_step": 1e3 * statistics.median(times), "traffic": traffic,
                                      "alone": alone, "comm": comm.name}), flush=True)


def mpiexec():
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        if os.access(os.path.join(folder, "mpiexec"), os.X_OK):
            return os.path.join(folder, "mpiexec")
    return shutil.which("mpiexec") or sys.exit("no mpiexec found: pip install -e '.[mpi]'")


def run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def report(result):
    config = f"{result['ranks']} rank{'s' if result['ranks'] > 1 else ''} × {result['threads']} thread" + \
             ("s" if result["threads"] > 1 else "")
    line = f"{config:<20} {result['ms_step']:8.1f} ms/step {result['batch'] / result['ms_step'] * 1e3:7.0f} img/s"
    if result["ranks"] > 1:
        comm = ", ".join(f"{tag} {t['calls']:.0f}× {t['bytes'] / 1e6:.3f} MB {t['ms']:.2f} ms"
                         for tag, t in sorted(result["traffic"].items()))
        alone = ", ".join(f"{name}'s {a['bytes'] / 1e6:.2f} MB in {a['ms']:.2f} ms"
                          for name, a in result["alone"].items())
        line += f"\n{'':20} per step: {comm}\n{'':20} an all-reduce alone: {alone}"
    print(line, flush=True)


def main():
    args = parse()
    if args.worker:
        return worker(args)
    common = [HERE, "--worker", "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    common += ["--sync-bn"] if args.sync_bn else []
    common += ["--bucket-bytes", str(args.bucket_bytes)] if args.bucket_bytes else []
    single = [sys.executable] + common + ["--threads", str(args.ranks * args.threads)]
    alone = [sys.executable] + common + ["--threads", str(args.threads)]
    ranks = [mpiexec(), "-n", str(args.ranks), sys.executable] + common + ["--threads", str(args.threads)]
    print(f"DCGAN 28x28, global batch {args.batch_size}, float32, {'sync' if args.sync_bn else 'per-rank'} batch "
          f"norm, median of {args.steps} steps")
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}:")
        one, many, base = run(single), run(ranks), run(alone)
        for result in (one, many, base):
            report(result)
        print(f"{'':20} {args.ranks} ranks: {one['ms_step'] / many['ms_step']:.2f}× the speed of one process with "
              f"{args.ranks * args.threads} threads, {base['ms_step'] / many['ms_step']:.2f}× that of one with "
              f"{args.threads} ({many['comm']})")


if __name__ == "__main__":
    main()
