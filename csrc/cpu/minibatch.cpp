// Minibatch discrimination's pairwise closeness (reference.py: minibatch_closeness_forward / _backward, where the
// derivative is written out). For rows M_{i,b} ∈ R^C of a batch of N examples and B kernels:
//     E_{ijb} = exp(−Σ_c |M_{i,b,c} − M_{j,b,c}|) for j ≠ i, 0 for j = i;    o_{i,b} = Σ_j E_{ijb}
//     ∂L/∂M_{k,b,c} = −Σ_j (g_{k,b} + g_{j,b})·E_{kjb}·sign(M_{k,b,c} − M_{j,b,c})
// The input comes as columns (B, C, N): for one kernel b, each of the C coordinates of all N examples is a
// contiguous row, so that the loops over j (the other examples) vectorise. One task is one (b, i): it computes the
// N distances into a scratch row, then their exponentials (fastgan.h: exp_nonpositive; the j = i distance is set
// to +inf, whose exponential is 0), and sums them in order. No (N, N, B) array exists; the backward computes E
// again. Tasks write disjoint outputs, so the results do not depend on the number of threads.
#include "fastgan.h"

#include <limits>

namespace fastgan {

// E_{ij} for one kernel and one i, into near[0, N): cols is that kernel's (C, N) block.
template <typename T>
FASTGAN_MULTIVERSION void closeness_row(const T* __restrict cols, index_t C, index_t N, index_t i,
                                        T* __restrict near) {
    std::fill(near, near + N, T(0));
    for (index_t c = 0; c < C; ++c) {
        const T* row = cols + c * N;
        const T mine = row[i];
        for (index_t j = 0; j < N; ++j) near[j] += std::abs(mine - row[j]);
    }
    near[i] = std::numeric_limits<T>::infinity();
    for (index_t j = 0; j < N; ++j) near[j] = exp_nonpositive(-near[j]);
}

// For every (b, i) of the B×N tasks, in parallel: body(b, i, scratch) with a scratch row of N elements.
template <typename T, typename Body>
void for_each_row(index_t B, index_t N, Body&& body) {
#pragma omp parallel if (B * N * N > kParallelGrain)
    {
        std::vector<T> scratch(N);
#pragma omp for schedule(static)
        for (index_t task = 0; task < B * N; ++task) body(task / N, task % N, scratch.data());
    }
}

// o (B, N) from cols (B, C, N).
template <typename T>
void closeness_forward(const T* cols, T* out, index_t B, index_t C, index_t N) {
    FlushSubnormals flush(std::is_same_v<T, float>);
    for_each_row<T>(B, N, [&](index_t b, index_t i, T* near) {
        closeness_row(cols + b * C * N, C, N, i, near);
        T total = 0;
        for (index_t j = 0; j < N; ++j) total += near[j];
        out[b * N + i] = total;
    });
}

// ∂L/∂cols (B, C, N) from g = ∂L/∂o (B, N) and cols (B, C, N).
template <typename T>
void closeness_backward(const T* g, const T* cols, T* grad, index_t B, index_t C, index_t N) {
    FlushSubnormals flush(std::is_same_v<T, float>);
    for_each_row<T>(B, N, [&](index_t b, index_t i, T* weight) {
        const T* block = cols + b * C * N;
        const T* gb = g + b * N;
        closeness_row(block, C, N, i, weight);
        for (index_t j = 0; j < N; ++j) weight[j] *= gb[i] + gb[j];          // (g_i + g_j)·E_ij
        for (index_t c = 0; c < C; ++c) {
            const T* row = block + c * N;
            const T mine = row[i];
            T total = 0;
            for (index_t j = 0; j < N; ++j) {
                const T d = mine - row[j];
                total += weight[j] * (T(d > 0) - T(d < 0));               // sign(d), 0 at d = 0
            }
            grad[(b * C + c) * N + i] = -total;
        }
    });
}

void register_minibatch(py::module_& m) {
    m.def("minibatch_closeness_forward", [](const py::array& cols) {
        return dispatch_float(cols, "minibatch_closeness_forward", [&](auto tag) -> py::array {
            using T = decltype(tag);
            const char* op = "minibatch_closeness_forward";
            if (cols.ndim() != 3) throw py::value_error(std::string(op) + ": expected columns (B, C, N)");
            const index_t B = cols.shape(0), C = cols.shape(1), N = cols.shape(2);
            const T* in = data_of<T>(cols, op, "cols");
            auto out = empty<T>({B, N});
            T* po = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                closeness_forward<T>(in, po, B, C, N);
            }
            return out;
        });
    }, py::arg("cols"), "o (B, N) from the columns (B, C, N) of M: reference.py minibatch_closeness_forward.");
    m.def("minibatch_closeness_backward", [](const py::array& g, const py::array& cols) {
        return dispatch_float(cols, "minibatch_closeness_backward", [&](auto tag) -> py::array {
            using T = decltype(tag);
            const char* op = "minibatch_closeness_backward";
            if (cols.ndim() != 3 || g.ndim() != 2 || g.shape(0) != cols.shape(0) || g.shape(1) != cols.shape(2))
                throw py::value_error(std::string(op) + ": expected g (B, N) and columns (B, C, N)");
            const index_t B = cols.shape(0), C = cols.shape(1), N = cols.shape(2);
            const T* pg = data_of<T>(g, op, "g");
            const T* in = data_of<T>(cols, op, "cols");
            auto grad = empty<T>({B, C, N});
            T* pd = grad.mutable_data();
            {
                py::gil_scoped_release nogil;
                closeness_backward<T>(pg, in, pd, B, C, N);
            }
            return grad;
        });
    }, py::arg("g"), py::arg("cols"), "∂L/∂cols (B, C, N): reference.py minibatch_closeness_backward.");
}

}  // namespace fastgan
