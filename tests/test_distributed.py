"""Data-parallel training (fastgan.distributed) against one process.

The multi-process tests start `mpiexec -n 2 python tests/distributed_worker.py SCENARIO OUT` with the mpiexec of
this Python environment (the `mpich` wheel of the test extras puts it beside the interpreter), read what each rank
wrote, and compare it with the same computation done here in one process. Without mpi4py they skip, saying so.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time

import numpy as np
import pytest
import torch

import fastgan
from fastgan import distributed
from fastgan import functional as F
from fastgan.distributed import Communicator, DataParallel, ShardedDropout, SyncBatchNorm
from fastgan.gan import frozen, generator_loss, simultaneous_step, train_step
from fastgan.nn.layers import Dropout
from distributed_worker import (BUCKET_BYTES, NZ, OP_ROWS, OP_SHAPES, allreduce_bases, global_batches, op_inputs,
                                small_dcgan, small_mlp_gan, state_of)
from oracle import TOLERANCE, check, random_inputs
from test_ops_norm_loss import TORCH_ACTIVATION

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
RANKS = 2
STEP_TOLERANCE = dict(rtol=1e-9, atol=1e-11)  # float64 steps that differ only in the order of their sums


def _why_no_mpi():
    try:
        import mpi4py  # noqa: F401  (the package only: MPI itself starts in the ranks)
    except ImportError as err:
        return f"mpi4py is not installed ({err}; pip install -e '.[mpi]'): no multi-process tests"
    return None


NO_MPI = _why_no_mpi()
needs_mpi = pytest.mark.skipif(NO_MPI is not None, reason=NO_MPI or "")


def find_mpiexec():
    """The launcher of this environment's MPI (pip's mpich puts it beside python), else the first on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        path = os.path.join(folder, "mpiexec")
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found beside python or on PATH: pip install mpich")
    return found


def mpiexec(tmp_path, scenario, *options, ranks=RANKS, timeout=120):
    """Run the worker on `ranks` processes -> (exit code, output, seconds, [each rank's results])."""
    out = tmp_path / scenario
    command = [find_mpiexec(), "-n", str(ranks), sys.executable, WORKER, scenario, str(out), *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # one core per rank
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env=env, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpiexec and every rank it started
        pytest.fail(f"{' '.join(command)} still ran after {timeout} s:\n{proc.communicate()[0]}")
    results = [dict(np.load(out / f"rank{r}.npz")) for r in range(ranks) if (out / f"rank{r}.npz").exists()]
    return proc.returncode, output, time.monotonic() - started, results


def run_ok(tmp_path, scenario, *options, ranks=RANKS):
    code, output, _, results = mpiexec(tmp_path, scenario, *options, ranks=ranks)
    assert code == 0 and len(results) == ranks, f"the {scenario} ranks failed (exit code {code}):\n{output}"
    return results


def assert_states_close(ours, expected, **tol):
    assert sorted(ours) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(ours[name], value, err_msg=name, **tol)


def assert_ranks_identical(results):
    for r, other in enumerate(results[1:], 1):
        for name, value in results[0].items():
            np.testing.assert_array_equal(other[name], value, err_msg=f"{name}: rank {r} differs from rank 0")


# --- one process: the pieces ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(8, 5), (1, 3, 4, 5), (3, 7, 5, 2)])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
def test_sync_batch_norm_on_one_rank_is_batch_norm(impl, dtype, shape, activation):
    c = shape[1]
    x, gamma, beta = random_inputs(shape, (c,), (c,), dtype=dtype)
    x = x * 2 + 0.5
    ours_stats = [fastgan.tensor(np.zeros(c, dtype)), fastgan.tensor(np.ones(c, dtype))]
    torch_stats = [torch.zeros(c, dtype=torch.from_numpy(x).dtype), torch.ones(c, dtype=torch.from_numpy(x).dtype)]
    check(lambda x, g, b: distributed.sync_batch_norm(x, *ours_stats, g, b, Communicator(), 0.1, 1e-5, activation),
          lambda x, g, b: TORCH_ACTIVATION[activation](
              torch.nn.functional.batch_norm(x, *torch_stats, g, b, True, 0.1, 1e-5), 0.2),
          [x, gamma, beta], dtype=dtype)
    for ours, theirs in zip(ours_stats, torch_stats):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), **TOLERANCE[dtype])


def test_sync_batch_norm_statistics_survive_a_large_mean():
    """Σx²/M − μ² cancels when |μ| ≫ σ: the squares must not be rounded to float32 first."""
    x = (1000 + np.random.default_rng(0).standard_normal((64, 3))).astype(np.float32)
    exact = x.astype(np.float64)
    expected = (exact - exact.mean(0)) / np.sqrt(exact.var(0) + 1e-5)
    y = distributed.sync_batch_norm(fastgan.tensor(x), None, None, None, None, Communicator())
    np.testing.assert_allclose(y.numpy(), expected, rtol=0, atol=1e-4)  # float32 squares: off by 4e-3


def test_data_parallel_layers_keep_parameters_names_and_order():
    G, _, opt_g, _ = small_dcgan()
    names, params = list(G.state_dict()), G.parameters()
    order = [type(m).__name__ for m in G]
    distributed.to_data_parallel(G, Communicator(), sync_bn=True)
    assert [type(m).__name__ for m in G] == [n.replace("BatchNorm2d", "SyncBatchNorm") for n in order]
    assert list(G.state_dict()) == names
    assert all(a is b for a, b in zip(G.parameters(), params)), "the optimiser's Parameters must stay G's"
    assert all(a is b for a, b in zip(opt_g.params, G.parameters()))
    _, mlp_d, _, _ = small_mlp_gan()
    distributed.to_data_parallel(mlp_d, Communicator())
    assert sum(isinstance(m, ShardedDropout) for m in mlp_d.modules()) == 3
    assert not any(type(m) is Dropout or isinstance(m, SyncBatchNorm) for m in mlp_d.modules())


def test_sync_batch_norm_in_eval_mode_uses_the_running_statistics():
    G, *_ = small_dcgan()
    z = fastgan.tensor(np.random.default_rng(0).standard_normal((3, NZ, 1, 1)))
    expected = G.eval()(z).numpy()
    distributed.to_data_parallel(G, Communicator(), sync_bn=True)
    np.testing.assert_array_equal(G.eval()(z).numpy(), expected)


def test_sharded_dropout_draws_the_global_batch_mask():
    x = fastgan.tensor(np.ones((6, 10)))
    fastgan.manual_seed(0)
    whole = F.dropout(x, 0.5).numpy()
    comm = Communicator()
    comm.rank, comm.size = 1, 3  # the second of three ranks: rows 2 and 3 of the global batch of 6
    fastgan.manual_seed(0)
    np.testing.assert_array_equal(ShardedDropout(0.5, comm)(fastgan.tensor(np.ones((2, 10)))).numpy(), whole[2:4])


def test_shard_takes_this_ranks_rows_and_rejects_an_uneven_split():
    comm = Communicator()
    comm.rank, comm.size = 1, 3
    dp = DataParallel.__new__(DataParallel)
    dp.comm = comm
    np.testing.assert_array_equal(dp.shard(np.arange(9)), [3, 4, 5])
    with pytest.raises(ValueError, match="a global batch of 8 does not split evenly over 3 ranks"):
        dp.shard(np.arange(8))


def test_bucket_size_must_be_positive():
    with pytest.raises(ValueError, match="bucket_bytes must be positive"):
        distributed.allreduce_arrays(Communicator(), [np.ones(3)], "test", bucket_bytes=0)


def test_one_process_data_parallel_is_the_plain_step():
    """DataParallel with one rank changes nothing: same weights and losses as the plain steps."""
    G, D, opt_g, opt_d = small_dcgan()
    plain = [train_step(G, D, opt_g, opt_d, fastgan.tensor(r), fastgan.tensor(z))
             for r, z in global_batches((NZ, 1, 1))]
    G2, D2, opt_g2, opt_d2 = small_dcgan()
    dp = DataParallel(Communicator(), (G2, D2), (opt_g2, opt_d2))
    ours = [dp.step(train_step, G2, D2, opt_g2, opt_d2, fastgan.tensor(dp.shard(r)), fastgan.tensor(dp.shard(z)))
            for r, z in global_batches((NZ, 1, 1))]
    assert ours == plain
    assert_states_close(state_of("G", G2), state_of("G", G), rtol=0, atol=0)


def test_watchdog_calls_expire_when_a_collective_waits_too_long():
    messages = []
    dog = distributed.Watchdog(0.2, messages.append)
    dog.enter("allreduce (gradients)")
    deadline = time.monotonic() + 5
    while not messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert messages and re.match(r"allreduce \(gradients\) has waited \d+ s \(timeout 0.2 s\) for the other ranks",
                                 messages[0]), messages


def test_started_by_a_launcher_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py fails
    with pytest.raises(RuntimeError, match=r"started by an MPI launcher, but mpi4py cannot be imported .*\[mpi\]"):
        distributed.init()


def test_a_failing_rank_alone_raises_as_usual():
    def main():
        raise KeyError("alone")
    with pytest.raises(KeyError, match="alone"):
        distributed.run_on_every_rank(Communicator(), main)


# --- two ranks against one process ----------------------------------------------------------------------------------

@needs_mpi
def test_allreduce_sums_and_averages_every_dtype_and_bucket_size(tmp_path):
    results = run_ok(tmp_path, "allreduce")
    assert_ranks_identical(results)
    got = results[0]
    total = sum(range(1, RANKS + 1))  # rank r contributes (r + 1)·base
    for dtype, base in allreduce_bases().items():
        for bucket in BUCKET_BYTES:
            for i, b in enumerate(base):
                for kind, expected in (("sum", total * b), ("mean", total * b / RANKS)):
                    value = got[f"{kind}/{np.dtype(dtype).name}/{bucket}/{i}"]
                    assert value.dtype == dtype, f"{kind}, bucket {bucket}: dtype {value.dtype}"
                    np.testing.assert_array_equal(value, expected, err_msg=f"{kind}, {dtype}, bucket {bucket}")
    np.testing.assert_array_equal(got["mixed/0"], np.full(3, 1.5, np.float32))
    np.testing.assert_array_equal(got["mixed/1"], np.full(2, 1.5))
    np.testing.assert_array_equal(got["grad/0"], np.full((2, 2), 1.0))  # ranks 0 and 2: mean 1
    np.testing.assert_array_equal(got["grad/2"], np.ones(5))
    assert got["grad/1 is None"], "a parameter without a gradient must keep none"
    fastgan.manual_seed(0)
    from fastgan.models.dcgan import dcgan_generator
    assert_states_close({k: v for k, v in got.items() if k.startswith("G.")},
                        state_of("G", dcgan_generator(nz=NZ, width=4)), rtol=0, atol=0)


@needs_mpi
def test_sync_batch_norm_over_uneven_shards_is_the_global_batch_norm(tmp_path):
    results = run_ok(tmp_path, "sync_bn_op")
    bounds = np.cumsum((0,) + OP_ROWS)
    for shape in OP_SHAPES:
        for dtype in (np.float64, np.float32):
            for activation in (None, "relu", "leaky_relu"):
                x, gamma, beta, upstream = op_inputs(shape, dtype)
                x, gamma, beta = (fastgan.tensor(a, requires_grad=True) for a in (x, gamma, beta))
                running = fastgan.tensor(np.zeros(shape[1], dtype)), fastgan.tensor(np.ones(shape[1], dtype))
                y = F.batch_norm(x, *running, gamma, beta, True, 0.1, 1e-5, activation, 0.2)
                y.backward(fastgan.tensor(upstream))
                key, tol = f"{shape}/{np.dtype(dtype).name}/{activation}", TOLERANCE[dtype]
                for r, got in enumerate(results):
                    rows = slice(bounds[r], bounds[r + 1])
                    np.testing.assert_allclose(got[f"{key}/y"], y.numpy()[rows], err_msg=f"{key} y, rank {r}", **tol)
                    np.testing.assert_allclose(got[f"{key}/dx"], x.grad.numpy()[rows], err_msg=f"{key} dx", **tol)
                    np.testing.assert_allclose(got[f"{key}/running_mean"], running[0].numpy(), **tol)
                    np.testing.assert_allclose(got[f"{key}/running_var"], running[1].numpy(), **tol)
                for name, expected in (("dgamma", gamma.grad), ("dbeta", beta.grad)):  # local: their sum is it
                    np.testing.assert_allclose(sum(got[f"{key}/{name}"] for got in results), expected.numpy(),
                                               err_msg=f"{key} {name}", **tol)


def one_process_dcgan_steps():
    G, D, opt_g, opt_d = small_dcgan()
    stats = [train_step(G, D, opt_g, opt_d, fastgan.tensor(r), fastgan.tensor(z))
             for r, z in global_batches((NZ, 1, 1))]
    return {**state_of("G", G), **state_of("D", D)}, stats


@needs_mpi
def test_with_sync_bn_two_ranks_take_one_process_steps(tmp_path):
    results = run_ok(tmp_path, "dcgan", "--sync-bn")
    assert_ranks_identical(results)
    expected, stats = one_process_dcgan_steps()
    got = results[0]
    assert_states_close({k: v for k, v in got.items() if not k.startswith("stats/")}, expected, **STEP_TOLERANCE)
    for name in stats[0]:
        np.testing.assert_allclose(got[f"stats/{name}"], [s[name] for s in stats], err_msg=name, **STEP_TOLERANCE)


def per_shard_batch_norm_steps(ranks):
    """What `ranks` ranks without sync BN compute, in one process: every shard normalised by its own statistics
    (its own running statistics too, averaged over the shards after the step), the shards' gradients averaged."""
    G, D, opt_g, opt_d = small_dcgan()
    buffers = [t for m in (G, D) for _, t in m.named_buffers()]

    def load(state):
        for t, value in zip(buffers, state):
            t.data[...] = value

    bce = F.binary_cross_entropy_with_logits
    for real, z in global_batches((NZ, 1, 1)):
        reals, zs = np.split(real, ranks), np.split(z, ranks)
        states = [[t.data.copy() for t in buffers] for _ in range(ranks)]
        opt_d.zero_grad()
        fakes = []
        for r in range(ranks):
            load(states[r])
            (bce(D(fastgan.tensor(reals[r])), 1.0) * (1 / ranks)).backward()
            fakes.append(G(fastgan.tensor(zs[r])))
            (bce(D(fakes[r].detach()), 0.0) * (1 / ranks)).backward()
            states[r] = [t.data.copy() for t in buffers]
        opt_d.step()
        opt_g.zero_grad()
        for r in range(ranks):
            load(states[r])
            with frozen(D):
                (generator_loss(D(fakes[r])) * (1 / ranks)).backward()
            states[r] = [t.data.copy() for t in buffers]
        opt_g.step()
        load([sum(values) / ranks for values in zip(*states)])
    return {**state_of("G", G), **state_of("D", D)}


@needs_mpi
def test_without_sync_bn_each_rank_normalises_its_shard(tmp_path):
    """Per-rank statistics (the default): the step of one process that accumulates the shards' gradients, each shard
    normalised by its own statistics; the running statistics are the shards' averaged. Not the global batch's step."""
    results = run_ok(tmp_path, "dcgan")
    assert_ranks_identical(results)
    got = {k: v for k, v in results[0].items() if not k.startswith("stats/")}
    assert_states_close(got, per_shard_batch_norm_steps(RANKS), **STEP_TOLERANCE)
    global_batch, _ = one_process_dcgan_steps()
    gap = max(np.max(np.abs(got[k] - v)) for k, v in global_batch.items())
    assert gap > 1e-6, f"per-rank batch norm should differ from the global batch's, differs by only {gap:.1e}"


@needs_mpi
def test_mlp_gan_with_dropout_two_ranks_take_one_process_steps(tmp_path):
    results = run_ok(tmp_path, "mlp")
    assert_ranks_identical(results)
    G, D, opt_g, opt_d = small_mlp_gan()
    stats = [simultaneous_step(G, D, opt_g, opt_d, fastgan.tensor((r + 1) / 2), fastgan.tensor(z), d_loss_scale=0.5)
             for r, z in global_batches((NZ,))]
    got = results[0]
    assert_states_close({k: v for k, v in got.items() if k[:2] in ("G.", "D.")},
                        {**state_of("G", G), **state_of("D", D)}, **STEP_TOLERANCE)
    np.testing.assert_allclose(got["stats/loss_d"], [s["loss_d"] for s in stats], **STEP_TOLERANCE)
    assert bytes(got["rng"]).decode() == repr(fastgan.get_rng_state()), "the ranks drew other random numbers"


# --- failures: the job ends promptly, naming the rank ---------------------------------------------------------------

PROMPT_S = 30  # a hang would run into mpiexec()'s timeout instead


@needs_mpi
def test_a_rank_that_raises_ends_the_job_naming_itself(tmp_path):
    code, output, seconds, _ = mpiexec(tmp_path, "dcgan", "--fail", "raise", "--fail-at-step", "1")
    assert code != 0 and seconds < PROMPT_S, (code, seconds, output)
    assert output.count("Traceback") == 1 and "RuntimeError: a deliberate failure in the test" in output, output
    assert re.search(r"fastgan: rank 1 of 2: failed with RuntimeError: a deliberate failure in the test; ending all "
                     r"2 ranks \(MPI_Abort\)", output), output


@needs_mpi
def test_a_killed_rank_ends_the_job_and_the_rank_map_names_it(tmp_path):
    code, output, seconds, _ = mpiexec(tmp_path, "dcgan", "--fail", "kill", "--fail-at-step", "1")
    assert code != 0 and seconds < PROMPT_S, (code, seconds, output)
    pids = re.findall(r"rank \d = pid (\d+) on ", output)
    assert len(pids) == 2, f"rank 0 prints the rank map at the start:\n{output}"
    # mpiexec names the first process it reaps: usually the killed rank 1, sometimes rank 0, which it killed itself
    named = re.search(r"BAD TERMINATION.*\n.*PID (\d+) ", output)
    assert named and named.group(1) in pids and "EXIT CODE: 9" in output, output


@needs_mpi
def test_a_stuck_rank_ends_the_job_after_the_timeout(tmp_path):
    code, output, seconds, _ = mpiexec(tmp_path, "dcgan", "--fail", "hang", "--fail-at-step", "1", "--timeout", "2")
    assert code != 0 and seconds < PROMPT_S, (code, seconds, output)
    assert re.search(r"fastgan: rank 0 of 2: allreduce \(\w+\) has waited \d+ s \(timeout 2 s\) for the other ranks",
                     output), output


# --- a GPU: the NCCL path under `mpiexec -n 1` ---------------------------------------------------------------------

def _why_no_nccl():
    from test_gpu import NO_GPU
    return NO_MPI or NO_GPU


@pytest.mark.gpu
def test_nccl_on_one_gpu_takes_the_cpu_steps(tmp_path):
    why = _why_no_nccl()
    if why:
        pytest.skip(why)
    (got,) = run_ok(tmp_path, "nccl", ranks=1)
    np.testing.assert_array_equal(got["values"], np.arange(10.0))
    assert got["sync_bn_calls"] > 0, "the batch norms did not go through the communicator"
    expected, _ = one_process_dcgan_steps()
    assert_states_close({k: v for k, v in got.items() if k[:2] in ("G.", "D.")}, expected, **STEP_TOLERANCE)
