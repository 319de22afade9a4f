"""The public face of the autograd core: define your own differentiable op, and look at the tape.

    out = fastgan.autograd.op(output_array, inputs, backward, name)

records one op, exactly as every op in functional.py does. The contract:
  * `output_array` is the op's result, a NumPy (or, on the GPU, CuPy) array computed from the inputs' `.data`;
  * `inputs` are the Tensors it read (None for an absent optional input, e.g. a missing bias);
  * `backward(grad)` receives the gradient of the loss with respect to the output — today an *array* of the
    output's shape — and returns a tuple with one gradient array (or None: "no gradient") per input.
    A gradient may keep a broadcast operand's broadcast shape: the core sums it back down ("un-broadcasts").
The core calls `backward` once per backward pass, with the sum of every gradient that reached the output, and
only if some input requires a gradient; under `fastgan.no_grad()` nothing is recorded. Such an op has a first
derivative only: `backward(create_graph=True)` and `grad(..., create_graph=True)` (gradients of gradients, for the
built-in ops that have them) refuse to go through it, naming it.

`graph(loss)` prints the tape as text and `to_dot(loss)` writes it as Graphviz source (`render_graph` turns that
into an image where the Graphviz `dot` program is installed). Call them before `backward()`, which frees the tape.
"""
import os
import shutil
import subprocess
import tempfile

import numpy as np

from .tensor import Tensor, _result, grad

__all__ = ["op", "grad", "graph", "print_graph", "to_dot", "render_graph"]


def op(output, inputs, backward, name="op"):
    """The Tensor holding `output`, recorded on the tape as op `name` with `backward` (see the module docstring)."""
    inputs = tuple(inputs)
    for i, t in enumerate(inputs):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"op {name!r}: input {i} must be a Tensor or None, got {type(t).__name__}")
    if isinstance(output, Tensor) or not hasattr(output, "shape"):
        raise TypeError(f"op {name!r}: output must be an array (e.g. computed from the inputs' .data), "
                        f"got {type(output).__name__}")
    if not callable(backward):
        raise TypeError(f"op {name!r}: backward must be callable, got {type(backward).__name__}")

    def checked_backward(grad):
        grads = backward(grad)
        if not isinstance(grads, (tuple, list)) or len(grads) != len(inputs):
            got = f"{type(grads).__name__} of length {len(grads)}" if isinstance(grads, (tuple, list)) else \
                type(grads).__name__
            raise TypeError(f"op {name!r}: backward must return a tuple with one gradient (or None) per input "
                            f"({len(inputs)}), got {got}")
        for i, (t, g) in enumerate(zip(inputs, grads)):
            if t is not None and g is not None and not _sums_back_to(tuple(g.shape), t.shape):
                raise ValueError(f"op {name!r}: backward's gradient {i} has shape {tuple(g.shape)}, which is not "
                                 f"input {i}'s shape {t.shape} (or a broadcast of it)")
        return grads
    return _result(output, inputs, checked_backward, name)


def _sums_back_to(grad_shape, shape):
    """Whether a gradient of grad_shape is one for an input of `shape` broadcast to it (or of that very shape)."""
    try:
        return np.broadcast_shapes(grad_shape, shape) == grad_shape
    except ValueError:
        return False


# --- seeing the tape -------------------------------------------------------------------------------------------

def _nodes(root):
    """Every Tensor on the tape that leads to `root`, each after its inputs (iterative, like backward's sort)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in reversed(node._parents) if p is not None and id(p) not in seen)
    return order


def _names(names):
    """{id(tensor): name} from a dict {name: tensor} or pairs (name, tensor), e.g. module.named_parameters()."""
    pairs = names.items() if isinstance(names, dict) else (names or ())
    return {id(t): n for n, t in pairs}


def graph(loss, names=None):
    """The tape that produced `loss` as text, one line per tensor, each after the tensors it was computed from:

        %0 = leaf (3,) float64 w requires_grad
        %1 = const (3,) float64
        %2 = mul(%0, %1) (3,) float64
    `names`: {name: tensor} or (name, tensor) pairs (e.g. module.named_parameters()) to label the leaves.
    """
    nodes, labels = _nodes(loss), _names(names)
    index = {id(n): i for i, n in enumerate(nodes)}
    lines = []
    for i, node in enumerate(nodes):
        if node._backward is not None:  # an op: its name and its inputs ("-" for an absent one)
            inputs = ", ".join("-" if p is None else f"%{index[id(p)]}" for p in node._parents)
            what = f"{node._op or 'op'}({inputs or 'freed by backward'})"
        else:
            what = "leaf" if node.requires_grad else "const"
        notes = [labels[id(node)]] if id(node) in labels else []
        notes += ["requires_grad"] if node._backward is None and node.requires_grad else []
        lines.append(" ".join([f"%{i} = {what}", str(tuple(node.shape)), str(node.dtype)] + notes))
    return "\n".join(lines)


def print_graph(loss, names=None):
    print(graph(loss, names))


def to_dot(loss, names=None):
    """Graphviz source of the tape: ops as boxes, leaves as ellipses (filled where they require grad)."""
    nodes, labels = _nodes(loss), _names(names)
    lines = ["digraph tape {", "  rankdir=LR;", '  node [fontname="monospace", fontsize=10];']
    for i, node in enumerate(nodes):
        shape = "x".join(str(n) for n in node.shape) or "scalar"
        if node._backward is not None:
            lines.append(f'  n{i} [shape=box, label="{node._op or "op"}\\n{shape}"];')
        else:
            label = labels.get(id(node), "leaf" if node.requires_grad else "const")
            fill = ', style=filled, fillcolor="lightblue"' if node.requires_grad else ""
            lines.append(f'  n{i} [shape=ellipse, label="{label}\\n{shape}"{fill}];')
    index = {id(n): i for i, n in enumerate(nodes)}
    for i, node in enumerate(nodes):
        lines.extend(f"  n{index[id(p)]} -> n{i};" for p in node._parents if p is not None)
    return "\n".join(lines + ["}"])


def render_graph(loss, path, names=None):
    """Draw the tape into `path` (the format from its extension: .png, .svg, .pdf) with Graphviz's `dot` program,
    which fastgan does not require: without it, write `to_dot(loss)` to a .dot file and render it elsewhere."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(f"render_graph({path!r}) needs the Graphviz 'dot' program on the PATH; without it, "
                           "save fastgan.autograd.to_dot(loss) and render it elsewhere")
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:  # drawn to a temporary name, then renamed: a reader never sees half an image
        subprocess.run([dot, f"-T{fmt}", "-o", temporary], input=to_dot(loss, names), text=True, check=True,
                       capture_output=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path
