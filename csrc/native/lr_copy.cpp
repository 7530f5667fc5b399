// The copy steps of the LR network with lr_texture="copy", on channels-last float32 buffers, OpenMP:
//
//   blur_base(image (B, h, w, C), taps (2r + 1)) -> (B, h, w, C)
//       separable Gaussian, zero outside, normalised by the taps inside the image (`model.patchmatch.blur_base`)
//   copy_tokens(image (B, h, w, 3), known (B, h, w), source (B, N) int64, patch, feather, base_feather=0,
//               base_taps=[]) -> (B, h, w, 3)
//       every token takes its source token's pixels, feathered into its neighbours; base_feather > 0: two bands
//       (`model.patchmatch.copy_tokens` without keep_contrast, which only the HR stage uses)
//   harmonic_fill(values (B, h, w, C <= 4), fixed (B, h, w), levels, sweeps, coarsest_sweeps, fixed_share)
//       -> (B, h, w, C): multigrid membrane through the fixed cells (`model.patchmatch.harmonic_fill`)
//   border_match(composite (B, h, w, 3), mask (B, h, w), filled (B, h, w, 3), taps, levels, sweeps,
//                coarsest_sweeps, fixed_share, weight_floor) -> (B, h, w, 3)
//       the fill shifted by a membrane of its colour mismatch at the hole's border (`model.patchmatch.border_match`)
//   colour_anchor(composite (B, h, w, 3), mask (B, h, w), filled (B, h, w, 3), strength, taps, cell, steps)
//       -> (B, h, w, 3): part of the fill's low band replaced by the nearest known colours' (`model.anchor`)
//   flat_fill(composite (B, h, w, 3), mask (B, h, w), filled (B, h, w, 3), the constants of `model.flat`, the form's
//             index in config.FLAT_FILL_FORMS)
//       -> ((B, h, w, 3) the fill with its low band a membrane of the known colours, (B, h, w) its weight)
//       (`model.flat.flat_fill`)
//
// The torch functions are the specification; each operation is done in the same order and precision as they
// do it (the separable filters as fused multiply-adds, as ATen's vectorised add with alpha), so the results
// agree to float rounding (tests/test_native_lr_copy.py). Only the coarsest grid's mean is summed in double.
#include "lr_copy.h"

// a * b + c rounded twice, as torch computes it (only the separable filters fuse, explicitly, with std::fma)
#pragma GCC optimize("fp-contract=off")

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "bilinear.h"
#include "copy_rules.h"

namespace py = pybind11;

namespace rethined {
namespace {

using Floats = py::array_t<float, py::array::c_style>;

constexpr int kMaxTaps = 63;   // filter taps: radius ceil(3 sigma) <= 31, sigma <= 10 px
constexpr int kMaxLevels = 10;  // harmonic_fill halvings
constexpr int kMaxMembraneChannels = 4;
enum FlatForm { kMembraneForm, kContinuedForm, kContinuedFlatForm };   // config.FLAT_FILL_FORMS, in order

// Scratch buffers, one set per calling thread, kept between calls and grown as needed: allocating a few fresh
// megabytes per call cost more in page faults than the arithmetic (border_match at 512 x 512: ~25 ms with fresh
// buffers). About 30 floats per LR pixel in all (~30 MB at 512 x 512).
enum Slot { kFilterZeros, kFilterRows, kBlurSums, kBase, kBorderStack, kBorderMeans, kMismatch, kBorder,
            kShift, kFlatLowInput, kFlatLow, kSolution, kNextSolution, kCountChannels, kShiftChannels,
            kContinuedMeans, kContinuedHas, kStepsX, kStepsY, kStepKnownX, kStepKnownY, kAlongX, kAlongY,
            kDivergence, kDilateRows, kGrown, kRing, kGrownKnown, kRingError, kGuess, kErrorMeans, kErrorHas,
            kLevelValues,
            kLevelWeights = kLevelValues + kMaxLevels + 1, kLevelRhs = kLevelWeights + kMaxLevels + 1,
            kSlots = kLevelRhs + kMaxLevels + 1 };

float* scratch(int slot, size_t n) {
    thread_local std::vector<float> buffers[kSlots];
    std::vector<float>& buffer = buffers[slot];
    if (buffer.size() < n) buffer.resize(n);
    return buffer.data();
}

// out[i] = the taps' sum over src[t][i], t in order, as fused multiply-adds from 0 (as ATen's vectorised add with
// alpha computes `_filter_along`), a block of kLanes outputs at a time so that the compiler keeps them in registers.
inline void sum_taps(float* __restrict out, const float* const* src, const float* g, int n_taps, int n) {
    constexpr int kLanes = 16;
    int i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        float acc[kLanes] = {};
        for (int t = 0; t < n_taps; ++t) {
            const float* __restrict s = src[t] + i;
            const float gt = g[t];
            for (int j = 0; j < kLanes; ++j) acc[j] = std::fma(s[j], gt, acc[j]);
        }
        for (int j = 0; j < kLanes; ++j) out[i + j] = acc[j];
    }
    for (; i < n; ++i) {
        float acc = 0.0f;
        for (int t = 0; t < n_taps; ++t) acc = std::fma(src[t][i], g[t], acc);
        out[i] = acc;
    }
}

// One image's separable filter with zero outside, rows then columns (`_filter_along` dim 2, then dim 3): src and
// dst (h, w, C). A zero outside the image adds nothing (fma(0, g, a) = a), so taps outside read zero padding.
void filter_rows_cols(const float* src, int h, int w, int C, const std::vector<float>& taps, float* dst) {
    const int r = static_cast<int>(taps.size() / 2), row = w * C, n_taps = 2 * r + 1;
    float* zeros = scratch(kFilterZeros, row);
    float* tmp = scratch(kFilterRows, static_cast<size_t>(h) * row);
    std::fill(zeros, zeros + row, 0.0f);
#pragma omp parallel for schedule(static)
    for (int y = 0; y < h; ++y) {
        const float* rows[kMaxTaps];
        for (int t = 0; t < n_taps; ++t) {
            const int yy = y + t - r;
            rows[t] = yy < 0 || yy >= h ? zeros : src + static_cast<size_t>(yy) * row;
        }
        sum_taps(tmp + static_cast<size_t>(y) * row, rows, taps.data(), n_taps, row);
    }
#pragma omp parallel
    {
        std::vector<float> padded(static_cast<size_t>(row) + 2 * r * C, 0.0f);
        const float* shifted[kMaxTaps];
        for (int t = 0; t < n_taps; ++t) shifted[t] = padded.data() + t * C;
#pragma omp for schedule(static)
        for (int y = 0; y < h; ++y) {
            std::copy(tmp + static_cast<size_t>(y) * row, tmp + static_cast<size_t>(y + 1) * row,
                      padded.begin() + r * C);
            sum_taps(dst + static_cast<size_t>(y) * row, shifted, taps.data(), n_taps, row);
        }
    }
}

// The filter of a plane of ones, as filter_rows_cols computes it, at row y for columns x in [0, w): the taps inside
// the image summed in order. Columns at least r from both edges all take every tap: computed once.
void ones_filtered(int y, int h, int w, const std::vector<float>& taps, float* row) {
    const int r = static_cast<int>(taps.size() / 2);
    float column = 0.0f;                               // the vertical pass: the same at every column
    for (int t = 0; t <= 2 * r; ++t)
        if (y + t - r >= 0 && y + t - r < h) column = std::fma(1.0f, taps[t], column);
    auto at = [&](int x) {
        float acc = 0.0f;
        for (int t = 0; t <= 2 * r; ++t)
            if (x + t - r >= 0 && x + t - r < w) acc = std::fma(column, taps[t], acc);
        return acc;
    };
    const int lo = std::min(r, w), hi = std::max(lo, w - r);
    for (int x = 0; x < lo; ++x) row[x] = at(x);
    if (hi > lo) std::fill(row + lo, row + hi, at(lo));
    for (int x = hi; x < w; ++x) row[x] = at(x);
}

// `blur_base` of one (h, w, C) image into out: the filter of the image over the filter of a plane of ones.
void blur_normalised(const float* image, int h, int w, int C, const std::vector<float>& taps, float* out) {
    const size_t pixels = static_cast<size_t>(h) * w;
    float* blurred = scratch(kBlurSums, pixels * C);
    filter_rows_cols(image, h, w, C, taps, blurred);
#pragma omp parallel
    {
        std::vector<float> ones(w);
#pragma omp for schedule(static)
        for (int y = 0; y < h; ++y) {
            ones_filtered(y, h, w, taps, ones.data());
            const size_t p0 = static_cast<size_t>(y) * w;
            for (int x = 0; x < w; ++x)
                for (int c = 0; c < C; ++c) out[(p0 + x) * C + c] = blurred[(p0 + x) * C + c] / ones[x];
        }
    }
}

std::vector<float> taps_of(const Floats& taps) {
    const auto tb = taps.request();
    if (tb.ndim != 1 || tb.size % 2 == 0 || tb.size > kMaxTaps)
        throw std::invalid_argument("taps: expected an odd-length 1-D array of at most " + std::to_string(kMaxTaps));
    const float* g = static_cast<const float*>(tb.ptr);
    return std::vector<float>(g, g + tb.size);
}

// (B, h, w, C) of any C >= 1 (C = 0: any); returns C.
int check_nhwc(const py::buffer_info& b, const char* name, int B, int h, int w, int C) {
    if (b.ndim != 4 || b.shape[0] != B || b.shape[1] != h || b.shape[2] != w || (C > 0 && b.shape[3] != C) || b.shape[3] < 1)
        throw std::invalid_argument(std::string(name) + ": expected (B, h, w, " + (C > 0 ? std::to_string(C) : "C") +
                                    ") = (" + std::to_string(B) + ", " + std::to_string(h) + ", " + std::to_string(w) +
                                    ", ...) float32");
    return static_cast<int>(b.shape[3]);
}

void check_plane(const py::buffer_info& b, const char* name, int B, int h, int w) {
    if (b.ndim != 3 || b.shape[0] != B || b.shape[1] != h || b.shape[2] != w)
        throw std::invalid_argument(std::string(name) + ": expected (B, h, w) = (" + std::to_string(B) + ", " +
                                    std::to_string(h) + ", " + std::to_string(w) + ") float32");
}

Floats blur_base(Floats image, Floats taps) {
    const auto ib = image.request();
    if (ib.ndim != 4) throw std::invalid_argument("image: expected (B, h, w, C) float32");
    const int B = static_cast<int>(ib.shape[0]), h = static_cast<int>(ib.shape[1]), w = static_cast<int>(ib.shape[2]),
              C = static_cast<int>(ib.shape[3]);
    const std::vector<float> g = taps_of(taps);
    Floats result({B, h, w, C});
    const float* in = static_cast<const float*>(ib.ptr);
    float* out = result.mutable_data();
    const size_t plane = static_cast<size_t>(h) * w * C;
    py::gil_scoped_release release;
    for (int b = 0; b < B; ++b) blur_normalised(in + b * plane, h, w, C, g, out + b * plane);
    return result;
}

// One image's copies (`copy_tokens`): img (h, w, 3); base (h, w, 3) or null (one band); known (h, w); src (N).
void copy_image(const float* img, const float* base, const float* known, const int64_t* src, int h, int w, int patch,
                int feather, int base_feather, float* out) {
    const int grid_h = h / patch, grid_w = w / patch;
    std::vector<int> shift(2 * static_cast<size_t>(grid_h) * grid_w);   // (dy, dx) px from each token to its source
    for (int u = 0; u < grid_h * grid_w; ++u) {
        const int s = static_cast<int>(src[u]);
        shift[2 * u] = (s / grid_w - u / grid_w) * patch;
        shift[2 * u + 1] = (s % grid_w - u % grid_w) * patch;
    }
    // feather weights by (neighbour step + 1, px within the token): a token's own copy (step 0) and its neighbours'
    std::vector<float> fade(3 * patch), base_fade(3 * patch);
    for (int n = -1; n <= 1; ++n)
        for (int l = 0; l < patch; ++l) {
            fade[(n + 1) * patch + l] = feather_weight(static_cast<float>(l - n * patch), patch, feather);
            base_fade[(n + 1) * patch + l] = feather_weight(static_cast<float>(l - n * patch), patch, base_feather);
        }
#pragma omp parallel for schedule(static)
    for (int y = 0; y < h; ++y) {
        const int ty = y / patch, ly = y - ty * patch, side_y = patch / 2 - ly > 0 ? -1 : 1;
        for (int x = 0; x < w; ++x) {
            const int tx = x / patch, lx = x - tx * patch, side_x = patch / 2 - lx > 0 ? -1 : 1;
            float total[3] = {0.0f, 0.0f, 0.0f}, base_total[3] = {0.0f, 0.0f, 0.0f};
            float weight_sum = 0.0f, base_sum = 0.0f, weights[4];
            int shift_y[4], shift_x[4];
            // candidates in copy_tokens' order: own token, the row neighbour, the column neighbour, the diagonal one
            for (int k = 0; k < 4; ++k) {
                const int ny = (k == 1 || k == 3) ? side_y : 0, nx = (k == 2 || k == 3) ? side_x : 0;
                const int uy = ty + ny, ux = tx + nx;
                const bool inside = uy >= 0 && uy < grid_h && ux >= 0 && ux < grid_w;
                const int u = uy * grid_w + ux, dy = inside ? shift[2 * u] : 0, dx = inside ? shift[2 * u + 1] : 0;
                const int qy = std::min(std::max(y + dy, 0), h - 1), qx = std::min(std::max(x + dx, 0), w - 1);
                const size_t q = static_cast<size_t>(qy) * w + qx;
                const float known_weight = (inside ? 1.0f : 0.0f) * (known[q] + kCopyFloor);
                const int iy = (ny + 1) * patch + ly, ix = (nx + 1) * patch + lx;
                const float weight = fade[iy] * fade[ix] * known_weight;
                if (base != nullptr) {
                    const float base_weight = base_fade[iy] * base_fade[ix] * known_weight;
                    for (int c = 0; c < 3; ++c) {
                        base_total[c] = base_total[c] + base_weight * base[3 * q + c];
                        total[c] = total[c] + weight * (img[3 * q + c] - base[3 * q + c]);
                    }
                    base_sum = base_sum + base_weight;
                } else {
                    for (int c = 0; c < 3; ++c) total[c] = total[c] + weight * img[3 * q + c];
                }
                weight_sum = weight_sum + weight;
                weights[k] = weight; shift_y[k] = dy; shift_x[k] = dx;
            }
            float* o = out + 3 * (static_cast<size_t>(y) * w + x);
            if (base == nullptr) {
                for (int c = 0; c < 3; ++c) o[c] = total[c] / weight_sum;
                continue;
            }
            // detail keeps its contrast: copies with one displacement continue each other, their weights add
            // (copy_tokens sums w_i w_j over all pairs, adding 0 for pairs of two displacements)
            float squares = 0.0f;
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j)
                    if (shift_y[i] == shift_y[j] && shift_x[i] == shift_x[j]) squares = squares + weights[i] * weights[j];
            const float root = std::sqrt(squares);
            for (int c = 0; c < 3; ++c) o[c] = base_total[c] / base_sum + total[c] / root;
        }
    }
}

Floats copy_tokens(Floats image, Floats known, py::array_t<int64_t, py::array::c_style> source, int patch, int feather,
                   int base_feather, Floats base_taps) {
    const auto ib = image.request(), kb = known.request(), sb = source.request();
    if (ib.ndim != 4) throw std::invalid_argument("image: expected (B, h, w, 3) float32");
    const int B = static_cast<int>(ib.shape[0]), h = static_cast<int>(ib.shape[1]), w = static_cast<int>(ib.shape[2]);
    check_nhwc(ib, "image", B, h, w, 3);
    check_plane(kb, "known", B, h, w);
    if (patch < 1 || h % patch || w % patch)
        throw std::invalid_argument("patch: expected >= 1 dividing h and w, got " + std::to_string(patch));
    if (feather < 0 || feather > patch / 2)
        throw std::invalid_argument("feather: expected 0.." + std::to_string(patch / 2) + " px, got " + std::to_string(feather));
    if (base_feather < 0 || base_feather > patch / 2)
        throw std::invalid_argument("base_feather: expected 0.." + std::to_string(patch / 2) + " px, got " +
                                    std::to_string(base_feather));
    const int64_t tokens = static_cast<int64_t>(h / patch) * (w / patch);
    if (sb.ndim != 2 || sb.shape[0] != B || sb.shape[1] != tokens)
        throw std::invalid_argument("source: expected (B, N) int64 with N = " + std::to_string(tokens) + " tokens");
    const int64_t* src = static_cast<const int64_t*>(sb.ptr);
    for (py::ssize_t i = 0; i < sb.size; ++i)
        if (src[i] < 0 || src[i] >= tokens) throw std::invalid_argument("source: token index out of range");
    const bool two_bands = base_feather > 0;
    const std::vector<float> g = two_bands ? taps_of(base_taps) : std::vector<float>();
    Floats result({B, h, w, 3});
    const float* img = static_cast<const float*>(ib.ptr);
    const float* kn = static_cast<const float*>(kb.ptr);
    float* out = result.mutable_data();
    const size_t pixels = static_cast<size_t>(h) * w;
    py::gil_scoped_release release;
    float* base = two_bands ? scratch(kBase, pixels * 3) : nullptr;
    for (int b = 0; b < B; ++b) {
        if (two_bands) blur_normalised(img + b * pixels * 3, h, w, 3, g, base);
        copy_image(img + b * pixels * 3, base, kn + b * pixels, src + b * tokens, h, w,
                   patch, feather, base_feather, out + b * pixels * 3);
    }
    return result;
}

// Zeros around an (H, W, C) grid stored with a border, (H + 2, W + 2, C).
void zero_border(float* grid, int H, int W, int C) {
    const size_t stride = static_cast<size_t>(W + 2) * C;
    std::fill(grid, grid + stride, 0.0f);
    std::fill(grid + (H + 1) * stride, grid + (H + 2) * stride, 0.0f);
    for (int y = 1; y <= H; ++y) {
        std::fill(grid + y * stride, grid + y * stride + C, 0.0f);
        std::fill(grid + y * stride + (W + 1) * C, grid + (y + 1) * stride, 0.0f);
    }
}

// One image's membrane (`harmonic_fill`): values (h, w, C), fixed (h, w) in {0, 1} -> out (h, w, C).
// region (h, w) or null: the cells whose result is wanted, a set that every free cell's grid neighbours of it belong
// to (a hole with its fixed border); the finest grid's sweeps then update only these, and the other cells of out
// are not the membrane's. The wanted cells' values are the same either way: no sweep reads past the fixed border.
// rhs (h, w, C) or null: `model.patchmatch.poisson_fill`'s right-hand side (each free cell's grid Laplacian);
// null: Laplace's equation (`harmonic_fill`).
void membrane(const float* values, const float* fixed, int h, int w, int C, int levels, int sweeps, int coarsest_sweeps,
              float fixed_share, const float* region, float* out, const float* rhs = nullptr) {
    float* value[kMaxLevels + 1];
    float* weight[kMaxLevels + 1];
    int hs[kMaxLevels + 1], ws[kMaxLevels + 1];
    hs[0] = h; ws[0] = w;
    value[0] = scratch(kLevelValues, static_cast<size_t>(h) * w * C);
    weight[0] = scratch(kLevelWeights, static_cast<size_t>(h) * w);
    std::copy(fixed, fixed + static_cast<size_t>(h) * w, weight[0]);
#pragma omp parallel for schedule(static)
    for (long long p = 0; p < static_cast<long long>(h) * w; ++p)
        for (int c = 0; c < C; ++c) value[0][p * C + c] = values[p * C + c] * fixed[p];
    const float threshold = 4.0f * fixed_share - 0.5f;
    for (int l = 0; l < levels; ++l) {   // halvings: sums of 2 x 2 cells, the values' weighted mean
        const int H = hs[l] / 2, W = ws[l] / 2, w0 = ws[l];
        hs[l + 1] = H; ws[l + 1] = W;
        value[l + 1] = scratch(kLevelValues + l + 1, static_cast<size_t>(H) * W * C);
        weight[l + 1] = scratch(kLevelWeights + l + 1, static_cast<size_t>(H) * W);
        const float* v = value[l];
        const float* f = weight[l];
#pragma omp parallel for schedule(static)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                const size_t a = static_cast<size_t>(2 * y) * w0 + 2 * x, b = a + 1, c2 = a + w0, d = c2 + 1;
                const float sum = f[a] + f[b] + f[c2] + f[d];
                const size_t p = static_cast<size_t>(y) * W + x;
                for (int c = 0; c < C; ++c)
                    value[l + 1][p * C + c] = (v[a * C + c] * f[a] + v[b * C + c] * f[b] + v[c2 * C + c] * f[c2] +
                                               v[d * C + c] * f[d]) / std::max(sum, 1.0f);
                weight[l + 1][p] = sum > threshold ? 1.0f : 0.0f;
            }
    }
    const float* rhs_level[kMaxLevels + 1] = {rhs};
    for (int l = 0; rhs != nullptr && l < levels; ++l) {   // a coarse cell's rhs: the sum of its four
        const int H = hs[l + 1], W = ws[l + 1], w0 = ws[l];
        float* coarse = scratch(kLevelRhs + l + 1, static_cast<size_t>(H) * W * C);
        const float* r = rhs_level[l];
#pragma omp parallel for schedule(static)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                const size_t a = static_cast<size_t>(2 * y) * w0 + 2 * x, b = a + 1, c2 = a + w0, d = c2 + 1;
                const size_t p = static_cast<size_t>(y) * W + x;
                for (int c = 0; c < C; ++c)
                    coarse[p * C + c] = r[a * C + c] + r[b * C + c] + r[c2 * C + c] + r[d * C + c];
            }
        rhs_level[l + 1] = coarse;
    }
    // coarsest grid: start from the fixed cells' mean
    const int Hc = hs[levels], Wc = ws[levels];
    double mean[kMaxMembraneChannels] = {}, count = 0.0;
    for (size_t p = 0; p < static_cast<size_t>(Hc) * Wc; ++p) {
        const float f = weight[levels][p];
        count += f;
        for (int c = 0; c < C; ++c) mean[c] += static_cast<double>(value[levels][p * C + c] * f);
    }
    // x: the current level's solution with a border of zeros, (H + 2, W + 2, C)
    const size_t most = static_cast<size_t>(h + 2) * (w + 2) * C;
    float* x = scratch(kSolution, most);
    float* next = scratch(kNextSolution, most);
    float* count_c = scratch(kCountChannels, static_cast<size_t>(h) * w * C);   // 0 on fixed cells
    float* shift_c = scratch(kShiftChannels, rhs != nullptr ? static_cast<size_t>(h) * w * C : 0);   // rhs / count
    std::fill(x, x + static_cast<size_t>(Hc + 2) * (Wc + 2) * C, 0.0f);
    for (int y = 0; y < Hc; ++y)
        for (int xx = 0; xx < Wc; ++xx)
            for (int c = 0; c < C; ++c)
                x[(static_cast<size_t>(y + 1) * (Wc + 2) + xx + 1) * C + c] = static_cast<float>(mean[c] / std::max(count, 1.0));
    std::vector<int> runs, first_run;   // per row: [begin, end) columns of the cells a level works on
    for (int l = levels; l >= 0; --l) {
        const int H = hs[l], W = ws[l], stride = (W + 2) * C, row = W * C;
        const bool in_region = l == 0 && region != nullptr;
        runs.clear();
        first_run.assign(H + 1, 0);
        for (int y = 0; y < H; ++y) {
            first_run[y] = static_cast<int>(runs.size() / 2);
            const float* r = in_region ? region + static_cast<size_t>(y) * W : nullptr;
            for (int xx = 0; xx < W;) {
                if (r == nullptr || r[xx] > 0.0f) {
                    const int begin = xx;
                    while (xx < W && (r == nullptr || r[xx] > 0.0f)) ++xx;
                    runs.push_back(begin); runs.push_back(xx);
                } else {
                    ++xx;
                }
            }
        }
        first_run[H] = static_cast<int>(runs.size() / 2);
        auto for_cells = [&](auto&& body) {   // body(y, begin, end): the cells [begin, end) of row y, in parallel
#pragma omp parallel for schedule(static)
            for (int y = 0; y < H; ++y)
                for (int run = first_run[y]; run < first_run[y + 1]; ++run) body(y, runs[2 * run], runs[2 * run + 1]);
        };
        if (l < levels) {   // nearest upsampling of the coarser solution (in x) into next, then swapped
            zero_border(next, H, W, C);
            const int coarse_stride = (W / 2 + 2) * C;
            for_cells([&](int y, int begin, int end) {
                for (int xx = begin; xx < end; ++xx)
                    for (int c = 0; c < C; ++c)
                        next[static_cast<size_t>(y + 1) * stride + (xx + 1) * C + c] =
                            x[static_cast<size_t>(y / 2 + 1) * coarse_stride + (xx / 2 + 1) * C + c];
            });
            std::swap(x, next);
        }
        const float* v = value[l];
        const float* f = weight[l];
        for_cells([&](int y, int begin, int end) {
            for (int xx = begin; xx < end; ++xx) {
                const size_t p = static_cast<size_t>(y) * W + xx;
                const float neighbours = static_cast<float>((y > 0) + (y + 1 < H) + (xx > 0) + (xx + 1 < W));
                const float n = f[p] > 0.0f ? 0.0f : neighbours;
                for (int c = 0; c < C; ++c) {
                    count_c[p * C + c] = n;
                    if (rhs != nullptr) shift_c[p * C + c] = rhs_level[l][p * C + c] / neighbours;
                    if (f[p] > 0.0f) x[static_cast<size_t>(y + 1) * stride + (xx + 1) * C + c] = v[p * C + c];
                }
            }
        });
        zero_border(next, H, W, C);    // every sweep writes all of the level's cells and reads the border's zeros
        const int n_sweeps = l == levels ? coarsest_sweeps : sweeps;
        for (int s = 0; s < n_sweeps; ++s) {   // Jacobi: each free cell the mean of its grid neighbours, fixed ones kept
            for_cells([&](int y, int begin, int end) {
                const float* __restrict up = x + static_cast<size_t>(y) * stride + C;
                const float* __restrict mid = x + static_cast<size_t>(y + 1) * stride;
                const float* __restrict down = x + static_cast<size_t>(y + 2) * stride + C;
                const float* __restrict count_row = count_c + static_cast<size_t>(y) * row;
                float* __restrict result = next + static_cast<size_t>(y + 1) * stride + C;
                if (rhs == nullptr) {
                    for (int i = begin * C; i < end * C; ++i) {
                        const float neighbours = ((up[i] + down[i]) + mid[i]) + mid[i + 2 * C];
                        result[i] = count_row[i] > 0.0f ? neighbours / count_row[i] : mid[i + C];
                    }
                } else {   // Poisson: the neighbours' mean less rhs / count
                    const float* __restrict shift_row = shift_c + static_cast<size_t>(y) * row;
                    for (int i = begin * C; i < end * C; ++i) {
                        const float neighbours = ((up[i] + down[i]) + mid[i]) + mid[i + 2 * C];
                        result[i] = count_row[i] > 0.0f ? neighbours / count_row[i] - shift_row[i] : mid[i + C];
                    }
                }
            });
            std::swap(x, next);
        }
        if (l == 0)
            for_cells([&](int y, int begin, int end) {
                std::copy(x + static_cast<size_t>(y + 1) * stride + (begin + 1) * C,
                          x + static_cast<size_t>(y + 1) * stride + (end + 1) * C, out + (static_cast<size_t>(y) * W + begin) * C);
            });
    }
}

void check_levels(int h, int w, int levels, int sweeps, int coarsest_sweeps) {
    if (levels < 0 || levels > kMaxLevels || h % (1 << levels) || w % (1 << levels))
        throw std::invalid_argument("levels: expected 0..10 with h and w divisible by 2 ** levels, got levels=" + std::to_string(levels));
    if (sweeps < 0 || coarsest_sweeps < 0) throw std::invalid_argument("sweeps, coarsest_sweeps: expected >= 0");
}

Floats harmonic_fill(Floats values, Floats fixed, int levels, int sweeps, int coarsest_sweeps, float fixed_share) {
    const auto vb = values.request(), fb = fixed.request();
    if (vb.ndim != 4) throw std::invalid_argument("values: expected (B, h, w, C) float32");
    const int B = static_cast<int>(vb.shape[0]), h = static_cast<int>(vb.shape[1]), w = static_cast<int>(vb.shape[2]);
    const int C = check_nhwc(vb, "values", B, h, w, 0);
    if (C > kMaxMembraneChannels)
        throw std::invalid_argument("values: expected at most " + std::to_string(kMaxMembraneChannels) + " channels");
    check_plane(fb, "fixed", B, h, w);
    check_levels(h, w, levels, sweeps, coarsest_sweeps);
    Floats result({B, h, w, C});
    const float* v = static_cast<const float*>(vb.ptr);
    const float* f = static_cast<const float*>(fb.ptr);
    float* out = result.mutable_data();
    const size_t pixels = static_cast<size_t>(h) * w;
    py::gil_scoped_release release;
    for (int b = 0; b < B; ++b)
        membrane(v + b * pixels * C, f + b * pixels, h, w, C, levels, sweeps, coarsest_sweeps, fixed_share, nullptr,
                 out + b * pixels * C);
    return result;
}

// border_match's and colour_anchor's inputs: composite (B, h, w, 3), mask (B, h, w), filled (B, h, w, 3), all
// float32 -> (B, h, w).
std::array<int, 3> check_composite_mask_filled(const py::buffer_info& cb, const py::buffer_info& mb,
                                               const py::buffer_info& fb) {
    if (cb.ndim != 4) throw std::invalid_argument("composite: expected (B, h, w, 3) float32");
    const int B = static_cast<int>(cb.shape[0]), h = static_cast<int>(cb.shape[1]), w = static_cast<int>(cb.shape[2]);
    check_nhwc(cb, "composite", B, h, w, 3);
    check_plane(mb, "mask", B, h, w);
    check_nhwc(fb, "filled", B, h, w, 3);
    return {B, h, w};
}

Floats border_match(Floats composite, Floats mask, Floats filled, Floats taps, int levels, int sweeps,
                    int coarsest_sweeps, float fixed_share, float weight_floor) {
    const auto cb = composite.request(), mb = mask.request(), fb = filled.request();
    const auto [B, h, w] = check_composite_mask_filled(cb, mb, fb);
    check_levels(h, w, levels, sweeps, coarsest_sweeps);
    const std::vector<float> g = taps_of(taps);
    Floats result({B, h, w, 3});
    const float* comp = static_cast<const float*>(cb.ptr);
    const float* msk = static_cast<const float*>(mb.ptr);
    const float* fill = static_cast<const float*>(fb.ptr);
    float* out = result.mutable_data();
    const size_t pixels = static_cast<size_t>(h) * w;
    py::gil_scoped_release release;
    float* stack = scratch(kBorderStack, pixels * 8);
    float* means = scratch(kBorderMeans, pixels * 8);
    float* mismatch = scratch(kMismatch, pixels * 3);
    float* border = scratch(kBorder, pixels);
    float* shift = scratch(kShift, pixels * 3);
    for (int b = 0; b < B; ++b) {
        const float* cm = comp + b * pixels * 3;
        const float* m = msk + b * pixels;
        const float* fl = fill + b * pixels * 3;
#pragma omp parallel for schedule(static)
        for (long long p = 0; p < static_cast<long long>(pixels); ++p) {
            const float known = 1.0f - m[p];
            for (int c = 0; c < 3; ++c) {
                stack[p * 8 + c] = cm[p * 3 + c] * known;
                stack[p * 8 + 4 + c] = fl[p * 3 + c] * m[p];
            }
            stack[p * 8 + 3] = known;
            stack[p * 8 + 7] = m[p];
        }
        blur_normalised(stack, h, w, 8, g, means);
#pragma omp parallel for schedule(static)
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) {   // hole pixels with a known pixel in their 3 x 3 neighbourhood
                const size_t p = static_cast<size_t>(y) * w + x;
                float near_known = 0.0f;
                for (int yy = std::max(y - 1, 0); yy <= std::min(y + 1, h - 1); ++yy)
                    for (int xx = std::max(x - 1, 0); xx <= std::min(x + 1, w - 1); ++xx)
                        near_known = std::max(near_known, 1.0f - m[static_cast<size_t>(yy) * w + xx]);
                border[p] = near_known * m[p];
                const float* mean = &means[p * 8];
                for (int c = 0; c < 3; ++c)
                    mismatch[p * 3 + c] = (mean[c] / std::max(mean[3], weight_floor) -
                                           mean[4 + c] / std::max(mean[7], weight_floor)) * border[p];
            }
        membrane(mismatch, border, h, w, 3, levels, sweeps, coarsest_sweeps, fixed_share, m, shift);   // hole pixels only
        float* o = out + b * pixels * 3;
#pragma omp parallel for schedule(static)
        for (long long p = 0; p < static_cast<long long>(pixels); ++p)
            for (int c = 0; c < 3; ++c)
                o[p * 3 + c] = m[p] > 0.0f ? std::min(std::max(fl[p * 3 + c] + shift[p * 3 + c], 0.0f), 1.0f) : fl[p * 3 + c];
    }
    return result;
}

// `model.anchor.nearest_seeds` on a gh x gw grid: jump flooding with the given steps, each step reading the
// seeds as they were before it; of the seeds equally near a cell, its own, then the first in kJumpDirections'
// order, wins (as the reference's tie break). Cells without a seed in reach hold kFar. A look past the grid's
// edge reads kFar, which never beats a cell's own seed: it is skipped. Seeds are (row, col) in two int planes;
// each row is updated a direction at a time over the columns it reaches (loops the compiler vectorises).
constexpr int kFar = 16384;
constexpr int kJumpDirections[8][2] = {{-1, -1}, {-1, 0}, {-1, 1}, {0, -1}, {0, 1}, {1, -1}, {1, 0}, {1, 1}};

void jump_flood(const std::vector<float>& weight, int gh, int gw, const std::vector<int>& steps,
                std::vector<int>& seed_row, std::vector<int>& seed_col) {
    const size_t cells = static_cast<size_t>(gh) * gw;
    seed_row.resize(cells);
    seed_col.resize(cells);
    for (int y = 0; y < gh; ++y)
        for (int x = 0; x < gw; ++x) {
            const size_t q = static_cast<size_t>(y) * gw + x;
            const bool seed = weight[q] > 0.0f;
            seed_row[q] = seed ? y : kFar;
            seed_col[q] = seed ? x : kFar;
        }
    std::vector<int> row_before(cells), col_before(cells);
    for (const int step : steps) {
        row_before.swap(seed_row);
        col_before.swap(seed_col);
#pragma omp parallel
        {
            std::vector<int> best(gw);
#pragma omp for schedule(static)
            for (int y = 0; y < gh; ++y) {
                const size_t q0 = static_cast<size_t>(y) * gw;
                int* __restrict rows = seed_row.data() + q0;
                int* __restrict cols = seed_col.data() + q0;
                for (int x = 0; x < gw; ++x) {
                    rows[x] = row_before[q0 + x];
                    cols[x] = col_before[q0 + x];
                    const int dy = rows[x] - y, dx = cols[x] - x;
                    best[x] = dy * dy + dx * dx;
                }
                for (const auto& d : kJumpDirections) {
                    const int yy = y + d[0] * step, shift = d[1] * step;
                    if (yy < 0 || yy >= gh) continue;
                    const int* look_rows = row_before.data() + static_cast<size_t>(yy) * gw + shift;
                    const int* look_cols = col_before.data() + static_cast<size_t>(yy) * gw + shift;
                    const int lo = std::max(0, -shift), hi = std::min(gw, gw - shift);
                    for (int x = lo; x < hi; ++x) {
                        const int dy = look_rows[x] - y, dx = look_cols[x] - x;
                        const int distance = dy * dy + dx * dx;
                        const bool nearer = distance < best[x];
                        best[x] = nearer ? distance : best[x];
                        rows[x] = nearer ? look_rows[x] : rows[x];
                        cols[x] = nearer ? look_cols[x] : cols[x];
                    }
                }
            }
        }
    }
}

Floats colour_anchor(Floats composite, Floats mask, Floats filled, float strength, Floats taps, int cell,
                     std::vector<int> steps) {
    const auto cb = composite.request(), mb = mask.request(), fb = filled.request();
    const auto [B, h, w] = check_composite_mask_filled(cb, mb, fb);
    if (cell < 1 || h % cell || w % cell)
        throw std::invalid_argument("cell: expected a divisor of h = " + std::to_string(h) + " and w = " +
                                    std::to_string(w) + ", got " + std::to_string(cell));
    const std::vector<float> g = taps_of(taps);
    Floats result({B, h, w, 3});
    const float* comp = static_cast<const float*>(cb.ptr);
    const float* msk = static_cast<const float*>(mb.ptr);
    const float* fill = static_cast<const float*>(fb.ptr);
    float* out = result.mutable_data();
    const int gh = h / cell, gw = w / cell;
    const size_t pixels = static_cast<size_t>(h) * w, cells = static_cast<size_t>(gh) * gw;
    const std::vector<AxisTap> ys = axis_taps(h, gh, 1.0f / static_cast<float>(cell));
    const std::vector<AxisTap> xs = axis_taps(w, gw, 1.0f / static_cast<float>(cell));
    const float fill_count = static_cast<float>(cell * cell);
    py::gil_scoped_release release;
    std::vector<float> weight(cells), known_colour(cells * 3), fill_mean(cells * 3), difference(cells * 3),
        shift(cells * 3);
    std::vector<int> seed_row, seed_col;
    for (int b = 0; b < B; ++b) {
        const float* cm = comp + b * pixels * 3;
        const float* m = msk + b * pixels;
        const float* fl = fill + b * pixels * 3;
        // cell sums as `cell_sums` takes them: along each row of a cell first, then down its rows
#pragma omp parallel for schedule(static)
        for (int gy = 0; gy < gh; ++gy)
            for (int gx = 0; gx < gw; ++gx) {
                float known_total = 0.0f, colour_total[3] = {}, fill_total[3] = {};
                for (int dy = 0; dy < cell; ++dy) {
                    float known_row = 0.0f, colour_row[3] = {}, fill_row[3] = {};
                    for (int dx = 0; dx < cell; ++dx) {
                        const size_t p = static_cast<size_t>(gy * cell + dy) * w + gx * cell + dx;
                        const float known = 1.0f - m[p];
                        known_row += known;
                        for (int c = 0; c < 3; ++c) {
                            colour_row[c] += cm[p * 3 + c] * known;
                            fill_row[c] += fl[p * 3 + c];
                        }
                    }
                    known_total += known_row;
                    for (int c = 0; c < 3; ++c) colour_total[c] += colour_row[c], fill_total[c] += fill_row[c];
                }
                const size_t q = static_cast<size_t>(gy) * gw + gx;
                weight[q] = known_total;
                for (int c = 0; c < 3; ++c) {
                    known_colour[q * 3 + c] = colour_total[c] / std::max(known_total, 1.0f);
                    fill_mean[q * 3 + c] = fill_total[c] / fill_count;
                }
            }
        jump_flood(weight, gh, gw, steps, seed_row, seed_col);
        // the nearest known colour minus the fill's, per cell; 0 where no seed reached (every cell of an image
        // without a known pixel), so such an image gets no shift
        for (size_t q = 0; q < cells; ++q) {
            const bool reached = seed_row[q] != kFar;
            const size_t from = reached ? static_cast<size_t>(seed_row[q]) * gw + seed_col[q] : q;
            for (int c = 0; c < 3; ++c)
                difference[q * 3 + c] = reached ? known_colour[from * 3 + c] - fill_mean[q * 3 + c] : 0.0f;
        }
        blur_normalised(difference.data(), gh, gw, 3, g, shift.data());
        for (size_t q = 0; q < cells * 3; ++q) shift[q] *= strength;
        float* o = out + b * pixels * 3;
#pragma omp parallel for schedule(static)
        for (int y = 0; y < h; ++y) {
            const AxisTap ty = ys[y];
            for (int x = 0; x < w; ++x) {
                const AxisTap tx = xs[x];
                const size_t p = static_cast<size_t>(y) * w + x;
                for (int c = 0; c < 3; ++c) {
                    const float value = fl[p * 3 + c] + bilinear_at(shift.data(), gw, 3, c, ty, tx) * m[p];
                    o[p * 3 + c] = std::min(std::max(value, 0.0f), 1.0f);
                }
            }
        }
    }
    return result;
}

// `model.anchor.known_cell_means` of one (h, w) image whose value at pixel p, channel c is value(p, c): per cell x
// cell cell, the mean over its known pixels (known (h, w) in {0, 1}; sums along each row of a cell first, then down
// its rows, as `cell_sums`) into means (h / cell, w / cell, C), 0 in a cell without one; has (h / cell, w / cell):
// 1 where the cell holds a known pixel, else 0.
template <int C, typename Value>
void known_cell_means(int h, int w, int cell, const float* known, Value value, float* means, float* has) {
    const int gh = h / cell, gw = w / cell;
#pragma omp parallel for schedule(static)
    for (int gy = 0; gy < gh; ++gy)
        for (int gx = 0; gx < gw; ++gx) {
            float known_total = 0.0f, total[C] = {};
            for (int dy = 0; dy < cell; ++dy) {
                float known_row = 0.0f, row[C] = {};
                for (int dx = 0; dx < cell; ++dx) {
                    const size_t p = static_cast<size_t>(gy * cell + dy) * w + gx * cell + dx;
                    known_row += known[p];
                    for (int c = 0; c < C; ++c) row[c] += value(p, c) * known[p];
                }
                known_total += known_row;
                for (int c = 0; c < C; ++c) total[c] += row[c];
            }
            const size_t q = static_cast<size_t>(gy) * gw + gx;
            for (int c = 0; c < C; ++c) means[q * C + c] = total[c] / std::max(known_total, 1.0f);
            has[q] = known_total > 0.0f ? 1.0f : 0.0f;
        }
}

// (h * scale, w * scale, C) from (h, w, C): bilinear, half-pixel centres (F.interpolate(scale_factor=scale)).
void upsample(const float* in, int h, int w, int C, int scale, float* out) {
    const int H = h * scale, W = w * scale;
    const std::vector<AxisTap> ys = axis_taps(H, h, 1.0f / static_cast<float>(scale));
    const std::vector<AxisTap> xs = axis_taps(W, w, 1.0f / static_cast<float>(scale));
#pragma omp parallel for schedule(static)
    for (int y = 0; y < H; ++y) {
        const AxisTap ty = ys[y];
        for (int x = 0; x < W; ++x) {
            const AxisTap tx = xs[x];
            for (int c = 0; c < C; ++c)
                out[(static_cast<size_t>(y) * W + x) * C + c] = bilinear_at(in, w, C, c, ty, tx);
        }
    }
}

// `model.flat.log_ramp` with its two numbers as torch rounds them to float: top = log(high), factor =
// 1 / (log(high) - log(low)).
struct LogRamp {
    float top, factor;
    LogRamp(double low, double high)
        : top(static_cast<float>(std::log(high))), factor(static_cast<float>(1.0 / (std::log(high) - std::log(low)))) {}
    float operator()(float value) const { return std::min(std::max((top - std::log(value)) * factor, 0.0f), 1.0f); }
};

// The Gaussian mean over known pixels (`model.flat.known_blur`) of a (h, w, C) grid whose known cells (has) hold
// their value: stack (h, w, C + 1) holds the values (0 where not known) and has; out (h, w, C).
template <int C>
void known_blur(const float* stack, int h, int w, const std::vector<float>& taps, float weight_floor, float* out) {
    const size_t cells = static_cast<size_t>(h) * w;
    std::vector<float> blurred(cells * (C + 1));
    blur_normalised(stack, h, w, C + 1, taps, blurred.data());
    for (size_t q = 0; q < cells; ++q)
        for (int c = 0; c < C; ++c)
            out[q * C + c] = blurred[q * (C + 1) + c] / std::max(blurred[q * (C + 1) + C], weight_floor);
}

// One image's `flat_weight` on its band cells: composite (h, w, 3), known (h, w) -> ramp (h / band_cell,
// w / band_cell), the weight before its bilinear upsampling.
void flat_band_weight(const float* composite, const float* known, int h, int w, int band_cell,
                      const std::vector<float>& fine_taps, const std::vector<float>& coarse_taps,
                      const std::vector<float>& window_taps, int flat_cell, int flat_levels, const LogRamp& ramp,
                      float detail_floor, int sweeps, int coarsest_sweeps, float fixed_share, float weight_floor,
                      float* weight) {
    const int gh = h / band_cell, gw = w / band_cell;
    const size_t cells = static_cast<size_t>(gh) * gw;
    std::vector<float> stack(cells * 4), has(cells), fine(cells * 3), coarse(cells * 3), size(cells);
    known_cell_means<3>(h, w, band_cell, known, [&](size_t p, int c) { return composite[p * 3 + c]; },
                        fine.data(), has.data());
    for (size_t q = 0; q < cells; ++q) {
        for (int c = 0; c < 3; ++c) stack[q * 4 + c] = fine[q * 3 + c] * has[q];
        stack[q * 4 + 3] = has[q];
    }
    known_blur<3>(stack.data(), gh, gw, fine_taps, weight_floor, fine.data());
    known_blur<3>(stack.data(), gh, gw, coarse_taps, weight_floor, coarse.data());
    for (size_t q = 0; q < cells; ++q) {
        float band = 0.0f;
        for (int c = 0; c < 3; ++c) band += std::fabs(fine[q * 3 + c] - coarse[q * 3 + c]);
        stack[q * 2] = band * has[q];
        stack[q * 2 + 1] = has[q];
    }
    known_blur<1>(stack.data(), gh, gw, window_taps, weight_floor, size.data());
    // carried into the hole by a membrane through the flat cells that hold a known band cell
    const int fh = gh / flat_cell, fw = gw / flat_cell;
    std::vector<float> flat_means(static_cast<size_t>(fh) * fw), flat_has(flat_means.size()),
        flat_membrane(flat_means.size()), carried(cells);
    known_cell_means<1>(gh, gw, flat_cell, has.data(), [&](size_t q, int) { return size[q]; }, flat_means.data(),
                        flat_has.data());
    membrane(flat_means.data(), flat_has.data(), fh, fw, 1, flat_levels, sweeps, coarsest_sweeps, fixed_share, nullptr,
             flat_membrane.data());
    upsample(flat_membrane.data(), fh, fw, 1, flat_cell, carried.data());
    for (size_t q = 0; q < cells; ++q)
        weight[q] = ramp(std::max(has[q] > 0.0f ? size[q] : carried[q], detail_floor));
}

// `model.flat.continued_fill`'s cell grid for one image: composite (h, w, 3), known (h, w) {0, 1} -> cells
// (h / cell, w / cell, 3), before the bilinear upsampling: the steps between neighbouring known cell means carried
// into the hole by two membranes (along rows, along columns), then the Poisson solution with their divergence.
void continued_cells(const float* composite, const float* known, int h, int w, int cell, int levels, int sweeps,
                     int coarsest_sweeps, float fixed_share, float* cells) {
    const int gh = h / cell, gw = w / cell;
    const size_t n = static_cast<size_t>(gh) * gw;
    float* means = scratch(kContinuedMeans, n * 3);
    float* has = scratch(kContinuedHas, n);
    float* steps_x = scratch(kStepsX, n * 3);
    float* steps_y = scratch(kStepsY, n * 3);
    float* known_x = scratch(kStepKnownX, n);
    float* known_y = scratch(kStepKnownY, n);
    float* along_x = scratch(kAlongX, n * 3);
    float* along_y = scratch(kAlongY, n * 3);
    float* divergence = scratch(kDivergence, n * 3);
    known_cell_means<3>(h, w, cell, known, [&](size_t p, int c) { return composite[p * 3 + c]; }, means, has);
#pragma omp parallel for schedule(static)
    for (int gy = 0; gy < gh; ++gy)
        for (int gx = 0; gx < gw; ++gx) {   // forward differences, 0 past the last column / row
            const size_t q = static_cast<size_t>(gy) * gw + gx;
            const bool right = gx + 1 < gw, below = gy + 1 < gh;
            known_x[q] = right ? has[q + 1] * has[q] : 0.0f;
            known_y[q] = below ? has[q + gw] * has[q] : 0.0f;
            for (int c = 0; c < 3; ++c) {
                steps_x[q * 3 + c] = right ? means[(q + 1) * 3 + c] - means[q * 3 + c] : 0.0f;
                steps_y[q * 3 + c] = below ? means[(q + gw) * 3 + c] - means[q * 3 + c] : 0.0f;
            }
        }
    membrane(steps_x, known_x, gh, gw, 3, levels, sweeps, coarsest_sweeps, fixed_share, nullptr, along_x);
    membrane(steps_y, known_y, gh, gw, 3, levels, sweeps, coarsest_sweeps, fixed_share, nullptr, along_y);
#pragma omp parallel for schedule(static)
    for (int gy = 0; gy < gh; ++gy)
        for (int gx = 0; gx < gw; ++gx) {   // `model.flat.divergence`
            const size_t q = static_cast<size_t>(gy) * gw + gx;
            for (int c = 0; c < 3; ++c) {
                const float right = gx + 1 < gw ? along_x[q * 3 + c] : 0.0f;
                const float left = gx > 0 ? along_x[(q - 1) * 3 + c] : 0.0f;
                const float down = gy + 1 < gh ? along_y[q * 3 + c] : 0.0f;
                const float up = gy > 0 ? along_y[(q - gw) * 3 + c] : 0.0f;
                divergence[q * 3 + c] = ((right - left) + down) - up;
            }
        }
    membrane(means, has, gh, gw, 3, levels, sweeps, coarsest_sweeps, fixed_share, nullptr, cells, divergence);
}

// out (h, w) = the largest value of src (h, w) {0, 1} within `radius` px along one axis (along_rows: x, else y),
// clipped at the image's edges.
void max_along(const float* src, int h, int w, int radius, bool along_rows, float* out) {
    const int n = along_rows ? w : h;
    const size_t step = along_rows ? 1 : static_cast<size_t>(w);
#pragma omp parallel for schedule(static)
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const int at = along_rows ? x : y;
            const float* line = src + static_cast<size_t>(y) * w + x - static_cast<size_t>(at) * step;
            float most = 0.0f;
            for (int k = std::max(at - radius, 0); k <= std::min(at + radius, n - 1); ++k)
                most = std::max(most, line[static_cast<size_t>(k) * step]);
            out[static_cast<size_t>(y) * w + x] = most;
        }
}

// mask (h, w) {0, 1} -> grown (h, w): F.max_pool2d's square window of side 2 radius + 1, clipped at the image's
// edges, as a pass along the rows and one along the columns.
void dilate(const float* mask, int h, int w, int radius, float* grown) {
    float* rows = scratch(kDilateRows, static_cast<size_t>(h) * w);
    max_along(mask, h, w, radius, true, rows);
    max_along(rows, h, w, radius, false, grown);
}

// `model.flat.holdout_weight`'s carried error for one image: composite (h, w, 3), mask (h, w) -> carried (h / cell,
// w / cell), the membrane before its bilinear upsampling; returns whether the image holds a ring pixel.
bool holdout_cells(const float* composite, const float* mask, int h, int w, int ring_width, int cell, int levels,
                   int sweeps, int coarsest_sweeps, float fixed_share, float* carried) {
    const size_t pixels = static_cast<size_t>(h) * w;
    const int gh = h / cell, gw = w / cell;
    const size_t n = static_cast<size_t>(gh) * gw;
    float* grown = scratch(kGrown, pixels);
    float* ring = scratch(kRing, pixels);
    float* grown_known = scratch(kGrownKnown, pixels);
    float* error = scratch(kRingError, pixels);
    float* guess = scratch(kGuess, n * 3);
    float* means = scratch(kErrorMeans, n);
    float* has = scratch(kErrorHas, n);
    dilate(mask, h, w, ring_width, grown);
    bool any_ring = false;
#pragma omp parallel for schedule(static) reduction(|| : any_ring)
    for (long long p = 0; p < static_cast<long long>(pixels); ++p) {
        ring[p] = grown[p] - mask[p];
        grown_known[p] = 1.0f - grown[p];
        any_ring = any_ring || ring[p] > 0.0f;
    }
    continued_cells(composite, grown_known, h, w, cell, levels, sweeps, coarsest_sweeps, fixed_share, guess);
    const std::vector<AxisTap> ys = axis_taps(h, gh, 1.0f / static_cast<float>(cell));
    const std::vector<AxisTap> xs = axis_taps(w, gw, 1.0f / static_cast<float>(cell));
#pragma omp parallel for schedule(static)
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const size_t p = static_cast<size_t>(y) * w + x;
            float total = 0.0f;
            if (ring[p] > 0.0f)
                for (int c = 0; c < 3; ++c) {
                    const float miss = bilinear_at(guess, gw, 3, c, ys[y], xs[x]) - composite[p * 3 + c];
                    total += miss * miss;
                }
            error[p] = total * ring[p];
        }
    known_cell_means<1>(h, w, cell, ring, [&](size_t p, int) { return error[p]; }, means, has);
    membrane(means, has, gh, gw, 1, levels, sweeps, coarsest_sweeps, fixed_share, nullptr, carried);
    return any_ring;
}

std::tuple<Floats, Floats> flat_fill(Floats composite, Floats mask, Floats filled, int band_cell, Floats fine_taps,
                                     Floats coarse_taps, Floats window_taps, int flat_cell, int flat_levels,
                                     double detail_low, double detail_high, float detail_floor, int membrane_cell,
                                     int membrane_levels, Floats low_taps, double spread_low, double spread_high,
                                     float spread_floor, int sweeps, int coarsest_sweeps, float fixed_share,
                                     float weight_floor, int form, int holdout_ring, double holdout_low,
                                     double holdout_high, float holdout_floor) {
    const auto cb = composite.request(), mb = mask.request(), fb = filled.request();
    if (form < kMembraneForm || form > kContinuedFlatForm)
        throw std::invalid_argument("form: expected 0 (membrane), 1 (continued) or 2 (continued_flat), got " +
                                    std::to_string(form));
    if (holdout_ring < 0)
        throw std::invalid_argument("holdout_ring: expected >= 0, got " + std::to_string(holdout_ring));
    const auto [B, h, w] = check_composite_mask_filled(cb, mb, fb);
    if (band_cell < 1 || flat_cell < 1 || membrane_cell < 1)
        throw std::invalid_argument("band_cell, flat_cell, membrane_cell: expected >= 1");
    const int flat_span = band_cell * flat_cell;
    if (h % flat_span || w % flat_span || h % membrane_cell || w % membrane_cell)
        throw std::invalid_argument("composite: expected h and w divisible by band_cell * flat_cell = " +
                                    std::to_string(flat_span) + " and membrane_cell = " +
                                    std::to_string(membrane_cell) + ", got h = " + std::to_string(h) + ", w = " +
                                    std::to_string(w));
    check_levels(h / flat_span, w / flat_span, flat_levels, sweeps, coarsest_sweeps);
    check_levels(h / membrane_cell, w / membrane_cell, membrane_levels, sweeps, coarsest_sweeps);
    const std::vector<float> fine = taps_of(fine_taps), coarse = taps_of(coarse_taps), window = taps_of(window_taps),
                             low_g = taps_of(low_taps);
    const LogRamp detail_ramp(detail_low, detail_high), spread_ramp(spread_low, spread_high),
        holdout_ramp(holdout_low, holdout_high);
    Floats smooth({B, h, w, 3}), weights({B, h, w});
    const float* comp = static_cast<const float*>(cb.ptr);
    const float* msk = static_cast<const float*>(mb.ptr);
    const float* fill = static_cast<const float*>(fb.ptr);
    float* smooth_out = smooth.mutable_data();
    float* weight_out = weights.mutable_data();
    const size_t pixels = static_cast<size_t>(h) * w;
    const int bh = h / band_cell, bw = w / band_cell, mh = h / membrane_cell, mw = w / membrane_cell;
    const size_t membrane_cells = static_cast<size_t>(mh) * mw;
    py::gil_scoped_release release;
    std::vector<float> known(pixels), band_weight(static_cast<size_t>(bh) * bw), both_means(membrane_cells * 6),
        colour_means(membrane_cells * 3), square_means(membrane_cells * 3), has(membrane_cells),
        colours(membrane_cells * 3), squares(membrane_cells * 3), carried(membrane_cells);
    float* low_input = scratch(kFlatLowInput, pixels * 3);
    float* low = scratch(kFlatLow, pixels * 3);
    for (int b = 0; b < B; ++b) {
        const float* cm = comp + b * pixels * 3;
        const float* m = msk + b * pixels;
        const float* fl = fill + b * pixels * 3;
        float* so = smooth_out + b * pixels * 3;
        float* wo = weight_out + b * pixels;
#pragma omp parallel for schedule(static)
        for (long long p = 0; p < static_cast<long long>(pixels); ++p) {
            known[p] = 1.0f - m[p];
            for (int c = 0; c < 3; ++c) low_input[p * 3 + c] = m[p] > 0.0f ? fl[p * 3 + c] : cm[p * 3 + c];
        }
        if (form != kContinuedForm) {
            flat_band_weight(cm, known.data(), h, w, band_cell, fine, coarse, window, flat_cell, flat_levels,
                             detail_ramp, detail_floor, sweeps, coarsest_sweeps, fixed_share, weight_floor,
                             band_weight.data());
            upsample(band_weight.data(), bh, bw, 1, band_cell, wo);
        } else {
            std::fill(wo, wo + pixels, 1.0f);
        }
        blur_normalised(low_input, h, w, 3, low_g, low);
        const std::vector<AxisTap> ys = axis_taps(h, mh, 1.0f / static_cast<float>(membrane_cell));
        const std::vector<AxisTap> xs = axis_taps(w, mw, 1.0f / static_cast<float>(membrane_cell));
        if (form != kMembraneForm) {   // the continued fill, weighted by its error on the left-out ring
            continued_cells(cm, known.data(), h, w, membrane_cell, membrane_levels, sweeps, coarsest_sweeps,
                            fixed_share, colours.data());
            const float any_ring = holdout_cells(cm, m, h, w, holdout_ring, membrane_cell, membrane_levels, sweeps,
                                                 coarsest_sweeps, fixed_share, carried.data()) ? 1.0f : 0.0f;
#pragma omp parallel for schedule(static)
            for (int y = 0; y < h; ++y) {
                const AxisTap ty = ys[y];
                for (int x = 0; x < w; ++x) {
                    const AxisTap tx = xs[x];
                    const size_t p = static_cast<size_t>(y) * w + x;
                    for (int c = 0; c < 3; ++c)
                        so[p * 3 + c] =
                            (fl[p * 3 + c] - low[p * 3 + c]) + bilinear_at(colours.data(), mw, 3, c, ty, tx);
                    const float error = std::max(bilinear_at(carried.data(), mw, 1, 0, ty, tx), holdout_floor);
                    wo[p] = (holdout_ramp(error) * any_ring) * wo[p];
                }
            }
            continue;
        }
        // the known colours' membrane and that of their squares: their cell means in one pass (channels 0-2 the
        // colours, 3-5 their squares), each membrane on its three
        auto colour_or_square = [&](size_t p, int c) {
            const float colour = cm[p * 3 + c % 3];
            return c < 3 ? colour : colour * colour;
        };
        known_cell_means<6>(h, w, membrane_cell, known.data(), colour_or_square, both_means.data(), has.data());
        for (size_t q = 0; q < membrane_cells; ++q)
            for (int c = 0; c < 3; ++c) {
                colour_means[q * 3 + c] = both_means[q * 6 + c];
                square_means[q * 3 + c] = both_means[q * 6 + 3 + c];
            }
        membrane(colour_means.data(), has.data(), mh, mw, 3, membrane_levels, sweeps, coarsest_sweeps, fixed_share,
                 nullptr, colours.data());
        membrane(square_means.data(), has.data(), mh, mw, 3, membrane_levels, sweeps, coarsest_sweeps, fixed_share,
                 nullptr, squares.data());
#pragma omp parallel for schedule(static)
        for (int y = 0; y < h; ++y) {
            const AxisTap ty = ys[y];
            for (int x = 0; x < w; ++x) {
                const AxisTap tx = xs[x];
                const size_t p = static_cast<size_t>(y) * w + x;
                float spread = 0.0f;
                for (int c = 0; c < 3; ++c) {
                    const float colour = bilinear_at(colours.data(), mw, 3, c, ty, tx);
                    spread += std::max(bilinear_at(squares.data(), mw, 3, c, ty, tx) - colour * colour, spread_floor);
                    so[p * 3 + c] = (fl[p * 3 + c] - low[p * 3 + c]) + colour;
                }
                wo[p] *= spread_ramp(spread);
            }
        }
    }
    return {smooth, weights};
}

}  // namespace

void register_lr_copy(py::module_& m) {
    m.def("blur_base", &blur_base, py::arg("image"), py::arg("taps"));
    m.def("copy_tokens", &copy_tokens, py::arg("image"), py::arg("known"), py::arg("source"), py::arg("patch"),
          py::arg("feather"), py::arg("base_feather") = 0, py::arg("base_taps") = Floats(0));
    m.def("harmonic_fill", &harmonic_fill, py::arg("values"), py::arg("fixed"), py::arg("levels"), py::arg("sweeps"),
          py::arg("coarsest_sweeps"), py::arg("fixed_share"));
    m.def("border_match", &border_match, py::arg("composite"), py::arg("mask"), py::arg("filled"), py::arg("taps"),
          py::arg("levels"), py::arg("sweeps"), py::arg("coarsest_sweeps"), py::arg("fixed_share"),
          py::arg("weight_floor"));
    m.def("colour_anchor", &colour_anchor, py::arg("composite"), py::arg("mask"), py::arg("filled"),
          py::arg("strength"), py::arg("taps"), py::arg("cell"), py::arg("steps"));
    m.def("flat_fill", &flat_fill, py::arg("composite"), py::arg("mask"), py::arg("filled"), py::arg("band_cell"),
          py::arg("fine_taps"), py::arg("coarse_taps"), py::arg("window_taps"), py::arg("flat_cell"),
          py::arg("flat_levels"), py::arg("detail_low"), py::arg("detail_high"), py::arg("detail_floor"),
          py::arg("membrane_cell"), py::arg("membrane_levels"), py::arg("low_taps"), py::arg("spread_low"),
          py::arg("spread_high"), py::arg("spread_floor"), py::arg("sweeps"), py::arg("coarsest_sweeps"),
          py::arg("fixed_share"), py::arg("weight_floor"), py::arg("form") = 0, py::arg("holdout_ring") = 0,
          py::arg("holdout_low") = 1.0, py::arg("holdout_high") = 2.0, py::arg("holdout_floor") = 1e-9f);
}

}  // namespace rethined
