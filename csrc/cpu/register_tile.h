// The register tile that the direct convolutions (direct_conv.cpp, direct_weight_grad.cpp) are built on.
//
// R·Q float32 accumulators in AVX-512 registers: R vectors of 16 channels side by side, times Q columns. One step
// loads R vectors and broadcasts Q scalars, and adds every vector-scalar product to its accumulator:
//
//     acc[r][q] += vectors[16r .. 16r + 15] · scalars[q · stride]        (R·Q fused multiply-adds)
//
// The vectors are weights (the convolution: Q output pixels) or input pixels (the weight gradient: Q output
// channels). With R = 4 and Q = 7, 28 accumulators keep both FMA units busy while 4 + 7 loads feed them. Every
// tile is compiled for each (R, Q) up to that size (tile_table), so a kernel can cover any channel count and row
// length with the right tile, without masks.
//
// The same tile sums bfloat16 products (fastgan.autocast on a CPU with AVX-512-BF16) when its operands are pairs of
// bfloat16 (bf16x2, fastgan.h): two consecutive terms of the sum, side by side in each 32-bit lane. One VDPBF16PS
// then does a step's work for both terms, so a sum takes half the steps, each at the speed of an FMA:
//
//     acc[r][q] += vectors[16r + lane].first · scalars[q·stride].first + (… .second · … .second)
//
// The kernels are templates over the operand type (float or bf16x2); only their copies of the operands into the
// tile's layout differ.
#pragma once

#include "fastgan.h"

#include <array>
#include <type_traits>
#include <vector>
#include <utility>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FASTGAN_AVX512 1
#define FASTGAN_TILE_FN __attribute__((always_inline, target("avx512f"))) inline
#endif

namespace fastgan {

constexpr int kTileR = 4;  // vectors of 16 channels
constexpr int kTileQ = 7;  // columns (pixels, or output channels)

#ifdef FASTGAN_AVX512

// The lane operations of a step, for each operand type: load 16 lanes, broadcast one value to all of them, and
// add the lanes' products to a float32 accumulator.
FASTGAN_TILE_FN __m512 lanes_load(const float* p) { return _mm512_loadu_ps(p); }
FASTGAN_TILE_FN __m512i lanes_load(const bf16x2* p) { return _mm512_loadu_si512(p); }
FASTGAN_TILE_FN __m512 lanes_broadcast(float x) { return _mm512_set1_ps(x); }
FASTGAN_TILE_FN __m512i lanes_broadcast(bf16x2 x) { return _mm512_set1_epi32(static_cast<int>(x)); }
FASTGAN_TILE_FN __m512 lanes_madd(__m512 acc, __m512 v, __m512 s) { return _mm512_fmadd_ps(v, s, acc); }
// VDPBF16PS as one line of assembly: the tiles are compiled for AVX-512F alone (a target attribute cannot depend on
// a template argument), and the instruction is reached only on a CPU that has it
FASTGAN_TILE_FN __m512 lanes_madd(__m512 acc, __m512i v, __m512i s) {
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(v), "v"(s));
    return acc;
}

template <int R, int Q>
struct RegisterTile {
    __m512 acc[R][Q];

    FASTGAN_TILE_FN void zero() {
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 7
            for (int q = 0; q < Q; ++q) acc[r][q] = _mm512_setzero_ps();
    }
    // column q of the tile is at p + q·row (16·R floats)
    FASTGAN_TILE_FN void load(const float* p, index_t row) {
#pragma GCC unroll 7
        for (int q = 0; q < Q; ++q)
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) acc[r][q] = _mm512_loadu_ps(p + q * row + 16 * r);
    }
    FASTGAN_TILE_FN void store(float* p, index_t row) const {
#pragma GCC unroll 7
        for (int q = 0; q < Q; ++q)
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) _mm512_storeu_ps(p + q * row + 16 * r, acc[r][q]);
    }
    // one step: float32 products (FMA), or bfloat16 pair products (VDPBF16PS; the caller has checked for
    // AVX-512-BF16), by the operands' type (the lane operations above)
    template <class U>
    FASTGAN_TILE_FN void step(const U* __restrict vectors, const U* __restrict scalars, index_t stride) {
        decltype(lanes_load(vectors)) v[R];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) v[r] = lanes_load(vectors + 16 * r);
#pragma GCC unroll 7
        for (int q = 0; q < Q; ++q) {
            const auto s = lanes_broadcast(scalars[q * stride]);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) acc[r][q] = lanes_madd(acc[r][q], v[r], s);
        }
    }
};

// Values of a sum per operand unit (1 for float, 2 for bf16x2), and the units that hold n values (a last odd value
// of bf16x2 beside a zero).
template <class U> constexpr index_t kPerUnit = std::is_same_v<U, bf16x2> ? 2 : 1;
template <class U> constexpr index_t unit_count(index_t n) { return (n + kPerUnit<U> - 1) / kPerUnit<U>; }

// Float32 values, consecutive terms adjacent (an even count for bf16x2), as units of U: for bf16x2 rounded to
// bfloat16 in pairs.
template <class U>
std::vector<U> as_units(std::vector<float>&& values) {
    if constexpr (std::is_same_v<U, float>) {
        return std::move(values);
    } else {
        std::vector<U> pairs(values.size() / 2);
        for (size_t i = 0; i < pairs.size(); ++i) pairs[i] = bfloat16_pair(values[2 * i], values[2 * i + 1]);
        return pairs;
    }
}

// table[R - 1][Q - 1] = &Kernel<R, Q>::run for every R ≤ kTileR and Q ≤ kTileQ: a kernel picks, at run time, the
// compiled tile that fits what is left of its channels and columns.
template <template <int, int> class Kernel, int R, int... Qs>
constexpr auto tile_row(std::integer_sequence<int, Qs...>) {
    return std::array{&Kernel<R, Qs + 1>::run...};
}

template <template <int, int> class Kernel, int... Rs>
constexpr auto tile_rows(std::integer_sequence<int, Rs...>) {
    return std::array{tile_row<Kernel, Rs + 1>(std::make_integer_sequence<int, kTileQ>{})...};
}

template <template <int, int> class Kernel>
constexpr auto tile_table() {
    return tile_rows<Kernel>(std::make_integer_sequence<int, kTileR>{});
}

#endif  // FASTGAN_AVX512

}  // namespace fastgan
