"""Sample-quality metrics computed from a classifier's outputs: NumPy only, float64 throughout.

Given p(y|x) (the classifier's softmax) and φ(x) (its penultimate features) for a set of images:

class histogram   h_c = fraction of images whose most likely class is c
mode coverage     number of classes with h_c ≥ 1 %;   KL(h ‖ uniform) = Σ_c h_c log(C·h_c)   (0 log 0 = 0)
Inception score   IS = exp(E_x KL(p(y|x) ‖ p(y))),  p(y) = E_x p(y|x)     (Salimans et al., 2016)
                  between 1 (every image the same mixture) and C (every image sure, classes balanced)
Fréchet distance  FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)  of Gaussians fitted to the two feature sets
                  (FID with the MNIST classifier's features: "MNIST-FID"; only comparable with the same extractor)
per-class accuracy  for samples of a conditional G: acc_c = fraction of the samples requested as class c whose
                  most likely class is c, and the overall fraction (of all samples)
"""
import numpy as np

COVERAGE_THRESHOLD = 0.01


def class_histogram(probs, classes=None):
    """(N, C) class probabilities -> (C,) fraction of images predicted as each class."""
    probs = np.asarray(probs)
    classes = probs.shape[1] if classes is None else classes
    counts = np.bincount(probs.argmax(axis=1), minlength=classes)
    return counts / max(len(probs), 1)


def per_class_accuracy(probs, requested, classes=None):
    """(overall accuracy, (C,) accuracy per requested class; NaN for a class never requested) of samples whose
    requested classes are `requested` (N integers), judged by the classifier's (N, C) probabilities."""
    probs, requested = np.asarray(probs), np.asarray(requested)
    classes = probs.shape[1] if classes is None else classes
    if requested.shape != (len(probs),) or requested.dtype.kind not in "iu":
        raise ValueError(f"per_class_accuracy: need one integer class per sample ({len(probs)}), got "
                         f"{requested.dtype} of shape {requested.shape}")
    hit = probs.argmax(axis=1) == requested
    asked = np.bincount(requested, minlength=classes).astype(np.float64)
    hits = np.bincount(requested, weights=hit, minlength=classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(asked > 0, hits / np.maximum(asked, 1), np.nan)
    return float(hit.mean()) if len(hit) else float("nan"), per_class


def modes_covered(histogram, threshold=COVERAGE_THRESHOLD):
    """How many classes hold at least `threshold` of the samples."""
    return int(np.sum(np.asarray(histogram) >= threshold))


def kl_to_uniform(histogram):
    """KL(h ‖ U) = Σ_c h_c log(C·h_c): 0 for balanced classes, log C when every sample is one class."""
    h = np.asarray(histogram, dtype=np.float64)
    nonzero = h > 0
    return float(np.sum(h[nonzero] * np.log(len(h) * h[nonzero])))


def inception_score(probs, splits=10, eps=1e-12):
    """(mean, std) of exp(E_x KL(p(y|x) ‖ p(y))) over `splits` equal parts of the images (the usual protocol)."""
    probs = np.asarray(probs, dtype=np.float64)
    splits = max(1, min(splits, len(probs)))
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)                         # p(y)
        kl = np.sum(part * (np.log(part + eps) - np.log(marginal + eps)), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def feature_statistics(features):
    """(mean, covariance) of (N, d) features, float64; the covariance is the unbiased one (as np.cov)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"feature_statistics: need (N, d) features with N ≥ 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(a):
    """The symmetric square root of a symmetric positive semi-definite matrix, by eigh: V diag(√λ) Vᵀ.
    Round-off can make tiny eigenvalues negative; they are clipped to 0."""
    eigenvalues, vectors = np.linalg.eigh((a + a.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """FD between N(μ₁, Σ₁) and N(μ₂, Σ₂), with tr((Σ₁Σ₂)^½) taken from a *symmetric* matrix.

    Σ₁Σ₂ is not symmetric, but it is similar to M = Σ₁^½ Σ₂ Σ₁^½ (conjugate by Σ₁^½), which is symmetric PSD:
    same eigenvalues, so tr((Σ₁Σ₂)^½) = Σ_i √λ_i(M). Two eigh calls, no complex numbers, no sqrtm.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"frechet_distance: shapes do not match: μ {mu1.shape} {mu2.shape}, "
                         f"Σ {sigma1.shape} {sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return float(max(distance, 0.0))  # ≥ 0 in exact arithmetic; round-off may leave −1e-12


def frechet_distance_of_features(features1, features2):
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
