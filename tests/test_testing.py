"""The public extension API (fastgan.autograd.op), the checks of fastgan.testing — which must fail on a wrong
backward — and the text and Graphviz views of the tape."""
import sys

import numpy as np
import pytest
import torch

import fastgan
from fastgan import autograd, testing


def softplus(x, wrong=False):
    out = np.log1p(np.exp(-np.abs(x.data))) + np.maximum(x.data, 0)
    # d softplus(x)/dx = σ(x)
    derivative = 1 / (1 + np.exp(-x.data))
    return autograd.op(out, [x], lambda g: (g * derivative * (2.0 if wrong else 1.0),), "softplus")


def scaled_add(a, b):  # b broadcasts against a: its gradient is returned at a's shape, the core sums it back
    return autograd.op(a.data + 3 * b.data, [a, b], lambda g: (g, 3 * g), "scaled_add")


def test_op_matches_torch_and_central_differences():
    x, = testing.random_inputs((3, 5))
    testing.check(softplus, torch.nn.functional.softplus, [x])
    testing.check(softplus, torch.nn.functional.softplus, [x], dtype=np.float32)
    testing.gradcheck(softplus, [x])


def test_op_gradient_of_a_broadcast_input_is_summed_back():
    a, b = testing.random_inputs((4, 3), (3,))
    testing.check(scaled_add, lambda a, b: a + 3 * b, [a, b])
    testing.gradcheck(scaled_add, [a, b])


def test_op_records_nothing_without_grad_or_under_no_grad():
    x = fastgan.randn(3)
    assert softplus(x).is_leaf
    with fastgan.no_grad():
        assert softplus(fastgan.randn(3, requires_grad=True)).is_leaf
    assert not softplus(fastgan.randn(3, requires_grad=True)).is_leaf


def test_op_none_gradient_means_no_gradient():
    a, b = fastgan.randn(2, requires_grad=True), fastgan.randn(2, requires_grad=True)
    autograd.op(a.data * b.data, [a, b], lambda g: (g * b.data, None), "half").sum().backward()
    assert a.grad is not None and b.grad is None


@pytest.mark.parametrize("backward, error, match", [
    (lambda g: g, TypeError, r"op 'bad': backward must return a tuple with one gradient \(or None\) per input "
                             r"\(1\), got ndarray"),
    (lambda g: (g, g), TypeError, r"per input \(1\), got tuple of length 2"),
    (lambda g: (g[:2],), ValueError, r"op 'bad': backward's gradient 0 has shape \(2,\), which is not input 0's "
                                     r"shape \(3,\)"),
])
def test_op_names_a_wrong_backward(backward, error, match):
    y = autograd.op(np.ones(3), [fastgan.randn(3, requires_grad=True)], backward, "bad")
    with pytest.raises(error, match=match):
        y.sum().backward()


def test_op_rejects_bad_arguments():
    x = fastgan.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match=r"op 'f': input 0 must be a Tensor or None, got ndarray"):
        autograd.op(x.data, [x.data], lambda g: (g,), "f")
    with pytest.raises(TypeError, match=r"op 'f': output must be an array .* got Tensor"):
        autograd.op(x, [x], lambda g: (g,), "f")
    with pytest.raises(TypeError, match=r"op 'f': backward must be callable, got NoneType"):
        autograd.op(x.data, [x], None, "f")


# --- the checks fail when they should ------------------------------------------------------------------------

def test_check_fails_on_a_wrong_backward():
    x, = testing.random_inputs((3, 5))
    with pytest.raises(AssertionError, match="gradient of input 0"):
        testing.check(lambda x: softplus(x, wrong=True), torch.nn.functional.softplus, [x])


def test_check_fails_on_a_wrong_forward():
    x, = testing.random_inputs((3, 5))
    with pytest.raises(AssertionError, match="output 0"):
        testing.check(lambda x: softplus(x) * 1.001, torch.nn.functional.softplus, [x])
    with pytest.raises(AssertionError, match=r"output 0: shape \(3, 5\) != torch \(5, 3\)"):
        testing.check(softplus, lambda x: torch.nn.functional.softplus(x).T, [x])


def test_gradcheck_fails_on_a_wrong_backward():
    x, = testing.random_inputs((2, 3))
    with pytest.raises(AssertionError, match="input 0: autograd gradient vs central differences"):
        testing.gradcheck(lambda x: softplus(x, wrong=True), [x])


def test_check_says_when_torch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"fastgan.testing.check compares with torch, which is not installed"):
        testing.check(softplus, None, testing.random_inputs((2,)))
    testing.gradcheck(softplus, testing.random_inputs((2,)))  # needs no torch


def test_tolerance_is_tight_for_float64():
    with pytest.raises(AssertionError, match="x"):
        testing.assert_close(np.ones(2), torch.ones(2, dtype=torch.float64) * (1 + 1e-7), "x", np.float64)
    testing.assert_close(np.ones(2, np.float32), torch.ones(2) * (1 + 1e-5), "x", np.float32)


# --- seeing the tape -------------------------------------------------------------------------------------------

def test_graph_lists_ops_shapes_and_leaves():
    w = fastgan.tensor(np.ones((2, 3)), requires_grad=True)
    x = fastgan.tensor(np.ones((4, 3)))
    loss = softplus(x @ w.T).sum()
    assert autograd.graph(loss, {"w": w}) == "\n".join([
        "%0 = const (4, 3) float64",
        "%1 = leaf (2, 3) float64 w requires_grad",
        "%2 = permute(%1) (3, 2) float64",
        "%3 = matmul(%0, %2) (4, 2) float64",
        "%4 = softplus(%3) (4, 2) float64",
        "%5 = sum(%4) () float64",
    ])


def test_graph_of_a_module_names_its_parameters_and_marks_absent_inputs(capsys):
    layer = fastgan.nn.Linear(3, 2, bias=False)
    autograd.print_graph(layer(fastgan.randn(5, 3)), layer.named_parameters())
    assert capsys.readouterr().out == ("%0 = const (5, 3) float32\n%1 = leaf (2, 3) float32 weight requires_grad\n"
                                       "%2 = linear(%0, %1, -) (5, 2) float32\n")


def test_graph_after_backward_says_the_tape_was_freed():
    x = fastgan.randn(3, requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    assert "sum(freed by backward)" in autograd.graph(loss)


def test_to_dot_is_graphviz_source():
    x = fastgan.randn(3, requires_grad=True)
    dot = autograd.to_dot((x * 2).sum(), {"x": x})
    assert dot.startswith("digraph tape {") and dot.endswith("}")
    assert 'label="x\\n3", style=filled' in dot and 'label="mul\\n3"' in dot and "n0 -> n2;" in dot


def test_render_graph_without_graphviz_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(autograd.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"needs the Graphviz 'dot' program"):
        autograd.render_graph(fastgan.randn(1, requires_grad=True) * 2, str(tmp_path / "g.png"))
    assert not list(tmp_path.iterdir())
