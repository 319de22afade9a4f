// Optimiser updates, in place, one thread per parameter element (the NumPy specification: adam_step and sgd_step
// in fastgan/kernels/reference.py). The step-dependent scalars are computed once on the host.
#include "common.cuh"

// Adam, as torch.optim.Adam (weight decay is an L2 term added to the gradient, not AdamW):
//   g = ∇ + λ·p
//   m ← m + (1 − β1)·(g − m)                 (= β1·m + (1 − β1)·g, written as torch's lerp)
//   v ← β2·v + (1 − β2)·g²
//   p ← p − step_size · m / (√v / bias_correction2_sqrt + eps)
// with step_size = lr/(1 − β1ᵗ) and bias_correction2_sqrt = √(1 − β2ᵗ).
template <typename T>
__global__ void adam_step(T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ exp_avg,
                          T* __restrict__ exp_avg_sq, int n, double step_size, double beta1, double beta2,
                          double eps, double bias_correction2_sqrt, double weight_decay) {
    for (int i = fg::first_index(); i < n; i += fg::grid_stride()) {
        const T g = weight_decay != 0 ? grad[i] + T(weight_decay) * param[i] : grad[i];
        const T m = exp_avg[i] + (g - exp_avg[i]) * T(1 - beta1);
        const T v = exp_avg_sq[i] * T(beta2) + g * g * T(1 - beta2);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        const T denom = sqrt(v) / T(bias_correction2_sqrt) + T(eps);
        param[i] -= m / denom * T(step_size);
    }
}

// SGD with momentum, as torch.optim.SGD:
//   g = ∇ + λ·p
//   b ← g on the first step, else μ·b + (1 − dampening)·g          (no buffer when μ = 0: b is not used)
//   p ← p − lr·(g + μ·b if nesterov else b)                          (p ← p − lr·g without momentum)
template <typename T>
__global__ void sgd_step(T* __restrict__ param, const T* __restrict__ grad, T* momentum_buf, int n, double lr,
                         double momentum, double weight_decay, double dampening, int nesterov, int first_step) {
    for (int i = fg::first_index(); i < n; i += fg::grid_stride()) {
        T g = weight_decay != 0 ? grad[i] + T(weight_decay) * param[i] : grad[i];
        if (momentum_buf) {
            const T b = first_step ? g : momentum_buf[i] * T(momentum) + T(1 - dampening) * g;
            momentum_buf[i] = b;
            g = nesterov ? g + T(momentum) * b : b;
        }
        param[i] -= T(lr) * g;
    }
}
