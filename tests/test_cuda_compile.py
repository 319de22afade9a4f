"""The CUDA sources (csrc/cuda) checked without a GPU: every kernel compiles with nvcc for sm_90 (so syntax and type
errors show in CI), and every kernel that fastgan/kernels/cuda.py launches exists in the sources.

The kernels are templates that NVRTC instantiates by name at run time; here a small wrapper file takes the address
of each instantiation cuda.py asks for, which makes nvcc compile exactly those."""
import ast
import glob
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
SOURCES = os.path.join(ROOT, "csrc", "cuda")
CUDA_PY = os.path.join(ROOT, "fastgan", "kernels", "cuda.py")


def cuda_py_constant(name):
    """A literal assigned at the top of cuda.py, read without importing it (the import needs CuPy and a GPU)."""
    tree = ast.parse(open(CUDA_PY).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"cuda.py has no {name} = ...")


KERNELS = cuda_py_constant("KERNELS")
C_TYPES = ("float", "double")


def test_every_launched_kernel_is_listed_and_defined():
    launched = set(re.findall(r'_launch\("(\w+)"', open(CUDA_PY).read()))
    listed = {k for kernels in KERNELS.values() for k in kernels}
    assert launched == listed, f"launched but not in KERNELS: {launched - listed}; listed, never launched: " \
                               f"{listed - launched}"
    for filename, kernels in KERNELS.items():
        text = open(os.path.join(SOURCES, filename)).read()
        for kernel in kernels:
            assert re.search(rf"__global__\s+void\s+{kernel}\s*\(", text), f"{filename} defines no kernel {kernel}"
    assert sorted(KERNELS) == sorted(os.path.basename(p) for p in glob.glob(os.path.join(SOURCES, "*.cu"))), \
        "every .cu file in csrc/cuda is one family in cuda.py's KERNELS"


def test_sources_ship_with_the_package():
    """cuda.py reads fastgan/kernels/cuda_src: in a source tree a link to csrc/cuda (so an editable install sees
    every edit), in a wheel a copy made by setup.py's package_data, whose patterns must cover every source file."""
    linked = os.path.join(ROOT, "fastgan", "kernels", "cuda_src")
    assert os.path.samefile(linked, SOURCES), "fastgan/kernels/cuda_src must be a link to csrc/cuda"
    setup_py = open(os.path.join(ROOT, "setup.py")).read()
    patterns = re.findall(r'"cuda_src/(\*\.\w+)"', setup_py)
    shipped = {os.path.basename(p) for pattern in patterns for p in glob.glob(os.path.join(SOURCES, pattern))}
    assert shipped == set(os.listdir(SOURCES)), f"setup.py's package_data misses {set(os.listdir(SOURCES)) - shipped}"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA toolkit) is not installed: the CUDA sources "
                                                          "cannot be compiled here")
@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_compiles_with_nvcc(filename, tmp_path):
    wrapper = tmp_path / f"instantiate_{filename}"
    names = [f"{kernel}<{t}>" for kernel in KERNELS[filename] for t in C_TYPES]
    wrapper.write_text(f'#include "{os.path.abspath(os.path.join(SOURCES, filename))}"\n'
                       "void* fastgan_instantiations[] = {\n" + "".join(f"    (void*)&{n},\n" for n in names) + "};\n")
    result = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-cubin", "-Werror", "all-warnings",
                             "-o", str(tmp_path / "out.cubin"), str(wrapper)], capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed on {filename}:\n{result.stdout}\n{result.stderr}"
    symbols = (tmp_path / "out.cubin").read_bytes()
    for kernel in KERNELS[filename]:
        assert kernel.encode() in symbols, f"{kernel} is missing from the compiled {filename}"
