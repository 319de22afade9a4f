"""Install fastgan. The native CPU kernels (csrc/cpu, C++ + pybind11 + OpenMP) are optional: if they cannot be
compiled, installation still succeeds and fastgan runs on its NumPy reference kernels."""
import glob
import os
import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the native kernels if a compiler is there; otherwise warn once and carry on."""

    def run(self):
        try:
            super().run()
        except Exception as err:  # noqa: BLE001 - any compiler failure means "use the reference kernels"
            self._warn(err)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as err:  # noqa: BLE001
            self._warn(err)

    @staticmethod
    def _warn(err):
        print(f"WARNING: fastgan's native CPU kernels were not built ({err}); "
              "fastgan will use its NumPy reference kernels.", file=sys.stderr)


def native_extensions():
    sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    if not sources or os.environ.get("FASTGAN_NO_NATIVE"):
        return []
    try:
        from pybind11.setup_helpers import Pybind11Extension
    except ImportError:
        return []
    # -fno-math-errno, -fno-trapping-math: no errno from sqrt, no FP exception flags to preserve, so loops with sqrt
    # and selects vectorise; unlike -ffast-math they change no value (NaN and inf still propagate as IEEE says).
    # -ffp-contract=off: no fused multiply-adds behind our back (csrc/cpu/fastgan.h, "vector width")
    flags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
    return [Pybind11Extension("fastgan._C", sources, cxx_std=17,
                              extra_compile_args=flags, extra_link_args=["-fopenmp"])]


setup(
    name="fastgan",
    version="0.1.0",
    description="A compact GAN engine: a small autograd core and hand-written kernels, no framework.",
    packages=find_packages(include=["fastgan", "fastgan.*"]),
    # the CUDA sources, compiled at run time by NVRTC (kernels/cuda.py); cuda_src links to csrc/cuda
    package_data={"fastgan.kernels": ["cuda_src/*.cu", "cuda_src/*.cuh"]},
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "tqdm>=4.60", "Pillow>=9.0", "matplotlib>=3.6", "threadpoolctl>=3.1"],
    extras_require={
        # torch is the numerical oracle of the tests; Triton's CPU interpreter runs the Triton kernels in CI
        "test": ["torch==2.13.0", "pytest>=7", "scipy>=1.10", "triton>=3.2"],
        "gpu": ["cupy-cuda12x>=13", "triton>=3.2"],
    },
    ext_modules=native_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
