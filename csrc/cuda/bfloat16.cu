// Rounding to bfloat16 for the mixed-precision products on the GPU (reference.py: round_to_bfloat16), one thread per
// element. The bfloat16 convolutions and matmul are the float32 ones on operands rounded here, and batch norm and
// LeakyReLU round their output (and input gradient) in a pass of this kernel after their own (fastgan/kernels/cuda.py).
#include "common.cuh"

// y = x rounded to bfloat16 (through float32: a double is first rounded to float, as the reference casts it).
template <typename T>
__global__ void round_to_bfloat16(const T* __restrict__ x, T* __restrict__ y, int n) {
    for (int i = fg::first_index(); i < n; i += fg::grid_stride()) y[i] = T(fg::round_to_bfloat16(float(x[i])));
}
