"""Evaluating a trained generator: `python -m fastgan.eval {parzen,quality,train-classifier,time}`.

    parzen.py      Gaussian Parzen-window log-likelihood (the 2014 paper's Table 1 protocol)
    classifier.py  a small MNIST CNN trained with fastgan itself, cached with a SHA-256 checksum
    metrics.py     class histogram, mode coverage, Inception score, Fréchet distance (NumPy only)
    quality.py     the classifier-based quality report of a set of samples (and its MNIST-FID plot)
    runs.py        a run folder's generator, and samples from it in [0, 1]
    timing.py      how long a run took, from the epoch times in its metrics.jsonl
"""
