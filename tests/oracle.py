"""The one torch-oracle helper: run an op in fastgan and in torch on the same inputs, compare the outputs and the
gradients of every input, with tolerances by dtype (float64 tight, float32 looser)."""
import numpy as np
import torch

import fastgan

TOLERANCE = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=2e-4, atol=2e-5)}
EXACT = dict(rtol=0, atol=0)  # integers and bools


def random_inputs(*shapes, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def assert_close(ours, theirs, what, dtype=None):
    """The same shape and dtype as torch's, and values within the tolerance of `dtype` or of the values' own dtype,
    whichever is looser; integers and bools exactly."""
    ours = np.asarray(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != torch {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != torch {theirs.dtype}"
    loosest = min(np.dtype(dtype or ours.dtype), ours.dtype, key=lambda d: d.itemsize)
    tolerance = EXACT if ours.dtype.kind in "biu" else TOLERANCE[loosest.type]
    np.testing.assert_allclose(ours, theirs, err_msg=what, **tolerance)


def check(fastgan_fn, torch_fn, inputs, grad=None, dtype=np.float64, atol_scale=1.0):
    """inputs: arrays (cast to `dtype`, or each of its own dtype if dtype is None) or other values passed through
    unchanged.

    Each fn takes the inputs as its framework's tensors and returns one tensor or a tuple; every returned tensor
    is compared (shape, dtype, values), and the first is differentiated with the same random upstream gradient in
    both frameworks. `grad=[...]` chooses which array inputs need a gradient (default: the floating-point ones).
    """
    arrays = [np.asarray(a, dtype=dtype) if isinstance(a, np.ndarray) else a for a in inputs]
    grad = [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays] if grad is None else grad
    if dtype is None:  # inputs of several dtypes: a float32 one makes the whole computation float32-accurate
        floats = [a.dtype for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        dtype = min(floats, key=lambda d: d.itemsize, default=np.dtype(np.float64))
    ours = [fastgan.tensor(a, requires_grad=g) if isinstance(a, np.ndarray) else a for a, g in zip(arrays, grad)]
    theirs = [torch.tensor(a, requires_grad=g) if isinstance(a, np.ndarray) else a for a, g in zip(arrays, grad)]

    out_ours, out_theirs = fastgan_fn(*ours), torch_fn(*theirs)
    out_ours = out_ours if isinstance(out_ours, tuple) else (out_ours,)
    out_theirs = out_theirs if isinstance(out_theirs, tuple) else (out_theirs,)
    for i, (a, b) in enumerate(zip(out_ours, out_theirs)):
        assert_close(a.numpy() if isinstance(a, fastgan.Tensor) else a, b, f"output {i}", dtype)

    if not any(grad):
        return
    upstream = np.random.default_rng(1).standard_normal(out_ours[0].shape).astype(out_ours[0].dtype)
    out_ours[0].backward(fastgan.tensor(upstream))
    out_theirs[0].backward(torch.tensor(upstream))
    for i, (a, b, g) in enumerate(zip(ours, theirs, grad)):
        if g:
            assert a.grad is not None, f"input {i} got no gradient"
            assert_close(a.grad.numpy(), b.grad, f"gradient of input {i}", dtype)


def gradcheck(fn, inputs, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Second oracle: compare autograd with central differences (float64) of sum(fn(inputs) * upstream)."""
    tensors = [fastgan.tensor(np.asarray(a, np.float64), requires_grad=True) for a in inputs]
    out = fn(*tensors)
    upstream = np.random.default_rng(2).standard_normal(out.shape)
    out.backward(fastgan.tensor(upstream))
    for i, t in enumerate(tensors):
        numeric = np.zeros_like(t.data)
        flat, nflat = t.data.reshape(-1), numeric.reshape(-1)
        for j in range(flat.size):
            saved = flat[j]
            flat[j] = saved + eps
            plus = float((fn(*[fastgan.tensor(u.data) for u in tensors]).numpy() * upstream).sum())
            flat[j] = saved - eps
            minus = float((fn(*[fastgan.tensor(u.data) for u in tensors]).numpy() * upstream).sum())
            flat[j] = saved
            nflat[j] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(t.grad.numpy(), numeric, rtol=rtol, atol=atol, err_msg=f"input {i}")
