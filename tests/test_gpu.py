"""fastgan on a CUDA GPU, end to end (marked gpu; skipped, with the reason, where there is no GPU, and failed where
a GPU is visible but fastgan cannot use it):

    * every GPU kernel implementation loads, and each kernel at the DCGAN's training batch sizes (64, 128: BN
      reductions over thousands of values, the weight-gradient split counts of a GPU) matches the NumPy reference
    * every functional op, forward and backward, on "cuda" against the same op on "cpu"
    * whole DCGAN training steps on "cuda" against the same steps on the CPU (same weights, batches and noise),
      with each GPU kernel implementation, and without a read-back to the host or a synchronisation inside the step
    * tensors and modules moving between devices, checkpoints crossing devices, `python -m fastgan.train --device`

The per-kernel checks against the NumPy reference on the shared cases (cuda and triton, DCGAN layers at batch 2 and
odd shapes) are in test_cuda_kernels.py, whose GPU cases carry the same marker: `pytest -m gpu` runs them all.
"""
import copy
import json
import os

import numpy as np
import pytest

import fastgan
from fastgan import backend, dispatch, optim
from fastgan import functional as F
from fastgan.gan import frozen, train_step
from fastgan.kernels import reference
from fastgan.models.dcgan import dcgan_mnist
from kernel_cases import GPU_BN_CASES, GPU_CONV_CASES, check_against_reference

STATUS = backend.cuda_status()
if not STATUS.usable:
    if STATUS.devices:   # a GPU that fastgan cannot use is a failure to report, not a machine without a GPU
        pytest.fail(f"a GPU is visible but fastgan cannot use it: {STATUS.detail}", pytrace=False)
    pytest.skip(f"no GPU to test on: {STATUS.detail}", allow_module_level=True)
pytestmark = pytest.mark.gpu
GPU_IMPLS = dispatch.PREFERENCE["cuda"]
DEVICE = "cuda"
TOLERANCE = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def assert_close(actual, expected, dtype, what):
    """allclose, with atol relative to the largest expected magnitude (sums of many terms cancel)."""
    tol = TOLERANCE[np.dtype(dtype).type]
    scale = max(1.0, float(np.abs(expected).max())) if np.size(expected) else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


# --- the kernel implementations, at the DCGAN's training batch sizes -------------------------------------------

def gpu_module(impl):
    """The implementation's module; a GPU implementation that does not load on a usable GPU is a failure."""
    module = dispatch.implementation(impl)
    assert module is not None, f"fastgan's {impl!r} kernels do not load on this GPU: {dispatch.why_unavailable(impl)}"
    return module


@pytest.mark.parametrize("impl", GPU_IMPLS)
def test_every_gpu_implementation_loads_and_has_every_kernel(impl):
    module = gpu_module(impl)
    missing = [op for op in dispatch.describe("cpu") if not hasattr(module, op)]
    assert not missing, f"{impl!r} does not provide {missing}"


@pytest.mark.parametrize("case", GPU_CONV_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("impl", GPU_IMPLS)
def test_conv_at_training_batch_sizes(impl, case):
    gpu_module(impl)
    x, weight, bias, dy = case.inputs(np.float32)
    tf32 = impl == "triton" and dispatch.implementation("triton")._carrier.TF32   # see kernel_bodies.test_conv
    tol = dict(rtol=2e-2, atol=5e-3) if tf32 else None
    check_against_reference(impl, case.fn + "_forward", case.forward_args(x, weight, bias), np.float32, tol)
    check_against_reference(impl, case.fn + "_backward", case.backward_args(dy, x, weight), np.float32, tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", GPU_BN_CASES, ids=str)
@pytest.mark.parametrize("impl", GPU_IMPLS)
def test_batch_norm_at_training_batch_sizes(impl, case, dtype):
    gpu_module(impl)
    x, weight, bias, running_mean, running_var, dy = case.inputs(dtype)
    args = (x, weight, bias, running_mean, running_var, case.training, 0.1, 1e-5, case.activation, 0.2)
    check_against_reference(impl, "batch_norm_act_forward", args, dtype)
    _, mean, rstd = reference.batch_norm_act_forward(*copy.deepcopy(args))
    check_against_reference(impl, "batch_norm_act_backward",
                            (dy, x, weight, bias, mean, rstd, case.training, case.activation, 0.2), dtype)


# --- functional ops: cuda against cpu -------------------------------------------------------------------------

def run_op(fn, inputs, device, seed=1):
    """fn on `inputs` placed on `device` (float arrays become tensors that require grad, anything else passes
    through); one backward with a fixed upstream gradient. Returns NumPy (output, [gradient or None per input])."""
    fastgan.manual_seed(seed)  # the same dropout mask on both devices (drawn on the host)
    tensors = [fastgan.tensor(a, requires_grad=True, device=device) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
               else a for a in inputs]
    out = fn(*tensors)
    assert out.device == device, f"the output is on {out.device}, expected {device}"
    upstream = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(fastgan.tensor(upstream, device=device))
    grads = []
    for t in tensors:
        if isinstance(t, fastgan.Tensor) and t.requires_grad:
            assert t.grad is not None and t.grad.device == device, "a gradient is missing or on the wrong device"
            grads.append(t.grad.numpy())
        else:
            grads.append(None)
    return out.numpy(), grads


def check_devices_agree(fn, inputs, dtype):
    out_gpu, grads_gpu = run_op(fn, inputs, DEVICE)
    out_cpu, grads_cpu = run_op(fn, inputs, "cpu")
    assert out_gpu.dtype == out_cpu.dtype and out_gpu.shape == out_cpu.shape
    assert_close(out_gpu, out_cpu, dtype, "output")
    for i, (a, b) in enumerate(zip(grads_gpu, grads_cpu)):
        if b is not None:
            assert_close(a, b, dtype, f"gradient of input {i}")


def arrays(*shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


OPS = {
    # name: (fn, input shapes, extra non-array inputs appended)
    "arithmetic": (lambda a, b: (a * b + a / (b * b + 1) - b) ** 2 - (-a), [(3, 4, 5), (4, 1)]),
    "exp_log_tanh": (lambda a: F.log(F.exp(F.tanh(a)) + 1.5), [(4, 6)]),
    "sigmoid_relu_leaky": (lambda a: F.sigmoid(a) + F.relu(a) * F.leaky_relu(a, 0.2), [(5, 7)]),
    "matmul": (lambda a, b: a @ b, [(5, 3), (3, 4)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(6, 5), (3, 5), (3,)]),
    "shapes": (lambda a: F.flatten(F.permute(a.reshape(2, 3, 10), (2, 0, 1)), 1).T, [(6, 10)]),
    "getitem_slices": (lambda a: a[1:, ::2] * 3, [(4, 6)]),
    "getitem_repeated_index": (lambda a: a[np.array([0, 2, 2, 3])], [(4, 5)]),   # add.at must accumulate
    "cat": (lambda a, b: F.cat([a, b], dim=1), [(2, 3, 4), (2, 5, 4)]),
    "reductions": (lambda a: F.sum(a, dim=1) + F.mean(a, dim=(1, 2)).reshape(3, 1), [(3, 4, 5)]),
    "dropout": (lambda a: F.dropout(a, 0.3), [(8, 9)]),
    "maxout": (lambda a: F.maxout(a, 3), [(4, 12)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, 2, 1), [(2, 3, 9, 7), (4, 3, 4, 3), (4,)]),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1), [(2, 3, 5, 4), (3, 4, 4, 3), (4,)]),
    "dcgan_G2": (lambda x, w: F.conv_transpose2d(x, w, None, 2, 1), [(4, 64, 7, 7), (64, 32, 4, 4)]),
    "dcgan_D2": (lambda x, w: F.conv2d(x, w, None, 2, 1), [(4, 32, 14, 14), (64, 32, 4, 4)]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_on_cuda_matches_cpu(name, dtype):
    fn, shapes = OPS[name]
    check_devices_agree(fn, arrays(*shapes, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
@pytest.mark.parametrize("shape", [(6, 5), (4, 8, 7, 7)], ids=["2d", "4d"])
def test_batch_norm_on_cuda_matches_cpu(shape, activation, training, dtype):
    c = shape[1]
    x, weight, bias = arrays(shape, (c,), (c,), dtype=dtype)
    running = {}

    def fn(x, weight, bias):
        device = x.device
        mean = fastgan.tensor(np.linspace(-1, 1, c).astype(dtype), device=device)
        var = fastgan.tensor(np.linspace(0.5, 2, c).astype(dtype), device=device)
        out = F.batch_norm(x, mean, var, weight, bias, training, 0.1, 1e-5, activation, 0.2)
        running[device] = (mean, var)
        return out
    check_devices_agree(fn, [3 + 2 * x, 1 + 0.3 * weight, bias], dtype)
    for gpu, cpu in zip(running[DEVICE], running["cpu"]):   # the running statistics were updated alike
        assert_close(gpu.numpy(), cpu.numpy(), dtype, "running statistics")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("target", ["number", "tensor"])
def test_bce_on_cuda_matches_cpu(target, reduction, dtype):
    logits, soft = arrays((64, 1), (64, 1), dtype=dtype)
    logits[:4, 0] = [100, -100, 0, 30]
    labels = 1 / (1 + np.exp(-soft))

    def fn(s):
        y = 0.9 if target == "number" else fastgan.tensor(labels, device=s.device)
        return F.binary_cross_entropy_with_logits(s, y, reduction)
    check_devices_agree(fn, [3 * logits], dtype)


def test_cross_entropy_on_cuda_matches_cpu():
    logits, = arrays((7, 5), dtype=np.float32)
    labels = np.array([0, 4, 2, 2, 1, 3, 0])
    check_devices_agree(lambda s, y: F.cross_entropy(s, y), [logits, labels], np.float32)


# --- whole training steps -------------------------------------------------------------------------------------

def _gpu_impls():
    yield pytest.param(None, id="default")
    for name in GPU_IMPLS:
        yield pytest.param(name, id=name)


def dcgan_on(device, dtype):
    fastgan.manual_seed(0)
    G, D = dcgan_mnist()
    G.astype(dtype).to(device), D.astype(dtype).to(device)
    opt_g, opt_d = (optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (G, D))
    return G, D, opt_g, opt_d


def batches(n, dtype, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [(np.tanh(rng.standard_normal((n, 1, 28, 28))).astype(dtype),
             rng.standard_normal((n, 100, 1, 1)).astype(dtype)) for _ in range(steps)]


def train(device, dtype, data, impl=None):
    G, D, opt_g, opt_d = dcgan_on(device, dtype)
    losses = []
    with dispatch.use(impl):
        for real, z in data:
            stats = train_step(G, D, opt_g, opt_d, fastgan.tensor(real, device=device),
                               fastgan.tensor(z, device=device))
            losses.append([stats["loss_d"], stats["loss_g"]])
    assert all(p.device == device for p in G.parameters() + D.parameters())
    return np.array(losses), {**{f"G.{k}": v for k, v in G.state_dict().items()},
                              **{f"D.{k}": v for k, v in D.state_dict().items()}}


# float32 as in test_dcgan_step.py: where a gradient is ~0, Adam's m/√v turns a rounding difference into a step of
# up to lr (2e-4) in either direction; three steps stay within ~1e-3. float64 is the tight check.
@pytest.mark.parametrize("dtype, tol", [(np.float64, dict(rtol=1e-9, atol=1e-11)),
                                        (np.float32, dict(rtol=1e-3, atol=1.5e-3))], ids=["float64", "float32"])
@pytest.mark.parametrize("impl", list(_gpu_impls()))
def test_dcgan_steps_on_cuda_match_cpu(impl, dtype, tol):
    if impl is not None:
        gpu_module(impl)
    data = batches(16, dtype, 3)
    losses_cpu, state_cpu = train("cpu", dtype, data)
    losses_gpu, state_gpu = train(DEVICE, dtype, data, impl)
    np.testing.assert_allclose(losses_gpu, losses_cpu, **tol)
    for name, value in state_cpu.items():
        np.testing.assert_allclose(state_gpu[name], value, err_msg=name, **tol)


@pytest.mark.parametrize("impl", list(_gpu_impls()))
def test_a_training_step_reads_nothing_back_and_never_synchronises(impl, monkeypatch):
    """Forward, backward and both Adam updates on the GPU at batch 64 (gan.train_step without its per-step
    statistics, which do read back), with every fastgan read-back disabled and CuPy forbidden to synchronise with
    the device (cupyx.allow_synchronize(False): a hidden .get(), scalar conversion or sync raises)."""
    import cupyx
    if impl is not None:
        gpu_module(impl)
    G, D, opt_g, opt_d = dcgan_on(DEVICE, np.float32)
    (real, z), = batches(64, np.float32, 1)
    real, z = fastgan.tensor(real, device=DEVICE), fastgan.tensor(z, device=DEVICE)

    def step():
        opt_d.zero_grad()
        F.binary_cross_entropy_with_logits(D(real), 1.0).backward()
        fake = G(z)
        F.binary_cross_entropy_with_logits(D(fake.detach()), 0.0).backward()
        opt_d.step()
        opt_g.zero_grad()
        with frozen(D):
            F.binary_cross_entropy_with_logits(D(fake), 1.0).backward()
        opt_g.step()

    def forbidden(*args, **kwargs):
        raise AssertionError("a training step copied data back to the host")
    with dispatch.use(impl):
        step()   # the first step compiles every kernel: outside the check
        monkeypatch.setattr(backend, "to_numpy", forbidden)
        with cupyx.allow_synchronize(False):
            step()
        monkeypatch.undo()
    assert all(np.isfinite(p.numpy()).all() for p in G.parameters() + D.parameters())


# --- moving between devices, checkpoints, the CLI ---------------------------------------------------------------

def train_cli():
    """fastgan.train, or a skip where its dependencies (tqdm, Pillow, matplotlib) are not installed."""
    try:
        from fastgan import train as cli
    except ImportError as err:
        pytest.skip(f"fastgan.train cannot be imported here: {err}")
    return cli


def test_tensors_move_between_devices_and_gradients_follow():
    import cupy
    a = fastgan.tensor([[1.0, -2.0], [3.0, 4.0]], requires_grad=True, device=DEVICE)
    assert a.device == DEVICE and isinstance(a.data, cupy.ndarray) and a.dtype == np.float32
    b = a.to("cpu")
    assert b.device == "cpu" and a.to(DEVICE) is a
    (b * b).sum().backward()
    assert a.grad.device == DEVICE
    np.testing.assert_array_equal(a.grad.numpy(), 2 * a.numpy())
    fastgan.manual_seed(5)
    on_gpu = fastgan.randn(3, 4, device=DEVICE)
    fastgan.manual_seed(5)
    np.testing.assert_array_equal(on_gpu.numpy(), fastgan.randn(3, 4).numpy())   # noise: same on every device
    assert fastgan.zeros(2, 3, device=DEVICE).device == DEVICE


def test_module_to_moves_in_place_and_only_once():
    G, _ = dcgan_mnist()
    params = G.parameters()
    G.to(DEVICE)
    assert [id(p) for p in G.parameters()] == [id(p) for p in params]
    assert all(t.device == DEVICE for _, t in list(G.named_parameters()) + list(G.named_buffers()))
    data = [p.data for p in params]
    G.to(DEVICE)
    assert all(p.data is d for p, d in zip(params, data)), "moving to the device it is on copied the data"
    G.to("cpu")
    assert all(p.device == "cpu" for p in params)


@pytest.mark.parametrize("source, target", [(DEVICE, "cpu"), ("cpu", DEVICE)])
def test_checkpoint_crosses_devices(tmp_path, source, target):
    """Train a step on `source`, checkpoint (as train.py does), load on `target`: the same state, and the next step
    on either device gives the same result."""
    from fastgan.checkpoint import load_checkpoint, save_checkpoint
    data = batches(8, np.float64, 2)
    G, D, opt_g, opt_d = dcgan_on(source, np.float64)
    train_step(G, D, opt_g, opt_d, *(fastgan.tensor(a, device=source) for a in data[0]))
    config = {"model": "dcgan", "nz": 100, "dtype": "float64"}
    save_checkpoint(str(tmp_path), {"epoch": 1, "config": config, "G": G.state_dict(), "D": D.state_dict(),
                                    "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                                    "rng": fastgan.get_rng_state(), "fixed_noise": data[0][1], "metrics_lines": 0})
    state = load_checkpoint(str(tmp_path))
    G2, D2, opt_g2, opt_d2 = dcgan_on(target, np.float64)
    for module, name in ((G2, "G"), (D2, "D")):
        module.load_state_dict(state[name])
    opt_g2.load_state_dict(state["opt_g"])
    opt_d2.load_state_dict(state["opt_d"])
    assert all(p.device == target for p in G2.parameters() + D2.parameters())
    for a, b in zip(G.parameters() + D.parameters(), G2.parameters() + D2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for opt in (opt_g2, opt_d2):
        assert all(backend.device_of(s["exp_avg"]) == target for s in opt.state)
    after = [train_step(g, d, og, od, *(fastgan.tensor(a, device=dev) for a in data[1]))
             for g, d, og, od, dev in ((G, D, opt_g, opt_d, source), (G2, D2, opt_g2, opt_d2, target))]
    np.testing.assert_allclose([after[0]["loss_d"], after[0]["loss_g"]], [after[1]["loss_d"], after[1]["loss_g"]],
                               rtol=1e-9)
    for a, b in zip(G.parameters() + D.parameters(), G2.parameters() + D2.parameters()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-11)


def test_cli_trains_on_cuda_and_resumes_on_cpu(tmp_path, monkeypatch, capsys):
    cli = train_cli()
    from fastgan.data import MNIST
    rng = np.random.default_rng(0)
    fake = MNIST(rng.integers(0, 256, (200, 28, 28), dtype=np.uint8), rng.integers(0, 10, 200, dtype=np.uint8),
                 rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10, dtype=np.uint8))
    monkeypatch.setattr(cli, "load_mnist", lambda data_dir=None, progress=True: fake)
    common = ["mnist", "--no-progress", "--limit", "128", "--batch-size", "64"]
    out = str(tmp_path / "run")
    assert cli.main(common + ["--device", "auto", "--epochs", "1", "--out", out]) == 0
    assert json.load(open(os.path.join(out, "config.json")))["device"] == DEVICE, "--device auto did not pick the GPU"
    assert "(device: cuda)" in capsys.readouterr().out
    assert cli.main(common + ["--device", "cpu", "--resume", out, "--epochs", "2"]) == 0
    assert cli.main(common + ["--device", "cuda", "--dry-run", "--epochs", "1", "--out", str(tmp_path / "dry")]) == 0
