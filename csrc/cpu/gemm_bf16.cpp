// A matrix product on bfloat16 operands with float32 sums, on the CPU's bfloat16 hardware (reference.py:
// matmul_bf16, the specification):
//
//     C (M, N) = bf16(A) (M, K) · bf16(B) (K, N)          every product exact, every sum in float32
//
// A and B are float32 arrays of any strides (a transposed view costs nothing); they are rounded to bfloat16 (to
// nearest, ties to even) as they are packed, so the rounding needs no pass of its own. C is float32.
//
// The unit of work is Intel's AMX tile: a 16 × 64-byte register. One instruction, TDPBF16PS, adds to a tile C of
// 16 × 16 float32 the product of a tile A of 16 × 32 bfloat16 (16 rows of A, 32 steps of K) and a tile B holding
// 32 × 16 bfloat16 in pairs: row k of the B tile is B[2k, n], B[2k + 1, n] for n = 0 .. 15 side by side (the
// "VNNI" layout). Each float32 of C gains 32 products in one instruction:
//
//     C[m, n] += Σ_k  A[m, 2k]·B[2k, n] + A[m, 2k + 1]·B[2k + 1, n]          k = 0 .. 15, in this order
//
// So the operands are packed into tiles: A in blocks of 16 rows × 32 columns, B in blocks of 32 rows × 16 columns
// laid out in pairs, each tile 1 KB and contiguous, zero-padded to whole tiles (zeros add nothing). A block of C
// of 32 × 32 (2 × 2 tiles) is summed over K in steps of 32 with 4 accumulating tiles, 2 of A and 2 of B: the eight
// tile registers that AMX has. Each element of C is summed by one thread, over K in order: the result does not
// depend on the thread count.
//
// The block is written once, over an interface of tile operations (load, zero, dot, store), for two
// implementations of them:
//   Amx         the AMX instructions (Sapphire Rapids and later);
//   Emulated    the tiles in memory and the instruction's definition written out in scalar C++ (Intel's
//               pseudo-code for TDPBF16PS): it runs on any CPU, so the packing, the blocking and the edges are tested
//               everywhere, and the AMX path, which shares all of it, differs from it only in the instructions.
// A third path has its own block over the same packing and blocking:
//   Avx512Bf16  the block summed in vector registers, 16 float32 lanes per VDPBF16PS (CPUs with AVX-512-BF16 but
//               no AMX: Cooper Lake, Zen 4).
#include "fastgan.h"

#include <chrono>
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FASTGAN_BF16_HW 1
#endif

namespace fastgan {

namespace {

using bf16 = std::uint16_t;  // the bits of a bfloat16: the top half of a float32's

constexpr index_t kTileRows = 16;         // rows of a tile (of C and A; pairs of K for B)
constexpr index_t kTileK = 32;            // bfloat16 values of K in one tile row of A
constexpr index_t kTileElems = 16 * 32;   // bfloat16 values in a tile of A or B (1 KB)
constexpr index_t kRowBytes = 64;         // bytes of a tile row: the stride of the packed tiles

inline bf16 to_bf16(float x) { return bfloat16_bits(x); }

inline float from_bf16(bf16 b) {
    const std::uint32_t u = std::uint32_t(b) << 16;
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// the first 64-byte boundary at or after p (tile loads of 64-byte rows want it; the buffers have room for it)
bf16* aligned64(bf16* p) {
    return reinterpret_cast<bf16*>((reinterpret_cast<std::uintptr_t>(p) + 63) & ~std::uintptr_t(63));
}

// --- packing ------------------------------------------------------------------------------------------------------

// A float32 matrix of any strides (in elements): X[i, k] = data[i*s0 + k*s1].
struct Strided {
    const float* data;
    index_t rows, cols, s0, s1;
    float at(index_t i, index_t k) const { return data[i * s0 + k * s1]; }
};

// Packing reads every operand once and is, at the convolutions' shapes, most of the GEMM's memory traffic, so each
// tile is copied along whichever of its two dimensions is contiguous in memory (a loop the compiler vectorises:
// to_bf16 is integer arithmetic without branches); a tile at the matrix's edge, or of an operand contiguous in
// neither dimension, is copied element by element with the zero padding.

// A (M, K) → tiles of 16 rows × 32 values of K: tile (mb, kb) at packed + (mb*KB + kb)*kTileElems, row r holding
// A[16mb + r, 32kb .. 32kb + 31]; zeros past M and K.
void pack_a_tile(const Strided& a, index_t i0, index_t k0, bf16* tile) {
    const float* p = a.data + i0 * a.s0 + k0 * a.s1;
    const bool whole = i0 + kTileRows <= a.rows && k0 + kTileK <= a.cols;
    if (whole && a.s1 == 1) {          // rows contiguous
        for (index_t r = 0; r < kTileRows; ++r)
            for (index_t c = 0; c < kTileK; ++c) tile[r * kTileK + c] = to_bf16(p[r * a.s0 + c]);
    } else if (whole && a.s0 == 1) {   // columns contiguous
        for (index_t c = 0; c < kTileK; ++c)
            for (index_t r = 0; r < kTileRows; ++r) tile[r * kTileK + c] = to_bf16(p[c * a.s1 + r]);
    } else {
        for (index_t r = 0; r < kTileRows; ++r)
            for (index_t c = 0; c < kTileK; ++c) {
                const index_t i = i0 + r, k = k0 + c;
                tile[r * kTileK + c] = i < a.rows && k < a.cols ? to_bf16(a.at(i, k)) : 0;
            }
    }
}

void pack_a(const Strided& a, index_t KB, bf16* packed) {
    const index_t MB = (a.rows + kTileRows - 1) / kTileRows;
#pragma omp parallel for schedule(static) if (a.rows * a.cols > kParallelGrain)
    for (index_t mb = 0; mb < MB; ++mb)
        for (index_t kb = 0; kb < KB; ++kb)
            pack_a_tile(a, mb * kTileRows, kb * kTileK, packed + (mb * KB + kb) * kTileElems);
}

// B (K, N) → tiles of 32 values of K × 16 columns, in pairs: tile (nb, kb) at packed + (nb*KB + kb)*kTileElems,
// row r holding B[32kb + 2r, n], B[32kb + 2r + 1, n] for n = 16nb .. 16nb + 15; zeros past K and N.
void pack_b_tile(const Strided& b, index_t k0, index_t n0, bf16* tile) {
    const float* p = b.data + k0 * b.s0 + n0 * b.s1;
    const bool whole = k0 + kTileK <= b.rows && n0 + 16 <= b.cols;
    if (whole && b.s1 == 1) {          // rows contiguous: two rows make a row of the tile
        for (index_t r = 0; r < kTileRows; ++r)
            for (index_t c = 0; c < 16; ++c)
                for (index_t e = 0; e < 2; ++e) tile[(r * 16 + c) * 2 + e] = to_bf16(p[(2 * r + e) * b.s0 + c]);
    } else if (whole && b.s0 == 1) {   // columns contiguous: a column, in pairs
        for (index_t c = 0; c < 16; ++c)
            for (index_t r = 0; r < kTileRows; ++r)
                for (index_t e = 0; e < 2; ++e) tile[(r * 16 + c) * 2 + e] = to_bf16(p[c * b.s1 + 2 * r + e]);
    } else {
        for (index_t r = 0; r < kTileRows; ++r)
            for (index_t c = 0; c < 16; ++c)
                for (index_t e = 0; e < 2; ++e) {
                    const index_t k = k0 + 2 * r + e, n = n0 + c;
                    tile[(r * 16 + c) * 2 + e] = k < b.rows && n < b.cols ? to_bf16(b.at(k, n)) : 0;
                }
    }
}

void pack_b(const Strided& b, index_t KB, bf16* packed) {
    const index_t NB = (b.cols + 15) / 16;
#pragma omp parallel for schedule(static) if (b.rows * b.cols > kParallelGrain)
    for (index_t nb = 0; nb < NB; ++nb)
        for (index_t kb = 0; kb < KB; ++kb)
            pack_b_tile(b, kb * kTileK, nb * 16, packed + (nb * KB + kb) * kTileElems);
}

// --- the tile operations, three ways -----------------------------------------------------------------------------
//
// C[i][j] (i, j in {0, 1}) are the four accumulators, A[i] and B[j] the operands of one step of K:
// dot<i, j>() is C[i][j] += A[i]·B[j]. The AMX registers are tmm0-3 (C, row-major), tmm4-5 (A), tmm6-7 (B).

// Tiles in memory: the state of the Emulated path (per thread, as the registers would be).
struct MemoryTiles {
    alignas(64) float c[2][2][16][16];
    alignas(64) bf16 a[2][kTileElems];
    alignas(64) bf16 b[2][kTileElems];
};
thread_local MemoryTiles tiles;

struct TilesInMemory {
    static void begin() {}
    static void end() {}
    template <int I, int J> static void zero() { std::memset(tiles.c[I][J], 0, sizeof tiles.c[I][J]); }
    template <int I> static void load_a(const bf16* p) { std::memcpy(tiles.a[I], p, sizeof tiles.a[I]); }
    template <int J> static void load_b(const bf16* p) { std::memcpy(tiles.b[J], p, sizeof tiles.b[J]); }
    // C[i][j] → out, a float32 block with rows `stride` bytes apart
    template <int I, int J> static void store(float* out, index_t stride) {
        for (int m = 0; m < 16; ++m)
            std::memcpy(reinterpret_cast<char*>(out) + m * stride, tiles.c[I][J][m], 16 * sizeof(float));
    }
};

// TDPBF16PS as Intel defines it, one float32 addition at a time.
struct Emulated : TilesInMemory {
    template <int I, int J> static void dot() {
        const bf16* a = tiles.a[I];
        const bf16* b = tiles.b[J];
        for (int m = 0; m < 16; ++m) {
            float* c = tiles.c[I][J][m];
            for (int k = 0; k < 16; ++k)
                for (int n = 0; n < 16; ++n) {
                    c[n] += from_bf16(a[m * 32 + 2 * k]) * from_bf16(b[(k * 16 + n) * 2]);
                    c[n] += from_bf16(a[m * 32 + 2 * k + 1]) * from_bf16(b[(k * 16 + n) * 2 + 1]);
                }
        }
    }
};

#ifdef FASTGAN_BF16_HW

// AVX-512-BF16 has no tile registers but 32 vector registers of 16 float32, and VDPBF16PS, which is one row of
// TDPBF16PS's work: 16 lanes n each gain A[m, 2k]·B[2k, n] + A[m, 2k+1]·B[2k+1, n]. So this path keeps the packed
// tiles (a row of a B tile is one register's worth: 16 columns' pairs) but not the tile operations: it sums the
// block in strips of 8 rows × 16·NT columns, each strip's 8·NT accumulators held in registers over the whole of K.
// For each pair k of K, each B tile's row k is loaded once and each row's pair of A broadcast to every lane:
//
//     acc[r][j] += A[r, 2k..2k+1] · B[2k..2k+1, 16j .. 16j+15]          r = 0..7, j < NT: 8·NT products, 8 + NT loads
//
// The latency of VDPBF16PS is hidden behind the 8·NT independent sums in flight, where one tile row at a time
// (16 dependent VDPBF16PS into one register) left the unit waiting. Each element of C is summed over K in the same
// order as on the tile paths.
struct Avx512Bf16 {
    static void begin() {}
    static void end() {}

    // the strip at rows a (row r0 of A's tile row, kb = 0) × the NT tile columns from b (kb = 0) → out (32 wide)
    template <int NT> __attribute__((target("avx512f,avx512bf16"))) static void strip(
            const bf16* a, const bf16* b, index_t KB, float* out) {
        __m512 acc[8][NT];
        for (int r = 0; r < 8; ++r)
            for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
        for (index_t kb = 0; kb < KB; ++kb) {
            const std::uint32_t* pa = reinterpret_cast<const std::uint32_t*>(a + kb * kTileElems);  // pairs of A
            const bf16* pb = b + kb * kTileElems;
#pragma GCC unroll 16
            for (int k = 0; k < 16; ++k) {
                __m512bh bk[NT];
                for (int j = 0; j < NT; ++j) bk[j] = (__m512bh)_mm512_load_si512(pb + j * KB * kTileElems + k * 32);
                for (int r = 0; r < 8; ++r) {
                    const __m512bh ak = (__m512bh)_mm512_set1_epi32(int(pa[r * 16 + k]));
                    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], ak, bk[j]);
                }
            }
        }
        for (int r = 0; r < 8; ++r)
            for (int j = 0; j < NT; ++j) _mm512_store_ps(out + r * 32 + 16 * j, acc[r][j]);
    }

    // one block of C of (16·MT) × (16·NT): 2·MT strips (see block below for the operands)
    template <int MT, int NT> static void block(const bf16* a, const bf16* b, index_t KB, float* out) {
        for (int i = 0; i < MT; ++i)
            for (int half = 0; half < 2; ++half)
                strip<NT>(a + i * KB * kTileElems + half * 8 * kTileK, b, KB, out + (16 * i + 8 * half) * 32);
    }

    // the arithmetic peak's loop (peak_flops): a strip's 16 products on operands held in registers, `repeats`
    // times; returns the FLOP done
    __attribute__((target("avx512f,avx512bf16"))) static double spin(index_t repeats) {
        const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3F80);   // bfloat16 1.0: no subnormals
        __m512 acc[16];
        for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
        for (index_t r = 0; r < repeats; ++r)
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], one, one);
        alignas(64) float sink[16];
        __m512 sum = acc[0];
        for (int i = 1; i < 16; ++i) sum = _mm512_add_ps(sum, acc[i]);
        _mm512_store_ps(sink, sum);   // keeps the loop from being optimised away
        __asm__ volatile("" ::"m"(sink));
        return double(repeats) * 16 * (16 * 2 * 2);   // 16 lanes × a pair of multiply-adds each
    }
};

// The AMX registers. The tile numbers must be literals (the intrinsics are inline assembly that names them).
struct Amx {
    // ldtilecfg's 64 bytes: palette 1, then for each of the 8 tiles its bytes per row and its rows
    struct alignas(64) Config {
        std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
        std::uint16_t colsb[16] = {};
        std::uint8_t rows[16] = {};
    };
    __attribute__((target("amx-tile"))) static void begin() {
        Config cfg;
        for (int t = 0; t < 8; ++t) cfg.colsb[t] = kRowBytes, cfg.rows[t] = 16;
        // the whole struct as the operand: GCC 12's _tile_loadconfig tells the compiler it reads only 8 bytes
        __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
    }
    __attribute__((target("amx-tile"))) static void end() { _tile_release(); }
    template <int I, int J> __attribute__((target("amx-tile"))) static void zero() {
        if constexpr (I == 0 && J == 0) _tile_zero(0);
        else if constexpr (I == 0 && J == 1) _tile_zero(1);
        else if constexpr (I == 1 && J == 0) _tile_zero(2);
        else _tile_zero(3);
    }
    template <int I> __attribute__((target("amx-tile"))) static void load_a(const bf16* p) {
        if constexpr (I == 0) _tile_loadd(4, p, kRowBytes);
        else _tile_loadd(5, p, kRowBytes);
    }
    template <int J> __attribute__((target("amx-tile"))) static void load_b(const bf16* p) {
        if constexpr (J == 0) _tile_loadd(6, p, kRowBytes);
        else _tile_loadd(7, p, kRowBytes);
    }
    template <int I, int J> __attribute__((target("amx-tile,amx-bf16"))) static void dot() {
        if constexpr (I == 0 && J == 0) _tile_dpbf16ps(0, 4, 6);
        else if constexpr (I == 0 && J == 1) _tile_dpbf16ps(1, 4, 7);
        else if constexpr (I == 1 && J == 0) _tile_dpbf16ps(2, 5, 6);
        else _tile_dpbf16ps(3, 5, 7);
    }
    template <int I, int J> __attribute__((target("amx-tile"))) static void store(float* out, index_t stride) {
        if constexpr (I == 0 && J == 0) _tile_stored(0, out, stride);
        else if constexpr (I == 0 && J == 1) _tile_stored(1, out, stride);
        else if constexpr (I == 1 && J == 0) _tile_stored(2, out, stride);
        else _tile_stored(3, out, stride);
    }
};

#endif  // FASTGAN_BF16_HW

// --- the GEMM -------------------------------------------------------------------------------------------------------

// One block of C of (16·MT) × (16·NT), MT, NT in {1, 2}, summed over the KB tiles of K into out (32 × 32 float32),
// with the tile operations of T; a is the block's first tile of A (its tile rows KB tiles apart), b its first of B.
template <class T, int MT, int NT>
void tile_block(const bf16* a, const bf16* b, index_t KB, float* out) {
    constexpr index_t stride = 32 * sizeof(float);
    T::template zero<0, 0>();
    if constexpr (NT == 2) T::template zero<0, 1>();
    if constexpr (MT == 2) T::template zero<1, 0>();
    if constexpr (MT == 2 && NT == 2) T::template zero<1, 1>();
    for (index_t kb = 0; kb < KB; ++kb) {
        // the tiles of block row i of A lie KB tiles apart, those of block column j of B too
        T::template load_a<0>(a + kb * kTileElems);
        if constexpr (MT == 2) T::template load_a<1>(a + (KB + kb) * kTileElems);
        T::template load_b<0>(b + kb * kTileElems);
        if constexpr (NT == 2) T::template load_b<1>(b + (KB + kb) * kTileElems);
        T::template dot<0, 0>();
        if constexpr (NT == 2) T::template dot<0, 1>();
        if constexpr (MT == 2) T::template dot<1, 0>();
        if constexpr (MT == 2 && NT == 2) T::template dot<1, 1>();
    }
    T::template store<0, 0>(out, stride);
    if constexpr (NT == 2) T::template store<0, 1>(out + 16, stride);
    if constexpr (MT == 2) T::template store<1, 0>(out + 16 * 32, stride);
    if constexpr (MT == 2 && NT == 2) T::template store<1, 1>(out + 16 * 32 + 16, stride);
}

// The block on path T: its tile operations, or the vector registers' own block (Avx512Bf16).
template <class T, int MT, int NT>
void block(const bf16* a, const bf16* b, index_t KB, float* out) {
#ifdef FASTGAN_BF16_HW
    if constexpr (std::is_same_v<T, Avx512Bf16>) return T::template block<MT, NT>(a, b, KB, out);
    else
#endif
    tile_block<T, MT, NT>(a, b, KB, out);
}

// C (M, N, rows ldc apart) = packed A · packed B. Consecutive blocks share the panel of the larger operand, whose
// tiles then come from cache once per panel; the smaller operand is read again for each, from a cache it fits in
// (a convolution's weight: a few hundred KB, where its column matrix is megabytes).
template <class T>
void gemm_packed(const bf16* a, const bf16* b, index_t M, index_t N, index_t KB, float* c, index_t ldc) {
    const index_t BM = (M + 31) / 32, BN = (N + 31) / 32;
    const bool down_columns = BM <= BN;   // blocks in column-major order: B's panel is the shared one
#pragma omp parallel if (BM * BN > 1 && M * N * KB * kTileK > kParallelGrain * 64)
    {
        T::begin();
        alignas(64) float out[32 * 32];
#pragma omp for schedule(static)
        for (index_t blk = 0; blk < BM * BN; ++blk) {
            const index_t bi = down_columns ? blk % BM : blk / BN, bj = down_columns ? blk / BM : blk % BN;
            const index_t rows = std::min<index_t>(32, M - 32 * bi), cols = std::min<index_t>(32, N - 32 * bj);
            const bf16* ab = a + (2 * bi) * KB * kTileElems;   // tile row 2bi of A
            const bf16* bb = b + (2 * bj) * KB * kTileElems;   // tile column 2bj of B
            if (rows > 16 && cols > 16) block<T, 2, 2>(ab, bb, KB, out);
            else if (rows > 16) block<T, 2, 1>(ab, bb, KB, out);
            else if (cols > 16) block<T, 1, 2>(ab, bb, KB, out);
            else block<T, 1, 1>(ab, bb, KB, out);
            for (index_t r = 0; r < rows; ++r)
                std::memcpy(c + (32 * bi + r) * ldc + 32 * bj, out + r * 32, cols * sizeof(float));
        }
        T::end();
    }
}

// The arithmetic peak of a path: its products again and again on operands loaded once (no memory traffic), on
// every thread at once. Returns FLOP/s. On the tile paths: the four dots of a 2 × 2 block, each 16·16·32
// multiply-adds; on AVX-512-BF16, a strip's products (Avx512Bf16::spin).
template <class T>
double tile_spin(index_t repeats) {
    std::vector<bf16> ones(4 * kTileElems + 32, 0x3F80);   // bfloat16 1.0: sums stay exact, no subnormals
    const bf16* tiles64 = aligned64(ones.data());
    T::begin();
    T::template zero<0, 0>(), T::template zero<0, 1>(), T::template zero<1, 0>(), T::template zero<1, 1>();
    T::template load_a<0>(tiles64), T::template load_a<1>(tiles64 + kTileElems);
    T::template load_b<0>(tiles64 + 2 * kTileElems), T::template load_b<1>(tiles64 + 3 * kTileElems);
    for (index_t r = 0; r < repeats; ++r)
        T::template dot<0, 0>(), T::template dot<0, 1>(), T::template dot<1, 0>(), T::template dot<1, 1>();
    alignas(64) float out[32 * 32];
    T::template store<0, 0>(out, 32 * sizeof(float));   // keeps the loop from being optimised away
    T::end();
    return double(repeats) * 4 * (16.0 * 16 * 32 * 2);
}

template <class T>
double peak_flops(index_t repeats) {
    double flops = 0;
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : flops)
    {
#ifdef FASTGAN_BF16_HW
        if constexpr (std::is_same_v<T, Avx512Bf16>) flops += T::spin(repeats);
        else
#endif
        flops += tile_spin<T>(repeats);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return flops / seconds;
}

// --- which hardware ---------------------------------------------------------------------------------------------

bool cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
    unsigned r[4] = {};
    if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) return false;
    return (r[reg] >> bit) & 1u;
}

// The CPU has the AMX instructions (CPUID: AMX-TILE, AMX-BF16), and Linux gives this process the 8 KB of tile
// state, which it does only when asked (once per process); a kernel or hypervisor without AMX support refuses, and
// then the path is not offered.
bool has_amx() {
    static const bool usable = cpuid_bit(7, 0, 3, 24) && cpuid_bit(7, 0, 3, 22) &&
                               syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
    return usable;
}

Strided strided(const py::array& x, const char* name) {
    if (!py::isinstance<py::array_t<float>>(x))
        throw py::type_error(std::string("gemm_bf16: ") + name + " must be float32, got " +
                             py::str(x.dtype()).cast<std::string>());
    if (x.ndim() != 2)
        throw py::value_error(std::string("gemm_bf16: ") + name + " must be a matrix, got " +
                              std::to_string(x.ndim()) + " dimensions");
    for (int d = 0; d < 2; ++d)
        if (x.strides(d) % index_t(sizeof(float)))
            throw py::value_error(std::string("gemm_bf16: ") + name + "'s strides are not whole float32s");
    return {static_cast<const float*>(x.data()), x.shape(0), x.shape(1), x.strides(0) / index_t(sizeof(float)),
            x.strides(1) / index_t(sizeof(float))};
}

// f(T{}) for the operations T of `path` ("emulated", "avx512-bf16" or "amx"), after checking that this CPU runs it.
template <typename F>
auto on_path(const std::string& path, const char* op, F&& f) {
    if (path == "emulated") return f(Emulated{});
#ifdef FASTGAN_BF16_HW
    if (path == "avx512-bf16" && has_avx512_bf16()) return f(Avx512Bf16{});
    if (path == "amx" && has_amx()) return f(Amx{});
#endif
    if (path == "amx" || path == "avx512-bf16") throw std::runtime_error(std::string(op) + ": this CPU has no " + path);
    throw py::value_error(std::string(op) + ": unknown path '" + path + "' (emulated, avx512-bf16 or amx)");
}

}  // namespace

// AVX-512F and AVX512_BF16, with the vector state enabled by the OS (GCC's check reads XCR0 too)
bool has_avx512_bf16() { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"); }

void register_gemm_bf16(py::module_& m) {
    m.def("bf16_paths", [] {
        std::vector<std::string> paths = {"emulated"};
        if (has_avx512_bf16()) paths.push_back("avx512-bf16");
        if (has_amx()) paths.push_back("amx");
        return paths;
    }, "The bfloat16 GEMM paths this CPU can run (emulated runs on any).");

    m.def("gemm_bf16", [](const py::array& a, const py::array& b, const std::string& path,
                          const std::optional<py::array>& out) {
        const Strided A = strided(a, "a"), B = strided(b, "b");
        if (A.cols != B.rows)
            throw py::value_error("gemm_bf16: a is (" + std::to_string(A.rows) + ", " + std::to_string(A.cols) +
                                  ") and b is (" + std::to_string(B.rows) + ", " + std::to_string(B.cols) +
                                  "): their inner sizes differ");
        const auto run = on_path(path, "gemm_bf16", [](auto tiles) { return gemm_packed<decltype(tiles)>; });
        py::array c = output_or_new<float>(out, {A.rows, B.cols}, "gemm_bf16");
        float* pc = static_cast<float*>(c.mutable_data());
        const index_t KB = (A.cols + kTileK - 1) / kTileK;
        std::vector<bf16> pa, pb;
        {
            py::gil_scoped_release nogil;
            if (A.rows && B.cols && KB) {
                pa.resize(((A.rows + 31) / 32 * 2) * KB * kTileElems + 32);   // whole blocks of 32 rows
                pb.resize(((B.cols + 31) / 32 * 2) * KB * kTileElems + 32);
                bf16* a64 = aligned64(pa.data());
                bf16* b64 = aligned64(pb.data());
                pack_a(A, KB, a64);
                pack_b(B, KB, b64);
                run(a64, b64, A.rows, B.cols, KB, pc, B.cols);
            } else {
                std::fill(pc, pc + A.rows * B.cols, 0.0f);   // K = 0: an empty sum
            }
        }
        return c;
    }, py::arg("a"), py::arg("b"), py::arg("path"), py::arg("out") = py::none(),
       "a (M, K) @ b (K, N) on operands rounded to bfloat16, summed in float32, on the given path "
       "('amx', 'avx512-bf16' or 'emulated'); a and b float32 of any strides; out: a C-contiguous (M, N) float32.");

    m.def("gemm_bf16_peak", [](const std::string& path, index_t repeats) {
        const auto peak = on_path(path, "gemm_bf16_peak", [](auto tiles) { return peak_flops<decltype(tiles)>; });
        py::gil_scoped_release nogil;
        return peak(repeats);
    }, py::arg("path"), py::arg("repeats"),
       "FLOP/s of `repeats` rounds of the path's products on operands held in place (the tile paths: four tile "
       "products; avx512-bf16: a strip's 16 VDPBF16PS), on every thread: the path's arithmetic peak.");
}

}  // namespace fastgan
