"""`mpiexec -n 2 python -m fastgan.train`: one run folder, exact resume (also with another number of ranks), the
global batch's steps with --sync-bn, a killed rank, and the options refused on several ranks.

The runs train the 28×28 DCGAN on `fake` data (random images, nothing to download) for a few steps of a small
batch; the CLI trains in float32 (it has no float64 mode), so the comparisons of R ranks with one process use a
float32 tolerance. The float64 equivalence of the steps themselves, to 1e-9, is tests/test_distributed.py's.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import load_checkpoint
from fastgan import train
from fastgan.distributed import Communicator
from fastgan.distributed.training import DataParallelTraining, OneProcess, parallel_for, share_the_cores
from test_distributed import NO_MPI, find_mpiexec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANKS = 2
SMALL = ["fake", "--limit", "16", "--batch-size", "16", "--no-progress", "--log-every", "1"]  # 1 step an epoch
PROMPT_S = 30  # a killed rank ends the job within this (a hang would run into the launch's timeout)
# R ranks against one process, both float32: the same sums in another order (the per-rank statistics and
# gradients, then their all-reduce). The losses and D's outputs that every step logs (the global batch's, averaged
# over the ranks) must agree to float32 rounding: LOGGED. The weights are looser: Adam's first updates are about
# ±lr·sign(g), so a gradient element near 0 whose rounding differs moves its weight by up to lr (2e-4) either way;
# they are compared as a whole, ‖a − b‖ ≤ WEIGHTS·‖b‖ over all of G's and D's. Later steps amplify such differences
# (measured: the logged numbers 5e-7 apart at the first two steps, 3e-6 at the third, 1.5e-4 at the fourth), so the
# runs compared take at most 2 steps. Measured after 2 Adam steps: weights 3e-6 (the DCGAN) and 1.5e-4 (the AC-GAN:
# G's weights; D's agree to 1e-7) apart; per-rank batch norm instead: logged values 1e-2 apart, weights 6e-3.
LOGGED = dict(rtol=1e-5, atol=1e-6)
WEIGHTS = 1e-3

needs_mpi = pytest.mark.skipif(NO_MPI is not None, reason=NO_MPI or "")


def launch(cwd, *args, ranks=RANKS, timeout=300):
    """`python -m fastgan.train SMALL ARGS` on `ranks` processes (0: plain python, no launcher) -> (exit code,
    output: stdout and stderr together)."""
    command = [sys.executable, "-m", "fastgan.train", *SMALL, *args]
    if ranks:
        command = [find_mpiexec(), "-n", str(ranks)] + command
    done = subprocess.run(command, cwd=cwd, env=environment(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, timeout=timeout)
    return done.returncode, done.stdout


def environment(cwd):
    """One core per rank; the checkout's fastgan; an empty cache (no classifier: no quality report)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
            "FASTGAN_CACHE": str(os.path.join(cwd, "cache"))}


def launch_ok(cwd, *args, ranks=RANKS):
    code, output = launch(cwd, *args, ranks=ranks)
    assert code == 0, f"exit code {code}:\n{output}"
    return output


def weights(run_dir):
    state = load_checkpoint(run_dir)
    return {f"{key}.{name}": value for key in ("G", "D") for name, value in state[key].items()}


def relative_difference(a, b):
    """‖weights of run a − those of run b‖ / ‖those of b‖, over every weight of G and D."""
    ours, theirs = weights(a), weights(b)
    assert sorted(ours) == sorted(theirs)
    squares = [(np.sum((ours[k].astype(np.float64) - v) ** 2), np.sum(v.astype(np.float64) ** 2))
               for k, v in theirs.items()]
    return float(np.sqrt(sum(d for d, _ in squares) / sum(n for _, n in squares)))


def logged_gap(a, b):
    """The largest difference of the numbers the two runs logged, step by step, beyond LOGGED's tolerance (0 if
    within it), relative to the tolerance; the runs must log the same steps."""
    ours, theirs = metric_records(a), metric_records(b)
    assert [sorted(r) for r in ours] == [sorted(r) for r in theirs], "the runs logged other steps"
    worst = 0.0
    for mine, other in zip(ours, theirs):
        for key, value in other.items():
            if isinstance(value, float):
                allowed = LOGGED["atol"] + LOGGED["rtol"] * abs(value)
                worst = max(worst, abs(mine[key] - value) / allowed)
            else:
                assert mine[key] == value, key
    return worst


def assert_same_run(a, b):
    """Run a took run b's steps: the same logged numbers, the same weights, to float32 rounding."""
    logged = logged_gap(a, b)
    assert logged <= 1, f"{a} logged numbers {logged:.1f}× the float32 tolerance {LOGGED} away from {b}'s"
    gap = relative_difference(a, b)
    assert gap <= WEIGHTS, f"{a} and {b}: weights {gap:.2e} apart relative (float32 rounding: at most {WEIGHTS:g})"


def metric_records(run_dir):
    """metrics.jsonl without its wall-clock fields."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in records]


# --- in one process: the refusals, and a run without a launcher -------------------------------------------------------

def two_rank_parallel():
    comm = Communicator()
    comm.rank, comm.size = 0, 2  # what rank 0 of two sees (no collective is called here)
    return DataParallelTraining(comm)


def test_one_process_is_the_plain_run():
    assert isinstance(parallel_for(None), OneProcess) and isinstance(parallel_for(Communicator()), OneProcess)
    alone = parallel_for(None)
    assert alone.writes and alone.refusals({"batch_size": 7, "minibatch_disc": [5, 3]}) == []
    assert alone.shard(np.arange(5)).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 7}, r"^--batch-size 7 does not split over 2 ranks: .*choose a batch size that 2 divides"),
    ({"minibatch_disc": [5, 3]}, r"^--minibatch-disc compares every sample with the others of its batch: on 2 ranks "
                                 r"it would see only its shard of 4 samples, not the global batch of 8"),
    ({"g_loss": "feature-matching"}, r"^--g-loss feature-matching matches the batch means of D's features: on 2 "
                                     r"ranks each would match its shard's means \(of 4 samples\)"),
])
def test_what_several_ranks_cannot_do_is_refused_naming_it(changes, message):
    config = {"batch_size": 8, "minibatch_disc": None, "g_loss": "non-saturating", **changes}
    (refused,) = two_rank_parallel().refusals(config)
    assert re.match(message, refused), refused


def test_what_several_ranks_can_do_is_not_refused():
    config = {"batch_size": 8, "minibatch_disc": None, "g_loss": "minimax", "vbn": True, "d_steps": 3,
              "conditional": "acgan", "sync_bn": True}
    assert two_rank_parallel().refusals(config) == []


@pytest.mark.parametrize("data", ["ring", "grid"])
def test_the_toy_data_refuses_several_ranks(tmp_path, data):
    comm = Communicator()
    comm.size = 2
    with pytest.raises(SystemExit, match=rf"^python -m fastgan.train {data} trains in one process: run it without "
                                         r"mpiexec"):
        train.main([data, "--out", str(tmp_path / "runs")], comm=comm)
    assert not (tmp_path / "runs").exists()


def test_each_rank_takes_its_share_of_the_cores(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits
    comm = Communicator()
    comm.local_size = 2  # two ranks on this node, not bound to cores: half of them each
    expected = comm.threads_per_rank()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert share_the_cores(comm) == "OMP_NUM_THREADS=3 CPU threads"  # the user's choice, left alone
    monkeypatch.delenv("OMP_NUM_THREADS")
    before = {info["user_api"]: info["num_threads"] for info in threadpool_info()}
    try:
        assert share_the_cores(comm) == f"{expected} CPU thread{'s' if expected > 1 else ''}"
        assert {info["num_threads"] for info in threadpool_info()} == {expected}
    finally:
        for api, threads in before.items():
            threadpool_limits(threads, user_api=api)


def test_one_process_takes_sync_bn_and_a_collective_timeout(tmp_path):
    """Without a launcher both flags are accepted (one process: its batch is the global batch); --sync-bn is a
    setting of the run, kept in its checkpoint."""
    out = str(tmp_path / "run")
    assert train.main([*SMALL, "--epochs", "1", "--sync-bn", "--collective-timeout", "5",
                       "--out", out]) == 0
    assert load_checkpoint(out)["config"]["sync_bn"] is True


@pytest.mark.parametrize("seconds", ["0", "-1", "nan"])
def test_a_bad_collective_timeout_is_refused_before_anything_is_written(tmp_path, capsys, seconds):
    with pytest.raises(SystemExit) as stop:
        train.main([*SMALL, "--collective-timeout", seconds, "--out", str(tmp_path / "run")])
    assert stop.value.code == 2 and not os.path.exists(tmp_path / "run")
    assert f"--collective-timeout must be a finite number of seconds > 0, got {float(seconds)!r}" in \
        capsys.readouterr().err


# --- two ranks ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The runs several tests compare, each launched once (in one folder, the working directory of all):
        straight          2 ranks, 2 epochs
        resumed           2 ranks, 1 epoch (kept as resumed-epoch-1), then resumed by 2 ranks to 2 epochs
        one-sync          1 process, --sync-bn, 1 epoch; copied to one-sync-resumed, resumed by 2 ranks to 2 epochs
        two-sync          2 ranks, --sync-bn, 1 epoch; copied to two-sync-resumed, resumed by 1 process to 2"""
    if NO_MPI:
        pytest.skip(NO_MPI)
    where = tmp_path_factory.mktemp("runs")
    outputs = {"straight": launch_ok(where, "--epochs", "2", "--out", "straight"),
               "first": launch_ok(where, "--epochs", "1", "--out", "resumed")}
    shutil.copytree(where / "resumed", where / "resumed-epoch-1")
    outputs["resume"] = launch_ok(where, "--resume", "resumed", "--epochs", "2")
    outputs["one-sync"] = launch_ok(where, "--epochs", "1", "--sync-bn", "--out", "one-sync", ranks=0)
    outputs["two-sync"] = launch_ok(where, "--epochs", "1", "--sync-bn", "--out", "two-sync")
    for name, ranks in (("one-sync", RANKS), ("two-sync", 0)):  # each resumed by the other number of ranks
        shutil.copytree(where / name, where / f"{name}-resumed")
        outputs[f"{name}-resumed"] = launch_ok(where, "--resume", f"{name}-resumed", "--epochs", "2", ranks=ranks)
    return where, outputs


@needs_mpi
def test_two_ranks_write_one_run_folder_and_print_once(runs):
    where, outputs = runs
    assert sorted(os.listdir(where)) == ["one-sync", "one-sync-resumed", "resumed", "resumed-epoch-1", "straight",
                                         "two-sync", "two-sync-resumed"], "files written outside the run folders"
    straight = where / "straight"
    assert {"config.json", "real_samples.png", "fake_samples_epoch_001.png", "fake_samples_epoch_002.png",
            "metrics.jsonl", "losses.png", "checkpoint.json"} <= set(os.listdir(straight))
    assert not [f for f in os.listdir(straight) if f.endswith(".tmp")]
    output = outputs["straight"]
    assert re.search(r"^2 ranks \(MPI: .*\): rank 0 = pid \d+ on .*, rank 1 = pid \d+ on .*; OMP_NUM_THREADS=1 CPU "
                     r"threads per rank$", output, re.M), output
    for once in ("run folder: straight", "[0/2][0/1] Loss_D:", "[1/2][0/1] Loss_D:", "epoch 2/2:", "done:"):
        assert output.count(once) == 1, f"{once!r} should be printed once (by rank 0):\n{output}"
    assert len([r for r in metric_records(straight) if "loss_d" in r]) == 2  # one line per step, not per rank
    assert load_checkpoint(straight)["epoch"] == 2


@needs_mpi
def test_two_ranks_resume_to_the_uninterrupted_result(runs):
    where, _ = runs
    straight, resumed = weights(where / "straight"), weights(where / "resumed")
    for name, value in straight.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    assert metric_records(where / "resumed") == metric_records(where / "straight")


@needs_mpi
def test_with_sync_bn_two_ranks_take_the_one_process_steps(runs):
    where, _ = runs
    assert_same_run(where / "two-sync", where / "one-sync")
    # the same comparison tells per-rank batch norm apart: another computation, not rounding
    logged = logged_gap(where / "resumed-epoch-1", where / "one-sync")
    assert logged > 100, f"per-rank batch norm logs numbers only {logged:.1f}× the tolerance away"


@needs_mpi
def test_a_resume_may_change_the_number_of_ranks(runs):
    """With --sync-bn every number of ranks takes the global batch's steps: one process resuming two ranks' first
    epoch and two ranks resuming one process's reach the same run, up to float32 rounding."""
    where, outputs = runs
    assert "resuming two-sync-resumed at epoch 1 of 2" in outputs["two-sync-resumed"]
    for name in ("one-sync-resumed", "two-sync-resumed"):
        assert load_checkpoint(where / name)["epoch"] == 2
    assert_same_run(where / "two-sync-resumed", where / "one-sync-resumed")


@needs_mpi
def test_vbn_and_d_steps_on_two_ranks_take_the_one_process_steps(tmp_path):
    """VBN (the same reference batch on every rank) and K D-steps (each a sharded batch), with --sync-bn for D's
    batch norm: one process's steps."""
    flags = ["--vbn", "--d-steps", "2", "--sync-bn", "--limit", "32", "--epochs", "1"]  # a round of 2 D-steps
    launch_ok(tmp_path, *flags, "--out", "one", ranks=0)
    launch_ok(tmp_path, *flags, "--out", "two")
    assert_same_run(tmp_path / "two", tmp_path / "one")


@needs_mpi
def test_a_conditional_mnist_run_on_two_ranks_takes_the_one_process_steps(tmp_path):
    """The labels of the real images are sharded with them, the labels requested of G drawn for the global batch:
    an AC-GAN on (synthetic) MNIST with --sync-bn takes one process's steps."""
    script = os.path.join(ROOT, "tests", "distributed_train_mnist.py")
    flags = ["mnist", "--conditional", "acgan", "--sync-bn", "--limit", "16", "--batch-size", "8", "--epochs", "1",
             "--no-progress", "--eval-samples", "0"]
    for out, launcher in (("one", []), ("two", [find_mpiexec(), "-n", str(RANKS)])):
        done = subprocess.run(launcher + [sys.executable, script, *flags, "--out", out], cwd=tmp_path,
                              env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, timeout=300)
        assert done.returncode == 0, done.stdout
    assert_same_run(tmp_path / "two", tmp_path / "one")


@needs_mpi
def test_errors_every_rank_meets_are_reported_once_and_end_every_rank(tmp_path, runs):
    code, output = launch(tmp_path, "--batch-size", "7", "--minibatch-disc", "5,3", "--out", "run")
    assert code == 2, output
    assert output.count("--batch-size 7 does not split over 2 ranks") == 1, output
    assert output.count("--minibatch-disc compares every sample") == 1, output
    assert "Traceback" not in output and "MPI_Abort" not in output, output
    assert not os.path.exists(tmp_path / "run")
    where, _ = runs
    code, output = launch(where, "--epochs", "1", "--out", "straight")
    assert code == 1 and output.count("--out straight already holds a run") == 1, output
    assert "MPI_Abort" not in output, output
    # in training: every rank finds the run diverged after the same step
    code, output = launch(tmp_path, "--lr", "1e9", "--epochs", "2", "--out", "diverged")
    assert code == 1 and output.count("error: training diverged in epoch 0") == 1, output
    assert "MPI_Abort" not in output and "checkpoint.json" not in os.listdir(tmp_path / "diverged"), output


@needs_mpi
def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes(tmp_path):
    log_path = tmp_path / "output.txt"
    command = [find_mpiexec(), "-n", str(RANKS), sys.executable, "-m", "fastgan.train", *SMALL, "--limit", "64",
               "--epochs", "3", "--out", "run"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=tmp_path, env=environment(tmp_path), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "run" / "checkpoint.json").exists():  # the first epoch's checkpoint
            assert proc.poll() is None, f"the run ended early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no checkpoint after 240 s:\n{log_path.read_text()}"
            time.sleep(0.05)
        pid = int(re.search(r"rank 1 = pid (\d+) on ", log_path.read_text()).group(1))
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        code = proc.wait(timeout=PROMPT_S)
        seconds = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert code != 0 and seconds < PROMPT_S, (code, seconds, output)
    # mpiexec names the first process it reaps: usually the killed rank 1, sometimes rank 0, which it killed itself
    named = re.search(r"BAD TERMINATION.*\n.*PID (\d+) ", output)
    assert named and named.group(1) in re.findall(r"rank \d = pid (\d+) on ", output), output
    state = load_checkpoint(tmp_path / "run")
    assert 1 <= state["epoch"] < 3, "the kill came after the run's end"
    resumed = launch_ok(tmp_path, "--resume", "run", "--limit", "64", "--epochs", "3")
    assert f"resuming run at epoch {state['epoch']} of 3" in resumed
    assert load_checkpoint(tmp_path / "run")["epoch"] == 3


def image_folder(path, seed):
    """A folder of 16 random 28×28 grayscale PNGs."""
    from PIL import Image
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(path / f"{i:02d}.png")


def launch_in_folders(tmp_path, folders, *args):
    """One rank in each of `folders` (its working directory): mpiexec's MPMD form, A : B."""
    command = [find_mpiexec()]
    for i, folder in enumerate(folders):
        command += ([":"] if i else []) + ["-n", "1", "-wdir", str(folder), sys.executable, "-m", "fastgan.train",
                                           "folder", "--data-dir", "images", "--batch-size", "8", "--no-progress",
                                           *args]
    started = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, env=environment(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, timeout=300)
    return done.returncode, done.stdout, time.monotonic() - started


@needs_mpi
def test_ranks_that_read_different_images_are_refused_once(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        image_folder(tmp_path / name / "images", seed)
    code, output, _ = launch_in_folders(tmp_path, [tmp_path / "a", tmp_path / "b"], "--out", "run")
    assert code == 1, output
    assert output.count("error: rank 1 read other training images than rank 0 (fingerprint") == 1, output
    assert "MPI_Abort" not in output, output
    assert not (tmp_path / "a" / "run").exists() and not (tmp_path / "b" / "run").exists()


@needs_mpi
def test_a_rank_that_fails_alone_before_training_ends_the_job_naming_itself(tmp_path):
    """Rank 1 finds no image folder where it runs: its own message, then the job ends, naming it (after the
    few seconds the ranks are given to stop together)."""
    image_folder(tmp_path / "a" / "images", 0)
    (tmp_path / "b").mkdir()
    code, output, seconds = launch_in_folders(tmp_path, [tmp_path / "a", tmp_path / "b"], "--out", "run")
    assert code != 0 and seconds < PROMPT_S + 30, (code, seconds, output)
    assert re.search(r"error: image folder .*images: no such folder", output), output
    assert re.search(r"fastgan: rank 1 of 2: stopped with exit code 1; ending all 2 ranks \(MPI_Abort\)",
                     output), output
