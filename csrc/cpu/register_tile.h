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
#pragma once

#include "fastgan.h"

#include <array>
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
    FASTGAN_TILE_FN void step(const float* __restrict vectors, const float* __restrict scalars, index_t stride) {
        __m512 v[R];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) v[r] = _mm512_loadu_ps(vectors + 16 * r);
#pragma GCC unroll 7
        for (int q = 0; q < Q; ++q) {
            const __m512 s = _mm512_set1_ps(scalars[q * stride]);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) acc[r][q] = _mm512_fmadd_ps(v[r], s, acc[r][q]);
        }
    }
};

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
