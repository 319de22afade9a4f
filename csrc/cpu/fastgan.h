// Shared helpers of fastgan's native CPU kernels (compiled into the extension fastgan._C by setup.py).
//
// Every kernel is a template over the element type T (float or double) that works on raw, C-contiguous NCHW
// memory; the bindings around it check the NumPy arrays, allocate the outputs and release the GIL. The kernels
// are the C++ twins of fastgan/kernels/reference.py: same math, same order of floating-point operations where
// that is cheap, and results that never depend on the number of OpenMP threads (every reduction is done either
// by one thread in a fixed order, or in fixed-size chunks that are combined in a fixed order).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace fastgan {

namespace py = pybind11;
using index_t = std::int64_t;

// --- subnormal numbers ----------------------------------------------------------------------------------------

// While alive (and `on`), the calling thread flushes subnormal results to zero and reads subnormal inputs as zero
// (the FTZ and DAZ bits of x86's MXCSR). An operation that meets a subnormal (|x| < 1.2e-38 in float) otherwise
// takes a ~100-cycle microcode assist. They appear where values decay geometrically: a momentum buffer whose
// gradient has become exactly 0 shrinks by the momentum every step, and spends hundreds of steps as subnormals.
// Values that are not subnormal are unchanged. The float kernels turn it on; the double ones keep exact results.
struct FlushSubnormals {
#if defined(__SSE__)
    unsigned saved = _mm_getcsr();
    explicit FlushSubnormals(bool on) { if (on) _mm_setcsr(saved | 0x8040); }   // FTZ (bit 15) | DAZ (bit 6)
    ~FlushSubnormals() { _mm_setcsr(saved); }
#else
    explicit FlushSubnormals(bool) {}
#endif
};

// --- NumPy arrays in and out ------------------------------------------------------------------------------------

// Call f(T{}) with T the element type of `a` (float32 or float64); anything else is a TypeError.
template <typename F>
auto dispatch_float(const py::array& a, const char* op, F&& f) {
    if (py::isinstance<py::array_t<float>>(a)) return f(float{});
    if (py::isinstance<py::array_t<double>>(a)) return f(double{});
    throw py::type_error(std::string(op) + ": expected a float32 or float64 array, got dtype " +
                         py::str(a.dtype()).cast<std::string>());
}

// The data of `a` as T*, after checking its dtype (exactly T: no silent conversion, which would break the
// in-place kernels) and its layout (C-contiguous). `writable` also checks that it may be written in place.
template <typename T>
T* data_of(const py::array& a, const char* op, const char* name, bool writable = false) {
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::type_error(std::string(op) + ": " + name + " has dtype " + py::str(a.dtype()).cast<std::string>() +
                             ", expected " + py::str(py::dtype::of<T>()).cast<std::string>());
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(op) + ": " + name + " must be C-contiguous");
    if (writable && !a.writeable())
        throw py::value_error(std::string(op) + ": " + name + " must be writable (it is updated in place)");
    return static_cast<T*>(const_cast<void*>(a.data()));
}

// Optional per-channel vector (None or an array of `size` elements of type T): nullptr for None.
template <typename T>
T* optional_data(const std::optional<py::array>& a, index_t size, const char* op, const char* name,
                 bool writable = false) {
    if (!a) return nullptr;
    if (a->size() != size)
        throw py::value_error(std::string(op) + ": " + name + " has " + std::to_string(a->size()) +
                              " elements, expected " + std::to_string(size));
    return data_of<T>(*a, op, name, writable);
}

// A new uninitialised C-contiguous array (numpy.empty).
template <typename T>
py::array_t<T> empty(const std::vector<index_t>& shape) {
    return py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

inline std::vector<index_t> shape_of(const py::array& a) {
    return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

// `out` if given (a workspace to write into: its dtype, shape and layout are checked), else a new array.
template <typename T>
py::array output_or_new(const std::optional<py::array>& out, const std::vector<index_t>& shape, const char* op) {
    if (!out) return empty<T>(shape);
    if (shape_of(*out) != shape) throw py::value_error(std::string(op) + ": out has the wrong shape");
    data_of<T>(*out, op, "out", true);
    return *out;
}

// --- threads ----------------------------------------------------------------------------------------------------

inline int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Below this many elements a kernel runs on one thread: waking the team costs more than it saves.
constexpr index_t kParallelGrain = 1 << 15;

// --- vector width ---------------------------------------------------------------------------------------------

// The hot loops are compiled three times, for AVX-512, for AVX2 and for the baseline x86-64 that every 64-bit PC
// has, and the loader picks the best one the machine supports (GCC's function multi-versioning, through an ifunc).
// So the extension is built without -march=native, runs on any x86-64, and still uses 512-bit vectors where they
// exist (short rows such as a 7x7 feature map take a third fewer instructions than with 256-bit ones). The
// compiler forms no FMA in these loops (setup.py passes -ffp-contract=off): contracting a*b+c into one rounding
// would change results (the kernels repeat the reference's roundings), and then they would also differ between
// the three versions. The direct convolutions (register_tile.h) are the one place that asks for FMAs explicitly,
// with _mm512_fmadd_ps: they sum in another order than the GEMM path anyway (direct_conv.cpp says how much).
// Elsewhere (other compilers, other architectures) the macro is empty and the compiler's defaults apply.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTGAN_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTGAN_MULTIVERSION
#endif

// body(begin, end) for fixed-size chunks of [0, n), spread over the threads (elementwise kernels).
template <typename Body>
void parallel_chunks(index_t n, Body&& body, index_t chunk = 1 << 14) {
    const index_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (index_t k = 0; k < chunks; ++k) body(k * chunk, std::min(n, (k + 1) * chunk));
}

// --- walking the channels of an (N, C, S) array ------------------------------------------------------------------

// Per-channel kernels (batch norm, bias gradients) visit the channels in groups. One channel of an NCHW array is N
// short runs of S values, C·S apart: too short for the hardware prefetcher, so each run would wait on memory. For
// one sample, the channels [c0, c1) of a group are one contiguous block of (c1 − c0)·S values, so walking a group
// sample by sample reads memory in long runs. A group is also kept small enough for all its data to stay in a
// core's L2 cache, so that the kernel's second pass over it does not go back to memory. Each group belongs to one
// thread, and within it each channel is still summed in the same order (sample by sample), so the results depend
// on neither the grouping nor the thread count.
constexpr index_t kMaxGroup = 16;

// body(c0, c1) for every group of channels [c0, c1), groups spread over the threads; `arrays` is the number of
// (N, C, S) arrays the kernel streams through (x and y: 2).
template <typename Body>
void for_each_channel_group(index_t N, index_t C, index_t S, index_t itemsize, int arrays, Body&& body) {
    const index_t block = 4096;         // contiguous bytes per sample we would like to read at once
    const index_t cache = 512 * 1024;   // bytes of a group's data that should fit in L2
    // an empty batch (N or S = 0) has nothing to read: any grouping will do, as long as nothing divides by 0
    const index_t channel_bytes = std::max<index_t>(S * itemsize, 1);
    index_t group = std::min(kMaxGroup, (block + channel_bytes - 1) / channel_bytes);
    group = std::max<index_t>(1, std::min(group, cache / std::max<index_t>(N * channel_bytes * arrays, 1)));
    const index_t groups = (C + group - 1) / group;
#pragma omp parallel for schedule(static) if (N * C * S > kParallelGrain)
    for (index_t k = 0; k < groups; ++k) body(k * group, std::min(C, (k + 1) * group));
}

// --- deterministic sums ---------------------------------------------------------------------------------------

// Sums over runs of values, accumulated so that they are fast, accurate and reproducible:
//   * kLanes interleaved partial sums in T let the compiler vectorise and pipeline the loop without -ffast-math
//     (which would allow it to reorder additions however it likes);
//   * the T partial sums cover at most kBlock values each and are then added into double lanes, so the error does
//     not grow with the length of the sum (float32 data is summed about as accurately as in double);
//   * which value goes into which lane, and the order of all additions, are fixed: the result does not depend on
//     the thread count, nor on the alignment of the data.
constexpr int kLanes = 8;
constexpr index_t kBlock = 256;

// K sums (K = 1 or 2) in double lanes.
template <int K = 1>
struct LaneSums {
    static_assert(K == 1 || K == 2, "LaneSums holds one or two sums");
    double lane[K][kLanes] = {};

    double total(int k = 0) const {
        double s = 0;
        for (int l = 0; l < kLanes; ++l) s += lane[k][l];
        return s;
    }
};

// Adds the values of the elements s in [0, len) to acc: term(s) returns the value (K = 1), or term(s, a, b) stores
// the two values in a and b (K = 2; they usually share work, e.g. g and g·x̂ in batch norm's backward).
template <typename T, int K, typename Term>
inline void accumulate(index_t len, LaneSums<K>& acc, Term&& term) {
    for (index_t start = 0; start < len; start += kBlock) {
        const index_t end = std::min(len, start + kBlock);
        T part[K][kLanes] = {};
        auto add_to_lane = [&](int l, index_t s) {  // written out: a loop over k here would stop vectorisation
            if constexpr (K == 1) {
                part[0][l] += term(s);
            } else {
                T a, b;
                term(s, a, b);
                part[0][l] += a;
                part[1][l] += b;
            }
        };
        index_t s = start;
        for (; s + kLanes <= end; s += kLanes) {
#pragma omp simd
            for (int l = 0; l < kLanes; ++l) add_to_lane(l, s + l);
        }
        for (int l = 0; s < end; ++s, ++l) add_to_lane(l, s);
        for (int k = 0; k < K; ++k)
            for (int l = 0; l < kLanes; ++l) acc.lane[k][l] += double(part[k][l]);
    }
}

// Σ over [0, n) of chunk(begin, end), where chunk handles one fixed-size chunk (writing any elementwise outputs)
// and returns its partial sum. Chunks run in parallel; their partial sums are added in chunk order, so the result
// is the same for any number of threads.
template <typename Chunk>
double chunked_sum(index_t n, Chunk&& chunk, index_t chunk_size = 1 << 14) {
    std::vector<double> partial(static_cast<size_t>((n + chunk_size - 1) / chunk_size));
    parallel_chunks(n, [&](index_t b, index_t e) { partial[b / chunk_size] = chunk(b, e); }, chunk_size);
    double total = 0;
    for (double p : partial) total += p;
    return total;
}

// --- activations (shared by batch norm and the stand-alone elementwise kernels) ----------------------------------

// The activation is a template argument of the kernels that use it, so that their inner loops contain no branch
// on it (and a data-dependent branch per element, which costs far more than the arithmetic, becomes a select).
enum class Activation { none, relu, leaky_relu };

inline Activation parse_activation(const std::optional<std::string>& name, const char* op) {
    if (!name) return Activation::none;
    if (*name == "relu") return Activation::relu;
    if (*name == "leaky_relu") return Activation::leaky_relu;
    throw py::value_error(std::string(op) + ": unknown activation '" + *name + "'");
}

// f(std::integral_constant<Activation, a>{}): calls the instantiation of f for the activation a.
template <typename F>
auto with_activation(Activation a, F&& f) {
    using A = Activation;
    switch (a) {
        case A::relu: return f(std::integral_constant<A, A::relu>{});
        case A::leaky_relu: return f(std::integral_constant<A, A::leaky_relu>{});
        default: return f(std::integral_constant<A, A::none>{});
    }
}

// The activations and their derivatives as "z times a factor chosen by the sign of z": a choice between two
// constants is a branch-free select, whereas `z < 0 ? slope*z : z` keeps a data-dependent branch (the compiler may
// not evaluate slope*z speculatively), and a mispredicted branch per element costs more than all the arithmetic.
// z·1 is exactly z, so the values are the reference's: relu(z) = max(z, 0), leaky_relu(z) = z if z > 0 else slope·z,
// and NaN passes through as it does through np.maximum.
template <Activation A, typename T>
inline T activate(T z, T slope) {
    if constexpr (A == Activation::relu) return z < T(0) ? T(0) : z;
    else if constexpr (A == Activation::leaky_relu) return z * (z < T(0) ? slope : T(1));
    else return z;
}

// g times the activation's derivative at z: relu g·[z > 0]; leaky_relu g·(1 if z > 0 else slope).
template <Activation A, typename T>
inline T activation_grad(T g, T z, T slope) {
    if constexpr (A == Activation::relu) return g * (z > T(0) ? T(1) : T(0));
    else if constexpr (A == Activation::leaky_relu) return g * (z > T(0) ? T(1) : slope);
    else return g;
}

// --- bfloat16 (reference.py: round_to_bfloat16) -------------------------------------------------------------------

// x rounded to the nearest bfloat16 (ties to even), kept as a float: the top 16 bits of x's encoding, rounded by
// adding 0x7FFF plus the lowest kept bit (so that an exact tie carries only into an odd kept part) and clearing
// the low half. A carry out of the significand increments the exponent, which is the right rounding too (up to
// inf past the largest finite bfloat16). NaN only has its low half cleared, and its quiet bit set, so that no NaN
// becomes an inf. Integer operations only: MXCSR's flush-to-zero does not touch them, subnormals round as ml_dtypes
// rounds them.
inline float round_to_bfloat16(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
    const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    u = nan ? ((u | 0x00400000u) & 0xFFFF0000u) : rounded;
    std::memcpy(&x, &u, sizeof u);
    return x;
}

// The 16 bits of x rounded to bfloat16 (the storage the bfloat16 instructions read).
inline std::uint16_t bfloat16_bits(float x) {
    std::uint32_t u;
    const float r = round_to_bfloat16(x);
    std::memcpy(&u, &r, sizeof u);
    return static_cast<std::uint16_t>(u >> 16);
}

// Two values rounded to bfloat16 side by side in 32 bits, `first` in the low half: the unit VDPBF16PS multiplies,
// lane by lane, adding first·first' + second·second' (two consecutive terms of a sum) to a float32.
enum class bf16x2 : std::uint32_t {};
inline bf16x2 bfloat16_pair(float first, float second) {
    return bf16x2(std::uint32_t(bfloat16_bits(first)) | std::uint32_t(bfloat16_bits(second)) << 16);
}

// out[i] = round_to_bfloat16(in[i]) for i in [0, n); in == out rounds in place (the fused epilogues of batch norm
// and LeakyReLU call it on an output run still in cache). bfloat16.cpp.
void round_run_to_bfloat16(const float* in, float* out, index_t n);

// --- e^x for x <= 0 (the loss, minibatch discrimination) -------------------------------------------------------

// For double, the C library's. For float, our own, written as plain arithmetic so that a loop over elements
// vectorises (a call to expf per element cannot), with errors of a few units in the last place. e^x is flushed to
// 0 below x = −87.3, where it would be subnormal (below 1.2e-38): an absolute error under 1.3e-38; e^{−inf} = 0.
//
// Write x = k·ln2 + r with k = round(x/ln2), |r| <= ln2/2 (ln2 in two parts, so that r is exact
// to float precision), then e^x = 2^k · e^r with e^r from its Taylor series to r^7 (truncation < 1e-8), and 2^k
// built from its exponent bits.
template <typename T>
inline T exp_nonpositive(T x) {
    if constexpr (std::is_same_v<T, double>) {
        return std::exp(x);
    } else {
        const float xc = x < -87.3f ? -87.3f : x;                        // a NaN stays NaN
        const float magic = 12582912.0f;                                 // 1.5·2^23: adding it rounds to an integer
        const float k = (xc * 1.44269504f + magic) - magic;              // round(x / ln 2), >= -126
        const float r = (xc - k * 0.693145752f) - k * 1.42860677e-6f;   // ln 2 = 0.693145752 + 1.42860677e-6
        float p = 1.0f / 5040;
        p = p * r + 1.0f / 720;
        p = p * r + 1.0f / 120;
        p = p * r + 1.0f / 24;
        p = p * r + 1.0f / 6;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        const int exponent = k == k ? int(k) + 127 : 127;                // (NaN: any exponent, p is NaN)
        return x < -87.3f ? 0.0f : p * __builtin_bit_cast(float, exponent << 23);
    }
}

// --- registration of each source file's bindings (called from bindings.cpp) --------------------------------------

void register_layout(py::module_& m);
void register_im2col(py::module_& m);
void register_batchnorm_act(py::module_& m);
void register_sigmoid_bce(py::module_& m);
void register_optim(py::module_& m);
void register_elementwise(py::module_& m);
void register_direct_conv(py::module_& m);
void register_direct_weight_grad(py::module_& m);
void register_blas_threads(py::module_& m);
void register_bfloat16(py::module_& m);
void register_gemm_bf16(py::module_& m);
void register_minibatch(py::module_& m);

// Whether this CPU runs the direct float32 convolutions (AVX-512; direct_conv.cpp).
bool direct_conv_supported();
bool has_avx512_bf16();   // gemm_bf16.cpp: the CPU has AVX-512F and AVX512_BF16 (VDPBF16PS)

}  // namespace fastgan
