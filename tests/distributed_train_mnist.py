"""`python -m fastgan.train` on synthetic MNIST, for the multi-process tests: `[mpiexec -n R] python
tests/distributed_train_mnist.py ARGS` runs the command's entry point (fastgan.distributed.training.launch) with
`load_mnist` replaced, as the `synthetic_mnist` fixture of tests/conftest.py does in one process: 300 random 28×28
"digits" with labels, so that the label-using options (--conditional) run without the real MNIST."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # the checkout's fastgan

import numpy as np  # noqa: E402
from fastgan import train  # noqa: E402
from fastgan.data import MNIST  # noqa: E402
from fastgan.distributed.training import launch  # noqa: E402


def synthetic_mnist(data_dir=None, progress=True):
    rng = np.random.default_rng(0)
    return MNIST(rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), rng.integers(0, 10, 300, dtype=np.uint8),
                 rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10, dtype=np.uint8))


if __name__ == "__main__":
    train.load_mnist = synthetic_mnist
    sys.exit(launch(train.main))
