// Sigmoid + binary cross-entropy fused into one pass that writes the loss and its gradient (reference.py:
// sigmoid_bce_forward). For a logit s and target y (soft targets allowed):
//     ℓ(s) = −y·log σ(s) − (1−y)·log(1−σ(s)) = max(s, 0) − s·y + log(1 + e^{−|s|})   (e^{−|s|} ≤ 1: never overflows)
//     dℓ/ds = σ(s) − y,   σ(s) = 1/(1 + e^{−|s|}) for s ≥ 0, e^{−|s|}/(1 + e^{−|s|}) for s < 0   (both stable)
// "mean" divides the gradient by the number of elements; the summed loss is accumulated in double, in fixed
// chunks combined in order (reproducible for any thread count).
#include "fastgan.h"

#include <cmath>

namespace fastgan {

enum class Reduction { none, mean, sum };

// Writes dlogits[i] (and loss[i] when loss is not null) for i in [begin, end); returns Σ ℓ over them.
// divisor is n for the mean (a division in T, as the reference), else 1 (exact).
template <typename T>
double sigmoid_bce_chunk(const T* logits, const T* target, T* loss, T* dlogits, index_t begin, index_t end,
                         T divisor) {
    double total = 0;
    for (index_t i = begin; i < end; ++i) {
        const T s = logits[i], y = target[i];
        const T e = std::exp(-std::abs(s));
        const T l = (s > T(0) ? s : T(0)) - s * y + std::log1p(e);
        const T sigmoid = (s >= T(0) ? T(1) : e) / (T(1) + e);
        dlogits[i] = (sigmoid - y) / divisor;
        if (loss) loss[i] = l;
        total += double(l);
    }
    return total;
}

template <typename T>
double sigmoid_bce(const T* logits, const T* target, T* loss, T* dlogits, index_t n, Reduction reduction) {
    const T divisor = reduction == Reduction::mean ? T(n) : T(1);
    return chunked_sum(n, [&](index_t b, index_t e) {
        return sigmoid_bce_chunk(logits, target, loss, dlogits, b, e, divisor);
    });
}

void register_sigmoid_bce(py::module_& m) {
    m.def("sigmoid_bce_forward", [](const py::array& logits, const py::array& target, const std::string& reduction) {
        return dispatch_float(logits, "sigmoid_bce_forward", [&](auto tag) -> py::tuple {
            using T = decltype(tag);
            const char* op = "sigmoid_bce_forward";
            Reduction red;
            if (reduction == "none") red = Reduction::none;
            else if (reduction == "mean") red = Reduction::mean;
            else if (reduction == "sum") red = Reduction::sum;
            else throw py::value_error("unknown reduction '" + reduction + "'");
            if (shape_of(target) != shape_of(logits))
                throw py::value_error(std::string(op) + ": target and logits differ in shape");
            const T* s = data_of<T>(logits, op, "logits");
            const T* y = data_of<T>(target, op, "target");
            const index_t n = logits.size();
            auto dlogits = empty<T>(shape_of(logits));
            py::array_t<T> loss = red == Reduction::none ? empty<T>(shape_of(logits)) : empty<T>({});
            T* pd = dlogits.mutable_data();
            T* pl = red == Reduction::none ? loss.mutable_data() : nullptr;
            double total;
            {
                py::gil_scoped_release nogil;
                total = sigmoid_bce<T>(s, y, pl, pd, n, red);
            }
            if (red != Reduction::none)
                *loss.mutable_data() = T(red == Reduction::mean ? total / double(n) : total);
            return py::make_tuple(loss, dlogits);
        });
    }, py::arg("logits"), py::arg("target"), py::arg("reduction"),
       "-> (loss, dloss/dlogits): fused, stable sigmoid + binary cross-entropy; reduction 'mean', 'sum' or 'none'.");
}

}  // namespace fastgan
