// Direct convolution in float32 on AVX-512: conv2d and conv_transpose2d without im2col or col2im.
//
// A GEMM-based convolution copies every input window into a column matrix (im2col) or, transposed, writes a column
// matrix that col2im folds back. For the DCGAN's middle layers these matrices are 25-50 MB at batch 128: written to
// memory and read back, and BLAS runs at ~60 % of the core's peak on their shapes. Here each output tile is summed
// in registers straight from the image:
//
//     y[n, o, h, w] = Σ_c Σ_(taps (i, j) that reach (h, w))  W[o, c, i, j] · x[n, c, row(h, i), col(w, j)]
//
//     conv2d:            row = h·sh + i − ph,    col = w·sw + j − pw     (taps outside the image read zeros)
//     conv_transpose2d:  row = (h + ph − i)/sh,  col = (w + pw − j)/sw   (only the taps where both divide exactly)
//
// The same two loops are the input gradients: conv2d's dx is a conv_transpose2d of dy, and conv_transpose2d's dx a
// conv2d of dy, both with the same weight (fastgan/kernels/cpu.py).
//
// A tile (register_tile.h) is 64 output channels times up to 7 pixels of one output row; each step of its sum
// loads the weights of one (c, tap) for the 64 channels and broadcasts the tap's input pixel for each of the 7. The
// transposed conv's tile takes every sw-th pixel of a row, so that all its pixels share one set of taps and read
// consecutive input columns. Each output is summed by one thread in a fixed order (c, then taps): the result does
// not depend on the thread count. It does differ from the GEMM path in the last bits (fused multiply-adds, another
// summation order).
//
// Under fastgan.autocast("bfloat16") on a CPU with AVX-512-BF16 the same code sums bfloat16 products (bf16=True):
// the image planes and the packed weight then hold channels 2k and 2k + 1 side by side, rounded to bfloat16 as
// they are copied (bf16x2, register_tile.h), and each step of the tile adds both channels' products.
#include "register_tile.h"

namespace fastgan {

namespace {

constexpr index_t kChannels = 16 * kTileR;  // output channels per weight block

// The weight is packed in 64-channel blocks, and within a block by groups of taps: those that the same output
// pixels use together (all of them for conv2d; for conv_transpose2d the taps of one phase, i ≡ a mod sh and
// j ≡ b mod sw). A tile then streams through one contiguous run of weights:
//     packed[block][group][c][tap in group][64 lanes]   (lanes past the last output channel are 0)
struct TapGroups {
    std::vector<std::vector<index_t>> members;  // the taps (i·kw + j) of each group
    std::vector<index_t> group, slot;           // for each tap: its group and its place in it
    std::vector<index_t> start;                 // where each group starts, in taps before it (× C × 64 floats)

    TapGroups() = default;
    TapGroups(index_t kh, index_t kw, index_t gh, index_t gw) : group(kh * kw), slot(kh * kw) {
        members.resize(gh * gw);
        for (index_t i = 0; i < kh; ++i)
            for (index_t j = 0; j < kw; ++j) {
                const index_t g = (i % gh) * gw + j % gw, t = i * kw + j;
                group[t] = g;
                slot[t] = static_cast<index_t>(members[g].size());
                members[g].push_back(t);
            }
        index_t before = 0;
        for (const auto& m : members) start.push_back(before), before += static_cast<index_t>(m.size());
    }
};

// One tap of an output row: its place in its group, and where, in the padded image plane, the input pixel of the
// row's first output pixel is; the k-th pixel of the row reads `offset + k·xstep`.
struct Tap {
    index_t weight, offset;
};

// The pixels w = first + k·step (k < count) of output row h, and the taps they share (all from one group).
struct RowPlan {
    index_t h, first, step, count, xstep;
    index_t group = 0;
    std::vector<Tap> taps;
};

// The input planes are copied with zero columns on both sides, so that no tap needs a bounds check; rows outside
// the image are never read (their taps are left out of the plan).
struct Plans {
    std::vector<RowPlan> rows;
    TapGroups groups;
    index_t left = 0, width = 0;  // zero columns on the left; width of a padded row

    // where a row's weights start within a block of the packed weight, and how many floats one channel c takes
    index_t weights_at(const RowPlan& row, index_t C) const { return groups.start[row.group] * C * kChannels; }
    index_t weights_per_c(const RowPlan& row) const {
        return static_cast<index_t>(groups.members[row.group].size()) * kChannels;
    }
};

// A tap before padding: kernel element, input row, and the input column of the row's first pixel (may be < 0).
struct RawTap {
    index_t weight, row, col0;
};

static Plans finish_plans(std::vector<std::pair<RowPlan, std::vector<RawTap>>>&& raw, index_t W,
                          TapGroups groups) {
    index_t lo = 0, hi = W - 1;
    for (const auto& [plan, taps] : raw)
        for (const RawTap& t : taps) {
            lo = std::min(lo, t.col0);
            hi = std::max(hi, t.col0 + (plan.count - 1) * plan.xstep);
        }
    Plans p;
    p.groups = std::move(groups);
    p.left = -lo;
    p.width = hi - lo + 1;
    for (auto& [plan, taps] : raw) {
        if (!taps.empty()) plan.group = p.groups.group[taps[0].weight];
        for (const RawTap& t : taps) plan.taps.push_back({p.groups.slot[t.weight], t.row * p.width + t.col0 + p.left});
        p.rows.push_back(std::move(plan));
    }
    return p;
}

// conv2d: every output pixel of a row uses every tap whose input row is inside the image.
static Plans conv2d_plans(index_t H, index_t W, index_t kh, index_t kw, index_t sh, index_t sw, index_t ph,
                          index_t pw, index_t Ho, index_t Wo) {
    std::vector<std::pair<RowPlan, std::vector<RawTap>>> raw;
    for (index_t h = 0; h < Ho; ++h) {
        std::vector<RawTap> taps;
        for (index_t i = 0; i < kh; ++i) {
            const index_t row = h * sh + i - ph;
            if (row < 0 || row >= H) continue;
            for (index_t j = 0; j < kw; ++j) taps.push_back({i * kw + j, row, j - pw});
        }
        raw.push_back({RowPlan{h, 0, 1, Wo, sw}, std::move(taps)});
    }
    return finish_plans(std::move(raw), W, TapGroups(kh, kw, 1, 1));
}

// conv_transpose2d: a row splits into sw phases (pixels w ≡ phase mod sw), each with its own taps.
static Plans conv_transpose2d_plans(index_t H, index_t W, index_t kh, index_t kw, index_t sh, index_t sw,
                                    index_t ph, index_t pw, index_t Ho, index_t Wo) {
    std::vector<std::pair<RowPlan, std::vector<RawTap>>> raw;
    for (index_t h = 0; h < Ho; ++h)
        for (index_t first = 0; first < std::min(sw, Wo); ++first) {
            std::vector<RawTap> taps;
            for (index_t i = 0; i < kh; ++i) {
                const index_t r = h + ph - i;
                if (r < 0 || r % sh != 0 || r / sh >= H) continue;
                for (index_t j = 0; j < kw; ++j) {
                    const index_t c = first + pw - j;
                    if (((c % sw) + sw) % sw != 0) continue;
                    taps.push_back({i * kw + j, r / sh, c / sw});  // c is a multiple of sw: exact, even when < 0
                }
            }
            raw.push_back({RowPlan{h, first, sw, (Wo - first + sw - 1) / sw, 1}, std::move(taps)});
        }
    return finish_plans(std::move(raw), W, TapGroups(kh, kw, sh, sw));
}

#ifdef FASTGAN_AVX512

// out[q·64 + 16r + lane] = Σ_c Σ_taps w[c, tap][16r + lane] · x[c][tap.offset + q·xstep], where c runs over the
// operands' channel units: channels (U = float), or pairs of channels (U = bf16x2, register_tile.h)
template <class U>
struct ConvTiles {
    template <int R, int Q>
    struct Tile {
        __attribute__((target("avx512f"))) static void run(const U* w, index_t w_per_c, const U* x, index_t plane,
                                                           index_t C, const Tap* taps, index_t ntaps, index_t xstep,
                                                           float* out) {
            RegisterTile<R, Q> tile;
            tile.zero();
            for (index_t c = 0; c < C; ++c, w += w_per_c, x += plane)
                for (index_t k = 0; k < ntaps; ++k)
                    tile.step(w + taps[k].weight * kChannels, x + taps[k].offset, xstep);
            tile.store(out, kChannels);
        }
    };
};

template <class U>
const auto kTiles = tile_table<ConvTiles<U>::template Tile>();

// Image x (C, H, W) into the padded planes: in float32 as it is, or rounded to bfloat16 with channels 2k and 2k + 1
// side by side in plane k (a last odd channel beside a zero).
void load_planes(const float* x, index_t C, index_t H, index_t W, const Plans& plans, float* image) {
    const index_t plane = H * plans.width;
    for (index_t c = 0; c < C; ++c)
        for (index_t r = 0; r < H; ++r)
            std::copy_n(x + (c * H + r) * W, W, image + c * plane + r * plans.width + plans.left);
}

void load_planes(const float* x, index_t C, index_t H, index_t W, const Plans& plans, bf16x2* image) {
    const index_t plane = H * plans.width;
    for (index_t k = 0; 2 * k < C; ++k)
        for (index_t r = 0; r < H; ++r) {
            const float* first = x + (2 * k * H + r) * W;
            bf16x2* dst = image + k * plane + r * plans.width + plans.left;
            if (2 * k + 1 < C)
                for (index_t w = 0; w < W; ++w) dst[w] = bfloat16_pair(first[w], first[H * W + w]);
            else
                for (index_t w = 0; w < W; ++w) dst[w] = bfloat16_pair(first[w], 0.0f);
        }
}

// y (N, O, Ho, Wo) from x (N, C, H, W) and the weight packed for these plans (pack_weight), in C units of U.
template <class U>
void direct_conv(const float* x, index_t N, index_t C, index_t H, index_t W, const U* packed, index_t O,
                 index_t T, const Plans& plans, const float* bias, float* y, index_t Ho, index_t Wo) {
    const index_t units = unit_count<U>(C), blocks = (O + kChannels - 1) / kChannels, plane = H * plans.width;
#pragma omp parallel
    {
        std::vector<U> image(static_cast<size_t>(units * plane), U{});  // the padding columns stay 0
        alignas(64) float out[kTileQ * kChannels];
        index_t loaded = -1;
#pragma omp for schedule(static)
        for (index_t task = 0; task < N * blocks; ++task) {
            const index_t n = task / blocks, b = task % blocks;
            if (n != loaded) {
                load_planes(x + n * C * H * W, C, H, W, plans, image.data());
                loaded = n;
            }
            const index_t o0 = b * kChannels, width = std::min(kChannels, O - o0);
            const auto& by_q = kTiles<U>[(width + 15) / 16 - 1];
            const U* w = packed + b * units * T * kChannels;
            for (const RowPlan& row : plans.rows)
                for (index_t k0 = 0; k0 < row.count; k0 += kTileQ) {
                    const index_t q = std::min<index_t>(kTileQ, row.count - k0);
                    by_q[q - 1](w + plans.weights_at(row, units), plans.weights_per_c(row),
                                image.data() + k0 * row.xstep, plane, units, row.taps.data(),
                                static_cast<index_t>(row.taps.size()), row.xstep, out);
                    float* dst = y + (n * O + o0) * Ho * Wo + row.h * Wo + row.first + k0 * row.step;
                    for (index_t o = 0; o < width; ++o, dst += Ho * Wo) {
                        const float shift = bias ? bias[o0 + o] : 0.0f;
                        for (index_t k = 0; k < q; ++k) dst[k * row.step] = out[k * kChannels + o] + shift;
                    }
                }
        }
    }
}

#endif  // FASTGAN_AVX512

}  // namespace

bool direct_conv_supported() {
#ifdef FASTGAN_AVX512
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

// The weight in the plans' packed layout, in units of U; element (o, c, t) of the weight is at o·o_stride +
// c·c_stride + t. (For bf16x2, channels 2k and 2k + 1 of a lane are its pair.)
template <class U>
static std::vector<U> pack_weight(const float* w, index_t O, index_t C, index_t T, index_t o_stride,
                                  index_t c_stride, const Plans& plans) {
    constexpr index_t per = kPerUnit<U>;
    const index_t blocks = (O + kChannels - 1) / kChannels, units = unit_count<U>(C);
    const TapGroups& g = plans.groups;
    std::vector<float> packed(static_cast<size_t>(blocks * units * T * kChannels * per), 0.0f);
    for (index_t o = 0; o < O; ++o)
        for (index_t c = 0; c < C; ++c)
            for (index_t t = 0; t < T; ++t) {
                const index_t k = g.group[t], size = static_cast<index_t>(g.members[k].size());
                const index_t at = (o / kChannels) * units * T + g.start[k] * units + c / per * size + g.slot[t];
                packed[(at * kChannels + o % kChannels) * per + c % per] = w[o * o_stride + c * c_stride + t];
            }
    return as_units<U>(std::move(packed));
}

using Pair = std::pair<index_t, index_t>;

void register_direct_conv(py::module_& m) {
    m.def("direct_conv_supported", &direct_conv_supported,
          "Whether this CPU runs the direct float32 convolutions (AVX-512).");

    // transposed: x (N, C, H, W), weight (C, O, kh, kw) and the output size (Ho, Wo) are given;
    // otherwise weight (O, C, kh, kw) and the output size follows from the geometry.
    auto run = [](const py::array& x, const py::array& weight, const std::optional<py::array>& bias, Pair s,
                  Pair p, bool transposed, Pair out_hw, bool bf16) -> py::array {
        const char* op = transposed ? "direct_conv_transpose2d" : "direct_conv2d";
        if (!direct_conv_supported()) throw std::runtime_error(std::string(op) + ": this CPU has no AVX-512");
        if (bf16 && !has_avx512_bf16()) throw std::runtime_error(std::string(op) + ": this CPU has no AVX-512-BF16");
        if (x.ndim() != 4 || weight.ndim() != 4)
            throw py::value_error(std::string(op) + ": expected x (N, C, H, W) and a 4-d weight");
        const index_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
        const index_t kh = weight.shape(2), kw = weight.shape(3), T = kh * kw;
        const index_t O = transposed ? weight.shape(1) : weight.shape(0);
        if ((transposed ? weight.shape(0) : weight.shape(1)) != C)
            throw py::value_error(std::string(op) + ": the weight's input channels do not match x");
        if (s.first < 1 || s.second < 1 || p.first < 0 || p.second < 0)
            throw py::value_error(std::string(op) + ": stride must be positive and padding non-negative");
        index_t Ho = out_hw.first, Wo = out_hw.second;
        if (!transposed) {
            Ho = (H + 2 * p.first - kh) / s.first + 1;
            Wo = (W + 2 * p.second - kw) / s.second + 1;
            if (H + 2 * p.first < kh || W + 2 * p.second < kw)
                throw py::value_error(std::string(op) + ": the kernel does not fit the padded image");
        }
        if (Ho < 1 || Wo < 1) throw py::value_error(std::string(op) + ": empty output");
        const float* xd = data_of<float>(x, op, "x");
        const float* wd = data_of<float>(weight, op, "weight");
        const float* bd = optional_data<float>(bias, O, op, "bias");
        auto y = empty<float>({N, O, Ho, Wo});
        float* yd = y.mutable_data();
#ifdef FASTGAN_AVX512
        {
            py::gil_scoped_release nogil;
            const Plans plans = transposed
                ? conv_transpose2d_plans(H, W, kh, kw, s.first, s.second, p.first, p.second, Ho, Wo)
                : conv2d_plans(H, W, kh, kw, s.first, s.second, p.first, p.second, Ho, Wo);
            const index_t o_stride = transposed ? T : C * T, c_stride = transposed ? O * T : T;
            if (bf16) {
                const auto packed = pack_weight<bf16x2>(wd, O, C, T, o_stride, c_stride, plans);
                direct_conv(xd, N, C, H, W, packed.data(), O, T, plans, bd, yd, Ho, Wo);
            } else {
                const auto packed = pack_weight<float>(wd, O, C, T, o_stride, c_stride, plans);
                direct_conv(xd, N, C, H, W, packed.data(), O, T, plans, bd, yd, Ho, Wo);
            }
        }
#endif
        return y;
    };
    m.def("direct_conv2d", [run](const py::array& x, const py::array& weight, const std::optional<py::array>& bias,
                                 Pair s, Pair p, bool bf16) { return run(x, weight, bias, s, p, false, {0, 0}, bf16); },
          py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
          py::arg("bf16") = false,
          "conv2d of x (N, C, H, W) with weight (O, C, kh, kw), float32, no im2col; bf16=True: x and the weight "
          "rounded to bfloat16, float32 sums (VDPBF16PS: AVX-512-BF16).");
    m.def("direct_conv_transpose2d", [run](const py::array& x, const py::array& weight,
                                           const std::optional<py::array>& bias, Pair s, Pair p, Pair out_hw,
                                           bool bf16) {
        return run(x, weight, bias, s, p, true, out_hw, bf16);
    }, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("out_hw"),
       py::arg("bf16") = false,
       "conv_transpose2d of x (N, C, H, W) with weight (C, O, kh, kw) into an (N, O, *out_hw) output, float32; "
       "bf16=True: x and the weight rounded to bfloat16, float32 sums (VDPBF16PS: AVX-512-BF16).");
}

}  // namespace fastgan
