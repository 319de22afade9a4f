"""The kernel-level test bodies shared by every GPU implementation (imported by test_triton_kernels.py and
test_cuda_kernels.py, each of which supplies the `kernel_impl` fixture): each kernel on the cases of kernel_cases.py
(the DCGAN layers and odd shapes) against the NumPy reference, comparing every output and every array updated in
place."""
import copy

import numpy as np
import pytest

from fastgan import dispatch
from fastgan.kernels import reference
from kernel_cases import (ADAM_CASES, BCE_CASES, BN_CASES, CONV_CASES, SGD_CASES, bce_inputs,
                          check_against_reference, compare_outputs, optim_inputs, run_impl)

BOTH = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


def _conv_params():
    for case in CONV_CASES:
        for dtype in (np.float32,) if case.dcgan else (np.float32, np.float64):
            yield pytest.param(case, dtype, id=f"{case.name}-{np.dtype(dtype).name}")


@pytest.mark.parametrize("case,dtype", list(_conv_params()))
def test_conv(kernel_impl, case, dtype):
    x, weight, bias, dy = case.inputs(dtype)
    # FASTGAN_TRITON_TF32=1 (GPU only) rounds float32 tiles to a 10-bit mantissa: ~1e-3 relative error per product
    tf32 = kernel_impl == "triton" and dtype == np.float32 and dispatch.implementation("triton")._carrier.TF32
    tol = dict(rtol=2e-2, atol=5e-3) if tf32 else None
    check_against_reference(kernel_impl, case.fn + "_forward", case.forward_args(x, weight, bias), dtype, tol)
    check_against_reference(kernel_impl, case.fn + "_backward", case.backward_args(dy, x, weight), dtype, tol)


@pytest.mark.parametrize("mask", [(False, True, True), (True, False, False), (False, False, False)], ids=str)
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[4], CONV_CASES[-1]], ids=lambda c: c.name)
def test_conv_output_mask(kernel_impl, case, mask):
    """The gradients that output_mask skips come back as None; the others are the full backward's."""
    x, weight, _, dy = case.inputs(np.float32)
    fn = case.fn + "_backward"
    full = getattr(reference, fn)(*case.backward_args(dy, x, weight))
    for got, want, keep in zip(run_impl(kernel_impl, fn, *case.backward_args(dy, x, weight), mask), full, mask):
        compare_outputs(got, want if keep else None, np.float32, f"{kernel_impl}.{fn} with output_mask={mask}")


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("shape", [(), (1,), (0, 3), (2, 64, 14, 14), (40001,)])
def test_leaky_relu(kernel_impl, shape, dtype):
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[:2] = [0.0, -0.0][:x.size]
    check_against_reference(kernel_impl, "leaky_relu_forward", (x, 0.2), dtype)
    check_against_reference(kernel_impl, "leaky_relu_backward", (dy, x, 0.2), dtype)


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("case", BN_CASES, ids=str)
def test_batch_norm_act(kernel_impl, case, dtype):
    x, weight, bias, running_mean, running_var, dy = case.inputs(dtype)
    args = (x, weight, bias, running_mean, running_var, case.training, 0.1, 1e-5, case.activation, 0.2)
    check_against_reference(kernel_impl, "batch_norm_act_forward", args, dtype)   # also compares the running stats
    _, mean, rstd = reference.batch_norm_act_forward(*copy.deepcopy(args))
    check_against_reference(kernel_impl, "batch_norm_act_backward",
                            (dy, x, weight, bias, mean, rstd, case.training, case.activation, 0.2), dtype)


def test_batch_norm_needs_two_values_per_channel_when_training(kernel_impl):
    x = np.ones((1, 3), np.float32)
    with pytest.raises(ValueError, match="batch_norm: expected more than 1 value per channel when training"):
        run_impl(kernel_impl, "batch_norm_act_forward", x, None, None, None, None, True, 0.1, 1e-5, None, 0.2)


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("n,reduction", BCE_CASES)
def test_sigmoid_bce(kernel_impl, n, reduction, dtype):
    logits, target = bce_inputs(n, dtype)
    loss, dlogits = check_against_reference(kernel_impl, "sigmoid_bce_forward", (logits, target, reduction), dtype)
    assert (np.isfinite(loss).all() or n == 0) and np.isfinite(dlogits).all()


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("hyper", ADAM_CASES, ids=["plain", "weight_decay"])
def test_adam_step(kernel_impl, hyper, dtype):
    param, *grads = optim_inputs(3000, dtype)
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    for step, grad in enumerate(grads + grads[:1], start=1):
        args = (param, grad, exp_avg, exp_avg_sq, step, hyper["lr"], hyper["beta1"], hyper["beta2"], hyper["eps"],
                hyper["weight_decay"])
        check_against_reference(kernel_impl, "adam_step", args, dtype)   # compares param and both moments
        reference.adam_step(*args)                                    # both start the next step from here


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("hyper", SGD_CASES, ids=["plain", "momentum+wd", "dampening", "nesterov"])
def test_sgd_step(kernel_impl, hyper, dtype):
    param, *grads = optim_inputs(3000, dtype)
    buf = np.zeros_like(param) if hyper["momentum"] else None
    for step, grad in enumerate(grads + grads[:1]):
        args = (param, grad, buf, 0.05, hyper["momentum"], hyper["weight_decay"], hyper["dampening"],
                hyper["nesterov"], step == 0)
        check_against_reference(kernel_impl, "sgd_step", args, dtype)
        reference.sgd_step(*args)
