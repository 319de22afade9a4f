"""The image-folder loader on folders generated here: geometry, modes, nesting, unreadable files, errors, the cache."""
import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from fastgan.data import FolderError, ImageSet, load_folder, load_images
from fastgan.data import folder as folder_mod

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def stripes(colors, width, height, vertical=True):
    """An RGB picture cut into equal stripes of `colors`, left to right (vertical) or top to bottom."""
    pixels = np.zeros((height, width, 3), np.uint8)
    n = len(colors)
    for i, c in enumerate(colors):
        if vertical:
            pixels[:, i * width // n:(i + 1) * width // n] = c
        else:
            pixels[i * height // n:(i + 1) * height // n] = c
    return Image.fromarray(pixels, "RGB")


def save(image, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)
    return path


def load(root, cache, **kw):
    kw.setdefault("image_size", 16)
    return load_folder(root, cache_dir=cache, progress=False, **kw)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def npys(cache):
    return sorted(p.name for p in cache.rglob("*.npy"))


# --- geometry ------------------------------------------------------------------------------------------------------

def test_shorter_side_resized_then_center_cropped(tmp_path, cache):
    root = tmp_path / "pics"
    save(stripes([RED, GREEN, BLUE], 120, 40), root / "landscape.png")         # → 48×16, crop keeps the middle third
    save(stripes([RED, GREEN, BLUE], 40, 120, vertical=False), root / "portrait.png")
    save(stripes([RED, BLUE], 100, 50), root / "wide_halves.png")              # → 32×16: red left, blue right
    save(Image.new("RGB", (5, 3), (10, 20, 30)), root / "tiny.png")            # upscaled
    data = load(root, cache)
    assert isinstance(data, ImageSet) and data.images.shape == (4, 3, 16, 16) and data.images.dtype == np.uint8
    landscape, portrait, tiny, halves = data.images.transpose(0, 2, 3, 1)  # sorted by name; (H, W, C) each
    # the stripes' edges are blurred by the filter (about one output pixel at this scale): look inside them
    assert (landscape[:, 2:14] == GREEN).all() and (portrait[2:14] == GREEN).all()
    assert (tiny == (10, 20, 30)).all()
    assert (halves[:, :6] == RED).all() and (halves[:, 10:] == BLUE).all()
    assert (halves[:, 6:10, 0] > halves[:, 6:10, 2]).sum() == 2 * 16  # the edge in the middle: 2 reddish columns


def test_same_pixels_as_pillow_resize_and_crop(tmp_path, cache):
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), "RGB")
    save(picture, tmp_path / "pics" / "noise.png")
    # torchvision's Resize(16) + CenterCrop(16) arithmetic: 53·16/37 = 22.9 → 22 wide; left = round(6 / 2) = 3
    expected = np.asarray(picture.resize((22, 16), Image.BILINEAR).crop((3, 0, 19, 16))).transpose(2, 0, 1)
    np.testing.assert_array_equal(load(tmp_path / "pics", cache).images[0], expected)


def test_exif_orientation_is_applied(tmp_path, cache):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    save(stripes([RED, BLUE], 100, 50), tmp_path / "pics" / "turned.png", exif=exif)
    image = load(tmp_path / "pics", cache).images[0].transpose(1, 2, 0)
    assert (image[:6] == RED).all() and (image[10:] == BLUE).all()  # left/right halves became top/bottom


# --- modes ---------------------------------------------------------------------------------------------------------

def test_modes_become_rgb_or_grayscale(tmp_path, cache):
    root = tmp_path / "pics"
    save(Image.new("L", (8, 8), 100), root / "a_gray.png")
    save(Image.new("RGB", (8, 8), (10, 200, 30)), root / "b_rgb.png")
    save(Image.new("RGBA", (8, 8), (10, 200, 30, 0)), root / "c_rgba.png")
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 40, 50, 60] + [0] * 762)
    save(palette, root / "d_palette.png")
    save(palette, root / "e_palette_transparent.png", transparency=bytes([0, 128]))  # a tRNS of alphas
    save(Image.fromarray(np.full((8, 8), 0x8000, np.uint16)), root / "f_16bit.png")
    save(Image.new("RGB", (8, 8), (200, 100, 50)), root / "g_photo.jpg", quality=95)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Pillow's warning about palette transparency
        rgb = load(root, cache, image_size=8, nc=3).images
        gray = load(root, cache, image_size=8, nc=1).images
    assert rgb.shape == (7, 3, 8, 8) and gray.shape == (7, 1, 8, 8)
    colors = [tuple(int(v) for v in image[:, 4, 4]) for image in rgb]
    assert colors[:6] == [(100, 100, 100), (10, 200, 30), (10, 200, 30), (40, 50, 60), (40, 50, 60), (128, 128, 128)]
    assert np.abs(np.array(colors[6]) - (200, 100, 50)).max() <= 3  # JPEG is lossy
    luma = [round(0.299 * r + 0.587 * g + 0.114 * b) for r, g, b in colors[:6]]  # ITU-R 601-2, Pillow's "L"
    np.testing.assert_allclose(gray[:6, 0, 4, 4], luma, atol=1)


def test_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path, cache, monkeypatch):
    save(stripes([RED, GREEN, BLUE], 1200, 400), tmp_path / "pics" / "big.jpg", quality=95)
    decoded = []
    real_fit = folder_mod.fit
    monkeypatch.setattr(folder_mod, "fit", lambda image, size: decoded.append(image.size) or real_fit(image, size))
    image = load(tmp_path / "pics", cache).images[0].transpose(1, 2, 0)
    assert decoded == [(150, 50)]  # JPEG's DCT decoded at 1/8 scale: the largest reduction that keeps ≥ 16 pixels
    assert np.abs(image[:, 4:12].astype(int) - GREEN).max() <= 12


# --- nesting -------------------------------------------------------------------------------------------------------

def test_nested_class_folders_in_sorted_order_hidden_and_other_files_ignored(tmp_path, cache):
    root = tmp_path / "pics"
    for rel, value in [("cats/small/x.png", 1), ("cats/y.JPG", 2), ("dogs/z.png", 3), ("top.png", 4),
                       (".hidden/h.png", 5), (".dotfile.png", 6)]:
        save(Image.new("L", (4, 4), value * 40), root / rel, **({"quality": 100} if rel.endswith("JPG") else {}))
    (root / "notes.txt").write_text("not a picture")
    images = load(root, cache, image_size=4, nc=1).images
    assert images.shape == (4, 1, 4, 4)
    np.testing.assert_allclose(images[:, 0, 0, 0], [40, 80, 120, 160], atol=2)


def test_symlink_loops_are_followed_once(tmp_path, cache):
    root = tmp_path / "pics"
    save(Image.new("L", (4, 4), 9), root / "a" / "x.png")
    os.symlink(root, root / "a" / "loop")
    assert len(load(root, cache, image_size=4)) == 1


# --- unreadable files ----------------------------------------------------------------------------------------------

def corrupt_folder(root):
    for i in range(3):
        save(Image.new("RGB", (8, 8), (i, i, i)), root / f"good{i}.png")
    (root / "bad.jpg").write_bytes(b"this is not a JPEG")
    whole = (root / "good0.png").read_bytes()
    (root / "cut.png").write_bytes(whole[:len(whole) // 2])
    return root


def test_unreadable_files_are_skipped_and_counted_by_default(tmp_path, cache):
    root = corrupt_folder(tmp_path / "pics")
    with pytest.warns(RuntimeWarning, match=r"skipped 2 of 5 image files that Pillow cannot read \(the first: bad.jpg"):
        data = load(root, cache)
    assert len(data) == 3 and data.images.shape == (3, 3, 16, 16)
    assert [int(image[0, 0, 0]) for image in data.images] == [0, 1, 2]
    record = json.loads(next(cache.rglob("*.json")).read_text())
    assert [s["path"] for s in record["skipped"]] == ["bad.jpg", "cut.png"] and record["images"] == 3
    with pytest.warns(RuntimeWarning, match="skipped 2 of 5"):  # the cached array warns again
        assert len(load(root, cache)) == 3


def test_strict_stops_at_the_first_unreadable_file_and_writes_nothing(tmp_path, cache):
    root = corrupt_folder(tmp_path / "pics")
    with pytest.raises(FolderError, match=r"cannot read bad.jpg \(UnidentifiedImageError"):
        load(root, cache, strict=True)
    assert npys(cache) == []
    with pytest.warns(RuntimeWarning):
        load(root, cache)
    with pytest.raises(FolderError, match=r"cannot read bad.jpg .* and 1 more \(listed in .*\.json\)"):
        load(root, cache, strict=True)  # from the cache too


def test_an_unwritable_cache(tmp_path):
    save(Image.new("L", (4, 4), 1), tmp_path / "pics" / "a.png")
    (tmp_path / "not_a_dir").write_text("")
    with pytest.raises(FolderError, match=r"cannot write its cache .*not_a_dir/folders/.*\.npy .*set FASTGAN_CACHE"):
        load(tmp_path / "pics", tmp_path / "not_a_dir")


def test_a_folder_of_only_unreadable_files(tmp_path, cache):
    root = tmp_path / "pics"
    root.mkdir()
    (root / "a.png").write_bytes(b"\x89PNG broken")
    (root / "b.jpg").write_bytes(b"")
    with pytest.raises(FolderError, match=r"none of its 2 image files could be read \(the first, a.png: "):
        load(root, cache)
    assert npys(cache) == []


# --- errors --------------------------------------------------------------------------------------------------------

def test_missing_empty_and_wrong_folders(tmp_path, cache):
    with pytest.raises(FolderError, match=r"image folder .*nowhere: no such folder"):
        load(tmp_path / "nowhere", cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderError, match=r"empty: no images in it or its subfolders \(it is empty\); expected files "
                                          r"ending in \.png, \.jpg"):
        load(tmp_path / "empty", cache)
    (tmp_path / "texts" / "sub").mkdir(parents=True)
    (tmp_path / "texts" / "sub" / "readme.md").write_text("#")
    with pytest.raises(FolderError, match=r"it holds 1 other files, e.g. sub/readme.md"):
        load(tmp_path / "texts", cache)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(FolderError, match="file.png: is a file, not a folder of images"):
        load(tmp_path / "file.png", cache)
    with pytest.raises(ValueError, match=r"load_folder: nc must be 1 \(grayscale\) or 3 \(RGB\), got 4"):
        load(tmp_path / "empty", cache, nc=4)
    with pytest.raises(ValueError, match="load_folder: image_size must be a positive integer, got 0"):
        load(tmp_path / "empty", cache, image_size=0)


# --- the cache -----------------------------------------------------------------------------------------------------

def test_cache_is_reused_without_decoding(tmp_path, cache, monkeypatch):
    root = tmp_path / "pics"
    for i in range(3):
        save(Image.new("RGB", (20, 10), (i, 2 * i, 3 * i)), root / f"{i}.png")
    first = load(root, cache).images
    monkeypatch.setattr(folder_mod, "_decode", lambda *a: pytest.fail("decoded again"))
    np.testing.assert_array_equal(load(root, cache).images, first)
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]  # no temporary file left behind


def test_cache_is_rebuilt_when_the_folder_changes(tmp_path, cache):
    root = tmp_path / "pics"
    for i in range(3):
        save(Image.new("L", (8, 8), 10 * i), root / f"{i}.png")
    first = load(root, cache, nc=1)
    assert first.images[:, 0, 0, 0].tolist() == [0, 10, 20]
    assert load(root, cache, nc=1).fingerprint == first.fingerprint
    save(Image.new("L", (8, 8), 99), root / "3.png")                     # added
    added = load(root, cache, nc=1)
    assert added.images[:, 0, 0, 0].tolist() == [0, 10, 20, 99] and added.fingerprint != first.fingerprint
    (root / "0.png").unlink()                                            # removed
    assert load(root, cache, nc=1).images[:, 0, 0, 0].tolist() == [10, 20, 99]
    save(Image.new("L", (8, 8), 77), root / "1.png")                     # rewritten (same size in bytes)
    os.utime(root / "1.png", ns=(1, 1))                                  # ... even with an old timestamp
    assert load(root, cache, nc=1).images[:, 0, 0, 0].tolist() == [77, 20, 99]
    assert len(npys(cache)) == 1  # each rebuild replaced the stale array of the same settings
    load(root, cache, nc=3)
    load(root, cache, nc=1, image_size=8)
    assert len(npys(cache)) == 3  # other settings have their own arrays


def test_an_incomplete_cache_entry_is_made_again(tmp_path, cache):
    root = tmp_path / "pics"
    save(Image.new("L", (8, 8), 5), root / "a.png")
    load(root, cache)
    npy = next(cache.rglob("*.npy"))
    npy.write_bytes(npy.read_bytes()[:-10])  # truncated behind fastgan's back
    assert int(load(root, cache).images[0, 0, 0, 0]) == 5
    next(cache.rglob("*.json")).unlink()
    assert int(load(root, cache).images[0, 0, 0, 0]) == 5


def test_large_arrays_are_memory_mapped(tmp_path, cache, monkeypatch):
    root = tmp_path / "pics"
    save(Image.new("L", (8, 8), 5), root / "a.png")
    assert not isinstance(load(root, cache).images, np.memmap)
    assert isinstance(load(root, cache, mmap=True).images, np.memmap)
    monkeypatch.setattr(folder_mod, "IN_MEMORY_FRACTION", 1e-12)
    data = load(root, cache)
    assert isinstance(data.images, np.memmap) and not data.images.flags.writeable
    assert data.to_float((-1, 1), index=np.array([0, 0])).shape == (2, 3, 16, 16)


def test_load_images_folder(tmp_path, cache):
    save(Image.new("RGB", (8, 8), (255, 0, 0)), tmp_path / "pics" / "a.png")
    data = load_images("folder", image_size=8, data_dir=tmp_path / "pics", cache_dir=cache, progress=False)
    assert data.shape == (3, 8, 8) and "image folder" in data.description
    np.testing.assert_array_equal(data.to_float((-1, 1))[0, :, 0, 0], [1, -1, -1])
    with pytest.raises(ValueError, match=r"dataset 'folder' needs data_dir \(--data-dir\)"):
        load_images("folder")
