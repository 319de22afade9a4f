import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `from oracle import check`

from fastgan import dispatch  # noqa: E402

CPU_IMPLS = ["reference", "cpu"]


@pytest.fixture(params=CPU_IMPLS)
def impl(request):
    """Every kernel implementation runs the same test body; one that is not available here is skipped."""
    name = request.param
    if dispatch.implementation(name) is None:
        pytest.skip(f"kernel implementation {name!r} is not available on this machine")
    with dispatch.use(name):
        yield name
