"""Run fastgan's CUDA kernels on the CPU, to test their logic where there is no GPU (CI).

`fake_cupy()` is a stand-in for the CuPy module that fastgan/kernels/cuda.py imports: arrays are NumPy arrays, and
`RawModule` compiles the kernel source with g++ after a small prelude (EMULATION below) that maps the CUDA built-ins
onto one host thread: the blocks of a grid run one after the other (so a function-static array is exactly the
block's shared memory), the threads of a block are coroutines (ucontext) and `__syncthreads()` switches to the
next. A launch packs its arguments as CUDA does (an array of pointers to the argument values), so cuda.py's launch
code, grid sizes and argument packing run unchanged, and each launch's arguments are checked against the kernel's
parameter types (an int where a double is expected, a float64 array for a float*, ... raise TypeError). It
emulates what fastgan's kernels use: 1-D grids, __syncthreads and static shared memory — no warp intrinsics,
atomics or dynamic shared memory.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import types

import numpy as np

EMULATION = r"""
#include <math.h>
#include <ucontext.h>
#include <cstddef>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 { unsigned x = 0, y = 0, z = 0; };

namespace emu {
inline dim3 thread_idx, block_idx, block_dim, grid_dim;
inline ucontext_t scheduler;
inline std::vector<ucontext_t> threads_of_block;
inline std::vector<std::vector<char>> stacks;
inline std::vector<char> finished;
inline std::function<void()> body;
constexpr std::size_t kStackBytes = 64 * 1024;

inline void run_thread() { body(); finished[thread_idx.x] = 1; }         // then back to the scheduler (uc_link)
inline void sync() { swapcontext(&threads_of_block[thread_idx.x], &scheduler); }

// A kernel's parameter list as one letter each, for the launcher to check what Python packed against it:
// f float*, g double*, p another pointer, i int, x double.
template <typename T>
constexpr char kind() {
    using U = std::remove_cv_t<std::remove_pointer_t<T>>;
    if constexpr (std::is_pointer_v<T>) return std::is_same_v<U, float> ? 'f' : std::is_same_v<U, double> ? 'g' : 'p';
    else return std::is_same_v<T, int> ? 'i' : std::is_same_v<T, double> ? 'x' : '?';
}
template <typename... A>
const char* signature(void (*)(A...)) {
    static const char letters[] = {kind<A>()..., '\0'};
    return letters;
}

template <typename... A, std::size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<A*>(args[I])...);
}

// Blocks one after the other; the threads of a block are coroutines on this one OS thread. Each round resumes every
// unfinished thread once, and it runs to its next __syncthreads() (or its end): after a round, all threads stand at
// the same barrier.
template <typename... A>
void launch(void (*kernel)(A...), unsigned blocks, unsigned threads, void** args) {
    grid_dim = {blocks, 1, 1};
    block_dim = {threads, 1, 1};
    body = [=] { call(kernel, args, std::index_sequence_for<A...>{}); };
    threads_of_block.resize(threads);
    stacks.resize(threads);
    finished.assign(threads, 0);
    ucontext_t fresh;
    getcontext(&fresh);
    for (unsigned b = 0; b < blocks; ++b) {
        block_idx = {b, 0, 0};
        for (unsigned t = 0; t < threads; ++t) {
            stacks[t].resize(kStackBytes);
            threads_of_block[t] = fresh;
            threads_of_block[t].uc_stack.ss_sp = stacks[t].data();
            threads_of_block[t].uc_stack.ss_size = kStackBytes;
            threads_of_block[t].uc_link = &scheduler;
            makecontext(&threads_of_block[t], run_thread, 0);
            finished[t] = 0;
        }
        for (bool ran = true; ran;) {
            ran = false;
            for (unsigned t = 0; t < threads; ++t) {
                if (finished[t]) continue;
                thread_idx = {t, 0, 0};
                swapcontext(&scheduler, &threads_of_block[t]);
                ran = true;
            }
        }
    }
}
}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
#define __syncthreads() emu::sync()
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
"""


def compiler():
    """The C++ compiler used, or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


class RawModule:
    """cupy.RawModule on the CPU: compiles `code` with the prelude and one launcher per name expression."""

    _cache_dir = os.path.join(tempfile.gettempdir(), "fastgan-cuda-emulator")

    def __init__(self, code, options=(), name_expressions=()):
        self.names = list(name_expressions)
        launchers = "\n".join(
            f'extern "C" void fg_launch_{i}(unsigned blocks, unsigned threads, void** args) '
            f"{{ emu::launch(&{name}, blocks, threads, args); }}\n"
            f'extern "C" const char* fg_signature_{i}() {{ return emu::signature(&{name}); }}'
            for i, name in enumerate(self.names))
        source = f"{EMULATION}\n{code}\n{launchers}\n"
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        os.makedirs(self._cache_dir, exist_ok=True)
        library = os.path.join(self._cache_dir, f"{digest}.so")
        if not os.path.exists(library):
            path = os.path.join(self._cache_dir, f"{digest}.{os.getpid()}.cpp")   # per process: pytest runs
            partial = f"{library}.{os.getpid()}"                                # may compile side by side
            with open(path, "w") as f:
                f.write(source)
            result = subprocess.run([compiler(), "-std=c++20", "-O1", "-shared", "-fPIC", "-w", path, "-o", partial],
                                    capture_output=True, text=True)
            os.remove(path)
            if result.returncode:
                raise RuntimeError(f"the emulated kernels did not compile:\n{result.stderr}")
            os.replace(partial, library)
        self.library = ctypes.CDLL(library)

    def get_function(self, name):
        i = self.names.index(name)
        launcher = getattr(self.library, f"fg_launch_{i}")
        launcher.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
        signature = getattr(self.library, f"fg_signature_{i}")
        signature.restype = ctypes.c_char_p
        params = signature().decode()
        return lambda grid, block, args, shared_mem=0: _launch(launcher, name, params, grid, block, args)


# what a CUDA kernel parameter (a letter of emu::signature) accepts from Python, as CuPy would pack it
_ACCEPTS = {"f": ("float32[]", "null"), "g": ("float64[]", "null"), "p": ("null",), "i": ("int32",),
            "x": ("float64",)}


def _what(a):
    if isinstance(a, np.ndarray):
        return f"{a.dtype}[]"
    if isinstance(a, np.uint64) and a == 0:
        return "null"
    return np.dtype(type(a)).name


def _launch(launcher, name, params, grid, block, args):
    assert len(grid) == 1 and len(block) == 1, "the emulator runs 1-D grids only"
    given = [_what(a) for a in args]
    if len(given) != len(params) or any(g not in _ACCEPTS[p] for g, p in zip(given, params)):
        raise TypeError(f"{name}: kernel parameters {params!r} (f float*, g double*, i int, x double) cannot take "
                        f"the arguments {given}")
    values = []  # CUDA's kernelParams: one pointer to each argument's value
    for a in args:
        if isinstance(a, np.ndarray):
            assert a.flags.c_contiguous, "kernels take contiguous arrays"
            values.append(ctypes.c_void_p(a.ctypes.data))
        elif isinstance(a, np.generic):
            values.append(ctypes.create_string_buffer(a.tobytes(), a.itemsize))
        else:
            raise TypeError(f"CuPy would not pass a {type(a).__name__} to a kernel like this")
    pointers = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    launcher(grid[0], block[0], pointers)


def fake_cupy():
    """A module that fastgan.kernels.cuda can import as `cupy`: NumPy's functions and the RawModule above."""
    module = types.ModuleType("cupy")
    module.__dict__.update({name: getattr(np, name) for name in dir(np) if not name.startswith("__")})
    module.RawModule = RawModule
    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                        nvrtc=types.SimpleNamespace(getVersion=lambda: (0, 0)))
    return module
