import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `from oracle import check`

from fastgan import dispatch  # noqa: E402

CPU_IMPLS = ["reference", "cpu"]


def native_kernels_missing(reason, module_level=False):
    """Skip a test of the native CPU kernels (fastgan._C) that are not built here; fail it instead when
    FASTGAN_REQUIRE_NATIVE=1 (set by .ci/run), where a C++ build that failed must not pass as a suite of skips."""
    message = str(reason)
    if os.environ.get("FASTGAN_REQUIRE_NATIVE") == "1":
        pytest.fail(f"{message}. FASTGAN_REQUIRE_NATIVE=1 requires them: build them with `pip install -e .` (its "
                    "output says why the build failed), or unset the variable to skip their tests", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)


@pytest.fixture(params=CPU_IMPLS)
def impl(request):
    """Every kernel implementation runs the same test body; one that is not available here is skipped."""
    name = request.param
    if dispatch.implementation(name) is None:
        if name == "cpu":
            native_kernels_missing("fastgan's native CPU kernels (fastgan._C) are not built here")
        pytest.skip(f"kernel implementation {name!r} is not available on this machine")
    with dispatch.use(name):
        yield name


@pytest.fixture
def synthetic_mnist(tmp_path, monkeypatch):
    """Training tests run on random 28×28 "digits" instead of MNIST (also behind the data sources: MNIST resized to
    another size is made from them), with an empty cache (so no cached classifier adds a quality report: the same
    behaviour on every machine)."""
    import numpy as np

    from fastgan import train
    from fastgan.data import MNIST, mnist_resized
    rng = np.random.default_rng(0)
    fake = MNIST(rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), rng.integers(0, 10, 300, dtype=np.uint8),
                 rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10, dtype=np.uint8))
    monkeypatch.setattr(train, "load_mnist", lambda data_dir=None, progress=True: fake)
    monkeypatch.setattr(mnist_resized, "load_mnist", lambda data_dir=None, cache_dir=None, progress=True: fake)
    monkeypatch.setenv("FASTGAN_CACHE", str(tmp_path / "cache"))
    return fake


def load_checkpoint(run_dir):
    """The checkpoint a training run left in run_dir, as a dict (checked as fastgan.checkpoint checks it)."""
    from fastgan import checkpoint
    return checkpoint.load_checkpoint(run_dir)
