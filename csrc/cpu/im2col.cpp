// im2col and its adjoint col2im: the data movement that turns a convolution into one GEMM.
//
// Layout (identical to reference.py, so the GEMMs around them are the reference's GEMMs):
//     cols has shape (C*kh*kw, N*Ho*Wo)
//         row    r = (c*kh + i)*kw + j            -- the order of weight.reshape(O, C*kh*kw)
//         column k = (n*Ho + p)*Wo + q            -- one output pixel
//         cols[r, k] = x[n, c, p*sh + i - ph, q*sw + j - pw]     (0 where that reads the zero padding)
// or, with per_image, shape (N, C*kh*kw, Ho*Wo): the same matrix for each image on its own, cols[n, r, p*Wo + q].
// One GEMM then serves the whole batch, the other a stack of per-image GEMMs whose results are already NCHW.
// Unlike the reference, neither kernel makes a padded copy of the whole of x: each pads one small image plane at a
// time, in cache.
#include "fastgan.h"

namespace fastgan {

// The geometry of a convolution seen from its image side (x for conv2d, y for conv_transpose2d).
struct ConvGeometry {
    index_t N, C, H, W;   // the image
    index_t kh, kw, sh, sw, ph, pw;
    index_t Ho, Wo;       // the grid of patches: Ho = (H + 2*ph - kh) / sh + 1

    index_t rows_stride = 0, image_stride = 0;  // cols[r, n, pixel] is at r*rows_stride + n*image_stride + pixel

    index_t patches() const { return Ho * Wo; }
    index_t rows() const { return C * kh * kw; }
    void set_layout(bool per_image) {
        rows_stride = per_image ? patches() : N * patches();
        image_stride = per_image ? rows() * patches() : patches();
    }
};

// Both kernels work on one image plane (n, c) at a time, through a small per-thread buffer (in L1 for the DCGAN)
// that holds the plane zero-padded, with its columns split by phase: padded column wp = wq*sw + phase is stored at
// buf[(phase*Hp + hp)*Wq + wq]. With the padding materialised there are no bounds to check, and with the phases
// apart, kernel offset (i, j) touches, for each output row p, the contiguous run
//     buf[((j % sw)*Hp + p*sh + i)*Wq + j / sw + q],   q = 0 .. Wo-1
// whatever the stride: im2col copies such runs out, col2im adds into them (a strided read-modify-write would
// vectorise poorly and stall on store forwarding). Planes are visited channel by channel, so the kh*kw rows of cols
// that a thread touches are written (or read) sequentially.
struct PlaneBuffer {
    index_t Hp, Wq, phases;  // padded height, columns per phase, phases (= the horizontal stride)

    explicit PlaneBuffer(const ConvGeometry& g) : phases(g.sw) {
        // every window must fit: Hp >= (Ho - 1)*sh + kh, padded width >= (Wo - 1)*sw + kw
        Hp = std::max(g.H + 2 * g.ph, (g.Ho - 1) * g.sh + g.kh);
        const index_t Wp = std::max(g.W + 2 * g.pw, (g.Wo - 1) * g.sw + g.kw);
        Wq = (Wp + g.sw - 1) / g.sw;
    }
    index_t size() const { return phases * Hp * Wq; }
    // where the run of kernel offset (i, j) for output row p starts
    index_t run(const ConvGeometry& g, index_t i, index_t j, index_t p) const {
        return ((j % g.sw) * Hp + p * g.sh + i) * Wq + j / g.sw;
    }
    // image row h, phase `phase`: buf[row(h, phase) + wq] holds x[h, wq*sw + phase - pw]
    index_t row(const ConvGeometry& g, index_t h, index_t phase) const { return (phase * Hp + h + g.ph) * Wq; }
    // the columns wq of a phase that hold image pixels: [first, last)
    void inside(const ConvGeometry& g, index_t phase, index_t& first, index_t& last) const {
        const index_t lo = g.pw - phase;                   // wq*sw >= pw - phase
        first = lo <= 0 ? 0 : (lo + g.sw - 1) / g.sw;
        const index_t hi = g.W + g.pw - phase;             // wq*sw < W + pw - phase
        last = hi <= 0 ? 0 : std::min(Wq, (hi + g.sw - 1) / g.sw);
        last = std::max(first, last);
    }
};

// f(slot, pixel, count) for every run of buffer slots that hold image pixels (one per image row and phase):
// buf[slot + k] holds plane[pixel + k*sw] for k < count.
template <typename F>
inline void for_each_image_run(const ConvGeometry& g, const PlaneBuffer& b, F&& f) {
    for (index_t phase = 0; phase < g.sw; ++phase) {
        index_t first, last;
        b.inside(g, phase, first, last);
        const index_t w0 = first * g.sw + phase - g.pw;  // the image column of slot `first`
        for (index_t h = 0; h < g.H; ++h) f(b.row(g, h, phase) + first, h * g.W + w0, last - first);
    }
}

// cols[(c*kh + i)*kw + j, (n*Ho + p)*Wo + q] = x[n, c, p*sh + i - ph, q*sw + j - pw] (0 in the padding).
template <typename T>
FASTGAN_MULTIVERSION void im2col_plane(const T* __restrict plane, T* __restrict buf, T* __restrict cols,
                                       const ConvGeometry& g, const PlaneBuffer& b, index_t n, index_t c) {
    std::fill(buf, buf + b.size(), T(0));
    for_each_image_run(g, b, [&](index_t slot, index_t pixel, index_t count) {
        for (index_t k = 0; k < count; ++k) buf[slot + k] = plane[pixel + k * g.sw];
    });
    for (index_t i = 0; i < g.kh; ++i)
        for (index_t j = 0; j < g.kw; ++j) {
            T* out = cols + ((c * g.kh + i) * g.kw + j) * g.rows_stride + n * g.image_stride;
            const T* in = buf + b.run(g, i, j, 0);
            for (index_t p = 0; p < g.Ho; ++p, in += g.sh * b.Wq, out += g.Wo)
                for (index_t q = 0; q < g.Wo; ++q) out[q] = in[q];  // (a loop, not std::copy: runs are short)
        }
}

// The adjoint: every entry of cols is added to the pixel it was copied from, entries from the padding dropped.
// Each pixel sums its contributions in the reference's (i, j) order; bias (per channel, optional) comes last.
template <typename T>
FASTGAN_MULTIVERSION void col2im_plane(const T* __restrict cols, T* __restrict buf, T* __restrict plane,
                                       const ConvGeometry& g, const PlaneBuffer& b, index_t n, index_t c,
                                       const T* bias) {
    std::fill(buf, buf + b.size(), T(0));
    for (index_t i = 0; i < g.kh; ++i)
        for (index_t j = 0; j < g.kw; ++j) {
            const T* in = cols + ((c * g.kh + i) * g.kw + j) * g.rows_stride + n * g.image_stride;
            T* acc = buf + b.run(g, i, j, 0);
            for (index_t p = 0; p < g.Ho; ++p, acc += g.sh * b.Wq, in += g.Wo)
                for (index_t q = 0; q < g.Wo; ++q) acc[q] += in[q];
        }
    const T shift = bias ? bias[c] : T(0);
    for_each_image_run(g, b, [&](index_t slot, index_t pixel, index_t count) {
        for (index_t k = 0; k < count; ++k) plane[pixel + k * g.sw] = bias ? buf[slot + k] + shift : buf[slot + k];
    });
}

// plane(c, n, buf) for every image plane, channel-major, each thread with its own plane buffer.
template <typename T, typename Plane>
void for_each_plane(const ConvGeometry& g, const PlaneBuffer& b, Plane&& plane) {
    const index_t work = g.C * g.kh * g.kw * g.N * g.patches();
#pragma omp parallel if (work > kParallelGrain)
    {
        std::vector<T> buf(static_cast<size_t>(b.size()));
#pragma omp for schedule(static)
        for (index_t t = 0; t < g.C * g.N; ++t) plane(t / g.N, t % g.N, buf.data());
    }
}

template <typename T>
void im2col(const T* x, T* cols, const ConvGeometry& g) {
    const PlaneBuffer b(g);
    for_each_plane<T>(g, b, [&](index_t c, index_t n, T* buf) {
        im2col_plane(x + (n * g.C + c) * g.H * g.W, buf, cols, g, b, n, c);
    });
}

template <typename T>
void col2im(const T* cols, T* x, const ConvGeometry& g, const T* bias) {
    const PlaneBuffer b(g);
    for_each_plane<T>(g, b, [&](index_t c, index_t n, T* buf) {
        col2im_plane(cols, buf, x + (n * g.C + c) * g.H * g.W, g, b, n, c, bias);
    });
}

using Pair = std::pair<index_t, index_t>;

static ConvGeometry geometry(const std::vector<index_t>& x_shape, Pair k, Pair s, Pair p, bool per_image,
                             const char* op) {
    if (x_shape.size() != 4) throw py::value_error(std::string(op) + ": expected an (N, C, H, W) image shape");
    ConvGeometry g{x_shape[0], x_shape[1], x_shape[2], x_shape[3], k.first, k.second, s.first, s.second,
                   p.first, p.second, 0, 0};
    if (g.sh < 1 || g.sw < 1 || g.ph < 0 || g.pw < 0 || g.kh < 1 || g.kw < 1 || g.H + 2 * g.ph < g.kh ||
        g.W + 2 * g.pw < g.kw)
        throw py::value_error(std::string(op) + ": kernel, stride and padding do not fit the image");
    g.Ho = (g.H + 2 * g.ph - g.kh) / g.sh + 1;
    g.Wo = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
    g.set_layout(per_image);
    return g;
}

static std::vector<index_t> cols_shape(const ConvGeometry& g, bool per_image) {
    if (per_image) return {g.N, g.rows(), g.patches()};
    return {g.rows(), g.N * g.patches()};
}

void register_im2col(py::module_& m) {
    m.def("im2col", [](const py::array& x, Pair k, Pair s, Pair p, const std::optional<py::array>& out,
                       bool per_image) {
        return dispatch_float(x, "im2col", [&](auto tag) -> py::array {
            using T = decltype(tag);
            const ConvGeometry g = geometry(shape_of(x), k, s, p, per_image, "im2col");
            const T* src = data_of<T>(x, "im2col", "x");
            py::array cols = output_or_new<T>(out, cols_shape(g, per_image), "im2col");
            T* dst = static_cast<T*>(cols.mutable_data());
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                im2col<T>(src, dst, g);
            }
            return cols;
        });
    }, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("out") = py::none(),
       py::arg("per_image") = false,
       "x (N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo), the layout of reference.im2col; per_image: (N, C*kh*kw, Ho*Wo).");

    m.def("col2im", [](const py::array& cols, const std::vector<index_t>& x_shape, Pair k, Pair s, Pair p,
                       const std::optional<py::array>& bias, bool per_image) {
        return dispatch_float(cols, "col2im", [&](auto tag) -> py::array {
            using T = decltype(tag);
            const ConvGeometry g = geometry(x_shape, k, s, p, per_image, "col2im");
            if (shape_of(cols) != cols_shape(g, per_image))
                throw py::value_error("col2im: cols does not match the image shape and kernel");
            const T* src = data_of<T>(cols, "col2im", "cols");
            const T* b = optional_data<T>(bias, g.C, "col2im", "bias");
            auto x = empty<T>(x_shape);
            T* dst = x.mutable_data();
            {  // the GIL is released for the kernel only: returning the array needs it back
                py::gil_scoped_release nogil;
                col2im<T>(src, dst, g, b);
            }
            return x;
        });
    }, py::arg("cols"), py::arg("x_shape"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
       py::arg("bias") = py::none(), py::arg("per_image") = false,
       "The adjoint of im2col: cols -> x (N, C, H, W), summing overlapping entries; adds bias per channel if given.");
}

}  // namespace fastgan
