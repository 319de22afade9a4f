// The stand-alone LeakyReLU (the discriminator's first layer has no batch norm to fuse it into), one thread per
// element (the NumPy specification: leaky_relu_forward and leaky_relu_backward in fastgan/kernels/reference.py).
#include "common.cuh"

// y = x·slope(x) with slope(x) = 1 for x > 0, else a.
template <typename T>
__global__ void leaky_relu_forward(const T* __restrict__ x, T* __restrict__ y, int n, double negative_slope) {
    for (int i = fg::first_index(); i < n; i += fg::grid_stride())
        y[i] = fg::times_activation_slope(x[i], x[i], fg::kLeakyRelu, T(negative_slope));
}

// y is piecewise linear in x, so dx = dy·slope(x): the mask is recomputed from x instead of being stored.
template <typename T>
__global__ void leaky_relu_backward(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, int n,
                                    double negative_slope) {
    for (int i = fg::first_index(); i < n; i += fg::grid_stride())
        dx[i] = fg::times_activation_slope(dy[i], x[i], fg::kLeakyRelu, T(negative_slope));
}
