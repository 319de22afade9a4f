// Sigmoid + binary cross-entropy fused into one pass that writes the loss and its gradient (reference.py:
// sigmoid_bce_forward). For a logit s and target y (soft targets allowed):
//     ℓ(s) = −y·log σ(s) − (1−y)·log(1−σ(s)) = max(s, 0) − s·y + log(1 + e^{−|s|})   (e^{−|s|} ≤ 1: never overflows)
//     dℓ/ds = σ(s) − y,   σ(s) = 1/(1 + e^{−|s|}) for s ≥ 0, e^{−|s|}/(1 + e^{−|s|}) for s < 0   (both stable)
// "mean" divides the gradient by the number of elements; the summed loss is accumulated in fixed lanes and fixed
// chunks combined in order (fastgan.h: accumulate, chunked_sum), so it is reproducible for any thread count.
#include "fastgan.h"

#include <cmath>

namespace fastgan {

enum class Reduction { none, mean, sum };

// The second transcendental function the loss needs, log(1 + e) on [0, 1] (e^x for x <= 0 is fastgan.h's
// exp_nonpositive). For double, the C library's; for float, our own, plain arithmetic so that the loop over
// elements vectorises.
//
// log(1 + e) for 0 <= e <= 1. With t = e/(2 + e) in [0, 1/3], 1 + e = (1 + t)/(1 − t), so
// log(1 + e) = 2·atanh(t) = 2·(t + t³/3 + t⁵/5 + ...), to t^17 (truncation < 2e-9 relative). No 1 + e is ever
// rounded, so tiny e keep all their digits (log1p(e) = e to working precision), which is why log1p is used at all.
template <typename T>
inline T log1p_unit(T e) {
    if constexpr (std::is_same_v<T, double>) {
        return std::log1p(e);
    } else {
        const float u = 2.0f / (2.0f + e), t = 0.5f * e * u, t2 = t * t;
        float p = 1.0f / 17;
        for (int k = 15; k >= 1; k -= 2) p = p * t2 + 1.0f / float(k);   // unrolled by the compiler
        return e * (u * p);                                              // 2t·p, with no factor below e
    }
}

// The compiler evaluates both sides of every select, and t² above underflows for e < 1e-19 (logits below −43):
// without the flush of subnormals (fastgan.h: FlushSubnormals), each such operation costs a ~100-cycle microcode
// assist, which made the float loss 10x slower on confident logits. Only the float kernel turns it on: the double
// one keeps the C library's exact results.

// Writes dlogits[i] (and loss[i] when loss is not null) for i in [begin, end); returns Σ ℓ over them (in fixed
// lanes, see accumulate in fastgan.h). divisor is n for the mean (a division in T, as the reference), else 1.
// Blocks of kBlock elements: one vectorised loop computes the block's losses and gradients, then the losses (in
// L1) are summed.
template <typename T>
FASTGAN_MULTIVERSION double sigmoid_bce_chunk(const T* __restrict logits, const T* __restrict target,
                                              T* __restrict loss, T* __restrict dlogits, index_t begin, index_t end,
                                              T divisor) {
    FlushSubnormals flush(std::is_same_v<T, float>);
    LaneSums<1> total;
    T block[kBlock];
    for (index_t b = begin; b < end; b += kBlock) {
        const index_t len = std::min(kBlock, end - b);
        const T* s_in = logits + b;
        const T* y_in = target + b;
        T* d_out = dlogits + b;
#pragma omp simd
        for (index_t k = 0; k < len; ++k) {
            const T s = s_in[k], y = y_in[k];
            const T e = exp_nonpositive(-std::abs(s));
            block[k] = (s > T(0) ? s : T(0)) - s * y + log1p_unit(e);
            const T sigmoid = (s >= T(0) ? T(1) : e) / (T(1) + e);
            d_out[k] = (sigmoid - y) / divisor;
        }
        if (loss) std::copy(block, block + len, loss + b);
        accumulate<T, 1>(len, total, [&](index_t k) { return block[k]; });
    }
    return total.total();
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
