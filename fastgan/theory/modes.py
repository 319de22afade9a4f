"""Mode coverage of samples from a 2-D Gaussian mixture: the metric of the VEEGAN and PacGAN papers.

For 2,500 samples (the papers' count):
    nearest mode   the mode at the smallest Euclidean distance
    high quality   a sample within 3σ of its nearest mode (‖x − μ‖ < 3σ; PacGAN's code: √Σ (x − μ)²/σ² < 3)
    covered        a mode that is the nearest mode of at least one high-quality sample
    KL to uniform  KL(h ‖ uniform) = Σ_k h_k log(M·h_k) of the histogram h of the high-quality samples over the
                   M modes: 0 when they spread evenly, log M when they all sit on one mode (NaN if there are none)
"""
import dataclasses
import math

import numpy as np

SAMPLES, THRESHOLD_STDS = 2500, 3.0


@dataclasses.dataclass
class ModeReport:
    modes_covered: int
    high_quality: float        # fraction of the samples, in [0, 1]
    kl_to_uniform: float
    counts: list               # high-quality samples per mode

    def as_dict(self):
        return dataclasses.asdict(self)


def mode_coverage(samples, modes, std, threshold=THRESHOLD_STDS):
    """The ModeReport of `samples` (N, 2) against the mixture's `modes` (M, 2) of standard deviation `std`."""
    samples = np.asarray(samples, dtype=np.float64)
    modes = np.asarray(modes, dtype=np.float64)
    if samples.ndim != 2 or modes.ndim != 2 or samples.shape[1] != modes.shape[1] or len(modes) == 0:
        raise ValueError(f"mode_coverage: samples {samples.shape} and modes {modes.shape} must be (N, d) and (M, d)")
    if not std > 0:
        raise ValueError(f"mode_coverage: std must be positive, got {std}")
    distances = np.linalg.norm(samples[:, None, :] - modes[None, :, :], axis=2)   # (N, M)
    nearest = distances.argmin(axis=1)
    good = distances[np.arange(len(samples)), nearest] < threshold * std
    counts = np.bincount(nearest[good], minlength=len(modes))
    if counts.sum() == 0:
        kl = math.nan
    else:
        h = counts[counts > 0] / counts.sum()
        kl = float(np.sum(h * np.log(len(modes) * h)))
    return ModeReport(int((counts > 0).sum()), float(good.mean()) if len(samples) else math.nan, kl,
                      counts.tolist())
