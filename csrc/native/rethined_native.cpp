// rethined_engine._native: the CPU halves of RETHINED around the LR network, one pass each, OpenMP.
//
//   prepare_lr(image (H, W, 3) uint8|float32, mask (H, W) uint8, scale, grid_h, grid_w, patch)
//       -> (lr_image (1, 3, h, w) float32, lr_mask (1, 1, h, w) float32)
//   hr_upscale(image, mask, lr_result (1, 3, h, w) float32, weight (N, K) float32, fine_weight (N, K) float32,
//              index (N, K) int32, scale, patch, grid_h, grid_w, feather=0, reflect=False) -> (H, W, 3) of image's dtype
//       (feather > 0 HR px, K = 1: neighbouring copies' texture cross-fades, `model.upscale.feathered_texture`;
//       reflect: past a source's edge where a hole lies, its own texture mirrored, `hr_fade_reflect`)
//   blend_seams(image, mask, filled, taps (2r + 1) float32, gain) -> (H, W, 3) of image's dtype
//   and the LR network's copy steps, lr_copy.cpp: blur_base, copy_tokens, harmonic_fill, border_match; source_sweep.cpp:
//   propagate_sources; cnn_ops.cpp: the coarse CNN's decoder joins, upsample_cat
//
// Same math as rethined_engine/deploy/host.py (numpy) and csrc/cuda/hr_upscale.cu; the torch model is
// the specification (`Rethined.forward`). Buffers are read in place (no copies of the inputs).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bilinear.h"
#include "cnn_ops.h"
#include "copy_rules.h"
#include "lr_copy.h"
#include "source_sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using rethined::feather_weight;
using rethined::kCopyFloor;

namespace {

template <typename T> inline float unit(T v);
template <> inline float unit<uint8_t>(uint8_t v) { return static_cast<float>(v) / 255.0f; }
template <> inline float unit<float>(float v) { return v; }

// A sum of raw pixel values (weights summing to 1) in [0, 1] units.
template <typename T> inline float unit_sum(float v);
template <> inline float unit_sum<uint8_t>(float v) { return v / 255.0f; }
template <> inline float unit_sum<float>(float v) { return v; }

template <typename T> inline T store(float v);
template <> inline uint8_t store<uint8_t>(float v) {
    return static_cast<uint8_t>(std::nearbyint(std::min(std::max(v, 0.0f), 1.0f) * 255.0f));  // ties to even
}
template <> inline float store<float>(float v) { return std::min(std::max(v, 0.0f), 1.0f); }

// Index into [0, n) of a bottom/right pad to `padded` elements: torch "reflect" (edge not repeated)
// or "replicate".
inline int pad_index(int i, int n, bool reflect) {
    if (i < n) return i;
    return reflect ? 2 * (n - 1) - i : n - 1;
}

// Index into [0, n) for a reflect pad of `radius` on both sides (torch F.pad mode="reflect").
inline int reflect_index(int i, int n) {
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
}

std::vector<float> gaussian_taps(int scale, int* radius) {
    const double sigma = (scale - 1) / 2.0;
    *radius = static_cast<int>(std::ceil(3 * sigma));
    std::vector<double> taps(scale + 2 * *radius);
    double sum = 0.0;
    for (size_t t = 0; t < taps.size(); ++t) {
        const double offset = static_cast<double>(t) - *radius - (scale - 1) / 2.0;
        taps[t] = std::exp(-0.5 * (offset / sigma) * (offset / sigma));
        sum += taps[t];
    }
    std::vector<float> out(taps.size());
    for (size_t t = 0; t < taps.size(); ++t) out[t] = static_cast<float>(taps[t] / sum);
    return out;
}

void check_image(const py::buffer_info& img, const py::buffer_info& mask) {
    if (img.ndim != 3 || img.shape[2] != 3) throw std::invalid_argument("image: expected (H, W, 3)");
    if (mask.ndim != 2 || mask.shape[0] != img.shape[0] || mask.shape[1] != img.shape[1])
        throw std::invalid_argument("mask: expected (H, W) matching the image");
}

// LR = padded HR (holes zeroed), scale 1.
template <typename T>
void copy_lr(const T* img, const uint8_t* msk, int H, int W, int h, int w, bool reflect, float* out, float* out_mask) {
    const size_t plane = static_cast<size_t>(h) * w;
#pragma omp parallel for schedule(static)
    for (int y = 0; y < h; ++y) {
        const int sy = pad_index(y, H, reflect);
        for (int x = 0; x < w; ++x) {
            const size_t p = static_cast<size_t>(sy) * W + pad_index(x, W, reflect);
            const bool hole = msk[p] != 0;
            const size_t o = static_cast<size_t>(y) * w + x;
            for (int c = 0; c < 3; ++c) out[c * plane + o] = hole ? 0.0f : unit<T>(img[3 * p + c]);
            out_mask[o] = hole ? 1.0f : 0.0f;
        }
    }
}

// One source row of `downsample_lr`, blurred along x and subsampled, as 4 planes of w floats: the taps' sums
// of r k, g k, b k and k at the LR columns, k = 0 on holes (holes contribute neither value nor weight).
// Polyphase, so that every multiply-add runs along contiguous LR columns (vectorised): tap t = q scale + r
// reads blur-padded column (ox + q) scale + r, i.e. entry ox + q of phase r's subsampled row. phase (4,
// w + taps_n / scale + 1) is scratch; col_src maps a blur-padded column to an image column.
template <typename T>
void blur_row(const T* irow, const uint8_t* mrow, int w, int scale, const std::vector<float>& taps,
              const std::vector<int>& col_src, float* phase, float* out) {
    const int taps_n = static_cast<int>(taps.size());
    const int row_len = static_cast<int>(col_src.size());
    const int phase_len = w + taps_n / scale + 1;
    std::fill(out, out + 4 * static_cast<size_t>(w), 0.0f);
    for (int r = 0; r < scale && r < taps_n; ++r) {
        for (int j = 0; j < phase_len && j * scale + r < row_len; ++j) {
            const int sx = col_src[j * scale + r];
            const float k = mrow[sx] ? 0.0f : 1.0f;
            for (int c = 0; c < 3; ++c) phase[c * phase_len + j] = k * unit<T>(irow[3 * sx + c]);
            phase[3 * phase_len + j] = k;
        }
        for (int t = r; t < taps_n; t += scale) {
            const int q = t / scale;
            const float tap = taps[t];
            for (int c = 0; c < 4; ++c) {
                float* o = out + static_cast<size_t>(c) * w;
                const float* p = phase + static_cast<size_t>(c) * phase_len + q;
                for (int ox = 0; ox < w; ++ox) o[ox] += tap * p[ox];
            }
        }
    }
}

// Normalised Gaussian downsample by `scale` of the padded HR image (known pixels only) + any-hole pool.
// Separable, x first: each source row is blurred along x and subsampled once (`blur_row`) into a ring of the
// taps_n rows an output row needs (blur-padded rows in a window of taps_n consecutive ones fall in distinct
// slots), then the output row sums them along y.
template <typename T>
void downsample_lr(const T* img, const uint8_t* msk, int H, int W, int Hp, int Wp, int h, int w, int scale,
                   bool reflect, float* out, float* out_mask) {
    int radius = 0;
    const std::vector<float> taps = gaussian_taps(scale, &radius);
    const int taps_n = static_cast<int>(taps.size());
    const int row_len = Wp + 2 * radius;
    const size_t plane = static_cast<size_t>(h) * w;
    std::vector<int> col_src(row_len);   // blur-padded column -> image column
    for (int x = 0; x < row_len; ++x) col_src[x] = pad_index(reflect_index(x - radius, Wp), W, reflect);
#pragma omp parallel
    {
        std::vector<float> phase(4 * static_cast<size_t>(w + taps_n / scale + 1));
        std::vector<float> ring(static_cast<size_t>(taps_n) * w * 4);   // blurred rows (4, w), slot = row mod taps_n
        std::vector<int> ring_row(taps_n, -1);                          // the blur-padded row in each slot
        std::vector<const float*> rows(taps_n);                         // an output row's taps_n rows
        std::vector<float> acc(static_cast<size_t>(w) * 4);
        std::vector<uint8_t> cell_rows(static_cast<size_t>(w) * scale);  // the output row's mask rows, ORed
#pragma omp for schedule(static)
        for (int oy = 0; oy < h; ++oy) {
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int t = 0; t < taps_n; ++t) {
                const int py = oy * scale + t;                   // blur-padded row
                const int slot = py % taps_n;
                float* row = &ring[static_cast<size_t>(slot) * w * 4];
                if (ring_row[slot] != py) {
                    const int sy = pad_index(reflect_index(py - radius, Hp), H, reflect);
                    blur_row(img + static_cast<size_t>(sy) * W * 3, msk + static_cast<size_t>(sy) * W, w, scale, taps,
                             col_src, phase.data(), row);
                    ring_row[slot] = py;
                }
                const float tap = taps[t];
                for (size_t i = 0; i < acc.size(); ++i) acc[i] += tap * row[i];
            }
            // any HR pixel of an s x s cell is a hole: the cells' s mask rows ORed, padded columns included
            std::fill(cell_rows.begin(), cell_rows.end(), uint8_t{0});
            for (int dy = 0; dy < scale; ++dy) {
                const uint8_t* mrow = msk + static_cast<size_t>(pad_index(oy * scale + dy, H, reflect)) * W;
                for (int x = 0; x < W; ++x) cell_rows[x] |= mrow[x];
                for (int x = W; x < Wp; ++x) cell_rows[x] |= mrow[pad_index(x, W, reflect)];
            }
            for (int ox = 0; ox < w; ++ox) {
                const size_t o = static_cast<size_t>(oy) * w + ox;
                const float weight = acc[3 * static_cast<size_t>(w) + ox];
                for (int c = 0; c < 3; ++c)
                    out[c * plane + o] = weight > 0.0f ? acc[static_cast<size_t>(c) * w + ox] / weight : 0.0f;
                uint8_t hole = 0;
                for (int dx = 0; dx < scale; ++dx) hole |= cell_rows[static_cast<size_t>(ox) * scale + dx];
                out_mask[o] = hole ? 1.0f : 0.0f;
            }
        }
    }
}

template <typename T>
py::tuple prepare_lr(py::array_t<T, py::array::c_style> image, py::array_t<uint8_t, py::array::c_style> mask,
                     int scale, int grid_h, int grid_w, int patch) {
    const auto ib = image.request(), mb = mask.request();
    check_image(ib, mb);
    const int H = static_cast<int>(ib.shape[0]), W = static_cast<int>(ib.shape[1]);
    const int Hp = grid_h * patch * scale, Wp = grid_w * patch * scale;   // padded HR size
    const int h = grid_h * patch, w = grid_w * patch;
    if (scale < 1 || Hp < H || Wp < W) throw std::invalid_argument("grid: smaller than the image");
    const bool reflect = (Hp - H < H) && (Wp - W < W);
    py::array_t<float> lr_image({1, 3, h, w}), lr_mask({1, 1, h, w});
    const T* img = static_cast<const T*>(ib.ptr);
    const uint8_t* msk = static_cast<const uint8_t*>(mb.ptr);
    float* out = lr_image.mutable_data();
    float* out_mask = lr_mask.mutable_data();
    {
        py::gil_scoped_release release;
        if (scale == 1) copy_lr(img, msk, H, W, h, w, reflect, out, out_mask);
        else downsample_lr(img, msk, H, W, Hp, Wp, h, w, scale, reflect, out, out_mask);
    }
    return py::make_tuple(lr_image, lr_mask);
}

// Bilinear samples of the (3, h, w) LR result at HR pixels, half-pixel centres, edge clamped. The taps along
// each axis (the two LR samples and the second one's weight) are computed once per HR row and column.
class Upsampler {
public:
    Upsampler(const float* lr, int h, int w, int rows, int cols, float inv_scale)
        : lr_(lr), w_(w), plane_(static_cast<size_t>(h) * w), ys_(rethined::axis_taps(rows, h, inv_scale)),
          xs_(rethined::axis_taps(cols, w, inv_scale)) {}

    // rgb = the LR result at HR pixel (y, x), 0 <= y < rows, 0 <= x < cols.
    void at(int y, int x, float rgb[3]) const {
        const rethined::AxisTap& ty = ys_[y];
        const rethined::AxisTap& tx = xs_[x];
        for (int c = 0; c < 3; ++c) {
            const float* p = lr_ + c * plane_;
            const float top = p[ty.i0 * w_ + tx.i0] * (1.0f - tx.l) + p[ty.i0 * w_ + tx.i1] * tx.l;
            const float bottom = p[ty.i1 * w_ + tx.i0] * (1.0f - tx.l) + p[ty.i1 * w_ + tx.i1] * tx.l;
            rgb[c] = top * (1.0f - ty.l) + bottom * ty.l;
        }
    }

private:
    const float* lr_;
    int w_;
    size_t plane_;
    std::vector<rethined::AxisTap> ys_, xs_;
};

// 3x3 binomial blur (taps 1/4, 1/2, 1/4) of the image at offset (oy, ox) of the span x span token whose top-left
// pixel is (y0, x0), the token's edge pixels replicated: y - blur is the finest band (`model.upscale.fine_band`).
// Rows first, then columns, in raw pixel units, scaled to [0, 1] once at the end (as the Triton kernel).
template <typename T>
inline void token_blur(const T* img, int W, int span, int y0, int x0, int oy, int ox, float rgb[3]) {
    static const float taps[3] = {0.25f, 0.5f, 0.25f};
    const size_t c0 = x0 + std::max(ox - 1, 0), c1 = x0 + ox, c2 = x0 + std::min(ox + 1, span - 1);
    rgb[0] = rgb[1] = rgb[2] = 0.0f;
    for (int dy = 0; dy < 3; ++dy) {
        const size_t row = static_cast<size_t>(y0 + std::min(std::max(oy + dy - 1, 0), span - 1)) * W;
        const T* a = img + 3 * (row + c0);
        const T* b = img + 3 * (row + c1);
        const T* d = img + 3 * (row + c2);
        for (int c = 0; c < 3; ++c) {
            const float r = static_cast<float>(a[c]) * 0.25f + static_cast<float>(b[c]) * 0.5f
                            + static_cast<float>(d[c]) * 0.25f;
            rgb[c] += r * taps[dy];
        }
    }
    for (int c = 0; c < 3; ++c) rgb[c] = unit_sum<T>(rgb[c]);
}

// Tokens wholly inside the H x W image without a hole pixel: the keys whose texture may be copied.
std::vector<uint8_t> known_tokens(const uint8_t* msk, int H, int W, int span, int grid_h, int grid_w) {
    std::vector<uint8_t> known(static_cast<size_t>(grid_h) * grid_w, 0);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < grid_h * grid_w; ++t) {
        const int y0 = (t / grid_w) * span, x0 = (t % grid_w) * span;
        if (y0 + span > H || x0 + span > W) continue;
        bool hole = false;
        for (int y = y0; y < y0 + span && !hole; ++y)
            for (int x = x0; x < x0 + span; ++x)
                if (msk[static_cast<size_t>(y) * W + x]) { hole = true; break; }
        known[t] = hole ? 0 : 1;
    }
    return known;
}

// An offset (px) from a token's first row or column, reflected into the token about the edge it lies past
// (`patchmatch._mirror`).
inline int mirror_offset(int offset, int span) {
    return offset >= span ? 2 * span - 1 - offset : (offset < 0 ? -1 - offset : offset);
}

// The copied texture at hole pixel (y, x) of copying token (ty, tx), cross-faded with the copies of the (up to) three
// neighbours on its side of the token's centre lines: `copy_tokens(keep_contrast=True)` over image - bilinear(LR),
// K = 1 sources. reflect (`ModelConfig.hr_fade_reflect`, `copy_tokens(reflect_unknown=True)`): a copy read past its
// source's edge where a hole token lies reads the source's own pixel mirrored about that edge instead. Each distinct
// pixel read is sampled once (copies that continue each other read the same pixel unless mirrored); the weights are
// summed per offset for the contrast norm.
// fade (3 * span): feather_weight(o - n * span) at [(n + 1) * span + o], n = -1, 0, 1; shift (2 * tokens): each
// token's (dy, dx) HR px to the source it copies (its own position where it keeps itself): `feather_tables`.
template <typename T>
inline void feathered_texture(const T* img, int W, const Upsampler& upsample, const float* fade,
                              const int* shift, const uint8_t* known, int grid_h, int grid_w, int span, bool reflect,
                              int y, int x, float rgb[3]) {
    const int ty = y / span, tx = x / span, oy = y - ty * span, ox = x - tx * span;
    const int side_y = span / 2 - oy > 0 ? -1 : 1, side_x = span / 2 - ox > 0 ? -1 : 1;
    const int max_y = grid_h * span - 1, max_x = grid_w * span - 1;
    int shift_y[4], shift_x[4], n = 0, read_y[4], read_x[4], reads = 0;
    float weights[4], read_weights[4];
    for (int ny = 0; ny != 2 * side_y; ny += side_y) {
        for (int nx = 0; nx != 2 * side_x; nx += side_x) {
            const int uy = ty + ny, ux = tx + nx;
            if (uy < 0 || uy >= grid_h || ux < 0 || ux >= grid_w) continue;
            const float fw = fade[(ny + 1) * span + oy] * fade[(nx + 1) * span + ox];
            if (fw == 0.0f) continue;
            const int u = uy * grid_w + ux, dy = shift[2 * u], dx = shift[2 * u + 1];
            int qy = std::min(std::max(y + dy, 0), max_y), qx = std::min(std::max(x + dx, 0), max_x);
            bool source_known = known[(qy / span) * grid_w + qx / span] != 0;
            if (!source_known && reflect) {
                const int off_y = oy - ny * span, off_x = ox - nx * span;
                const int my = std::min(std::max(y + dy - (off_y - mirror_offset(off_y, span)), 0), max_y);
                const int mx = std::min(std::max(x + dx - (off_x - mirror_offset(off_x, span)), 0), max_x);
                if (known[(my / span) * grid_w + mx / span] != 0) { qy = my; qx = mx; source_known = true; }
            }
            const float weight = fw * ((source_known ? 1.0f : 0.0f) + kCopyFloor);
            if (source_known) {
                int r = 0;
                while (r < reads && (read_y[r] != qy || read_x[r] != qx)) ++r;
                if (r == reads) { read_y[reads] = qy; read_x[reads] = qx; read_weights[reads] = 0.0f; ++reads; }
                read_weights[r] += weight;
            }
            int k = 0;
            while (k < n && (shift_y[k] != dy || shift_x[k] != dx)) ++k;
            if (k == n) { shift_y[n] = dy; shift_x[n] = dx; weights[n] = 0.0f; ++n; }
            weights[k] += weight;
        }
    }
    float total[3] = {0.0f, 0.0f, 0.0f}, weight_squares = 0.0f;
    for (int r = 0; r < reads; ++r) {
        float up[3];
        upsample.at(read_y[r], read_x[r], up);
        const size_t q = static_cast<size_t>(read_y[r]) * W + read_x[r];
        for (int c = 0; c < 3; ++c) total[c] += read_weights[r] * (unit<T>(img[3 * q + c]) - up[c]);
    }
    for (int k = 0; k < n; ++k) weight_squares += weights[k] * weights[k];
    const float norm = 1.0f / std::sqrt(weight_squares);
    for (int c = 0; c < 3; ++c) rgb[c] = total[c] * norm;
}

// The lookup tables of `feathered_texture` for K = 1 sources (weight, index: (tokens,)).
void feather_tables(const float* wt, const int32_t* ix, int grid_h, int grid_w, int span, int feather,
                    std::vector<float>& fade, std::vector<int>& shift) {
    fade.resize(3 * static_cast<size_t>(span));
    for (int n = -1; n <= 1; ++n)
        for (int o = 0; o < span; ++o)
            fade[(n + 1) * span + o] = feather_weight(static_cast<float>(o - n * span), span, feather);
    shift.resize(2 * static_cast<size_t>(grid_h) * grid_w);
    for (int u = 0; u < grid_h * grid_w; ++u) {
        const int su = wt[u] != 0.0f ? ix[u] : u;
        shift[2 * u] = (su / grid_w - u / grid_w) * span;
        shift[2 * u + 1] = (su % grid_w - u % grid_w) * span;
    }
}

template <typename T>
py::array_t<T> hr_upscale(py::array_t<T, py::array::c_style> image, py::array_t<uint8_t, py::array::c_style> mask,
                          py::array_t<float, py::array::c_style> lr_result, py::array_t<float, py::array::c_style> weight,
                          py::array_t<float, py::array::c_style> fine_weight, py::array_t<int32_t, py::array::c_style> index,
                          int scale, int patch, int grid_h, int grid_w, int feather, bool reflect) {
    const auto ib = image.request(), mb = mask.request(), lb = lr_result.request(), wb = weight.request(),
               fb = fine_weight.request(), xb = index.request();
    check_image(ib, mb);
    const int H = static_cast<int>(ib.shape[0]), W = static_cast<int>(ib.shape[1]);
    const int h = grid_h * patch, w = grid_w * patch, tokens = grid_h * grid_w;
    if (lb.size != 3LL * h * w) throw std::invalid_argument("lr_result: expected (1, 3, grid_h*patch, grid_w*patch)");
    if (wb.ndim != 2 || wb.shape[0] != tokens || xb.ndim != 2 || xb.shape[0] != tokens || xb.shape[1] != wb.shape[1]
        || fb.ndim != 2 || fb.shape[0] != tokens || fb.shape[1] != wb.shape[1])
        throw std::invalid_argument("weight, fine_weight, index: expected (grid_h*grid_w, K) each");
    if (static_cast<long long>(grid_h) * patch * scale < H || static_cast<long long>(grid_w) * patch * scale < W)
        throw std::invalid_argument("grid: smaller than the image");
    const int K = static_cast<int>(wb.shape[1]);
    const T* img = static_cast<const T*>(ib.ptr);
    const uint8_t* msk = static_cast<const uint8_t*>(mb.ptr);
    const float* lr = static_cast<const float*>(lb.ptr);
    const float* wt = static_cast<const float*>(wb.ptr);
    const float* fw = static_cast<const float*>(fb.ptr);
    const int32_t* ix = static_cast<const int32_t*>(xb.ptr);
    const int span = scale * patch;
    for (py::ssize_t i = 0; i < xb.size; ++i) {
        if (wt[i] == 0.0f && fw[i] == 0.0f) continue;
        if (ix[i] < 0 || ix[i] >= tokens) throw std::invalid_argument("index: out of range");
        // a source's texture is read over its whole span: it must lie inside the image
        if (static_cast<long long>(ix[i] / grid_w + 1) * span > H || static_cast<long long>(ix[i] % grid_w + 1) * span > W)
            throw std::invalid_argument("index: a source token must lie wholly inside the image");
    }
    if (feather < 0 || feather > span / 2) throw std::invalid_argument("feather: expected 0..span / 2 HR px");
    if (feather > 0 && K != 1) throw std::invalid_argument("feather: needs one source per token (K = 1)");
    py::array_t<T> result({H, W, 3});
    T* out = result.mutable_data();
    const float inv_scale = 1.0f / static_cast<float>(scale);
    {
        py::gil_scoped_release release;
        const std::vector<uint8_t> known = feather > 0 ? known_tokens(msk, H, W, span, grid_h, grid_w)
                                                       : std::vector<uint8_t>();
        std::vector<float> fade;
        std::vector<int> shift;
        if (feather > 0) feather_tables(wt, ix, grid_h, grid_w, span, feather, fade, shift);
        const Upsampler upsample(lr, h, w, grid_h * span, grid_w * span, inv_scale);
#pragma omp parallel for schedule(dynamic, 8)
        for (int y = 0; y < H; ++y) {
            const int ty = y / span, oy = y - ty * span;
            for (int x = 0; x < W; ++x) {
                const size_t p = static_cast<size_t>(y) * W + x;
                if (!msk[p]) {
                    out[3 * p] = img[3 * p]; out[3 * p + 1] = img[3 * p + 1]; out[3 * p + 2] = img[3 * p + 2];
                    continue;
                }
                const int tx = x / span, ox = x - tx * span, token = ty * grid_w + tx;
                float acc[3];
                upsample.at(y, x, acc);
                const bool interior = oy >= feather && span - feather - oy > 0 && ox >= feather && span - feather - ox > 0;
                if (scale > 1 && feather > 0 && !interior) {   // the interior of a token: its own copy, weight 1
                    if (wt[token] != 0.0f) {
                        float texture[3];
                        feathered_texture(img, W, upsample, fade.data(), shift.data(), known.data(), grid_h, grid_w, span,
                                          reflect, y, x, texture);
                        for (int c = 0; c < 3; ++c) acc[c] += wt[token] * texture[c];
                    }
                } else if (scale > 1) {
                    for (int k = 0; k < K; ++k) {
                        const float wk = wt[token * K + k], fk = fw[token * K + k];
                        if (wk == 0.0f && fk == 0.0f) continue;
                        const int src = ix[token * K + k];
                        const int y0 = (src / grid_w) * span, x0 = (src % grid_w) * span;
                        const int sy = y0 + oy, sx = x0 + ox;
                        float up[3], blur[3] = {0.0f, 0.0f, 0.0f};
                        upsample.at(sy, sx, up);
                        if (fk != 0.0f) token_blur(img, W, span, y0, x0, oy, ox, blur);
                        const size_t q = static_cast<size_t>(sy) * W + sx;
                        for (int c = 0; c < 3; ++c) {
                            const float v = unit<T>(img[3 * q + c]);
                            acc[c] += wk * (v - up[c]) + fk * (v - blur[c]);
                        }
                    }
                }
                for (int c = 0; c < 3; ++c) out[3 * p + c] = store<T>(acc[c]);
            }
        }
    }
    return result;
}

// dst[x] += sum_t g[t] src[x + t - r] over 0 <= x + t - r < W (zero outside): one row of a separable filter.
// dst[i] += sum_t g[t] src[offset + i + t - r] for i < n, taking src as zero outside [0, n_src): a horizontal
// Gaussian over a span of a row whose source covers n_src pixels starting `offset` before dst's first pixel.
inline void add_taps(float* __restrict dst, const float* __restrict src, int offset, int n, int n_src,
                     const float* __restrict g, int r) {
    for (int t = 0; t <= 2 * r; ++t) {
        const int shift = offset + t - r, i_lo = std::max(0, -shift), i_hi = std::min(n, n_src - shift);
        const float gt = g[t];
        const float* __restrict s = src + shift;
        for (int i = i_lo; i < i_hi; ++i) dst[i] += gt * s[i];
    }
}

inline void axpy(float* __restrict dst, const float* __restrict src, int n, float a) {
    for (int i = 0; i < n; ++i) dst[i] += a * src[i];
}

template <typename T> inline T store_raw(float v);   // a value in the image's own units
template <> inline uint8_t store_raw<uint8_t>(float v) {
    return static_cast<uint8_t>(std::nearbyint(std::min(std::max(v, 0.0f), 255.0f)));  // ties to even
}
template <> inline float store_raw<float>(float v) { return std::min(std::max(v, 0.0f), 1.0f); }

// `model.upscale.blend_seams`: hole pixels within r of a known pixel move towards the Gaussian average of the
// known pixels around them. The image is cut into tiles of kSeamRows x kSeamCols; a tile works only if it has a
// hole pixel and a known pixel within r of it (at 4096², 40 % mask: about 1 in 8 tiles). It sums its rows (and
// r rows either side) horizontally into a per-thread buffer, then sums those vertically at its hole pixels.
constexpr int kSeamRows = 32, kSeamCols = 128;

template <typename T>
py::array_t<T> blend_seams(py::array_t<T, py::array::c_style> image, py::array_t<uint8_t, py::array::c_style> mask,
                           py::array_t<T, py::array::c_style> filled, py::array_t<float, py::array::c_style> taps,
                           float gain) {
    const auto ib = image.request(), mb = mask.request(), fb = filled.request(), tb = taps.request();
    check_image(ib, mb);
    if (fb.ndim != 3 || fb.shape[0] != ib.shape[0] || fb.shape[1] != ib.shape[1] || fb.shape[2] != 3)
        throw std::invalid_argument("filled: expected image's shape (H, W, 3)");
    if (tb.ndim != 1 || tb.size % 2 == 0) throw std::invalid_argument("taps: expected an odd-length 1-D array");
    if (!(gain > 0.0f)) throw std::invalid_argument("gain: expected > 0");
    const int H = static_cast<int>(ib.shape[0]), W = static_cast<int>(ib.shape[1]);
    const int r = static_cast<int>(tb.size / 2), n_taps = static_cast<int>(tb.size);
    const T* img = static_cast<const T*>(ib.ptr);
    const uint8_t* msk = static_cast<const uint8_t*>(mb.ptr);
    const T* fill = static_cast<const T*>(fb.ptr);
    const float* g = static_cast<const float*>(tb.ptr);
    py::array_t<T> result({H, W, 3});
    T* out = result.mutable_data();
    std::copy(fill, fill + static_cast<size_t>(H) * W * 3, out);
    const int blocks = (H + kSeamRows - 1) / kSeamRows;
    {
        py::gil_scoped_release release;
#pragma omp parallel
        {
            std::vector<float> rows;                      // (block rows + 2r) x 4 planes x tile: D, N_r, N_g, N_b
            std::vector<float> source(4 * static_cast<size_t>(kSeamCols + 2 * r));   // one row: known, known x RGB
            std::vector<float> column(kSeamCols);         // one row's vertical sums of D
            std::vector<uint8_t> hole_in_block(W), known_near_block(W);   // per column, over the block (+ r rows)
#pragma omp for schedule(dynamic, 1)
            for (int b = 0; b < blocks; ++b) {
                const int y_begin = b * kSeamRows, y_end = std::min(H, y_begin + kSeamRows);
                const int r_begin = std::max(0, y_begin - r), r_end = std::min(H, y_end + r);
                std::fill(hole_in_block.begin(), hole_in_block.end(), 0);
                std::fill(known_near_block.begin(), known_near_block.end(), 0);
                for (int y = r_begin; y < r_end; ++y) {
                    const uint8_t* row_mask = msk + static_cast<size_t>(y) * W;
                    const bool in_block = y >= y_begin && y < y_end;
                    for (int x = 0; x < W; ++x) {
                        known_near_block[x] |= row_mask[x] == 0;
                        if (in_block) hole_in_block[x] |= row_mask[x] != 0;
                    }
                }
                for (int x0 = 0; x0 < W; x0 += kSeamCols) {
                    const int x1 = std::min(W, x0 + kSeamCols), n = x1 - x0;
                    const int s0 = std::max(0, x0 - r), s1 = std::min(W, x1 + r), n_src = s1 - s0;
                    const auto any = [](const std::vector<uint8_t>& v, int a, int e) {
                        return std::any_of(v.begin() + a, v.begin() + e, [](uint8_t u) { return u != 0; });
                    };
                    if (!any(hole_in_block, x0, x1) || !any(known_near_block, s0, s1)) continue;
                    rows.assign(static_cast<size_t>(r_end - r_begin) * 4 * n, 0.0f);
                    for (int y = r_begin; y < r_end; ++y) {
                        for (int x = s0; x < s1; ++x) {
                            const size_t p = static_cast<size_t>(y) * W + x;
                            const float k = msk[p] ? 0.0f : 1.0f;
                            source[x - s0] = k;
                            for (int c = 0; c < 3; ++c)
                                source[static_cast<size_t>(c + 1) * n_src + (x - s0)] = k * static_cast<float>(img[3 * p + c]);
                        }
                        float* sums = &rows[static_cast<size_t>(y - r_begin) * 4 * n];   // planes D, N_r, N_g, N_b
                        for (int plane = 0; plane < 4; ++plane)
                            add_taps(sums + static_cast<size_t>(plane) * n, source.data() + static_cast<size_t>(plane) * n_src,
                                     x0 - s0, n, n_src, g, r);
                    }
                    for (int y = y_begin; y < y_end; ++y) {
                        const uint8_t* row_mask = msk + static_cast<size_t>(y) * W + x0;
                        if (std::none_of(row_mask, row_mask + n, [](uint8_t v) { return v != 0; })) continue;
                        std::fill(column.begin(), column.begin() + n, 0.0f);   // D for the span (vectorised) ...
                        for (int t = 0; t < n_taps; ++t) {
                            const int yy = y + t - r;
                            if (yy < r_begin || yy >= r_end) continue;   // outside the image: zero
                            axpy(column.data(), &rows[static_cast<size_t>(yy - r_begin) * 4 * n], n, g[t]);
                        }
                        for (int i = 0; i < n; ++i) {                    // ... N only where a hole pixel has D > 0
                            const float d = column[i];
                            if (!row_mask[i] || !(d > 0.0f)) continue;
                            float acc[3] = {0.0f, 0.0f, 0.0f};
                            for (int t = 0; t < n_taps; ++t) {
                                const int yy = y + t - r;
                                if (yy < r_begin || yy >= r_end) continue;
                                const float* sums = &rows[static_cast<size_t>(yy - r_begin) * 4 * n];
                                for (int c = 0; c < 3; ++c) acc[c] += g[t] * sums[static_cast<size_t>(c + 1) * n + i];
                            }
                            const size_t p = static_cast<size_t>(y) * W + x0 + i;
                            const bool saturated = gain * d >= 1.0f;
                            for (int c = 0; c < 3; ++c) {
                                const float f = static_cast<float>(fill[3 * p + c]);
                                out[3 * p + c] = store_raw<T>(saturated ? acc[c] / d : gain * acc[c] + (1.0f - gain * d) * f);
                            }
                        }
                    }
                }
            }
        }
    }
    return result;
}

int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void set_num_threads(int n) {
    if (n < 1) throw std::invalid_argument("n: expected >= 1 threads");
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "RETHINED CPU kernels: LR preparation, the coarse CNN's decoder joins, the LR copy steps, the HR attention-upscale stage and the seam blend (OpenMP).";
    m.def("prepare_lr", &prepare_lr<uint8_t>, py::arg("image"), py::arg("mask"), py::arg("scale"), py::arg("grid_h"),
          py::arg("grid_w"), py::arg("patch"));
    m.def("prepare_lr", &prepare_lr<float>, py::arg("image"), py::arg("mask"), py::arg("scale"), py::arg("grid_h"),
          py::arg("grid_w"), py::arg("patch"));
    m.def("hr_upscale", &hr_upscale<uint8_t>, py::arg("image"), py::arg("mask"), py::arg("lr_result"), py::arg("weight"),
          py::arg("fine_weight"), py::arg("index"), py::arg("scale"), py::arg("patch"), py::arg("grid_h"), py::arg("grid_w"),
          py::arg("feather") = 0, py::arg("reflect") = false);
    m.def("hr_upscale", &hr_upscale<float>, py::arg("image"), py::arg("mask"), py::arg("lr_result"), py::arg("weight"),
          py::arg("fine_weight"), py::arg("index"), py::arg("scale"), py::arg("patch"), py::arg("grid_h"), py::arg("grid_w"),
          py::arg("feather") = 0, py::arg("reflect") = false);
    m.attr("seam_tile") = py::make_tuple(kSeamRows, kSeamCols);   // blend_seams' work unit (rows, columns)
    m.def("blend_seams", &blend_seams<uint8_t>, py::arg("image"), py::arg("mask"), py::arg("filled"), py::arg("taps"),
          py::arg("gain"));
    m.def("blend_seams", &blend_seams<float>, py::arg("image"), py::arg("mask"), py::arg("filled"), py::arg("taps"),
          py::arg("gain"));
    rethined::register_cnn_ops(m);
    rethined::register_lr_copy(m);
    rethined::register_source_sweep(m);
    m.def("max_threads", &max_threads, "OpenMP threads the kernels use (1 without OpenMP)");
    m.def("set_num_threads", &set_num_threads, py::arg("n"), "OpenMP threads for later calls");
}
