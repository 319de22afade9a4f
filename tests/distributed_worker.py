"""What each rank runs in the multi-process tests: `mpiexec -n R python tests/distributed_worker.py SCENARIO OUT`.

Each scenario writes OUT/rank<r>.npz; tests/test_distributed.py launches it, computes the same thing in one
process and compares. The small models, batches and single-process steps are defined here, once, for both sides.
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # the checkout's fastgan

import fastgan  # noqa: E402  (before NumPy: fastgan sets OpenBLAS's thread timeout)
import numpy as np  # noqa: E402
from fastgan import distributed, nn, optim  # noqa: E402
from fastgan.gan import simultaneous_step, train_step  # noqa: E402
from fastgan.models.dcgan import dcgan_discriminator, dcgan_generator  # noqa: E402
from fastgan.models.mlp_gan import mlp_gan_mnist  # noqa: E402

STEPS, BATCH, NZ = 3, 8, 8
BUCKET_BYTES = (None, 1, 8, 20, 100, 1 << 30)  # one buffer; every element alone; odd sizes; larger than it all
OP_SHAPES = ((8, 5), (8, 3, 3, 2))
OP_ROWS = (3, 5)  # rank 0 takes 3 rows of the 8, rank 1 the other 5: the statistics weigh each rank by its count


def small_dcgan(seed=0):
    """The DCGAN's layers at width 4, in float64, with two Adams (DCGAN's settings)."""
    fastgan.manual_seed(seed)
    G = nn.init.dcgan_init(dcgan_generator(nz=NZ, width=4)).double()
    D = nn.init.dcgan_init(dcgan_discriminator(width=4)).double()
    return G, D, *(optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (G, D))


def small_mlp_gan(seed=0):
    """The 2014 paper's MLP GAN (dropout in D), float64, with SGD with momentum."""
    fastgan.manual_seed(seed)
    G, D = mlp_gan_mnist(nz=NZ)
    G.double(), D.double()
    return G, D, *(optim.SGD(m.parameters(), lr=0.1, momentum=0.5) for m in (G, D))


def global_batches(noise_shape, seed=1):
    """STEPS global batches of (images, noise)."""
    rng = np.random.default_rng(seed)
    return [(np.tanh(rng.standard_normal((BATCH, 1, 28, 28))), rng.standard_normal((BATCH,) + noise_shape))
            for _ in range(STEPS)]


def op_inputs(shape, dtype, seed=2):
    """x, γ, β and the upstream gradient of one batch norm + activation call on the global batch."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    return ((rng.standard_normal(shape) * 2 + 0.5).astype(dtype), rng.uniform(0.5, 1.5, c).astype(dtype),
            rng.standard_normal(c).astype(dtype), rng.standard_normal(shape).astype(dtype))


def allreduce_bases(seed=3):
    """{dtype: arrays of integer values}: rank r contributes (r + 1)·base, so sums and means are exact in any order."""
    rng = np.random.default_rng(seed)
    return {dtype: [rng.integers(-50, 50, s).astype(dtype) for s in ((3, 4), (7,), (2, 3, 5), (1,))]
            for dtype in (np.float32, np.float64)}


def state_of(prefix, module):
    return {f"{prefix}.{name}": value for name, value in module.state_dict().items()}


# --- scenarios ----------------------------------------------------------------------------------------------------

def allreduce(comm, args):
    """Sums and means of allreduce_bases, for every bucket size; the gradient averager; the weights' broadcast."""
    out = {}
    for dtype, base in allreduce_bases().items():
        for bucket in BUCKET_BYTES:
            mine = [(comm.rank + 1) * b for b in base]
            for kind, average in (("sum", False), ("mean", True)):
                result = distributed.allreduce_arrays(comm, mine, "test", average, bucket)
                for i, a in enumerate(result):
                    out[f"{kind}/{np.dtype(dtype).name}/{bucket}/{i}"] = a
    # one call with both dtypes, and the gradient averager (a parameter without a gradient is left alone)
    mixed = [np.full(3, comm.rank + 1, np.float32), np.full(2, comm.rank + 1, np.float64)]
    for i, a in enumerate(distributed.allreduce_arrays(comm, mixed, "test", average=True)):
        out[f"mixed/{i}"] = a
    params = [nn.Parameter(np.zeros(s)) for s in ((2, 2), (3,), (5,))]
    params[0].grad, params[2].grad = fastgan.tensor(np.full((2, 2), comm.rank * 2.0)), fastgan.tensor(np.ones(5))
    distributed.GradientAverager(comm, bucket_bytes=16)(params)
    out["grad/0"], out["grad/2"], out["grad/1 is None"] = params[0].grad.numpy(), params[2].grad.numpy(), \
        np.array(params[1].grad is None)
    # rank 0's weights reach every rank
    fastgan.manual_seed(comm.rank)  # a different initialisation on every rank
    G = dcgan_generator(nz=NZ, width=4)
    distributed.broadcast_module(comm, G)
    out.update(state_of("G", G))
    return out


def sync_bn_op(comm, args):
    """One sync batch norm call per shape, activation and dtype; this rank takes OP_ROWS[rank] rows."""
    start, stop = sum(OP_ROWS[:comm.rank]), sum(OP_ROWS[:comm.rank + 1])
    out = {}
    for shape in OP_SHAPES:
        for dtype in (np.float64, np.float32):
            for activation in (None, "relu", "leaky_relu"):
                x, gamma, beta, upstream = op_inputs(shape, dtype)
                x = fastgan.tensor(x[start:stop], requires_grad=True)
                gamma, beta = fastgan.tensor(gamma, requires_grad=True), fastgan.tensor(beta, requires_grad=True)
                running = fastgan.tensor(np.zeros(shape[1], dtype)), fastgan.tensor(np.ones(shape[1], dtype))
                y = distributed.sync_batch_norm(x, *running, gamma, beta, comm, 0.1, 1e-5, activation, 0.2)
                y.backward(fastgan.tensor(upstream[start:stop]))
                key = f"{shape}/{np.dtype(dtype).name}/{activation}"
                for name, value in (("y", y), ("dx", x.grad), ("dgamma", gamma.grad), ("dbeta", beta.grad),
                                    ("running_mean", running[0]), ("running_var", running[1])):
                    out[f"{key}/{name}"] = value.numpy()
    return out


def dcgan(comm, args):
    """STEPS alternating steps of the small DCGAN, each rank on its shard of every global batch."""
    G, D, opt_g, opt_d = small_dcgan()
    dp = distributed.DataParallel(comm, (G, D), (opt_g, opt_d), sync_bn=args.sync_bn, bucket_bytes=args.bucket_bytes)
    stats = []
    for step, (real, z) in enumerate(global_batches((NZ, 1, 1))):
        if step == args.fail_at_step and comm.rank == 1:
            fail(args.fail)
        stats.append(dp.step(train_step, G, D, opt_g, opt_d, fastgan.tensor(dp.shard(real)),
                             fastgan.tensor(dp.shard(z))))
    dp.check_in_sync()
    return {**state_of("G", G), **state_of("D", D), **{f"stats/{k}": [s[k] for s in stats] for k in stats[0]}}


def mlp(comm, args):
    """STEPS simultaneous steps of the MLP GAN: D's dropout masks drawn for the global batch."""
    G, D, opt_g, opt_d = small_mlp_gan()
    dp = distributed.DataParallel(comm, (G, D), (opt_g, opt_d))
    stats = []
    for real, z in global_batches((NZ,)):
        real = (real + 1) / 2  # this G's pixels are in [0, 1]
        stats.append(dp.step(simultaneous_step, G, D, opt_g, opt_d, fastgan.tensor(dp.shard(real)),
                             fastgan.tensor(dp.shard(z)), d_loss_scale=0.5))
    dp.check_in_sync()
    return {**state_of("G", G), **state_of("D", D), **{f"stats/{k}": [s[k] for s in stats] for k in stats[0]},
            "rng": np.frombuffer(repr(fastgan.get_rng_state()).encode(), np.uint8)}


def nccl(comm, args):
    """On a GPU, under `mpiexec -n 1`: the NCCL communicator's calls, and the small DCGAN's sync-BN steps."""
    import cupy
    assert type(comm).__name__ == "NCCLCommunicator", f"expected NCCL on a GPU, got {comm.name}"
    values = cupy.arange(10, dtype=cupy.float64)
    comm.allreduce(values, "test")
    comm.broadcast(values, 0, "test")
    comm.barrier()
    G, D, opt_g, opt_d = small_dcgan()
    G.to("cuda"), D.to("cuda")
    dp = distributed.DataParallel(comm, (G, D), (opt_g, opt_d), sync_bn=True)
    stats = [dp.step(train_step, G, D, opt_g, opt_d, fastgan.tensor(dp.shard(real), device="cuda"),
                     fastgan.tensor(dp.shard(z), device="cuda")) for real, z in global_batches((NZ, 1, 1))]
    return {**state_of("G", G), **state_of("D", D), **{f"stats/{k}": [s[k] for s in stats] for k in stats[0]},
            "values": values.get(), "sync_bn_calls": comm.traffic["sync_bn"][0]}


def fail(how):
    """The ways a rank can go: an exception, killed by a signal (as by the OOM killer), stuck."""
    if how == "raise":
        raise RuntimeError("a deliberate failure in the test")
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "hang":
        time.sleep(120)


SCENARIOS = {"allreduce": allreduce, "sync_bn_op": sync_bn_op, "dcgan": dcgan, "mlp": mlp, "nccl": nccl}


def main(comm, args):
    ranks = comm.describe()  # a collective: every rank takes part, rank 0 prints
    if comm.rank == 0:
        print(ranks, flush=True)
    result = SCENARIOS[args.scenario](comm, args)
    os.makedirs(args.out, exist_ok=True)
    np.savez(os.path.join(args.out, f"rank{comm.rank}.npz"), **{k: np.asarray(v) for k, v in result.items()})
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("out")
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--bucket-bytes", type=int, default=None)
    p.add_argument("--fail", choices=["raise", "kill", "hang"], default=None)
    p.add_argument("--fail-at-step", type=int, default=-1)
    p.add_argument("--timeout", type=float, default=None, help="the watchdog's, in seconds")
    args = p.parse_args()
    comm = distributed.init("cuda" if args.scenario == "nccl" else "cpu", timeout=args.timeout)
    sys.exit(distributed.run_on_every_rank(comm, main, comm, args))
