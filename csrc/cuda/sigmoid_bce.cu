// Fused sigmoid + binary cross-entropy on logits (the NumPy specification: sigmoid_bce_forward in
// fastgan/kernels/reference.py): one pass writes the loss and its gradient; the mean or sum is a grid reduction.
#include "common.cuh"

// For each logit s with target y, from the one e = e^{−|s|} in (0, 1] (never overflows):
//   ℓ(s)  = −y·log σ(s) − (1 − y)·log(1 − σ(s)) = max(s, 0) − s·y + log(1 + e)
//   dℓ/ds = σ(s) − y,  σ(s) = 1/(1 + e) for s ≥ 0 and e/(1 + e) for s < 0
// dlogits gets dℓ/ds / grad_divisor (the element count for the mean, else 1). loss_out (reduction "none") gets
// every ℓ; partial_sums (reductions "mean", "sum") gets one sum per block, added up by sum_partials below.
template <typename T>
__global__ void sigmoid_bce_forward(const T* __restrict__ logits, const T* __restrict__ target, T* loss_out,
                                    T* __restrict__ dlogits, fg::acc_t* partial_sums, int n, double grad_divisor) {
    fg::acc_t sum = 0;
    for (int i = fg::first_index(); i < n; i += fg::grid_stride()) {
        const T s = logits[i], y = target[i], e = exp(-fabs(s));
        const T loss = fmax(s, T(0)) - s * y + log1p(e);
        const T sigma = (s >= T(0) ? T(1) : e) / (T(1) + e);
        dlogits[i] = (sigma - y) / T(grad_divisor);
        if (loss_out) loss_out[i] = loss;
        sum += loss;
    }
    if (partial_sums) {  // the same for the whole block, so every thread takes part in the reduction
        sum = fg::block_sum(sum);
        if (threadIdx.x == 0) partial_sums[blockIdx.x] = sum;
    }
}

// The second stage of the grid reduction, in one block: out = (Σ partial_sums) / divisor, as a T scalar.
template <typename T>
__global__ void sum_partials(const fg::acc_t* partial_sums, int count, double divisor, T* out) {
    fg::acc_t sum = 0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partial_sums[i];
    sum = fg::block_sum(sum);
    if (threadIdx.x == 0) *out = T(sum / divisor);
}
