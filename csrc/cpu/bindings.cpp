// The extension module fastgan._C: one Python module for every kernel in csrc/cpu. fastgan/kernels/cpu.py wraps
// these functions with the names and signatures of fastgan/kernels/reference.py.
#include "fastgan.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
    using namespace fastgan;
    m.doc() = "fastgan's native CPU kernels (C++, OpenMP); see fastgan/kernels/cpu.py";
    register_layout(m);
    register_im2col(m);
    register_batchnorm_act(m);
    register_sigmoid_bce(m);
    register_optim(m);
    register_elementwise(m);
    register_direct_conv(m);
    register_direct_weight_grad(m);
    register_blas_threads(m);
    register_bfloat16(m);
    register_gemm_bf16(m);
    register_minibatch(m);

    m.def("set_num_threads", [](int n) {
        if (n < 1) throw py::value_error("set_num_threads: expected a positive number of threads");
#ifdef _OPENMP
        omp_set_num_threads(n);
#endif
    }, py::arg("n"), "Threads for the kernels that follow (OpenMP; the default follows OMP_NUM_THREADS).");
    m.def("get_num_threads", &max_threads, "Threads the next kernel may use.");
}
