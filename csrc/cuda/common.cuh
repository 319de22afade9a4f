// Helpers shared by fastgan's CUDA kernels (csrc/cuda/*.cu).
//
// The kernels are compiled at run time by NVRTC through CuPy (fastgan/kernels/cuda.py), which pastes this header
// into each .cu file in place of its #include line. NVRTC needs no system headers: the CUDA built-ins (threadIdx,
// __syncthreads, ...) and the math functions (exp, log1p, sqrt, ... overloaded for float and double) are there.
//
// Conventions of every kernel:
//   * templates over T = float or double, instantiated by name ("adam_step<float>") for NVRTC;
//   * parameters are only pointers, int and double (cuda.py packs Python ints as int32, floats as float64);
//     an optional array is a null pointer;
//   * arrays are C-contiguous; int indices (cuda.py checks that every array has fewer than 2^31 elements);
//   * sums are accumulated in double, as the NumPy reference does (kernels/reference.py).
#pragma once

namespace fg {

typedef double acc_t;                 // the accumulator of every sum
constexpr int kMaxThreads = 1024;     // the largest block a kernel here is launched with

// A 1-D grid-stride loop: thread t handles t, t + (all threads), t + 2·(all threads), ... < n.
__device__ __forceinline__ int first_index() { return blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int grid_stride() { return gridDim.x * blockDim.x; }

// The sum of `value` over the threads of the block, returned to every thread. blockDim.x must be a power of two
// (at most kMaxThreads) and every thread of the block must call it. A tree in shared memory: at each level the
// lower half of the active threads adds the values of the upper half, so log2(blockDim.x) levels leave the sum in
// scratch[0].
__device__ acc_t block_sum(acc_t value) {
    __shared__ acc_t scratch[kMaxThreads];
    const int t = threadIdx.x;
    scratch[t] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) scratch[t] += scratch[t + half];
        __syncthreads();
    }
    const acc_t total = scratch[0];
    __syncthreads();  // every thread has read scratch[0] before a next call overwrites it
    return total;
}

// Activations fused into batch norm. ReLU and LeakyReLU are linear on each side of 0: act(z) = slope(z)·z with
// slope(z) = 1 for z > 0, else 0 (relu) or a (leaky), and act'(z) = slope(z). So one helper, "v times the slope at
// z", gives both the forward (v = z) and the backward (v = the upstream gradient).
enum Activation { kIdentity = 0, kRelu = 1, kLeakyRelu = 2 };   // the codes cuda.py passes

template <typename T>
__device__ __forceinline__ T times_activation_slope(T v, T z, int activation, T negative_slope) {
    if (activation == kIdentity || z > T(0)) return v;
    return activation == kRelu ? T(0) : v * negative_slope;
}

// x rounded to the nearest bfloat16 (ties to even), kept as a float: the integer rounding of csrc/cpu/fastgan.h
// (round_to_bfloat16, which says why it is right), on the bits of x. NaN keeps a NaN, with its quiet bit set.
__device__ __forceinline__ float round_to_bfloat16(float x) {
#ifdef __CUDACC__
    unsigned u = __float_as_uint(x);
#else  // the CPU emulator of the tests (tests/cuda_emulator.py)
    unsigned u;
    __builtin_memcpy(&u, &x, sizeof u);
#endif
    const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
    u = nan ? ((u | 0x00400000u) & 0xFFFF0000u) : ((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
#ifdef __CUDACC__
    return __uint_as_float(u);
#else
    __builtin_memcpy(&x, &u, sizeof u);
    return x;
#endif
}

// Element i (0 <= i < N·HW) of channel c in an (N, C, HW) array: sample i / HW, position i % HW.
__device__ __forceinline__ int channel_element(int i, int c, int C, int HW) {
    return (i / HW) * C * HW + c * HW + i % HW;
}

}  // namespace fg
