"""The data sources behind load_images: ImageSet, MNIST at another size (on synthetic digits: nothing is downloaded),
fake data. The image folder has its own file (test_folder.py)."""
import numpy as np
import pytest
from PIL import Image

import fastgan
from fastgan.data import ImageSet, MNISTError, fake_images, load_images, load_mnist_resized, mnist_images
from fastgan.data import mnist as m
from fastgan.data import mnist_resized as mr
from fastgan.data.mnist import MNIST, mnist_to_float
from fastgan.data.resize import resize_images


# --- ImageSet ------------------------------------------------------------------------------------------------------

def test_to_float_per_batch_is_the_whole_conversion_and_matches_mnist_to_float():
    pixels = np.random.default_rng(0).integers(0, 256, (10, 1, 5, 5), dtype=np.uint8)
    data = ImageSet(pixels, "ten")
    whole = data.to_float((-1, 1))
    np.testing.assert_array_equal(whole, mnist_to_float(pixels[:, 0], (-1, 1)))  # the MNIST path is unchanged
    order = np.array([7, 2, 2, 9])
    np.testing.assert_array_equal(data.to_float((-1, 1), index=order), whole[order])
    unit = data.to_float((0, 1), np.float64)
    assert unit.dtype == np.float64 and unit.min() >= 0 and unit.max() <= 1
    edges = ImageSet(np.array([0, 255], np.uint8).reshape(2, 1, 1, 1), "edges").to_float((-1, 1))
    assert edges.ravel().tolist() == [-1.0, 1.0]
    assert len(data.head(3)) == 3 and data.head(None) is data and data.head(99) is data
    assert ImageSet(pixels, "ten", fingerprint="f").head(3).fingerprint == "f[:3]"
    assert data.shape == (1, 5, 5) and data.nc == 1


def test_imageset_rejects_what_a_model_cannot_take():
    with pytest.raises(ValueError, match=r"ImageSet: images must be uint8 \(N, C, H, W\) with C = 1 or 3, got "
                                         r"float32 \(2, 3, 4, 4\) \(floats\)"):
        ImageSet(np.zeros((2, 3, 4, 4), np.float32), "floats")
    with pytest.raises(ValueError, match=r"C = 1 or 3, got uint8 \(2, 4, 4, 4\)"):
        ImageSet(np.zeros((2, 4, 4, 4), np.uint8), "four channels")
    with pytest.raises(ValueError, match="ImageSet: 2 images but 3 labels"):
        ImageSet(np.zeros((2, 1, 4, 4), np.uint8), "x", labels=np.zeros(3))
    with pytest.raises(ValueError, match="value_range must be"):
        ImageSet(np.zeros((2, 1, 4, 4), np.uint8), "x").to_float((1, 1))


# --- MNIST at 64 pixels --------------------------------------------------------------------------------------------

@pytest.fixture
def small_mnist(monkeypatch, tmp_path):
    """Synthetic digits as "MNIST" (left half black, right half white, plus noise), the label digests to match."""
    rng = np.random.default_rng(0)

    def digits(n):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[:, :, :12], x[:, :, 16:] = 0, 255
        return x

    data = MNIST(digits(7), rng.integers(0, 10, 7, dtype=np.uint8), digits(3), rng.integers(0, 10, 3, dtype=np.uint8))
    calls = []
    monkeypatch.setattr(mr, "load_mnist", lambda *a, **k: calls.append(a) or data)
    monkeypatch.setattr(mr, "EXPECTED_SHA256", {k: m.array_sha256(getattr(data, k)) for k in m._FIELDS})
    return data, calls, tmp_path / "cache"


def test_mnist_resized_once_then_read_from_its_cache(small_mnist):
    data, calls, cache = small_mnist
    big = load_mnist_resized(64, cache_dir=cache, progress=False)
    assert big.x_train.shape == (7, 64, 64) and big.x_test.shape == (3, 64, 64) and big.x_train.dtype == np.uint8
    np.testing.assert_array_equal(big.y_train, data.y_train)
    np.testing.assert_array_equal(big.x_test, resize_images(data.x_test, 64)[:, 0])
    # geometry: 28 → 64 is a factor 16/7, the black and white bands keep their place (away from their blurred edges)
    assert (big.x_train[:, :, :25] == 0).all() and (big.x_train[:, :, 39:] == 255).all()
    assert mr.resized_cache_path(64, cache).is_file() and len(calls) == 1
    again = load_mnist_resized(64, cache_dir=cache, progress=False)
    assert len(calls) == 1  # not made again
    for a, b in zip(big, again):
        np.testing.assert_array_equal(a, b)
    assert load_mnist_resized(28, cache_dir=cache) is data  # 28 is MNIST itself


def test_resize_is_pillow_bilinear():
    x = np.random.default_rng(1).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(x[1], "L").resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(resize_images(x, 64)[1, 0], expected)


def test_a_damaged_resized_cache_fails_loudly(small_mnist):
    _, _, cache = small_mnist
    load_mnist_resized(64, cache_dir=cache, progress=False)
    path = mr.resized_cache_path(64, cache)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["x_train"][0, 0, 0] ^= 1  # one bit of one pixel
    np.savez(path.with_suffix(".tmp.npz"), **arrays)
    path.with_suffix(".tmp.npz").replace(path)
    with pytest.raises(MNISTError, match=r"mnist-64.npz: SHA-256 mismatch for x_train \(the file is corrupt\). "
                                         r"Delete it \(rm '.*mnist-64.npz'\)"):
        load_mnist_resized(64, cache_dir=cache)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(MNISTError, match=r"resized MNIST cache .*mnist-64.npz is corrupt or unreadable"):
        load_mnist_resized(64, cache_dir=cache)
    with pytest.raises(ValueError, match="image_size must be a positive integer, got 0"):
        load_mnist_resized(0, cache_dir=cache)


def test_mnist_as_images(small_mnist):
    data, _, cache = small_mnist
    train = load_images("mnist", image_size=64, cache_dir=cache, progress=False)
    assert train.images.shape == (7, 1, 64, 64) and train.nc == 1 and "resized to 64×64" in train.description
    np.testing.assert_array_equal(train.labels, data.y_train)
    test = mnist_images(28, "test", cache_dir=cache)
    np.testing.assert_array_equal(test.images[:, 0], data.x_test)
    with pytest.raises(ValueError, match="dataset 'mnist' is grayscale: nc must be 1, got 3"):
        load_images("mnist", nc=3)


# --- fake data -----------------------------------------------------------------------------------------------------

def test_fake_images_any_size_deterministic_by_seed():
    fastgan.manual_seed(5)
    before = fastgan.get_rng_state()
    a = fake_images(5, 64, 3, seed=1)
    assert a.images.shape == (5, 3, 64, 64) and a.images.dtype == np.uint8
    assert a.images.min() == 0 and a.images.max() == 255
    np.testing.assert_array_equal(a.images, fake_images(5, 64, 3, seed=1).images)
    other = fake_images(5, 64, 3, seed=2)
    assert not np.array_equal(a.images, other.images) and a.fingerprint != other.fingerprint
    assert fake_images(2, (48, 80), 1).images.shape == (2, 1, 48, 80)
    assert fastgan.get_rng_state() == before  # fastgan's own random stream (training, resume) is untouched
    assert load_images("fake", image_size=32, count=4).shape == (3, 32, 32)
    assert len(load_images("fake")) == 1000


def test_fake_and_load_images_errors():
    with pytest.raises(ValueError, match="fake_images: count must be a positive integer, got 0"):
        fake_images(0)
    with pytest.raises(ValueError, match=r"fake_images: nc must be 1 \(grayscale\) or 3 \(RGB\), got 2"):
        fake_images(1, 8, 2)
    with pytest.raises(ValueError, match="unknown dataset 'cifar': expected one of mnist, folder, fake"):
        load_images("cifar")
    with pytest.raises(ValueError, match="dataset 'fake' takes no data_dir"):
        load_images("fake", data_dir="x")
    with pytest.raises(ValueError, match="dataset 'mnist' takes no count or strict"):
        load_images("mnist", count=3, strict=True)
