"""The benchmarks check their outputs before timing them (benchmarks/validation.py): a missing or extra output,
a wrong shape or a wrong value is a mismatch, never silently skipped."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from validation import mismatch  # noqa: E402

A, B = np.arange(6.0).reshape(2, 3), np.ones(4)


@pytest.mark.parametrize("ours, expected, difference", [
    ([A, B], [A, B], None),
    ([A], [A, B], "1 outputs, expected 2"),
    ([A, B, B], [A, B], "3 outputs, expected 2"),
    ([], [A], "0 outputs, expected 1"),
    ([A.T, B], [A, B], r"output 0 has shape (3, 2), expected (2, 3)"),
    ([A, B + 1e-3], [A, B], "output 1: max |diff| 0.001"),
])
def test_mismatch(ours, expected, difference):
    assert mismatch(ours, expected, rtol=1e-5, atol=1e-6) == difference


def test_mismatch_reshapes_only_outputs_of_the_expected_size():
    assert mismatch([A.ravel()], [A], rtol=0, atol=0, reshape=True) is None
    assert mismatch([B], [A], rtol=0, atol=0, reshape=True) == "output 0 has shape (4,), expected (2, 3)"


def test_mismatch_scales_atol_with_the_largest_expected_value():
    big = np.array([1e6, 0.0])
    assert mismatch([big + [0, 0.5]], [big], rtol=0, atol=1e-6) is None
    assert mismatch([big + [0, 2.0]], [big], rtol=0, atol=1e-6) == "output 0: max |diff| 2"


def test_the_step_profile_names_the_functions_that_took_the_time(capsys):
    """benchmarks/train_step.py --profile: per-step times and shares of the functions with the most time of their own."""
    import train_step
    train_step.profile(lambda: [sorted(np.random.default_rng(0).random(200_000)) for _ in range(2)], 2, rows=3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("profile of 2 fastgan steps (") and "ms per step under cProfile" in lines[0]
    assert len(lines) == 5 and "sorted" in lines[2]          # the header, then the top three by own time
    ms, share, calls = lines[2].split()[:3]
    assert float(ms) > 0 and share.endswith("%") and float(calls) == 1.0   # two calls in two "steps"
