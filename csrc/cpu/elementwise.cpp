// Stand-alone activations, one pass each (the batch-norm kernels fuse the same activations; fastgan.h defines
// them once for both). The DCGAN's discriminator applies LeakyReLU to its first convolution's output without a
// batch norm between them; NumPy needs several passes and a temporary array for it, these kernels one pass:
//     forward:   y = x·(1 if x > 0 else slope)
//     backward:  dx = dy·(1 if x > 0 else slope)      (the mask recomputed from x: nothing is stored)
#include "fastgan.h"

namespace fastgan {

template <typename T>
FASTGAN_MULTIVERSION void leaky_relu_range(const T* __restrict x, T* __restrict y, T slope, index_t begin,
                                           index_t end) {
    for (index_t i = begin; i < end; ++i) y[i] = activate<Activation::leaky_relu>(x[i], slope);
}

template <typename T>
FASTGAN_MULTIVERSION void leaky_relu_grad_range(const T* __restrict dy, const T* __restrict x, T* __restrict dx,
                                                T slope, index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) dx[i] = activation_grad<Activation::leaky_relu>(dy[i], x[i], slope);
}

void register_elementwise(py::module_& m) {
    m.def("leaky_relu_forward", [](const py::array& x, double negative_slope, bool round_bf16) {
        return dispatch_float(x, "leaky_relu_forward", [&](auto tag) -> py::array {
            using T = decltype(tag);
            if (round_bf16 && !std::is_same_v<T, float>)
                throw py::type_error("leaky_relu_forward: round_bf16 rounds float32 outputs only");
            const T* px = data_of<T>(x, "leaky_relu_forward", "x");
            auto y = empty<T>(shape_of(x));
            T* py_ = y.mutable_data();
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                parallel_chunks(x.size(), [&](index_t b, index_t e) {
                    leaky_relu_range(px, py_, T(negative_slope), b, e);
                    if constexpr (std::is_same_v<T, float>)
                        if (round_bf16) round_run_to_bfloat16(py_ + b, py_ + b, e - b);  // the chunk, in cache
                });
            }
            return y;
        });
    }, py::arg("x"), py::arg("negative_slope"), py::arg("round_bf16") = false,
       "y = x if x > 0 else negative_slope·x, in one pass; round_bf16: y rounded to bfloat16 (float32 only).");

    m.def("leaky_relu_backward", [](const py::array& dy, const py::array& x, double negative_slope,
                                    bool round_bf16) {
        return dispatch_float(x, "leaky_relu_backward", [&](auto tag) -> py::array {
            using T = decltype(tag);
            if (round_bf16 && !std::is_same_v<T, float>)
                throw py::type_error("leaky_relu_backward: round_bf16 rounds float32 outputs only");
            if (shape_of(dy) != shape_of(x)) throw py::value_error("leaky_relu_backward: dy and x differ in shape");
            const T* pdy = data_of<T>(dy, "leaky_relu_backward", "dy");
            const T* px = data_of<T>(x, "leaky_relu_backward", "x");
            auto dx = empty<T>(shape_of(x));
            T* pdx = dx.mutable_data();
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                parallel_chunks(x.size(), [&](index_t b, index_t e) {
                    leaky_relu_grad_range(pdy, px, pdx, T(negative_slope), b, e);
                    if constexpr (std::is_same_v<T, float>)
                        if (round_bf16) round_run_to_bfloat16(pdx + b, pdx + b, e - b);  // the chunk, in cache
                });
            }
            return dx;
        });
    }, py::arg("dy"), py::arg("x"), py::arg("negative_slope"), py::arg("round_bf16") = false,
       "dx = dy if x > 0 else negative_slope·dy, the mask recomputed from x; round_bf16: dx rounded to bfloat16 "
       "(float32 only).");
}

}  // namespace fastgan
