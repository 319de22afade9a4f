// The weight gradient of a convolution in float32 on AVX-512, without im2col (the companion of direct_conv.cpp).
//
//     dW[o, c, i, j] = Σ_n Σ_(p, q)  g[n, o, p, q] · x[n, c, p·sh + i − ph, q·sw + j − pw]     (0 outside x)
//
// g is the gradient at the conv2d's output (N, O, Ho, Wo) and x its input (N, C, H, W). The transposed conv's weight
// gradient is the same sum with the roles swapped: g = its input x, and the windows are read from its output
// gradient dy (fastgan/kernels/cpu.py).
//
// A tile (register_tile.h) is one kernel tap (i, j), 64 input channels c and up to 7 output channels o: each step
// of the sum over (n, p, q) loads x at one pixel, 64 channels side by side, and broadcasts g for each of the 7.
// Channels side by side need x in NHWC order; the images are copied that way a few at a time, zero-padded, into a
// buffer that stays in cache while every tile sums over them. The tiles keep their partial sums between those
// chunks, and each sum runs over the images in order: the result does not depend on the thread count.
//
// With bfloat16 operands (bf16=True, AVX-512-BF16) the sum's pairs are two images: lane c of the NHWC copy holds
// x of images n and n + 1 side by side, and g is copied as the same pairs, both rounded to bfloat16 on the way
// (bf16x2, register_tile.h); a chunk is then twice as many images in as many bytes.
#include "register_tile.h"

namespace fastgan {

namespace {

constexpr index_t kTileChannels = 16 * kTileR;  // input channels per tile
constexpr index_t kChunk = 4;           // images per NHWC chunk (~0.5 MB for the DCGAN's layers)

struct WeightGradGeometry {
    index_t N, O, C, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw;
    index_t Cp, Hp, Wp;  // channels rounded up to whole vectors; padded height and width of the NHWC copy
};

#ifdef FASTGAN_AVX512

// acc[q][16r + lane] += Σ_(n < images, p, w) x[n, p, w, 16r + lane] · g[n, q, p, w]   (x: the tap's NHWC view),
// where n runs over the operands' image units: images (U = float), or pairs of images (U = bf16x2, register_tile.h)
template <class U>
struct WeightGradTiles {
    template <int R, int Q>
    struct Tile {
        __attribute__((target("avx512f"))) static void run(const U* x, index_t x_n, index_t x_p, index_t x_q,
                                                           const U* g, index_t g_n, index_t g_o, index_t images,
                                                           index_t Ho, index_t Wo, float* acc_io) {
            RegisterTile<R, Q> tile;
            tile.load(acc_io, kTileChannels);
            for (index_t n = 0; n < images; ++n)
                for (index_t p = 0; p < Ho; ++p) {
                    const U* xr = x + n * x_n + p * x_p;
                    const U* gr = g + n * g_n + p * Wo;
                    for (index_t w = 0; w < Wo; ++w, xr += x_q, ++gr) tile.step(xr, gr, g_o);
                }
            tile.store(acc_io, kTileChannels);
        }
    };
};

template <class U>
const auto kTiles = tile_table<WeightGradTiles<U>::template Tile>();

// Row h of image unit k of the chunk starting at image n0, into the zero-padded NHWC copy: in float32 as it is, or
// rounded to bfloat16 with images n0 + 2k and n0 + 2k + 1 side by side in each lane (past the last image: zeros).
void load_row(const float* x, index_t n0, index_t k, index_t h, const WeightGradGeometry& s, float* dst) {
    const float* src = x + (n0 + k) * s.C * s.H * s.W + h * s.W;
    for (index_t w = 0; w < s.W; ++w)  // one pixel's channels: contiguous writes, reads from a few KB
        for (index_t c = 0; c < s.C; ++c) dst[w * s.Cp + c] = src[c * s.H * s.W + w];
}

void load_row(const float* x, index_t n0, index_t k, index_t h, const WeightGradGeometry& s, bf16x2* dst) {
    const index_t image = s.C * s.H * s.W, n = n0 + 2 * k;
    const float* first = x + n * image + h * s.W;
    const float* second = n + 1 < s.N ? first + image : nullptr;
    for (index_t w = 0; w < s.W; ++w)
        for (index_t c = 0; c < s.C; ++c)
            dst[w * s.Cp + c] = bfloat16_pair(first[c * s.H * s.W + w], second ? second[c * s.H * s.W + w] : 0.0f);
}

// g's images of the chunk as the tiles read them: float32 g is read where it is; bfloat16 pairs of images are
// copied into `pairs` (k, o, p, q), rounded, as the image pairs above.
const float* chunk_of_g(const float* g, index_t n0, index_t, const WeightGradGeometry& s, std::vector<float>&) {
    return g + n0 * s.O * s.Ho * s.Wo;
}

const bf16x2* chunk_of_g(const float* g, index_t n0, index_t units, const WeightGradGeometry& s,
                         std::vector<bf16x2>& pairs) {
    const index_t plane = s.Ho * s.Wo, image = s.O * plane;
#pragma omp for schedule(static)
    for (index_t ko = 0; ko < units * s.O; ++ko) {   // (k, o)
        const index_t n = n0 + 2 * (ko / s.O);
        const float* first = g + n * image + (ko % s.O) * plane;
        for (index_t i = 0; i < plane; ++i)
            pairs[ko * plane + i] = bfloat16_pair(first[i], n + 1 < s.N ? first[image + i] : 0.0f);
    }
    return pairs.data();
}

// dw (O, C, kh, kw) from g (N, O, Ho, Wo) and x (N, C, H, W), the products on operands of type U.
template <class U>
void weight_grad(const float* g, const float* x, float* dw, const WeightGradGeometry& s) {
    const index_t T = s.kh * s.kw, cblocks = (s.Cp + kTileChannels - 1) / kTileChannels;
    const index_t ogroups = (s.O + kTileQ - 1) / kTileQ;
    const index_t tasks = T * cblocks * ogroups, image = s.Hp * s.Wp * s.Cp;
    const index_t chunk = kChunk * kPerUnit<U>;  // images per chunk
    std::vector<float> sums(static_cast<size_t>(tasks * kTileQ * kTileChannels), 0.0f);  // [task][q][lane]
    std::vector<U> nhwc(static_cast<size_t>(kChunk * image), U{});            // borders and extra channels: 0
    std::vector<U> g_units(std::is_same_v<U, float> ? 0 : static_cast<size_t>(kChunk * s.O * s.Ho * s.Wo));
#pragma omp parallel
    for (index_t n0 = 0; n0 < s.N; n0 += chunk) {
        const index_t units = unit_count<U>(std::min(chunk, s.N - n0));
#pragma omp for schedule(static)
        for (index_t row = 0; row < units * s.H; ++row) {  // x[n0 + k, :, h, :] -> nhwc[k, ph + h, pw + w, :]
            const index_t k = row / s.H, h = row % s.H;
            load_row(x, n0, k, h, s, nhwc.data() + k * image + ((s.ph + h) * s.Wp + s.pw) * s.Cp);
        }
        const U* gc = chunk_of_g(g, n0, units, s, g_units);   // (its loop ends in the barrier before the tiles)
#pragma omp for schedule(static)
        for (index_t task = 0; task < tasks; ++task) {
            const index_t t = task / (cblocks * ogroups), cb = task / ogroups % cblocks, og = task % ogroups;
            const index_t i = t / s.kw, j = t % s.kw, c0 = cb * kTileChannels, o0 = og * kTileQ;
            const index_t r = (std::min(kTileChannels, s.Cp - c0) + 15) / 16, q = std::min<index_t>(kTileQ, s.O - o0);
            kTiles<U>[r - 1][q - 1](nhwc.data() + (i * s.Wp + j) * s.Cp + c0, image, s.sh * s.Wp * s.Cp,
                                    s.sw * s.Cp, gc + o0 * s.Ho * s.Wo, s.O * s.Ho * s.Wo, s.Ho * s.Wo, units,
                                    s.Ho, s.Wo, sums.data() + task * kTileQ * kTileChannels);
        }
    }
    // sums[task][q][lane] -> dw[o0 + q, c0 + lane, i, j]
    for (index_t task = 0; task < tasks; ++task) {
        const index_t t = task / (cblocks * ogroups), cb = task / ogroups % cblocks, og = task % ogroups;
        for (index_t q = 0; q < kTileQ && og * kTileQ + q < s.O; ++q)
            for (index_t lane = 0; lane < kTileChannels && cb * kTileChannels + lane < s.C; ++lane)
                dw[((og * kTileQ + q) * s.C + cb * kTileChannels + lane) * T + t] =
                    sums[(task * kTileQ + q) * kTileChannels + lane];
    }
}

#endif  // FASTGAN_AVX512

}  // namespace

using Pair = std::pair<index_t, index_t>;

void register_direct_weight_grad(py::module_& m) {
    m.def("direct_conv2d_weight_grad", [](const py::array& g, const py::array& x, Pair k, Pair s, Pair p,
                                          bool bf16) {
        const char* op = "direct_conv2d_weight_grad";
        if (!direct_conv_supported()) throw std::runtime_error(std::string(op) + ": this CPU has no AVX-512");
        if (bf16 && !has_avx512_bf16()) throw std::runtime_error(std::string(op) + ": this CPU has no AVX-512-BF16");
        if (g.ndim() != 4 || x.ndim() != 4 || g.shape(0) != x.shape(0))
            throw py::value_error(std::string(op) + ": expected g (N, O, Ho, Wo) and x (N, C, H, W)");
        WeightGradGeometry geo{g.shape(0), g.shape(1), x.shape(1), x.shape(2), x.shape(3), g.shape(2), g.shape(3),
                               k.first, k.second, s.first, s.second, p.first, p.second, 0, 0, 0};
        if (geo.sh < 1 || geo.sw < 1 || geo.ph < 0 || geo.pw < 0 || geo.kh < 1 || geo.kw < 1 ||
            geo.Ho < 1 || geo.Wo < 1 || (geo.Ho - 1) * geo.sh + geo.kh > geo.H + 2 * geo.ph ||
            (geo.Wo - 1) * geo.sw + geo.kw > geo.W + 2 * geo.pw)
            throw py::value_error(std::string(op) + ": g's grid does not match x, kernel, stride and padding");
        geo.Cp = (geo.C + 15) / 16 * 16;
        geo.Hp = geo.H + 2 * geo.ph;
        geo.Wp = geo.W + 2 * geo.pw;
        const float* gd = data_of<float>(g, op, "g");
        const float* xd = data_of<float>(x, op, "x");
        auto dw = empty<float>({geo.O, geo.C, geo.kh, geo.kw});
        float* out = dw.mutable_data();
#ifdef FASTGAN_AVX512
        {
            py::gil_scoped_release nogil;
            if (bf16) weight_grad<bf16x2>(gd, xd, out, geo);
            else weight_grad<float>(gd, xd, out, geo);
        }
#endif
        return dw;
    }, py::arg("g"), py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
       py::arg("bf16") = false,
       "dW (O, C, kh, kw) = Σ g[n, o, p, q]·x[n, c, p*sh + i - ph, q*sw + j - pw] for g (N, O, Ho, Wo), x (N, C, H, "
       "W), float32: the weight gradient of conv2d (and, with g = x and x = dy, of conv_transpose2d); bf16=True: g "
       "and x rounded to bfloat16, float32 sums (VDPBF16PS: AVX-512-BF16).");
}

}  // namespace fastgan
