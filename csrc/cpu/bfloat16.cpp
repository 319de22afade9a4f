// Rounding float32 to bfloat16 for the mixed-precision products (reference.py: round_to_bfloat16): one pass, the
// result kept as float32. On a CPU without bfloat16 arithmetic (no AVX-512-BF16, no AMX) the bfloat16
// convolutions are the float32 kernels run on operands rounded here (kernels/cpu.py). Batch norm + activation and
// LeakyReLU can round their output in the same pass (round_bf16=True): the next convolution then has nothing
// left to round.
#include "fastgan.h"

namespace fastgan {

FASTGAN_MULTIVERSION void round_run_to_bfloat16(const float* in, float* out, index_t n) {
    for (index_t i = 0; i < n; ++i) out[i] = round_to_bfloat16(in[i]);
}

void register_bfloat16(py::module_& m) {
    m.def("round_to_bfloat16", [](const py::array& x) {
        const float* px = data_of<float>(x, "round_to_bfloat16", "x");
        auto y = empty<float>(shape_of(x));
        float* py_ = y.mutable_data();
        {
            py::gil_scoped_release nogil;
            parallel_chunks(x.size(), [&](index_t b, index_t e) { round_run_to_bfloat16(px + b, py_ + b, e - b); });
        }
        return y;
    }, py::arg("x"), "float32 x rounded to the nearest bfloat16 (ties to even), as a new float32 array.");
}

}  // namespace fastgan
