"""The autograd core: a Tensor that remembers how it was made, and backward() that replays that record in reverse.

Every differentiable op (in functional.py) computes its output array and hands `_result` three things: the output,
the input Tensors it read, and a closure `backward(grad_out) -> grads for each input`. That is the whole tape.
`Tensor.backward` then
  1. sorts the graph topologically (iteratively, so a deep graph cannot hit Python's recursion limit),
  2. walks it from the output back to the leaves, calling each closure once with the *sum* of the gradients that
     reached that node (a node used twice gets both contributions: accumulation makes reuse correct),
  3. sums a broadcast operand's gradient back down to the operand's shape ("un-broadcasting"), in its dtype,
  4. stores the gradient of every leaf that requires it in `.grad`, and frees the graph unless asked to keep it.
Higher-order gradients: an op recorded with `twice=True` writes its backward as a formula `backward(g, *values)`
over the inputs' values and the output's, with operators that arrays and Tensors share. An ordinary backward passes
arrays; `backward(create_graph=True)` (and `grad(...)`) pass the Tensors themselves, so the same formula runs as
ops on the tape and its result can be differentiated again. Other ops' `backward(g)` reads arrays: refused there.
"""
import contextlib
import itertools

import numpy as np

from . import backend

_grad_enabled = True
_created = itertools.count()  # every Tensor's creation number: a tensor can depend only on earlier ones


@contextlib.contextmanager
def no_grad():
    """Within this block ops record nothing: no graph, no gradients (for sampling and evaluation)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


class Tensor:
    """An n-dimensional array (NumPy on the CPU, CuPy on the GPU) plus what autograd needs to know about it."""

    __array_priority__ = 1000  # `numpy_scalar * tensor` calls Tensor.__rmul__, not NumPy's broadcasting

    def __init__(self, data, requires_grad=False, _parents=(), _backward=None, _op="", _twice=False):
        self.data = data
        self.requires_grad = requires_grad  # (the property below refuses it for integer data)
        self.grad = None
        self._parents = _parents    # the Tensors this one was computed from (None where an input was absent)
        self._backward = _backward  # grad_out -> one gradient (or None) per parent; None for a leaf
        self._op = _op              # the op's name, for repr and error messages
        self._twice = _twice        # _backward is a formula backward(g, *values) that Tensors can run (see above)
        self._created = next(_created)

    # --- what the array is -------------------------------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._backward is None)

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def numpy(self):
        """The values as a NumPy array (copied from the GPU when needed); never part of the graph."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def detach(self):
        """The same array, cut from the graph."""
        return Tensor(self.data)

    def to(self, device):
        """A copy on `device` ("cpu" or "cuda"); gradients flow back to the original."""
        if backend.normalize_device(device) == self.device:
            return self
        from . import functional
        return functional.to_device(self, device)

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.data.dtype}")
        self._requires_grad = bool(flag)

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    def __repr__(self):
        grad = f", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._op}" if self._op else ""
        return f"Tensor({self.numpy()!r}, device='{self.device}'{grad}{op})"

    # --- autograd ------------------------------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=None, create_graph=False):
        """Compute d(self)/d(leaf) for every leaf that requires a gradient and add it to the leaf's `.grad`.
        create_graph=True records the backward pass itself, so `.grad` can be differentiated again (and keeps the
        graph: retain_graph defaults to create_graph)."""
        _backpropagate([self], [grad], None, create_graph if retain_graph is None else retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """The gradients of `outputs` (weighted by `grad_outputs`) with respect to each of `inputs`, returned as a tuple
    (nothing is added to any `.grad`). Inputs may be computed tensors. With create_graph=True the gradients are on
    the tape, so they can be differentiated again. An input the outputs do not depend on is an error, or a None
    gradient with allow_unused=True."""
    one = isinstance(outputs, Tensor)
    outputs, inputs = ([outputs] if one else list(outputs)), ([inputs] if isinstance(inputs, Tensor) else list(inputs))
    grad_outputs = [None] * len(outputs) if grad_outputs is None else \
        [grad_outputs] if one and not isinstance(grad_outputs, (list, tuple)) else list(grad_outputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"grad(): input {i} is not a Tensor that requires grad")
    found = _backpropagate(outputs, grad_outputs, inputs, create_graph if retain_graph is None else retain_graph,
                           create_graph)
    if not allow_unused and any(id(t) not in found for t in inputs):
        missing = [i for i, t in enumerate(inputs) if id(t) not in found]
        raise RuntimeError(f"grad(): inputs {missing} are not used by the outputs (pass allow_unused=True for a None)")
    found = {k: g if create_graph else Tensor(g.copy()) for k, g in found.items()}
    return tuple(found.get(id(t)) for t in inputs)


def _backpropagate(roots, root_grads, inputs, retain_graph, create_graph):
    """The walk described above, from `roots` seeded with `root_grads`. inputs=None: accumulate into the leaves'
    `.grad`; else only the nodes that lead to an input are visited and {id(input): gradient} is returned."""
    grads = {}
    for root, g in zip(roots, root_grads):
        if not root.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (was it made under no_grad?)")
        if g is None:
            if root.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output, got shape {root.shape}")
            g = backend.xp(root.data).ones_like(root.data)
        elif tuple(g.shape) != root.shape:
            raise ValueError(f"backward(): gradient shape {tuple(g.shape)} != tensor shape {root.shape}")
        g = (g if isinstance(g, Tensor) else Tensor(g)) if create_graph else (g.data if isinstance(g, Tensor) else g)
        grads[id(root)] = grads[id(root)] + g if id(root) in grads else g
    wanted = None if inputs is None else {id(t) for t in inputs}
    # grad(): a node made before every input cannot lead to one, so the search stops there
    order, found = _topological_order(roots, min((t._created for t in inputs), default=0) if inputs else 0), {}
    leads = set()  # the nodes on a path to a leaf (backward) or to an input (grad): each after its parents in `order`
    for node in order:  # (a freed node's parents are gone: it is kept so that its _graph_freed says so)
        if (node._backward is None if wanted is None else id(node) in wanted) or node._backward is _graph_freed:
            leads.add(id(node))
            continue
        for p in node._parents:
            if p is not None and id(p) in leads:
                leads.add(id(node))
                break
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, create_graph  # create_graph: the formulas' ops are recorded
    try:
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None or id(node) not in leads:
                continue
            if wanted is not None and id(node) in wanted:
                found[id(node)] = g
                if not any(p is not None and id(p) in leads for p in node._parents):
                    continue  # no other input behind this one
            elif node._backward is None:  # a leaf: keep its gradient (on the tape under create_graph)
                if create_graph:
                    node.grad = g if node.grad is None else node.grad + g
                else:
                    node.grad = Tensor(g.copy()) if node.grad is None else Tensor(node.grad.data + g)
                continue
            if not node._twice:
                if create_graph and node._backward is not _graph_freed:
                    raise RuntimeError(f"create_graph=True: op {node._op!r} has no second derivative in fastgan "
                                       "(its backward runs on arrays, not on the tape)")
                parent_grads = node._backward(g)
            elif create_graph:
                parent_grads = node._backward(g, *node._parents, node)
            else:
                parent_grads = node._backward(g, *[None if p is None else p.data for p in node._parents], node.data)
            for parent, pg in zip(node._parents, parent_grads):
                if parent is None or pg is None or id(parent) not in leads:
                    continue
                pg = _fit(pg, parent)
                grads[id(parent)] = grads[id(parent)] + pg if id(parent) in grads else pg
            if not retain_graph:
                node._parents, node._backward, node._twice = (), _graph_freed, False
    finally:
        _grad_enabled = previous
    return found


def _graph_freed(grad):
    raise RuntimeError("backward through a graph a second time: its buffers were freed by the first backward(); "
                       "pass retain_graph=True to the first call if you need this")


def _topological_order(roots, since=0):
    """Every node that requires grad, leads to one of `roots` and was created at `since` or later, each after all of
    its parents (iterative DFS)."""
    order, visited, stack = [], set(), [(root, False) for root in reversed(roots)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node._parents
                     if p is not None and p.requires_grad and p._created >= since and id(p) not in visited)
    return order


def _fit(grad, parent):
    """A gradient as its input is: un-broadcast to the input's shape, in the input's dtype (an op that promoted a
    float32 input to float64 hands back a float64 gradient). A Tensor gradient (create_graph) by recorded ops."""
    grad = _unbroadcast(grad, parent.shape)
    if grad.dtype == parent.dtype:
        return grad
    return functional.cast(grad, parent.dtype) if isinstance(grad, Tensor) else grad.astype(parent.dtype)


def _unbroadcast(grad, shape):
    """Sum a gradient over the axes along which its operand was broadcast, so it has the operand's shape: the
    leading axes the operand lacks, then every axis where the operand has size 1 and the gradient does not."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    grad = grad.sum(axis=stretched, keepdims=True) if stretched else grad
    if isinstance(grad, Tensor):
        return grad
    return backend.xp(grad).asarray(grad)  # a sum over every axis gives a NumPy scalar: keep it an array


def _result(data, parents, backward, op, twice=False):
    """Wrap an op's output; record the op on the tape only if some input needs a gradient. twice=True: `backward`
    is a formula backward(g, *input values, output value) that runs on arrays and on Tensors alike."""
    if isinstance(data, np.generic):  # NumPy's 0-d arithmetic gives scalars, which would promote as numbers
        data = np.asarray(data)
    if _grad_enabled and any(p is not None and p.requires_grad for p in parents):
        return Tensor(data, True, tuple(parents), backward, op, twice)
    return Tensor(data)


# --- creating tensors ------------------------------------------------------------------------------------------
def tensor(data, requires_grad=False, dtype=None, device="cpu"):
    """A new leaf tensor. Python numbers become float32 (or int64 if all are integers); arrays keep their dtype."""
    if isinstance(data, Tensor):
        data = data.data
    xp = backend.array_module(device)
    if dtype is None and not hasattr(data, "dtype"):
        probe = np.asarray(data)
        dtype = np.int64 if probe.dtype.kind in "iub" else np.float32
    array = xp.array(backend.to_numpy(data) if xp is np else data, dtype=dtype, copy=True)
    return Tensor(array, requires_grad=requires_grad)


def _filled(fill, shape, dtype, device, requires_grad):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
    xp = backend.array_module(device)
    return Tensor(fill(xp, shape, np.dtype(dtype or np.float32)), requires_grad=requires_grad)


def zeros(*shape, dtype=None, device="cpu", requires_grad=False):
    return _filled(lambda xp, s, d: xp.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device="cpu", requires_grad=False):
    return _filled(lambda xp, s, d: xp.ones(s, d), shape, dtype, device, requires_grad)


from . import functional  # noqa: E402  (functional needs Tensor; Tensor's operators below need functional)


def _method(fn):
    return lambda self, *args, **kwargs: fn(self, *args, **kwargs)


def _reflected(fn):
    return lambda self, other: fn(other, self)


# Tensor's operators and methods are the functional ops; the math lives in one place.
for _name, _fn in {
    "__add__": functional.add, "__sub__": functional.sub, "__mul__": functional.mul,
    "__truediv__": functional.div, "__matmul__": functional.matmul, "__pow__": functional.pow,
    "__neg__": functional.neg, "__getitem__": functional.getitem, "neg": functional.neg, "pow": functional.pow,
    "matmul": functional.matmul, "sum": functional.sum, "mean": functional.mean, "reshape": functional.reshape,
    "view": functional.reshape, "permute": functional.permute, "transpose": functional.transpose,
    "flatten": functional.flatten, "exp": functional.exp, "log": functional.log, "relu": functional.relu,
    "tanh": functional.tanh, "sigmoid": functional.sigmoid,
}.items():
    setattr(Tensor, _name, _method(_fn))
for _name, _fn in {"__radd__": functional.add, "__rsub__": functional.sub, "__rmul__": functional.mul,
                   "__rtruediv__": functional.div, "__rmatmul__": functional.matmul,
                   "__rpow__": functional.pow}.items():
    setattr(Tensor, _name, _reflected(_fn))
Tensor.T = property(lambda self: functional.transpose(self, 0, 1) if self.ndim == 2 else
                    functional.permute(self, tuple(reversed(range(self.ndim)))))


# --- torch-compatible creation, shape and in-place methods (what code written for torch calls) -----------------

def full(size, fill_value, dtype=None, device="cpu", requires_grad=False):
    """A tensor of shape `size` filled with `fill_value`: float32 unless given a dtype (int64 for an int, as torch)."""
    if dtype is None:
        dtype = np.int64 if isinstance(fill_value, (int, np.integer)) and not isinstance(fill_value, bool) else None
    return _filled(lambda xp, s, d: xp.full(s, fill_value, d), (size,) if isinstance(size, int) else size, dtype,
                   device, requires_grad)


def _size(self, dim=None):
    """The shape (a tuple), or the length of axis `dim`, as torch's Tensor.size()."""
    if dim is None:
        return self.shape
    if not -self.ndim <= dim < self.ndim:
        raise IndexError(f"size: dim {dim} is out of range for a tensor of shape {self.shape}")
    return self.shape[dim]


def _in_place(name, write):
    """An in-place method, as torch's `t.fill_(v)`: it overwrites the array the tensor holds, so it is refused on a
    tensor computed by an op (its backward may read that array). On a leaf it writes through, like torch's
    `t.data.fill_(v)`: a graph already recorded from the leaf reads the new values, so write before using it."""
    def method(self, *args, **kwargs):
        if self._backward is not None:
            raise RuntimeError(f"{name}() on a tensor computed by {self._op!r}: in-place writes are only allowed on "
                               "leaves (use .detach() for a separate copy)")
        values = write(self, *args, **kwargs)
        self.data[...] = backend.xp(self.data).asarray(values, dtype=self.dtype)
        return self
    method.__name__ = name
    return method


def _draw(kind):
    def write(self, a=0.0, b=1.0):
        from .random import generator  # (random imports this module)
        return getattr(generator(), kind)(a, b, self.shape)
    return write


Tensor.size = _size
Tensor.is_cuda = property(lambda self: self.device == "cuda")
Tensor.fill_ = _in_place("fill_", lambda self, value: value)
Tensor.zero_ = _in_place("zero_", lambda self: 0)
Tensor.normal_ = _in_place("normal_", _draw("normal"))      # normal_(mean=0, std=1)
Tensor.uniform_ = _in_place("uniform_", _draw("uniform"))   # uniform_(from=0, to=1)
Tensor.squeeze = _method(functional.squeeze)
Tensor.unsqueeze = _method(functional.unsqueeze)
Tensor.cpu = lambda self: self.to("cpu")
