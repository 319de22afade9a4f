"""Bad input raises ValueError/TypeError naming the shapes or dtypes involved."""
import numpy as np
import pytest

import fastgan
import fastgan.functional as F


def t(*shape, dtype=np.float32):
    return fastgan.tensor(np.zeros(shape, dtype))


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: F.conv2d(t(2, 3, 8, 8), t(4, 2, 3, 3)), ValueError, r"\(2, 3, 8, 8\).*\(4, 2, 3, 3\)"),
    (lambda: F.conv2d(t(3, 8, 8), t(4, 3, 3, 3)), ValueError, r"4-D.*\(3, 8, 8\)"),
    (lambda: F.conv2d(t(1, 3, 2, 2), t(4, 3, 3, 3)), ValueError, r"does not fit input \(1, 3, 2, 2\)"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3, dtype=np.float64)), TypeError,
     r"conv2d: inputs must share one dtype, got \(1, 3, 8, 8\):float32, \(4, 3, 3, 3\):float64"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), t(5)), ValueError, r"bias \(5,\)"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), stride=-1), ValueError,
     "stride must be a non-negative int or a pair of them, got -1"),
    (lambda: F.conv_transpose2d(t(2, 3, 4, 4), t(4, 2, 3, 3)), ValueError, r"\(2, 3, 4, 4\).*\(4, 2, 3, 3\)"),
    (lambda: F.conv_transpose2d(t(2, 3, 4, 4), t(3, 2, 3, 3), stride=2, output_padding=2), ValueError,
     r"conv_transpose2d: output_padding \(2, 2\) must be smaller than stride \(2, 2\)"),
    (lambda: F.linear(t(2, 5), t(4, 3)), ValueError, r"\(2, 5\).*\(4, 3\)"),
    (lambda: F.matmul(t(2, 5), t(4, 3)), ValueError, r"\(2, 5\) and \(4, 3\)"),
    (lambda: t(2, 3) + t(4, 5), ValueError, r"\(2, 3\) and \(4, 5\) do not broadcast"),
    (lambda: F.batch_norm(t(4, 3, 2, 2), None, None, t(5), t(5), True), ValueError, r"weight \(5,\).*\(4, 3, 2, 2\)"),
    (lambda: F.batch_norm(t(4, 3, 2), None, None, training=True), ValueError, r"\(4, 3, 2\)"),
    (lambda: F.batch_norm(t(4, 3), None, None, training=True, activation="gelu"), ValueError,
     r"batch_norm: activation must be one of \(None, 'relu', 'leaky_relu'\), got 'gelu'"),
    (lambda: F.batch_norm(t(4, 3), None, None, training=False), ValueError,
     "batch_norm: eval mode needs running_mean and running_var"),
    (lambda: F.binary_cross_entropy_with_logits(t(4, 1), t(4)), ValueError, r"\(4,\).*\(4, 1\)"),
    (lambda: F.binary_cross_entropy_with_logits(t(4, 1), t(4, 1), "avg"), ValueError,
     r"binary_cross_entropy_with_logits: reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"),
    (lambda: F.maxout(t(2, 7), 3), ValueError, r"\(2, 7\)"),
    (lambda: F.reshape(t(2, 3), 4, 2), ValueError, r"\(2, 3\).*\(4, 2\)"),
    (lambda: F.cat([t(2, 3), t(3, 4)], dim=0), ValueError, r"\(2, 3\), \(3, 4\)"),
    (lambda: fastgan.tensor([1.0], device="tpu"), ValueError,
     "unknown device 'tpu': expected one of 'cpu', 'cuda', 'auto'"),
])
def test_bad_input(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()

