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
        from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
    except ImportError:
        return []
    ParallelCompile("FASTGAN_BUILD_JOBS").install()   # one compiler per core (FASTGAN_BUILD_JOBS=N: N of them)
    # -fno-math-errno, -fno-trapping-math: no errno from sqrt, no FP exception flags to preserve, so loops with sqrt
    # and selects vectorise; unlike -ffast-math they change no value (NaN and inf still propagate as IEEE says).
    # -ffp-contract=off: no fused multiply-adds behind our back (csrc/cpu/fastgan.h, "vector width")
    flags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
    return [Pybind11Extension("fastgan._C", sources, cxx_std=17,
                              extra_compile_args=flags, extra_link_args=["-fopenmp"])]


# Data-parallel training (fastgan/distributed): mpi4py, and an MPI library with its mpiexec from the package index
# (the `mpich` wheel puts mpiexec beside python). Windows has no such wheel: install MS-MPI there.
MPI = ["mpi4py>=4.0", "mpich>=4.2; sys_platform != 'win32'"]

setup(
    name="fastgan",
    version="0.1.0",
    description="A compact GAN engine: a small autograd core and hand-written kernels, no framework.",
    packages=find_packages(include=["fastgan", "fastgan.*"]),
    # the CUDA sources, compiled at run time by NVRTC (kernels/cuda.py); cuda_src links to csrc/cuda
    package_data={"fastgan.kernels": ["cuda_src/*.cu", "cuda_src/*.cuh"]},
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "tqdm>=4.60", "Pillow>=9.0", "matplotlib>=3.6", "safetensors>=0.4",
                      "threadpoolctl>=3.1", "ml_dtypes>=0.3"],
    extras_require={
        # torch is the numerical oracle of the tests (hypothesis draws the randomised cases of test_properties.py);
        # Triton's CPU interpreter runs the Triton kernels in CI; the multi-process tests run under the mpiexec of
        # the mpi extra
        "test": ["torch==2.13.0", "pytest>=7", "scipy>=1.10", "triton>=3.2", "hypothesis>=6.50"] + MPI,
        # the GPU: one extra per CUDA major version, as CuPy's wheels are (two CuPy wheels in one environment
        # overwrite each other's files). Triton 3.6's GPU driver needs a CUDA build of torch (3.9's does not).
        "gpu-cuda12": ["cupy-cuda12x>=13", "triton>=3.2"],
        "gpu-cuda13": ["cupy-cuda13x>=13.6", "triton>=3.2"],
        "mpi": MPI,
    },
    ext_modules=native_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
