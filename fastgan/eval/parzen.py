"""Gaussian Parzen-window log-likelihood: the evaluation of Table 1 of the GAN paper (Goodfellow et al., 2014).

Fit a kernel density estimate with centres μ_1..μ_M (the G samples) and one bandwidth σ to every pixel:

    p(x) = 1/M Σ_j N(x; μ_j, σ²I)
    log p(x) = logmeanexp_j(−‖x − μ_j‖² / (2σ²)) − d·log(σ√(2π)),        d = 784 pixels in [0, 1]

Protocol: M = 10,000 samples; σ from logspace(−1, 0, 10) with the best mean log p on the validation images (the
first 1,000 of train[50000:60000]); report the mean log p over the 10,000 test images ± std/√N.

Vectorised: for a batch of x, every squared distance at once from one matrix product,
    ‖x − μ‖² = ‖x‖² − 2 x·μ + ‖μ‖²        (float64: at σ = 0.1 an error δ in ‖x − μ‖² moves log p by δ/0.02)
then a stable log-mean-exp per row: with a_j = −‖x − μ_j‖²/(2σ²) and m = max_j a_j,
    logmeanexp(a) = m + log Σ_j exp(a_j − m) − log M       (every exp ≤ 1, and the largest is exactly 1: no −inf)
Memory is one (batch × M) float64 block: 500 × 10,000 × 8 B = 40 MB.
"""
import math

import numpy as np

SIGMAS = np.logspace(-1, 0, 10)

# Table 1 of the paper: Parzen window log-likelihood on the MNIST test set (mean ± standard error).
PAPER_TABLE1 = (("DBN", 138, 2), ("Stacked CAE", 121, 1.6), ("Deep GSN", 214, 1.1), ("Adversarial nets", 225, 2))


def _flat(images):
    a = np.asarray(images, dtype=np.float64)
    return a.reshape(len(a), -1)


def squared_distances(x, centers, centers_sq=None):
    """(N, M) matrix of ‖x_i − μ_j‖², from one GEMM; clipped at 0 (round-off can make a tiny one negative)."""
    centers_sq = (centers * centers).sum(axis=1) if centers_sq is None else centers_sq
    d2 = x @ centers.T
    d2 *= -2
    d2 += (x * x).sum(axis=1)[:, None]
    d2 += centers_sq[None, :]
    return np.maximum(d2, 0, out=d2)


def log_mean_exp(a, axis=1):
    """log(mean(exp(a))) along `axis`, shifted by the max so it neither overflows nor underflows to −inf."""
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis) - math.log(a.shape[axis])


def parzen_log_likelihood(x, centers, sigmas, batch_size=500):
    """log p(x) of every x under the Parzen window of `centers`, for each σ: an array (len(sigmas), N).

    x (N, ...) and centers (M, ...) are flattened to d = prod(...) dimensions; float64 throughout.
    """
    x, centers = _flat(x), _flat(centers)
    if x.shape[1] != centers.shape[1]:
        raise ValueError(f"parzen: images have {x.shape[1]} values, centres {centers.shape[1]}")
    sigmas = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    d = x.shape[1]
    centers_sq = (centers * centers).sum(axis=1)
    out = np.empty((len(sigmas), len(x)))
    for start in range(0, len(x), batch_size):
        d2 = squared_distances(x[start:start + batch_size], centers, centers_sq)   # shared by every σ
        for k, sigma in enumerate(sigmas):
            out[k, start:start + batch_size] = (log_mean_exp(d2 * (-0.5 / sigma ** 2))
                                                - d * math.log(sigma * math.sqrt(2 * math.pi)))
    return out


def select_sigma(validation, centers, sigmas=SIGMAS, batch_size=500):
    """(best σ, mean log p of the validation images for each σ): the σ whose window fits held-out data best."""
    means = parzen_log_likelihood(validation, centers, sigmas, batch_size).mean(axis=1)
    return float(np.asarray(sigmas)[int(np.argmax(means))]), means


def parzen_estimate(centers, validation, test, sigmas=SIGMAS, sigma=None, batch_size=500):
    """The whole protocol: choose σ on `validation` (unless given), then mean ± std/√N of log p over `test`."""
    validation_means = None
    if sigma is None:
        sigma, validation_means = select_sigma(validation, centers, sigmas, batch_size)
    ll = parzen_log_likelihood(test, centers, [sigma], batch_size)[0]
    return {"sigma": float(sigma), "mean": float(ll.mean()), "stderr": float(ll.std() / math.sqrt(len(ll))),
            "test_images": len(ll), "centers": len(_flat(centers)),
            "validation_means": None if validation_means is None else
            {f"{s:.4g}": float(m) for s, m in zip(sigmas, validation_means)}}


def format_report(model_result, ceiling=None):
    """The estimate beside the paper's Table 1 and the training-image ceiling, as printable lines."""
    def row(name, mean, err, note):
        return f"  {name:<40}{mean:>8} ± {err:<6}{note}".rstrip()
    lines = ["Parzen window log-likelihood on MNIST test images (higher is better)",
             row("model", "mean", "s.e.", "")]
    for name, mean, err in PAPER_TABLE1:
        lines.append(row(name + " (paper, Table 1)", mean, err, ""))
    lines.append(row(f"this run (σ = {model_result['sigma']:.4g})", f"{model_result['mean']:.1f}",
                     f"{model_result['stderr']:.1f}", ""))
    if ceiling is not None:
        lines.append(row(f"training images as centres (σ = {ceiling['sigma']:.4g})", f"{ceiling['mean']:.1f}",
                         f"{ceiling['stderr']:.1f}", "  (sanity ceiling)"))
    lines.append(f"  ({model_result['centers']} centres, {model_result['test_images']} test images)")
    return lines
