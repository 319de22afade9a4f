// Layout changes around the convolution GEMMs, and per-channel sums.
//
// A GEMM-based convolution works on "channel rows": an NCHW array a seen as the matrix (C, N·H·W), one row per
// channel (reference.py: _to_channel_rows / _from_channel_rows). Both directions are the same operation, a swap of
// the two leading axes of an (A, B, S) array, S = H·W contiguous values that move together:
//     to channel rows:    (N, C, S) -> (C, N, S)
//     from channel rows:  (C, N, S) -> (N, C, S), optionally adding a per-channel bias on the way.
#include "fastgan.h"

#include <cstring>

namespace fastgan {

// dst[b, a, :] = src[a, b, :] (+ bias[a]) for an (A, B, S) source. Each task copies one contiguous run of S values.
template <typename T>
void swap_leading_axes(const T* src, T* dst, index_t A, index_t B, index_t S, const T* bias_of_a) {
    const index_t runs = A * B;
#pragma omp parallel for schedule(static) if (runs * S > kParallelGrain)
    for (index_t t = 0; t < runs; ++t) {
        // walk the destination in order (t = b·A + a): its writes stream, the reads jump by B·S
        const index_t b = t / A, a = t % A;
        const T* from = src + (a * B + b) * S;
        T* to = dst + t * S;
        if (bias_of_a) {
            const T shift = bias_of_a[a];
            for (index_t s = 0; s < S; ++s) to[s] = from[s] + shift;
        } else {
            std::memcpy(to, from, sizeof(T) * S);
        }
    }
}

// sums[c] = Σ_{n, s} a[n, c, s], accumulated in double lanes (the bias gradient of a convolution); each channel
// is summed by one thread in a fixed order.
template <typename T>
void channel_sums(const T* a, T* sums, index_t N, index_t C, index_t S) {
    for_each_channel_group(N, C, S, sizeof(T), 1, [&](index_t c0, index_t c1) {
        LaneSums<> acc[kMaxGroup];
        for (index_t n = 0; n < N; ++n)
            for (index_t c = c0; c < c1; ++c)
                accumulate<T>(S, acc[c - c0], [run = a + (n * C + c) * S](index_t s) { return run[s]; });
        for (index_t c = c0; c < c1; ++c) sums[c] = T(acc[c - c0].total());
    });
}

// (N, C, ...) -> N, C, S with S the product of the remaining dimensions.
static void split_ncs(const py::array& a, const char* op, index_t& N, index_t& C, index_t& S) {
    if (a.ndim() < 2) throw py::value_error(std::string(op) + ": expected an array of at least 2 dimensions");
    N = a.shape(0), C = a.shape(1), S = a.ndim() > 2 ? a.size() / std::max<index_t>(N * C, 1) : 1;
}

void register_layout(py::module_& m) {
    m.def("to_channel_rows", [](const py::array& a, const std::optional<py::array>& out) {
        return dispatch_float(a, "to_channel_rows", [&](auto tag) -> py::array {
            using T = decltype(tag);
            index_t N, C, S;
            split_ncs(a, "to_channel_rows", N, C, S);
            const T* src = data_of<T>(a, "to_channel_rows", "input");
            py::array rows = output_or_new<T>(out, {C, N * S}, "to_channel_rows");
            T* dst = static_cast<T*>(rows.mutable_data());
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                swap_leading_axes<T>(src, dst, N, C, S, nullptr);
            }
            return rows;
        });
    }, py::arg("a"), py::arg("out") = py::none(),
       "(N, C, H, W) -> (C, N*H*W): one row per channel, columns in im2col's order.");

    m.def("from_channel_rows", [](const py::array& m_, index_t n, index_t h, index_t w,
                                  const std::optional<py::array>& bias) {
        return dispatch_float(m_, "from_channel_rows", [&](auto tag) -> py::array {
            using T = decltype(tag);
            const char* op = "from_channel_rows";
            if (m_.ndim() != 2 || m_.shape(1) != n * h * w)
                throw py::value_error(std::string(op) + ": expected a (C, N*H*W) matrix");
            const index_t C = m_.shape(0);
            const T* src = data_of<T>(m_, op, "rows");
            const T* b = optional_data<T>(bias, C, op, "bias");
            auto out = empty<T>({n, C, h, w});
            T* dst = out.mutable_data();
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                swap_leading_axes<T>(src, dst, C, n, h * w, b);
            }
            return out;
        });
    }, py::arg("m"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("bias") = py::none(),
       "(C, N*H*W) -> contiguous (N, C, H, W), adding the per-channel bias in the same copy.");

    m.def("channel_sums", [](const py::array& a) {
        return dispatch_float(a, "channel_sums", [&](auto tag) -> py::array {
            using T = decltype(tag);
            index_t N, C, S;
            split_ncs(a, "channel_sums", N, C, S);
            const T* src = data_of<T>(a, "channel_sums", "input");
            auto out = empty<T>({C});
            T* dst = out.mutable_data();
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                channel_sums<T>(src, dst, N, C, S);
            }
            return out;
        });
    }, py::arg("a"), "Σ over N, H, W per channel of an (N, C, ...) array, accumulated in float64.");
}

}  // namespace fastgan
