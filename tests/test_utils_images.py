"""Image grids (make_grid / save_image_grid) and loss plots (plot_losses)."""
import json
import math
import os
import sys

import numpy as np
import pytest
from PIL import Image

from fastgan.utils.images import make_grid, save_image_grid
from fastgan.utils.plots import plot_losses, read_jsonl


def reference_grid(x01, nrow, padding, pad_value):
    """torchvision.utils.make_grid's layout, written out: x01 in [0, 1], (N, C, H, W) -> (C, Hg, Wg) floats."""
    n, c, h, w = x01.shape
    xmaps = min(nrow, n)
    ymaps = int(math.ceil(float(n) / xmaps))
    height, width = h + padding, w + padding
    grid = np.full((c, height * ymaps + padding, width * xmaps + padding), pad_value, dtype=np.float64)
    k = 0
    for y in range(ymaps):
        for x in range(xmaps):
            if k >= n:
                break
            grid[:, y * height + padding:y * height + padding + h, x * width + padding:x * width + padding + w] = x01[k]
            k += 1
    return grid


@pytest.mark.parametrize("n, nrow, padding", [(10, 4, 2), (8, 8, 2), (3, 8, 0), (64, 8, 2), (5, 1, 3), (1, 8, 2)])
@pytest.mark.parametrize("c", [1, 3])
def test_grid_layout_matches_torchvision(n, nrow, padding, c):
    rng = np.random.default_rng(n * 10 + c)
    x = rng.uniform(-1.2, 1.2, (n, c, 5, 4)).astype(np.float32)
    grid = make_grid(x, nrow=nrow, padding=padding, pad_value=0.5)
    cols, rows = min(nrow, n), math.ceil(n / min(nrow, n))
    shape = (rows * (5 + padding) + padding, cols * (4 + padding) + padding)
    assert grid.dtype == np.uint8 and grid.shape == (shape if c == 1 else shape + (3,))
    ref = reference_grid((np.clip(x.astype(np.float64), -1, 1) + 1) / 2, nrow, padding, 0.5)
    ref = np.floor(ref * 255 + 0.5).astype(np.uint8)  # torchvision.utils.save_image's conversion
    assert np.array_equal(grid, ref[0] if c == 1 else ref.transpose(1, 2, 0))


def test_value_mapping():
    x = np.array([-1.0, 1.0, 0.0, -5.0, 7.0, np.nan, np.inf, -np.inf, 0.5]).reshape(1, 1, 1, 9)
    g = make_grid(x, padding=0)
    assert g.tolist() == [[0, 255, 128, 0, 255, 0, 255, 0, 191]]
    g = make_grid(np.array([[[0.0, 0.5, 1.0, 2.0]]]), value_range=(0, 2), padding=0)  # (N, H, W) input
    assert g.tolist() == [[0, 64, 128, 255]]
    g = make_grid(np.zeros((2, 1, 1, 1)), padding=1, pad_value=1.0)
    assert g.tolist() == [[255, 255, 255, 255, 255], [255, 128, 255, 128, 255], [255, 255, 255, 255, 255]]


def test_rgb_channel_order_and_unused_cells():
    x = np.full((3, 3, 2, 2), -1.0)
    x[:, 0] = 1.0  # red
    g = make_grid(x, nrow=2, padding=1, pad_value=0.0)
    assert g.shape == (2 * 3 + 1, 2 * 3 + 1, 3)
    assert (g[1:3, 1:3] == [255, 0, 0]).all()
    assert (g[4:6, 4:6] == 0).all()  # the 4th cell is empty: pad colour


def test_accepts_tensor_like():
    class FakeTensor:
        def __init__(self, a):
            self.a = a

        def numpy(self):
            return self.a

    x = np.linspace(-1, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)
    assert np.array_equal(make_grid(FakeTensor(x)), make_grid(x))


@pytest.mark.parametrize("shape", [(4, 2, 5, 5), (4, 4, 5, 5), (5, 5), (1, 1, 1, 5, 5), (0, 1, 5, 5), (7,)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match=re_shape(shape)):
        make_grid(np.zeros(shape))


def re_shape(shape):
    return r"shape \(" + r", ".join(map(str, shape)) + (r",\)" if len(shape) == 1 else r"\)")


def test_bad_arguments_raise():
    x = np.zeros((2, 1, 3, 3))
    for kwargs, message in [(dict(nrow=0), "nrow must be a positive integer, got 0"),
                            (dict(padding=-1), "padding must be a non-negative integer, got -1"),
                            (dict(value_range=(1, 1)), r"value_range must be finite \(lo, hi\) with lo < hi, got \(1, 1\)"),
                            (dict(pad_value=2.0), r"pad_value is a brightness in \[0, 1\], got 2.0"),
                            (dict(nrow=2.5), "nrow must be a positive integer, got 2.5")]:
        with pytest.raises(ValueError, match="make_grid: " + message):
            make_grid(x, **kwargs)
    with pytest.raises(ValueError, match=r"make_grid: expected real-valued images, got dtype <U1"):
        make_grid(np.array([[["a"]]]))


@pytest.mark.parametrize("c, mode", [(1, "L"), (3, "RGB")])
def test_save_image_grid_writes_png(tmp_path, c, mode):
    x = np.random.default_rng(0).uniform(-1, 1, (10, c, 28, 28)).astype(np.float32)
    path = tmp_path / "samples" / "epoch_001.png"  # parent dir created
    assert save_image_grid(x, path, nrow=4) == path
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == mode
        assert im.size == (4 * 30 + 2, 3 * 30 + 2)
        assert np.array_equal(np.asarray(im), make_grid(x, nrow=4))
    assert os.listdir(path.parent) == ["epoch_001.png"]  # no temp file left behind
    save_image_grid(-x, path, nrow=4)  # overwrite in place
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), make_grid(-x, nrow=4))
    with pytest.raises(ValueError, match=r"make_grid: expected images of shape \(N, C, H, W\).*got shape \(3, 3\)"):
        save_image_grid(np.zeros((3, 3)), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


# ----------------------------------------------------------------------------------------------------------------
# plot_losses


def fake_records(n=120, with_d=True, pair=False, split=False):
    rng = np.random.default_rng(0)
    records = []
    for step in range(n):
        r = {"step": step, "epoch": step // 40, "loss_d": float(1.4 - step / n + rng.normal(0, 0.05)),
             "loss_g": float(0.7 + step / n + rng.normal(0, 0.05))}
        if with_d:
            r["d_x"] = float(0.5 + step / (3 * n))
            if split:  # fastgan.train's keys: D(G(z)) on the D step and on the G step
                r["d_g_z1"], r["d_g_z2"] = 0.4, 0.3
            else:
                r["d_g_z"] = [0.4, 0.3] if pair else float(0.5 - step / (3 * n))
        records.append(r)
    return records


def assert_png(path, min_height=200):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] >= min_height
        assert np.asarray(im.convert("L")).std() > 1  # something was drawn
    assert [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".tmp")] == []


def test_plot_losses_from_records(tmp_path):
    had_pyplot = "matplotlib.pyplot" in sys.modules
    path = plot_losses(fake_records(), tmp_path / "plots" / "losses.png", title="test run")
    assert_png(path, min_height=700)  # two panels
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot  # pyplot (and its global backend) untouched
    path2 = plot_losses(fake_records(with_d=False), tmp_path / "losses_only.png")
    assert_png(path2)
    with Image.open(path) as a, Image.open(path2) as b:
        assert a.size[1] > b.size[1]  # one panel only
    assert_png(plot_losses(fake_records(pair=True), tmp_path / "pair.png"))


def test_plot_losses_from_jsonl(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [json.dumps(r) for r in fake_records(60, split=True)]
    lines.insert(40, json.dumps({"epoch": 0, "event": "epoch_end", "seconds": 1.5}))  # not a loss record: ignored
    lines.insert(20, "")
    metrics.write_text("\n".join(lines) + '\n{"step": 60, "loss_d": 0.')  # a run killed mid-line
    with pytest.warns(RuntimeWarning, match="malformed last line"):
        assert len(read_jsonl(metrics)) == 61
    with pytest.warns(RuntimeWarning, match="metrics.jsonl:63: skipping a malformed last line"):
        path = plot_losses(str(metrics), tmp_path / "from_jsonl.png")
    assert_png(path, min_height=700)

    metrics.write_text('{"step": 0, "loss_d": 1}\nnot json\n{"step": 1, "loss_d": 1}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2: "):
        plot_losses(metrics, tmp_path / "x.png")


def test_plot_losses_nothing_to_plot(tmp_path):
    with pytest.raises(ValueError, match="plot_losses: no records with loss_d, loss_g, d_x or d_g_z values to plot"):
        plot_losses([{"step": 1, "lr": 0.1}], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
