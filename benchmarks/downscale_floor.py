"""How much MNIST's way to 64×64 and back costs in MNIST-FID, for each of Pillow's filters on the way back.

    python benchmarks/downscale_floor.py                  # 3,000 training digits against 3,000 test digits
    python benchmarks/downscale_floor.py --size 64 --images 10000

The quality report judges a run on MNIST at another size by scaling its samples to 28×28 (fastgan/eval/quality.py).
Its floor is then training digits scaled up as training scales them (fastgan.data.resize: bilinear) and back down:
the lower it is, the less the way back hides. This prints that floor for each filter beside the digits' own.
Needs real MNIST and the cached classifier (python -m fastgan.eval train-classifier).
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fastgan.data import load_mnist  # noqa: E402
from fastgan.data.mnist import mnist_to_float  # noqa: E402
from fastgan.data.resize import resize_images  # noqa: E402
from fastgan.eval import classifier as clf  # noqa: E402
from fastgan.eval.metrics import feature_statistics, frechet_distance  # noqa: E402

FILTERS = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "box": Image.BOX, "hamming": Image.HAMMING,
           "bilinear": Image.BILINEAR}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64, help="the side MNIST is scaled to (default: %(default)s)")
    p.add_argument("--images", type=int, default=3000, help="digits on each side (default: %(default)s)")
    args = p.parse_args()
    mnist = load_mnist()
    model, _ = clf.load_classifier()
    pick = np.random.default_rng(0)  # fixed random subsets, as the quality report draws them
    test = np.sort(pick.permutation(len(mnist.x_test))[:args.images])
    train = np.sort(pick.permutation(len(mnist.x_train))[:args.images])
    reference = feature_statistics(clf.predict(model, mnist_to_float(mnist.x_test[test], (0, 1)))[1])

    def fid(digits):
        return frechet_distance(*feature_statistics(clf.predict(model, mnist_to_float(digits, (0, 1)))[1]),
                                *reference)
    digits = mnist.x_train[train]
    big = resize_images(digits, args.size)[:, 0]
    print(f"MNIST-FID of {len(digits)} training digits against {len(test)} test digits")
    print(f"  at 28×28, as they are:                 {fid(digits):8.2f}")
    for name, resample in FILTERS.items():
        back = np.stack([np.asarray(Image.fromarray(b, "L").resize((28, 28), resample)) for b in big])
        error = np.abs(back.astype(np.float64) - digits).mean()
        print(f"  28 → {args.size} → 28, back by {name:9s} {fid(back):8.2f}   (mean |pixel error| {error:.2f} of 255)")


if __name__ == "__main__":
    main()
