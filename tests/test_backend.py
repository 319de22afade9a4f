"""CPU memory: fastgan keeps the memory of freed arrays for the next ones (fastgan.backend.keep_freed_cpu_memory)."""
import os
import subprocess
import sys

import pytest

# A training step in miniature: arrays of a few MB allocated, written and freed, over and over; prints the page
# faults of the last ten rounds (each fault is a fresh 4 KiB page that the kernel had to zero).
ROUNDS = """
import resource
import fastgan, numpy as np
sizes = [3_200_000, 1_600_000, 6_400_000, 800_000, 3_200_000, 400_000]
def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    live = [np.ones(s, np.float32) for s in sizes]; del live
before = faults()
for _ in range(10):
    live = [np.ones(s, np.float32) for s in sizes]; del live
print(faults() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
def test_freed_arrays_are_recycled_without_page_faults():
    def faults(**env):
        out = subprocess.run([sys.executable, "-c", ROUNDS], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True).stdout
        return int(out)

    system = faults(FASTGAN_SYSTEM_MALLOC="1")
    kept = faults()
    assert system > 5000, f"expected the system allocator to fault pages in afresh, got {system} faults"
    assert kept < system / 10, f"{kept} page faults with freed memory kept, {system} without"
