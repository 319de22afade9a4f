// Batch norm fused with ReLU / LeakyReLU, forward and backward (the NumPy specification: batch_norm_act_* in
// fastgan/kernels/reference.py). The input is viewed as (N, C, HW) (HW = 1 for an (N, C) input); one block
// handles one channel, so every per-channel sum is a block reduction and a whole op is one launch.
#include "common.cuh"

// y = act(γ·(x − μ)·rstd + β), rstd = 1/√(σ² + eps), per channel c = blockIdx.x over its m = N·HW values.
//   training: μ, σ² are the batch statistics, in two passes (the mean, then the mean squared deviation — more
//             accurate in float32 than E[x²] − μ²); the running statistics, when given, move towards them:
//             r ← (1 − momentum)·r + momentum·s, with the unbiased variance σ²·m/(m − 1), as torch.
//   eval:     μ, σ² are the running statistics.
// Writes y, and μ and rstd (per channel) for the backward. An empty batch (m = 0) has no statistics: μ and rstd
// come out NaN (0/0) and the running statistics stay.
template <typename T>
__global__ void batch_norm_act_forward(const T* __restrict__ x, const T* weight, const T* bias, T* running_mean,
                                       T* running_var, T* __restrict__ y, T* mean_out, T* rstd_out, int N, int C,
                                       int HW, int training, double momentum, double eps, int activation,
                                       double negative_slope) {
    const int c = blockIdx.x, m = N * HW;
    double mean, var;
    if (training) {
        fg::acc_t sum = 0;
        for (int i = threadIdx.x; i < m; i += blockDim.x) sum += x[fg::channel_element(i, c, C, HW)];
        mean = fg::block_sum(sum) / m;
        const T mean_t = T(mean);
        fg::acc_t squares = 0;
        for (int i = threadIdx.x; i < m; i += blockDim.x) {
            const T d = x[fg::channel_element(i, c, C, HW)] - mean_t;
            squares += d * d;
        }
        var = fg::block_sum(squares) / m;
        if (threadIdx.x == 0 && m > 0) {
            if (running_mean) running_mean[c] = running_mean[c] * T(1 - momentum) + T(momentum * mean);
            if (running_var) running_var[c] = running_var[c] * T(1 - momentum) + T(momentum * var * m / (m - 1));
        }
    } else {
        mean = running_mean[c];
        var = running_var[c];
    }
    const double rstd = 1.0 / sqrt(var + eps);
    const T mean_t = T(mean), scale = T(weight ? weight[c] * rstd : rstd), shift = bias ? bias[c] : T(0);
    const T slope = T(negative_slope);
    for (int i = threadIdx.x; i < m; i += blockDim.x) {
        const int k = fg::channel_element(i, c, C, HW);
        const T z = (x[k] - mean_t) * scale + shift;
        y[k] = fg::times_activation_slope(z, z, activation, slope);
    }
    if (threadIdx.x == 0) {
        mean_out[c] = mean_t;
        rstd_out[c] = T(rstd);
    }
}

// x̂ = (x − μ)·rstd at element k, and g = ȳ·act'(z) with z = γ·x̂ + β: the activation's mask is recomputed from the
// saved μ and rstd, so the forward keeps nothing but its input.
template <typename T>
struct MaskedGrad { T xhat, g; };

template <typename T>
__device__ __forceinline__ MaskedGrad<T> masked_grad(const T* dy, const T* x, int k, T mean, T rstd, T gamma,
                                                     T beta, int activation, T slope) {
    const T xhat = (x[k] - mean) * rstd;
    const T z = xhat * gamma + beta;
    return {xhat, fg::times_activation_slope(dy[k], z, activation, slope)};
}

// Backward of the above, one block per channel. With g the masked upstream gradient and m values per channel:
//   γ̄ = Σ g·x̂,   β̄ = Σ g                                    (y = γ·x̂ + β before the activation)
//   eval:      x̄ = γ·rstd·g                                  (μ and rstd are constants)
//   training:  x̄ = γ·rstd·(g − β̄/m − x̂·γ̄/m)                (μ and rstd depend on x: ∂μ/∂x = 1/m and
//                                                             ∂rstd/∂x = −rstd²·x̂/m remove g's mean and x̂ part)
// Two passes over the channel: the two sums (block reductions), then x̄.
template <typename T>
__global__ void batch_norm_act_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* weight,
                                        const T* bias, const T* mean, const T* rstd, T* __restrict__ dx,
                                        T* dweight, T* dbias, int N, int C, int HW, int training, int activation,
                                        double negative_slope) {
    const int c = blockIdx.x, m = N * HW;
    const T mu = mean[c], r = rstd[c], gamma = weight ? weight[c] : T(1), beta = bias ? bias[c] : T(0);
    const T slope = T(negative_slope);
    fg::acc_t sum_g = 0, sum_g_xhat = 0;
    for (int i = threadIdx.x; i < m; i += blockDim.x) {
        const MaskedGrad<T> e = masked_grad(dy, x, fg::channel_element(i, c, C, HW), mu, r, gamma, beta,
                                            activation, slope);
        sum_g += e.g;
        sum_g_xhat += e.g * e.xhat;
    }
    sum_g = fg::block_sum(sum_g);
    sum_g_xhat = fg::block_sum(sum_g_xhat);
    const T gamma_rstd = T(double(gamma) * double(r));
    const T mean_g = training ? T(sum_g / m) : T(0), mean_g_xhat = training ? T(sum_g_xhat / m) : T(0);
    for (int i = threadIdx.x; i < m; i += blockDim.x) {
        const int k = fg::channel_element(i, c, C, HW);
        const MaskedGrad<T> e = masked_grad(dy, x, k, mu, r, gamma, beta, activation, slope);
        dx[k] = (e.g - e.xhat * mean_g_xhat - mean_g) * gamma_rstd;
    }
    if (threadIdx.x == 0) {
        dweight[c] = T(sum_g_xhat);
        dbias[c] = T(sum_g);
    }
}
