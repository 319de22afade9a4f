"""How the benchmarks check outputs before they time anything: as many outputs as expected, each one close."""
import numpy as np

# how close two engines' step losses must be when both run under their bfloat16 autocast (8-bit mantissas: the
# losses agree to about 1 %), in benchmarks/train_step.py and gpu_step.py
BF16_LOSSES = dict(rtol=2e-2, atol=1e-3)


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
