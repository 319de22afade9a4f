"""Checking an op: against torch as the numerical oracle (`check`), and without torch by central differences
(`gradcheck`). The project's own tests use both; so can the ops you write (docs/extending.md).

torch is not a dependency of fastgan: `check` and `assert_close` import it when called and say so if it is
missing; `gradcheck` and `random_inputs` need only NumPy.
"""
import numpy as np

from .tensor import Tensor, grad, tensor

__all__ = ["TOLERANCE", "random_inputs", "assert_close", "check", "check_twice", "gradcheck"]

# float64 is compared tightly (an exact formula agrees to ~1e-12); float32 loosely (reduction order differs)
TOLERANCE = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=2e-4, atol=2e-5)}
EXACT = dict(rtol=0, atol=0)  # integers and bools


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("fastgan.testing.check compares with torch, which is not installed: "
                          "pip install torch (or the test extra: pip install -e '.[test]')") from None
    return torch


def random_inputs(*shapes, dtype=np.float64, seed=0):
    """One standard-normal array per shape, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def assert_close(ours, theirs, what, dtype=None):
    """The same shape and dtype, and values within the tolerance of `dtype` or of the values' own dtype, whichever
    is looser (integers and bools exactly); `theirs` may be a torch tensor or an array."""
    torch = _torch()
    ours = ours.numpy() if isinstance(ours, Tensor) else np.asarray(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != torch {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != torch {theirs.dtype}"
    loosest = min(np.dtype(dtype or ours.dtype), ours.dtype, key=lambda d: d.itemsize)
    tolerance = EXACT if ours.dtype.kind in "biu" else TOLERANCE[loosest.type]
    np.testing.assert_allclose(ours, theirs, err_msg=what, **tolerance)


def check(fastgan_fn, torch_fn, inputs, grad=None, dtype=np.float64):
    """Run an op in fastgan and in torch on the same inputs; compare every output and every input's gradient.

    inputs: arrays (cast to `dtype`, or each kept in its own dtype if dtype is None; they become tensors, float
    ones with gradients) or other values passed through unchanged. Each fn takes the inputs as its framework's
    tensors and returns one tensor or a tuple; every returned tensor is compared (shape, dtype, values), and the
    first is differentiated with the same random upstream gradient in both frameworks. `grad=[...]` chooses which
    array inputs need a gradient (default: the floating-point ones). To check a layer's parameters too, pass them
    as inputs (e.g. `lambda x, w: F.conv2d(x, w)`).
    """
    torch = _torch()
    arrays = [np.asarray(a, dtype=dtype) if isinstance(a, np.ndarray) else a for a in inputs]
    grad = [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays] if grad is None else grad
    if dtype is None:  # inputs of several dtypes: a float32 one makes the whole computation float32-accurate
        floats = [a.dtype for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        dtype = min(floats, key=lambda d: d.itemsize, default=np.dtype(np.float64))
    ours = [tensor(a, requires_grad=g) if isinstance(a, np.ndarray) else a for a, g in zip(arrays, grad)]
    theirs = [torch.tensor(a, requires_grad=g) if isinstance(a, np.ndarray) else a for a, g in zip(arrays, grad)]

    out_ours, out_theirs = fastgan_fn(*ours), torch_fn(*theirs)
    out_ours = out_ours if isinstance(out_ours, tuple) else (out_ours,)
    out_theirs = out_theirs if isinstance(out_theirs, tuple) else (out_theirs,)
    assert len(out_ours) == len(out_theirs), f"{len(out_ours)} outputs != torch's {len(out_theirs)}"
    for i, (a, b) in enumerate(zip(out_ours, out_theirs)):
        assert_close(a, b, f"output {i}", dtype)

    if not any(grad):
        return
    upstream = np.random.default_rng(1).standard_normal(out_ours[0].shape).astype(out_ours[0].dtype)
    out_ours[0].backward(tensor(upstream))
    out_theirs[0].backward(torch.tensor(upstream))
    for i, (a, b, g) in enumerate(zip(ours, theirs, grad)):
        if g:
            assert a.grad is not None, f"input {i} got no gradient"
            assert_close(a.grad, b.grad, f"gradient of input {i}", dtype)


def gradcheck(fn, inputs, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Compare autograd's gradient of sum(fn(*inputs) · upstream) with central differences, in float64:

        ∂f/∂xⱼ ≈ (f(x + ε eⱼ) − f(x − ε eⱼ)) / 2ε     (error O(ε²); two evaluations of fn per input element)
    fn takes float64 Tensors and returns one Tensor. Raises AssertionError naming the input that disagrees.
    """
    tensors = [tensor(np.asarray(a, np.float64), requires_grad=True) for a in inputs]
    out = fn(*tensors)
    upstream = np.random.default_rng(2).standard_normal(out.shape)
    out.backward(tensor(upstream))

    def objective():
        return float((fn(*[tensor(u.data) for u in tensors]).numpy() * upstream).sum())

    for i, t in enumerate(tensors):
        assert t.grad is not None, f"input {i} got no gradient"
        numeric = np.zeros_like(t.data)
        flat, nflat = t.data.reshape(-1), numeric.reshape(-1)
        for j in range(flat.size):
            saved = flat[j]
            flat[j] = saved + eps
            plus = objective()
            flat[j] = saved - eps
            minus = objective()
            flat[j] = saved
            nflat[j] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(t.grad.numpy(), numeric, rtol=rtol, atol=atol,
                                   err_msg=f"input {i}: autograd gradient vs central differences")


def check_twice(fastgan_fn, torch_fn, inputs, dtype=np.float64):
    """Double backward against torch: with random u, v, compare every input's gradient of

        s = Σᵢ ⟨∂⟨fn(x), u⟩/∂xᵢ, vᵢ⟩      (the first gradients, taken with create_graph=True, then differentiated)
    and the first gradients themselves, the forward outputs as `check` does. inputs: arrays (all differentiated,
    cast to `dtype`) or other values passed through. A second derivative that is zero everywhere (the graph of the
    first gradient does not reach an input) compares as zeros."""
    torch = _torch()
    arrays = [np.asarray(a, dtype=dtype) if isinstance(a, (np.ndarray, np.generic)) else a for a in inputs]
    which = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray)]
    ours = [tensor(a, requires_grad=True) if isinstance(a, np.ndarray) else a for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) if isinstance(a, np.ndarray) else a for a in arrays]
    out_ours, out_theirs = fastgan_fn(*ours), torch_fn(*theirs)
    assert_close(out_ours, out_theirs, "output", dtype)
    rng = np.random.default_rng(3)
    u = np.asarray(rng.standard_normal(out_ours.shape), dtype)
    v = [np.asarray(rng.standard_normal(arrays[i].shape), dtype) for i in which]

    def twice(out, xs, wrap, gradient, zeros):
        first = gradient([(out * wrap(u)).sum()], xs, create_graph=True, allow_unused=True)
        first = [zeros(x) if g is None else g for x, g in zip(xs, first)]
        s = sum((g * wrap(vi)).sum() for g, vi in zip(first, v))
        second = gradient([s], xs, allow_unused=True) if s.requires_grad else [None] * len(xs)
        return first, [zeros(x) if g is None else g for x, g in zip(xs, second)]

    first_ours, second_ours = twice(out_ours, [ours[i] for i in which], tensor, grad,
                                    lambda x: np.zeros(x.shape, x.dtype))
    first_theirs, second_theirs = twice(out_theirs, [theirs[i] for i in which], torch.tensor, torch.autograd.grad,
                                        torch.zeros_like)
    for k, i in enumerate(which):
        assert_close(first_ours[k], first_theirs[k], f"gradient of input {i}", dtype)
        assert_close(second_ours[k], second_theirs[k], f"second-order gradient of input {i}", dtype)
