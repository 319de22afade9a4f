// The data-movement kernels around the convolutions' matrix products (the GEMMs themselves are cuBLAS, called
// through cupy.matmul in fastgan/kernels/cuda.py). Layouts as in fastgan/kernels/reference.py:
//   x     (N, C, H, W), NCHW
//   cols  (C·kh·kw, N·Ho·Wo): row r = (c·kh + i)·kw + j, column k = (n·Ho + p)·Wo + q
//   rows  (C, N·H·W): an NCHW array with its first two axes swapped ("channel rows")
// conv2d: y = rows→NCHW(W · im2col(x));  its data gradient and conv_transpose2d's forward: col2im(Wᵀ · rows(·)).
#include "common.cuh"

// im2col: cols[r, k] = x[n, c, p·sh + i − ph, q·sw + j − pw], 0 where that reads the zero padding.
// One thread per entry of cols; consecutive threads write consecutive columns (coalesced stores).
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, int N, int C, int H, int W, int kh, int kw,
                       int sh, int sw, int ph, int pw, int Ho, int Wo) {
    const int columns = N * Ho * Wo, total = C * kh * kw * columns;
    for (int e = fg::first_index(); e < total; e += fg::grid_stride()) {
        const int k = e % columns, r = e / columns;
        const int q = k % Wo, p = (k / Wo) % Ho, n = k / (Wo * Ho);
        const int j = r % kw, i = (r / kw) % kh, c = r / (kw * kh);
        const int h = p * sh + i - ph, w = q * sw + j - pw;
        cols[e] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : T(0);
    }
}

// col2im, the adjoint of im2col: x[n, c, h, w] = Σ cols[r, k] over the entries that im2col copied from (h, w),
// i.e. the offsets i, j and output pixels p, q with p·sh + i − ph = h and q·sw + j − pw = w (plus bias[c] if given).
// One thread per pixel of x *gathers* its entries — no atomics, so the result is deterministic: for row offset i,
// p = (h + ph − i)/sh must be a whole number in [0, Ho), so i runs over (h + ph) mod sh, + sh, + 2·sh, ...
template <typename T>
__global__ void col2im(const T* __restrict__ cols, const T* bias, T* __restrict__ x, int N, int C, int H, int W,
                       int kh, int kw, int sh, int sw, int ph, int pw, int Ho, int Wo) {
    const int columns = N * Ho * Wo, total = N * C * H * W;
    for (int e = fg::first_index(); e < total; e += fg::grid_stride()) {
        const int w = e % W, h = (e / W) % H, c = (e / (W * H)) % C, n = e / (W * H * C);
        T sum = T(0);
        for (int i = (h + ph) % sh; i < kh && i <= h + ph; i += sh) {
            const int p = (h + ph - i) / sh;
            if (p >= Ho) continue;
            for (int j = (w + pw) % sw; j < kw && j <= w + pw; j += sw) {
                const int q = (w + pw - j) / sw;
                if (q >= Wo) continue;
                sum += cols[((c * kh + i) * kw + j) * columns + (n * Ho + p) * Wo + q];
            }
        }
        x[e] = bias ? sum + bias[c] : sum;
    }
}

// out[b, a, s] = in[a, b, s] (+ bias[a] if given) for in of shape (A, B, S): the layout change around each GEMM.
//   NCHW → channel rows: in = (N, C, H·W), A = N, B = C;
//   channel rows → NCHW: in = (C, N, H·W), A = C, B = N, with the conv's bias added in the same pass.
template <typename T>
__global__ void swap_outer_axes(const T* __restrict__ in, const T* bias, T* __restrict__ out, int A, int B, int S) {
    const int total = A * B * S;
    for (int e = fg::first_index(); e < total; e += fg::grid_stride()) {
        const int s = e % S, a = (e / S) % A, b = e / (S * A);
        const T v = in[(a * B + b) * S + s];
        out[e] = bias ? v + bias[a] : v;
    }
}
