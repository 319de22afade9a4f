"""Choosing the kernel implementation (fastgan.dispatch): each way of choosing selects what it names, the stronger
choice wins, bad names fail with a message that names them, and `python -m fastgan.kernels` tells what runs.

A spy replaces leaky_relu's kernels in each implementation's module and records which one the functional op called:
the torch-oracle tests run every op once per implementation, and they only test each implementation if the
`impl` fixture really selects it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastgan
import fastgan.functional as F
from conftest import native_kernels_missing
from fastgan import backend, dispatch

OPS = ("leaky_relu_forward", "leaky_relu_backward")


@pytest.fixture
def called(monkeypatch):
    """The implementations whose leaky_relu kernels ran, in order: [("cpu", "leaky_relu_forward"), ...]."""
    monkeypatch.delenv("FASTGAN_IMPL", raising=False)
    if dispatch.implementation("cpu") is None:
        native_kernels_missing("fastgan's native CPU kernels (fastgan._C) are not built here")
    log = []
    for name in ("reference", "cpu"):
        module = dispatch.implementation(name)
        for op in OPS:
            def spy(*args, _kernel=getattr(module, op), _name=name, _op=op):
                log.append((_name, _op))
                return _kernel(*args)
            monkeypatch.setattr(module, op, spy)
    return log


def leaky_relu(**kwargs):
    """A forward and a backward pass of F.leaky_relu."""
    x = fastgan.tensor(np.linspace(-1, 1, 6, dtype=np.float32), requires_grad=True)
    F.leaky_relu(x, 0.2, **kwargs).sum().backward()


def test_the_default_is_the_first_available_implementation(called):
    leaky_relu()
    assert called == [("cpu", op) for op in OPS]


@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_impl_argument_selects(called, name):
    leaky_relu(impl=name)
    assert called == [(name, op) for op in OPS]


@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_use_selects_for_its_block_only(called, name):
    with dispatch.use(name):
        leaky_relu()
    leaky_relu()
    assert called == [(name, op) for op in OPS] + [("cpu", op) for op in OPS]


def test_the_innermost_use_wins_and_impl_beats_use(called):
    with dispatch.use("reference"):
        with dispatch.use("cpu"):
            leaky_relu()
        leaky_relu()
        leaky_relu(impl="cpu")
    assert [name for name, _ in called] == ["cpu", "cpu", "reference", "reference", "cpu", "cpu"]


@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_fastgan_impl_environment_variable_selects(called, monkeypatch, name):
    monkeypatch.setenv("FASTGAN_IMPL", name)
    leaky_relu()
    assert called == [(name, op) for op in OPS]


def test_fastgan_impl_per_op_selects_the_ops_it_names(called, monkeypatch):
    monkeypatch.setenv("FASTGAN_IMPL", " adam_step=cpu, leaky_relu_forward=reference ")
    leaky_relu()
    assert called == [("reference", "leaky_relu_forward"), ("cpu", "leaky_relu_backward")]  # unnamed: the default


def test_use_beats_the_environment_variable(called, monkeypatch):
    monkeypatch.setenv("FASTGAN_IMPL", "cpu")
    with dispatch.use("reference"):
        leaky_relu()
    assert called == [("reference", op) for op in OPS]


def test_the_impl_fixture_runs_its_implementation(impl):
    module = dispatch.implementation(impl)
    for op in ("conv2d_forward", "batch_norm_act_backward", "adam_step"):
        assert dispatch.kernel(op) is getattr(module, op), f"{op} under the {impl!r} fixture"


UNKNOWN = r"unknown kernel implementation 'nope': expected one of \['cpu', 'cuda', 'reference', 'triton'\]"


def in_a_use_block(monkeypatch):
    with dispatch.use("nope"):
        leaky_relu()


@pytest.mark.parametrize("choose", [
    lambda mp: leaky_relu(impl="nope"),
    lambda mp: dispatch.implementation("nope"),
    in_a_use_block,
    lambda mp: mp.setenv("FASTGAN_IMPL", "nope") or leaky_relu(),
    lambda mp: mp.setenv("FASTGAN_IMPL", "leaky_relu_forward=nope") or leaky_relu(),
], ids=["impl", "implementation", "use", "FASTGAN_IMPL", "FASTGAN_IMPL per op"])
def test_an_unknown_implementation_is_named_in_the_error(monkeypatch, choose):
    with pytest.raises(ValueError, match=UNKNOWN):
        choose(monkeypatch)


def test_an_implementation_without_the_op_is_named_in_the_error():
    with pytest.raises(RuntimeError, match=r"kernel implementation 'reference' does not provide 'no_such_forward' on "
                                           r"this machine \(available: \['reference'"):
        dispatch.kernel("no_such_forward", impl="reference")
    with pytest.raises(RuntimeError, match=r"no kernel implementation provides 'no_such_forward' on cpu"):
        dispatch.kernel("no_such_forward")


def test_an_implementation_of_another_device_is_refused():
    with pytest.raises(RuntimeError, match=r"implementation 'reference' runs on cpu, but the data is on cuda"):
        dispatch.kernel("conv2d_forward", device="cuda", impl="reference")


def test_without_native_kernels_a_warning_and_the_reference_runs(monkeypatch):
    monkeypatch.delenv("FASTGAN_IMPL", raising=False)
    monkeypatch.setitem(dispatch._MODULES, "cpu", "fastgan.kernels.no_such_module")
    monkeypatch.delitem(dispatch._loaded, "cpu", raising=False)
    with pytest.warns(RuntimeWarning, match=r"No module named 'fastgan.kernels.no_such_module'; fastgan runs on its "
                                            r"NumPy reference kernels"):
        assert dispatch.implementation("cpu") is None
    assert dispatch.available("cpu") == ["reference"]
    assert dispatch.kernel("conv2d_forward") is dispatch.implementation("reference").conv2d_forward
    with pytest.raises(RuntimeError, match=r"kernel implementation 'cpu' does not provide 'conv2d_forward' on this "
                                           r"machine \(available: \['reference'"):
        dispatch.kernel("conv2d_forward", impl="cpu")


def test_python_m_fastgan_kernels_names_the_implementation_of_every_op():
    # a plain environment: other tests may have pinned implementations or turned on Triton's interpreter
    env = {k: v for k, v in os.environ.items() if k not in ("FASTGAN_IMPL", "TRITON_INTERPRET")}
    out = subprocess.run([sys.executable, "-m", "fastgan.kernels"], capture_output=True, text=True, check=True,
                         env=env).stdout
    lines = out.splitlines()
    # (triton loads here under the interpreter that other tests turn on; without a GPU, not in the subprocess)
    expected = [name for name in dispatch.available() if name != "triton" or backend.cuda_available()]
    assert lines[0] == f"available implementations: {', '.join(expected)}"
    listed = [line.split() for line in lines[lines.index("on the cpu:") + 1:] if line.startswith("  ")]
    assert dict(listed) == dispatch.describe("cpu"), out
    assert {"conv2d_forward", "batch_norm_act_backward", "adam_step", *OPS} <= set(dict(listed)), out
    assert {"conv2d_forward_bf16", "round_to_bfloat16"} <= set(dict(listed)), out
    if dispatch.implementation("cpu") is not None:
        assert "float32 convolutions on the cpu: " in lines[-2]
        assert lines[-1].startswith("bfloat16 products on the cpu (*_bf16, fastgan.autocast): "), out


def test_python_m_fastgan_kernels_lists_the_ops_a_gpu_implementation_lacks():
    """Under Triton's interpreter a GPU implementation loads without a GPU; where it lacks an op (one is taken away
    here), the listing says so instead of failing."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "FASTGAN_IMPL"}
    code = ("import runpy\ntry:\n    import fastgan.kernels.triton as t\n    del t.round_to_bfloat16\n"
            "except ImportError:\n    pass\nrunpy.run_module('fastgan.kernels', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "TRITON_INTERPRET": "1"})
    assert done.returncode == 0, done.stderr
    if "on the cuda:" not in done.stdout:
        pytest.skip("the Triton interpreter did not load here")
    gpu = done.stdout.split("on the cuda:")[1]
    assert "round_to_bfloat16" in gpu and "(no implementation on this device)" in gpu, done.stdout
