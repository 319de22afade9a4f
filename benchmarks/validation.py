"""How the benchmarks check outputs before they time anything: as many outputs as expected, each one close."""
import numpy as np


def mismatch(ours, expected, rtol, atol, reshape=False):
    """None when the sequences of arrays `ours` and `expected` have the same length and agree pairwise (atol
    scaled by the largest |expected| value, at least 1); otherwise the first difference, in words. reshape=True
    compares an output of the expected size in the expected shape (a (N,) loss against torch's (N, 1))."""
    if len(ours) != len(expected):
        return f"{len(ours)} outputs, expected {len(expected)}"
    for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
        a, b = np.asarray(a), np.asarray(b)
        if reshape and a.size == b.size:
            a = a.reshape(b.shape)
        if a.shape != b.shape:
            return f"output {i} has shape {a.shape}, expected {b.shape}"
        scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
        if not np.allclose(a, b, rtol=rtol, atol=atol * scale):
            return f"output {i}: max |diff| {np.abs(a - b).max():.3g}"
    return None
