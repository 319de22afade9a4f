"""benchmarks/kernels.py runs, with its bfloat16 and convolution-choice columns, and refuses what it cannot time.
(Smoke runs at batch 1: the figures themselves are the benchmark's, not the tests'.)"""
import os
import pathlib
import subprocess
import sys

import pytest

from fastgan import dispatch

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(dispatch.implementation("cpu") is None, reason="the native CPU kernels are not built")


def kernels(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels.py"), "--batch-size", "1", "--repeats",
                           "1", "--threads", "1", *args], capture_output=True, text=True, env=env, timeout=600)


def test_bf16_convolutions_beside_torch():
    done = kernels("--precision", "bf16", "--kernel", "conv2d_forward")
    assert done.returncode == 0, done.stderr
    assert "bf16 products" in done.stdout and "FASTGAN_BF16=auto" in done.stdout
    assert "N=1 conv 64->128 k4s2p1 14x14->7x7" in done.stdout and "cpu/torch" in done.stdout


def test_conv_choices_side_by_side():
    done = kernels("--conv-choices", "im2col,auto", "--kernel", "conv_transpose2d_backward")
    assert done.returncode == 0, done.stderr
    assert "cpu:im2col/torch" in done.stdout and "cpu:auto/torch" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--precision", "bf16", "--kernel", "adam_step"], "--precision bf16 times the convolutions only, not adam_step"),
    (["--conv-choices", "gemm", "--kernel", "conv2d_forward"], "--conv-choices gemm: use_conv='gemm': expected one of"),
])
def test_what_it_cannot_time_is_refused(args, message):
    done = kernels(*args)
    assert done.returncode != 0 and message in done.stderr
