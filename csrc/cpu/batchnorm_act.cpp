// Batch norm fused with an optional ReLU / LeakyReLU, forward and backward (reference.py: batch_norm_act_*).
//
// x is (N, C) or (N, C, H, W), seen as (N, C, S) with S = H*W: channel c is N contiguous runs of S values.
// One thread handles a whole group of channels (fastgan.h: for_each_channel_group), so every per-channel statistic
// is summed by one thread in a fixed order (reproducible for any thread count), and a group's values are still in
// that core's caches when the next pass over them starts.
#include "fastgan.h"

#include <cmath>

namespace fastgan {

template <typename T>
struct BatchNormForward {
    const T* x;
    T* y;
    index_t N, C, S;
    const T *gamma, *beta;           // optional (nullptr: γ = 1, β = 0)
    T *running_mean, *running_var;   // optional in training (updated in place), required in eval
    bool training;
    double momentum, eps;
    T slope;
    T *mean, *rstd;                  // outputs, per channel
    bool round_bf16;                 // y rounded to bfloat16 as it is written (float only: the next conv's operand)
};

template <typename T>
struct BatchNormBackward {
    const T *dy, *x;
    T* dx;
    index_t N, C, S;
    const T *gamma, *beta, *mean, *rstd;
    bool training;
    T slope;
    T *dgamma, *dbeta;
    bool round_bf16;                 // dx rounded to bfloat16 as it is written (float only: the next conv's dy)
};

// Forward, for the channels [c0, c1). Training: μ = mean of x, σ² = biased variance (two passes), and the running
// statistics (if given) move towards μ and the unbiased variance, as torch. Eval: μ, σ² = the running statistics.
//     y = act((x − μ)·(γ·rstd) + β),   rstd = 1/√(σ² + eps)
// An empty batch (m = 0) has no statistics: μ and rstd come out NaN (0/0) and the running statistics stay.
template <typename T, Activation A>
FASTGAN_MULTIVERSION void forward_channels(const BatchNormForward<T>& p, index_t c0, index_t c1) {
    const index_t N = p.N, C = p.C, S = p.S, m = N * S;
    auto run = [&](const T* a, index_t n, index_t c) { return a + (n * C + c) * S; };
    double mean[kMaxGroup], var[kMaxGroup];
    T mu[kMaxGroup];
    if (p.training) {
        LaneSums<> sum[kMaxGroup], squares[kMaxGroup];
        for (index_t n = 0; n < N; ++n)
            for (index_t c = c0; c < c1; ++c)
                accumulate<T>(S, sum[c - c0], [in = run(p.x, n, c)](index_t s) { return in[s]; });
        for (index_t c = c0; c < c1; ++c) mean[c - c0] = sum[c - c0].total() / double(m), mu[c - c0] = T(mean[c - c0]);
        // as the reference: centre in T, square in T, sum in (at least) double lanes
        for (index_t n = 0; n < N; ++n)
            for (index_t c = c0; c < c1; ++c)
                accumulate<T>(S, squares[c - c0], [in = run(p.x, n, c), mu = mu[c - c0]](index_t s) {
                    const T d = in[s] - mu;
                    return d * d;
                });
        for (index_t c = c0; c < c1; ++c) {
            var[c - c0] = squares[c - c0].total() / double(m);
            const T keep = T(1 - p.momentum);
            if (m == 0) continue;
            if (p.running_mean) p.running_mean[c] = p.running_mean[c] * keep + T(p.momentum * mean[c - c0]);
            if (p.running_var)
                p.running_var[c] = p.running_var[c] * keep + T(p.momentum * var[c - c0] * double(m) / double(m - 1));
        }
    } else {
        for (index_t c = c0; c < c1; ++c)
            mean[c - c0] = double(p.running_mean[c]), var[c - c0] = double(p.running_var[c]);
    }
    T scale[kMaxGroup], shift[kMaxGroup];
    for (index_t c = c0; c < c1; ++c) {
        const double rstd = 1.0 / std::sqrt(var[c - c0] + p.eps);
        mu[c - c0] = T(mean[c - c0]);
        scale[c - c0] = T(p.gamma ? double(p.gamma[c]) * rstd : rstd);
        shift[c - c0] = p.beta ? p.beta[c] : T(0);
        p.mean[c] = mu[c - c0];
        p.rstd[c] = T(rstd);
    }
    // the reference's T operations: subtract first (accurate when |μ| >> σ), then scale and shift
    for (index_t n = 0; n < N; ++n)
        for (index_t c = c0; c < c1; ++c) {
            const T *in = run(p.x, n, c), mu_c = mu[c - c0], scale_c = scale[c - c0], shift_c = shift[c - c0];
            T* out = p.y + (n * C + c) * S;
            for (index_t s = 0; s < S; ++s) out[s] = activate<A>((in[s] - mu_c) * scale_c + shift_c, p.slope);
            if constexpr (std::is_same_v<T, float>)
                if (p.round_bf16) round_run_to_bfloat16(out, out, S);   // the run just written, still in L1
        }
}

// Backward, for the channels [c0, c1). x̂ = (x − μ)·rstd and z = γ·x̂ + β are recomputed from the saved μ, rstd
// (nothing else is stored), and g = the upstream gradient times the activation's derivative at z (relu: ȳ·[z > 0];
// leaky: ȳ or slope·ȳ). Then
//     β̄ = Σ g,   γ̄ = Σ g·x̂,
//     eval:      x̄ = γ·rstd · g                                       (μ, rstd are constants)
//     training:  x̄ = γ·rstd · (g − β̄/m − x̂·γ̄/m),   m = N·S          (μ and rstd depend on x too)
// Pass 1 over (x, ȳ) forms both sums and leaves g in dx; pass 2 turns g into x̄ in place, reading g and x back
// from the cache (recomputing g there instead would double the arithmetic, which bounds this kernel in cache).
template <typename T, Activation A>
FASTGAN_MULTIVERSION void backward_channels(const BatchNormBackward<T>& p, index_t c0, index_t c1) {
    const index_t N = p.N, C = p.C, S = p.S, m = N * S;
    // x̂ and g of one element of channel c, with the reference's T operations
    auto xhat_and_grad = [slope = p.slope, &p](index_t c) {
        const T mu = p.mean[c], r = p.rstd[c], gam = p.gamma ? p.gamma[c] : T(1), bet = p.beta ? p.beta[c] : T(0);
        return [=](T x, T dy, T& xhat) {
            xhat = (x - mu) * r;
            return activation_grad<A>(dy, xhat * gam + bet, slope);
        };
    };

    // pass 1: the masked gradient g (kept in dx, where pass 2 reads it back from cache) and the two sums
    LaneSums<2> sums[kMaxGroup];  // Σ g and Σ g·x̂ of each channel
    for (index_t n = 0; n < N; ++n)
        for (index_t c = c0; c < c1; ++c) {
            const T *in = p.x + (n * C + c) * S, *up = p.dy + (n * C + c) * S;
            T* g_out = p.dx + (n * C + c) * S;
            accumulate<T>(S, sums[c - c0], [in, up, g_out, f = xhat_and_grad(c)](index_t s, T& g, T& gx) {
                T xhat;
                g = g_out[s] = f(in[s], up[s], xhat);
                gx = g * xhat;
            });
        }
    // pass 2: x̄ = (g − x̂·γ̄/m − β̄/m)·γ·rstd, in place over g (the two corrections are 0 in eval mode)
    T mu[kMaxGroup], r[kMaxGroup], gamma_rstd[kMaxGroup], dg_m[kMaxGroup], db_m[kMaxGroup];
    for (index_t c = c0; c < c1; ++c) {
        const index_t k = c - c0;
        const double db = sums[k].total(0), dg = sums[k].total(1);
        p.dbeta[c] = T(db);
        p.dgamma[c] = T(dg);
        mu[k] = p.mean[c], r[k] = p.rstd[c];
        gamma_rstd[k] = T(double(p.gamma ? p.gamma[c] : T(1)) * double(r[k]));
        dg_m[k] = p.training ? T(dg / double(m)) : T(0);
        db_m[k] = p.training ? T(db / double(m)) : T(0);
    }
    for (index_t n = 0; n < N; ++n)
        for (index_t c = c0; c < c1; ++c) {
            const index_t k = c - c0;
            const T* in = p.x + (n * C + c) * S;
            T* g = p.dx + (n * C + c) * S;
            const T mu_k = mu[k], r_k = r[k], dgm = dg_m[k], dbm = db_m[k], gr = gamma_rstd[k];
            for (index_t s = 0; s < S; ++s) g[s] = (g[s] - (in[s] - mu_k) * r_k * dgm - dbm) * gr;
            if constexpr (std::is_same_v<T, float>)
                if (p.round_bf16) round_run_to_bfloat16(g, g, S);   // the run just written, still in L1
        }
}

static void check_bn_input(const py::array& x, const char* op, index_t& N, index_t& C, index_t& S) {
    if (x.ndim() != 2 && x.ndim() != 4)
        throw py::value_error(std::string(op) + ": x must be (N, C) or (N, C, H, W)");
    N = x.shape(0), C = x.shape(1), S = x.ndim() == 4 ? x.shape(2) * x.shape(3) : 1;
}

using OptArray = std::optional<py::array>;

void register_batchnorm_act(py::module_& m) {
    m.def("batch_norm_act_forward", [](const py::array& x, const OptArray& weight, const OptArray& bias,
                                       const OptArray& running_mean, const OptArray& running_var, bool training,
                                       double momentum, double eps, const std::optional<std::string>& activation,
                                       double negative_slope, bool round_bf16) {
        return dispatch_float(x, "batch_norm_act_forward", [&](auto tag) -> py::tuple {
            using T = decltype(tag);
            const char* op = "batch_norm_act_forward";
            index_t N, C, S;
            check_bn_input(x, op, N, C, S);
            const Activation act = parse_activation(activation, op);
            if (training && N * S == 1)
                throw py::value_error("batch_norm: expected more than 1 value per channel when training, got input "
                                      "with " + std::to_string(N * S) + " value(s) per channel");
            if (!training && (!running_mean || !running_var))
                throw py::value_error("batch_norm: eval mode needs running_mean and running_var");
            if (round_bf16 && !std::is_same_v<T, float>)
                throw py::type_error("batch_norm_act_forward: round_bf16 rounds float32 outputs only");
            const T* px = data_of<T>(x, op, "x");
            const T* g = optional_data<T>(weight, C, op, "weight");
            const T* b = optional_data<T>(bias, C, op, "bias");
            T* rm = optional_data<T>(running_mean, C, op, "running_mean", training);
            T* rv = optional_data<T>(running_var, C, op, "running_var", training);
            auto y = empty<T>(shape_of(x));
            auto mean = empty<T>({C}), rstd = empty<T>({C});
            const BatchNormForward<T> p{px, y.mutable_data(), N, C, S, g, b, rm, rv, training, momentum, eps,
                                        T(negative_slope), mean.mutable_data(), rstd.mutable_data(), round_bf16};
            {
                py::gil_scoped_release nogil;
                with_activation(act, [&](auto a) {
                    for_each_channel_group(N, C, S, sizeof(T), 2,
                                           [&](index_t c0, index_t c1) { forward_channels<T, a()>(p, c0, c1); });
                });
            }
            return py::make_tuple(y, mean, rstd);
        });
    }, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
       py::arg("training"), py::arg("momentum"), py::arg("eps"), py::arg("activation"), py::arg("negative_slope"),
       py::arg("round_bf16") = false,
       "-> (y, mean, rstd): batch norm + activation; training updates the running statistics in place; "
       "round_bf16: y rounded to bfloat16 (float32 only).");

    m.def("batch_norm_act_backward", [](const py::array& dy, const py::array& x, const OptArray& weight,
                                        const OptArray& bias, const py::array& mean, const py::array& rstd,
                                        bool training, const std::optional<std::string>& activation,
                                        double negative_slope, bool round_bf16) {
        return dispatch_float(x, "batch_norm_act_backward", [&](auto tag) -> py::tuple {
            using T = decltype(tag);
            const char* op = "batch_norm_act_backward";
            index_t N, C, S;
            check_bn_input(x, op, N, C, S);
            if (shape_of(dy) != shape_of(x)) throw py::value_error(std::string(op) + ": dy and x differ in shape");
            const Activation act = parse_activation(activation, op);
            if (round_bf16 && !std::is_same_v<T, float>)
                throw py::type_error("batch_norm_act_backward: round_bf16 rounds float32 outputs only");
            const T* pdy = data_of<T>(dy, op, "dy");
            const T* px = data_of<T>(x, op, "x");
            const T* g = optional_data<T>(weight, C, op, "weight");
            const T* b = optional_data<T>(bias, C, op, "bias");
            const T* pm = optional_data<T>(mean, C, op, "mean");
            const T* pr = optional_data<T>(rstd, C, op, "rstd");
            auto dx = empty<T>(shape_of(x));
            auto dgamma = empty<T>({C}), dbeta = empty<T>({C});
            const BatchNormBackward<T> p{pdy, px, dx.mutable_data(), N, C, S, g, b, pm, pr, training,
                                         T(negative_slope), dgamma.mutable_data(), dbeta.mutable_data(), round_bf16};
            {
                py::gil_scoped_release nogil;
                with_activation(act, [&](auto a) {
                    for_each_channel_group(N, C, S, sizeof(T), 3,
                                           [&](index_t c0, index_t c1) { backward_channels<T, a()>(p, c0, c1); });
                });
            }
            return py::make_tuple(dx, dgamma, dbeta);
        });
    }, py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("mean"), py::arg("rstd"),
       py::arg("training"), py::arg("activation"), py::arg("negative_slope"), py::arg("round_bf16") = false,
       "-> (dx, dweight, dbias); the activation's mask is recomputed from the saved mean and rstd; round_bf16: dx "
       "rounded to bfloat16 (float32 only).");
}

}  // namespace fastgan
