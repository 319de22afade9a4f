// Optimiser updates, fused into one in-place pass over the parameter and its state (reference.py: adam_step,
// sgd_step). Each element is independent, so the threads share fixed-size chunks of the arrays. The arithmetic is
// the reference's, operation for operation in T (scalars are computed in double and rounded to T once, as NumPy
// does for a Python float), so the results match the reference bit for bit, except that float subnormals are read
// and written as 0 (fastgan.h: FlushSubnormals): a decaying momentum buffer would otherwise make the step crawl.
#include "fastgan.h"

#include <cmath>

namespace fastgan {

template <typename T>
struct AdamStep {
    T* param;
    const T* grad;
    T *exp_avg, *exp_avg_sq;
    T one_minus_b1, one_minus_b2, b2, wd, bias_correction2_sqrt, step_size, eps;  // the scalars, rounded to T once
    bool decay;
};

// torch.optim.Adam with L2 weight decay, step t counted from 1, on elements [begin, end):
//     g = grad + wd·param
//     m ← m + (1−β1)·(g − m)            (torch's lerp form of β1·m + (1−β1)·g)
//     v ← β2·v + (1−β2)·g²
//     param ← param − lr/(1−β1^t) · m / (√v / √(1−β2^t) + eps)
template <typename T>
FASTGAN_MULTIVERSION void adam_range(const AdamStep<T>& a, index_t begin, index_t end) {
    FlushSubnormals flush(std::is_same_v<T, float>);
    for (index_t i = begin; i < end; ++i) {
        const T g = a.decay ? a.grad[i] + a.wd * a.param[i] : a.grad[i];
        const T m = a.exp_avg[i] + (g - a.exp_avg[i]) * a.one_minus_b1;
        const T v = a.exp_avg_sq[i] * a.b2 + g * g * a.one_minus_b2;
        a.exp_avg[i] = m;
        a.exp_avg_sq[i] = v;
        a.param[i] -= m / (std::sqrt(v) / a.bias_correction2_sqrt + a.eps) * a.step_size;
    }
}

template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, index_t n, index_t step, double lr, double beta1,
               double beta2, double eps, double weight_decay) {
    const AdamStep<T> a{param, grad, exp_avg, exp_avg_sq, T(1 - beta1), T(1 - beta2), T(beta2), T(weight_decay),
                        T(std::pow(1 - std::pow(beta2, double(step)), 0.5)),
                        T(lr / (1 - std::pow(beta1, double(step)))), T(eps), weight_decay != 0};
    parallel_chunks(n, [&](index_t b, index_t e) { adam_range(a, b, e); });
}

template <typename T>
struct SgdStep {
    T* param;
    const T* grad;
    T* buf;
    T wd, momentum, keep, lr;
    bool decay, first_step, nesterov;
};

// torch.optim.SGD, on elements [begin, end):
//     g = grad + wd·param
//     b ← g on the first step, else momentum·b + (1 − dampening)·g
//     param ← param − lr·(g + momentum·b if nesterov else b)          (param − lr·g without momentum: buf null)
template <typename T>
FASTGAN_MULTIVERSION void sgd_range(const SgdStep<T>& a, index_t begin, index_t end) {
    FlushSubnormals flush(std::is_same_v<T, float>);
    for (index_t i = begin; i < end; ++i) {
        T g = a.decay ? a.grad[i] + a.wd * a.param[i] : a.grad[i];
        if (a.buf) {
            const T b = a.first_step ? g : a.buf[i] * a.momentum + a.keep * g;
            a.buf[i] = b;
            g = a.nesterov ? g + a.momentum * b : b;
        }
        a.param[i] -= a.lr * g;
    }
}

template <typename T>
void sgd_step(T* param, const T* grad, T* buf, index_t n, double lr, double momentum, double weight_decay,
              double dampening, bool nesterov, bool first_step) {
    const SgdStep<T> a{param, grad, momentum != 0 ? buf : nullptr, T(weight_decay), T(momentum), T(1 - dampening),
                       T(lr), weight_decay != 0, first_step, nesterov};
    parallel_chunks(n, [&](index_t b, index_t e) { sgd_range(a, b, e); });
}

// The state arrays must match param exactly (dtype, size, C-contiguous, writable): they are updated in place.
template <typename T>
static T* state_of(const py::array& a, const py::array& param, const char* op, const char* name) {
    if (a.size() != param.size()) throw py::value_error(std::string(op) + ": " + name + " does not match param");
    return data_of<T>(a, op, name, true);
}

void register_optim(py::module_& m) {
    m.def("adam_step", [](const py::array& param, const py::array& grad, const py::array& exp_avg,
                          const py::array& exp_avg_sq, index_t step, double lr, double beta1, double beta2, double eps,
                          double weight_decay) {
        dispatch_float(param, "adam_step", [&](auto tag) {
            using T = decltype(tag);
            const char* op = "adam_step";
            T* p = data_of<T>(param, op, "param", true);
            const T* g = state_of<T>(grad, param, op, "grad");
            T* m1 = state_of<T>(exp_avg, param, op, "exp_avg");
            T* m2 = state_of<T>(exp_avg_sq, param, op, "exp_avg_sq");
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                adam_step<T>(p, g, m1, m2, param.size(), step, lr, beta1, beta2, eps, weight_decay);
            }
            return 0;
        });
    }, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("step"), py::arg("lr"),
       py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
       "One torch.optim.Adam step, in place on param, exp_avg and exp_avg_sq.");

    m.def("sgd_step", [](const py::array& param, const py::array& grad, const std::optional<py::array>& momentum_buf,
                         double lr, double momentum, double weight_decay, double dampening, bool nesterov,
                         bool first_step) {
        dispatch_float(param, "sgd_step", [&](auto tag) {
            using T = decltype(tag);
            const char* op = "sgd_step";
            if (momentum != 0 && !momentum_buf) throw py::value_error("sgd_step: momentum needs a momentum_buf");
            T* p = data_of<T>(param, op, "param", true);
            const T* g = state_of<T>(grad, param, op, "grad");
            T* buf = momentum != 0 ? state_of<T>(*momentum_buf, param, op, "momentum_buf") : nullptr;
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                sgd_step<T>(p, g, buf, param.size(), lr, momentum, weight_decay, dampening, nesterov, first_step);
            }
            return 0;
        });
    }, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"), py::arg("lr"), py::arg("momentum"),
       py::arg("weight_decay"), py::arg("dampening") = 0.0, py::arg("nesterov") = false, py::arg("first_step") = false,
       "One torch.optim.SGD step, in place on param and momentum_buf (None when momentum == 0).");
}

}  // namespace fastgan
