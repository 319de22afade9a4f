"""conv2d and conv_transpose2d against torch, for every kernel implementation (the `impl` fixture)."""
import numpy as np
import pytest
import torch

import fastgan
import fastgan.functional as F
from oracle import check, random_inputs

# (N, C_in, H, W, C_out, k, stride, padding): odd sizes, batch 1, non-square images and kernels, channels 1
CASES = [
    (2, 3, 7, 7, 4, 3, 1, 1), (1, 1, 5, 7, 2, 3, 2, 0), (3, 2, 9, 6, 3, (2, 4), 3, 2), (2, 4, 8, 8, 5, 5, 2, 2),
    (1, 3, 6, 5, 1, 1, 1, 0), (4, 2, 28, 28, 3, 4, 2, 1), (2, 5, 1, 1, 3, 1, 1, 0), (2, 3, 10, 9, 2, 4, (1, 2), (2, 1)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, cin, h, w, cout, k, stride, padding", CASES)
def test_conv2d(impl, dtype, n, cin, h, w, cout, k, stride, padding):
    kh, kw = (k, k) if isinstance(k, int) else k
    x, weight, bias = random_inputs((n, cin, h, w), (cout, cin, kh, kw), (cout,), dtype=dtype)
    check(lambda x, w, b: F.conv2d(x, w, b, stride, padding),
          lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride, padding), [x, weight, bias], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, cin, h, w, cout, k, stride, padding", CASES)
@pytest.mark.parametrize("output_padding", [0, 1])
def test_conv_transpose2d(impl, dtype, n, cin, h, w, cout, k, stride, padding, output_padding):
    kh, kw = (k, k) if isinstance(k, int) else k
    if output_padding >= min(stride if isinstance(stride, tuple) else (stride,)):
        pytest.skip("output_padding must be smaller than the stride")
    x, weight, bias = random_inputs((n, cin, h, w), (cin, cout, kh, kw), (cout,), dtype=dtype)
    check(lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, output_padding),
          lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, stride, padding, output_padding),
          [x, weight, bias], dtype=dtype)


def test_conv_without_bias_and_frozen_input(impl):
    x, weight = random_inputs((2, 3, 6, 6), (4, 3, 3, 3))
    check(lambda x, w: F.conv2d(x, w, None, 1, 1), lambda x, w: torch.nn.functional.conv2d(x, w, None, 1, 1),
          [x, weight], grad=[False, True])
    check(lambda x, w: F.conv_transpose2d(x, w.transpose(0, 1), None, 2, 1),
          lambda x, w: torch.nn.functional.conv_transpose2d(x, w.transpose(0, 1), None, 2, 1),
          [random_inputs((2, 3, 5, 5))[0], weight], grad=[True, False])


@pytest.mark.parametrize("layer", [
    ("convT", 100, 256, 7, 1, 0, 1), ("convT", 256, 128, 4, 2, 1, 7), ("convT", 128, 1, 4, 2, 1, 14),
    ("conv", 1, 64, 4, 2, 1, 28), ("conv", 64, 128, 4, 2, 1, 14), ("conv", 128, 1, 7, 1, 0, 7)])
def test_dcgan_layer_shapes_float32(impl, layer):
    kind, cin, cout, k, s, p, hw = layer
    x = random_inputs((3, cin, hw, hw), dtype=np.float32)[0]
    if kind == "conv":
        w = random_inputs((cout, cin, k, k), dtype=np.float32, seed=1)[0] * 0.05
        check(lambda x, w: F.conv2d(x, w, None, s, p), lambda x, w: torch.nn.functional.conv2d(x, w, None, s, p),
              [x, w], dtype=np.float32)
    else:
        w = random_inputs((cin, cout, k, k), dtype=np.float32, seed=1)[0] * 0.05
        check(lambda x, w: F.conv_transpose2d(x, w, None, s, p),
              lambda x, w: torch.nn.functional.conv_transpose2d(x, w, None, s, p), [x, w], dtype=np.float32)


def test_backward_asks_only_for_needed_gradients(monkeypatch):
    """A frozen weight, an input image and a missing bias cost no GEMM: the kernel's output_mask leaves them out."""
    from fastgan.kernels import reference
    seen = []
    for op in ("conv2d_backward", "conv_transpose2d_backward"):
        kernel = getattr(reference, op)
        monkeypatch.setattr(reference, op, lambda *a, _k=kernel: seen.append(a[-1]) or _k(*a))
    image = fastgan.tensor(np.ones((1, 2, 5, 5), np.float32))
    frozen = fastgan.tensor(np.ones((3, 2, 3, 3), np.float32))
    trained = fastgan.tensor(np.ones((3, 2, 3, 3), np.float32), requires_grad=True)
    F.conv2d(image, trained, impl="reference").sum().backward()
    F.conv2d(image.requires_grad_(), frozen, impl="reference").sum().backward()
    F.conv_transpose2d(image, frozen.transpose(0, 1), impl="reference").sum().backward()
    out = F.conv2d(image, trained, impl="reference")
    trained.requires_grad_(False)  # frozen after the forward pass, for this backward only: asked when it runs
    out.sum().backward()
    assert seen == [(False, True, False), (True, False, False), (True, False, False), (True, False, False)]


# an empty batch: the output and dx are empty, dW and db zero, as torch (the cases take every path of the CPU
# kernels: im2col + GEMM, thin per-image GEMMs, a kernel covering the whole image, a transposed conv of a 1x1 input)
@pytest.mark.parametrize("transposed, cin, hw, cout, k, stride, padding", [
    (False, 3, 5, 4, 3, 1, 1), (False, 8, 7, 5, 3, 2, 1), (False, 3, 5, 2, 5, 1, 0), (True, 3, 5, 4, 3, 1, 1),
    (True, 8, 7, 5, 3, 2, 1), (True, 2, 1, 3, 4, 1, 0), (True, 4, 1, 3, 1, 1, 0)])
def test_conv_on_an_empty_batch(impl, transposed, cin, hw, cout, k, stride, padding):
    if transposed:
        ours, theirs, w_shape = F.conv_transpose2d, torch.nn.functional.conv_transpose2d, (cin, cout, k, k)
    else:
        ours, theirs, w_shape = F.conv2d, torch.nn.functional.conv2d, (cout, cin, k, k)
    check(lambda x, w, b: ours(x, w, b, stride, padding), lambda x, w, b: theirs(x, w, b, stride, padding),
          random_inputs((0, cin, hw, hw), w_shape, (cout,)))
