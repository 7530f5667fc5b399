// The copy styles' propagation updates (`model.patchmatch.propagate_sources`, the loop of `choose_sources`), OpenMP
// over the tokens of each update:
//
//   propagate_sources(q, k (B, N, d) float32, candidates (B, N, C) int64, own_score (B, N, C) float32,
//                     valid (B, N, C) bool, has_key, key_ok (B, N) bool, source (B, N) int64, grid_w,
//                     colours, expected (B, N, 3) float32, colour_weight, sweeps, continuity, repeat_radius,
//                     repeat_penalty, border_continuity, support_margin) -> (B, N) int64
//
// Each update lets every hole token of one checkerboard colour pick the best of its C candidates (scored
// own_score, made once by torch) and of the four continuations of its hole neighbours' copies (scored here: q . k
// summed in index order, less the colour term), with the continuity credit, the repeat penalty and the rule against
// a neighbour's source; with border_continuity > 0 a known neighbour whose source is not itself (its look-alike,
// `border_lookalikes`) offers its continuation too, credited border_continuity; with support_margin > 0 a hole
// neighbour's copy is credited only while its score (the chosen option's, tracked across updates) is at least its
// best allowed candidate's less the margin. The torch function is the
// specification; the scores are combined in its order and precision, and only the continuations' dot products are
// summed in another order than its matmul, so the chosen sources equal its own except where two options' scores lie
// within float rounding (tests/test_native_lr_copy.py).
// Of equal scores the first option wins (candidates in order, then the sides up, down, left, right).
#include "source_sweep.h"

// a * b + c rounded twice, as torch computes it
#pragma GCC optimize("fp-contract=off")

#include <pybind11/numpy.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace rethined {
namespace {

using Floats = py::array_t<float, py::array::c_style>;
using Longs = py::array_t<int64_t, py::array::c_style>;
using Bools = py::array_t<bool, py::array::c_style>;

constexpr float kNoOption = -3.0f;   // model.patchmatch.NO_OPTION: the score of a ruled-out option
constexpr int kSides = 4;
constexpr int kSideDy[kSides] = {-1, 1, 0, 0};   // model.patchmatch.NEIGHBOURS
constexpr int kSideDx[kSides] = {0, 0, -1, 1};

struct Grid {
    int h, w;
    bool inside(int y, int x) const { return y >= 0 && y < h && x >= 0 && x < w; }
    int64_t cell(int y, int x) const {   // clamped into the grid, as `patchmatch._grid_cell`
        return static_cast<int64_t>(std::min(std::max(y, 0), h - 1)) * w + std::min(std::max(x, 0), w - 1);
    }
};

void check_shape(const py::array& a, std::initializer_list<py::ssize_t> shape, const char* name) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    int i = 0;
    for (py::ssize_t s : shape) ok = ok && a.shape(i++) == s;
    if (!ok) {
        std::string want;
        for (py::ssize_t s : shape) want += (want.empty() ? "" : ", ") + std::to_string(s);
        throw std::invalid_argument(std::string(name) + ": expected shape (" + want + ")");
    }
}

// One update of the tokens of colour `parity` of one image: reads `in`, writes every token of `out`.
struct Update {
    const float *q, *k, *own_score, *colours, *expected;
    const int64_t *candidates;
    const bool *valid, *has_key, *key_ok;
    int64_t n;
    int d, c;
    Grid grid;
    float colour_weight, continuity, repeat_penalty, border_continuity;
    const float* support_floor;   // (N,) the score a hole token's copy needs to earn its neighbours' credit; null: off
    std::vector<std::pair<int, int>> window;   // (dy, dx) of the tokens before a token in raster order, within the
                                               // repeat radius; empty when the repeat penalty is off

    float similarity(int64_t token, int64_t key) const {
        const float* a = q + token * d;
        const float* b = k + key * d;
        float sum = 0.0f;
        for (int i = 0; i < d; ++i) sum += a[i] * b[i];
        if (colour_weight > 0.0f) {
            float distance = 0.0f;
            for (int ch = 0; ch < 3; ++ch) distance += std::fabs(colours[key * 3 + ch] - expected[token * 3 + ch]);
            sum = sum - colour_weight * distance;
        }
        return sum;
    }

    // in, out: the sources; score_in, score_out: each source's score (the option's, without credits or
    // penalties), tracked with support_floor only
    void run(const int64_t* in, int64_t* out, const float* score_in, float* score_out, int parity) const {
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; ++t) {
            const int row = static_cast<int>(t / grid.w), col = static_cast<int>(t % grid.w);
            if (support_floor) score_out[t] = score_in[t];
            if (!has_key[t] || (row + col) % 2 != parity) {
                out[t] = in[t];
                continue;
            }
            int64_t taken[kSides], continuation[kSides];
            bool continues[kSides], supported[kSides];
            float credit[kSides];
            for (int s = 0; s < kSides; ++s) {
                const int ny = row + kSideDy[s], nx = col + kSideDx[s];
                const int64_t neighbour = grid.cell(ny, nx);
                const bool hole = grid.inside(ny, nx) && has_key[neighbour];
                const int64_t src = in[neighbour];
                const bool guide = border_continuity > 0.0f && grid.inside(ny, nx) && !has_key[neighbour] &&
                                   src != neighbour;
                const int cy = static_cast<int>(src / grid.w) - kSideDy[s];
                const int cx = static_cast<int>(src % grid.w) - kSideDx[s];
                continuation[s] = grid.cell(cy, cx);
                continues[s] = (hole || guide) && grid.inside(cy, cx) && key_ok[continuation[s]];
                credit[s] = hole ? continuity : border_continuity;
                supported[s] = !hole || !support_floor || score_in[neighbour] >= support_floor[neighbour];
                taken[s] = hole ? src : -1;
            }
            thread_local std::vector<int64_t> earlier;   // the sources of the window's hole tokens (-1: none)
            earlier.clear();
            for (const auto& [dy, dx] : window) {
                const int y = row + dy, x = col + dx;
                const int64_t cell = grid.cell(y, x);
                earlier.push_back(grid.inside(y, x) && has_key[cell] ? in[cell] : -1);
            }
            auto score = [&](int64_t option, float base, bool ok) {
                float agree = 0.0f, credited = 0.0f;   // hole neighbours continued; with guides, the credits summed
                bool repeats = false;
                for (int s = 0; s < kSides; ++s) {
                    const bool continued = option == (continues[s] ? continuation[s] : -1) && supported[s];
                    agree += continued ? 1.0f : 0.0f;
                    credited += continued ? credit[s] : 0.0f;
                    repeats = repeats || option == taken[s];
                }
                float value = border_continuity > 0.0f ? base + credited : base + continuity * agree;
                if (!earlier.empty()) {
                    float repeated = 0.0f;
                    for (int64_t source : earlier) repeated += option == source ? 1.0f : 0.0f;
                    value = value - repeat_penalty * repeated;
                }
                return ok && !repeats ? value : kNoOption;
            };
            float top = -INFINITY, best_base = 0.0f;
            int64_t best = in[t];
            for (int i = 0; i < c; ++i) {
                const float s = score(candidates[t * c + i], own_score[t * c + i], valid[t * c + i]);
                if (s > top) top = s, best = candidates[t * c + i], best_base = own_score[t * c + i];
            }
            for (int s = 0; s < kSides; ++s) {
                const float base = similarity(t, continuation[s]);
                const float value = score(continuation[s], base, continues[s]);
                if (value > top) top = value, best = continuation[s], best_base = base;
            }
            out[t] = top > kNoOption ? best : in[t];
            if (support_floor && top > kNoOption) score_out[t] = best_base;
        }
    }
};

Longs propagate_sources(const Floats& q, const Floats& k, const Longs& candidates, const Floats& own_score,
                        const Bools& valid, const Bools& has_key, const Bools& key_ok, const Longs& source, int grid_w,
                        const Floats& colours, const Floats& expected, float colour_weight, int sweeps,
                        float continuity, int repeat_radius, float repeat_penalty, float border_continuity,
                        float support_margin) {
    if (q.ndim() != 3) throw std::invalid_argument("q: expected (B, N, d) float32");
    const py::ssize_t batch = q.shape(0), n = q.shape(1), d = q.shape(2);
    if (candidates.ndim() != 3) throw std::invalid_argument("candidates: expected (B, N, C) int64");
    const py::ssize_t c = candidates.shape(2);
    check_shape(k, {batch, n, d}, "k");
    check_shape(candidates, {batch, n, c}, "candidates");
    check_shape(own_score, {batch, n, c}, "own_score");
    check_shape(valid, {batch, n, c}, "valid");
    check_shape(has_key, {batch, n}, "has_key");
    check_shape(key_ok, {batch, n}, "key_ok");
    check_shape(source, {batch, n}, "source");
    check_shape(colours, {batch, n, 3}, "colours");
    check_shape(expected, {batch, n, 3}, "expected");
    if (grid_w < 1 || n % grid_w) throw std::invalid_argument("grid_w: expected >= 1 dividing the token count");
    if (sweeps < 0) throw std::invalid_argument("sweeps: expected >= 0");
    if (!(border_continuity >= 0.0f)) throw std::invalid_argument("border_continuity: expected >= 0 (0 = off)");
    if (!(support_margin >= 0.0f)) throw std::invalid_argument("support_margin: expected >= 0 (0 = off)");
    const auto out_of_range = [n](const Longs& a) {
        return std::any_of(a.data(), a.data() + a.size(), [n](int64_t i) { return i < 0 || i >= n; });
    };
    if (out_of_range(candidates)) throw std::invalid_argument("candidates: token index out of range");
    if (out_of_range(source)) throw std::invalid_argument("source: token index out of range");
    std::vector<std::pair<int, int>> window;
    if (repeat_radius > 0 && repeat_penalty > 0.0f)
        for (int dy = -repeat_radius; dy <= 0; ++dy)
            for (int dx = -repeat_radius; dx <= (dy < 0 ? repeat_radius : -1); ++dx) window.emplace_back(dy, dx);
    Longs result({batch, n});
    std::vector<int64_t> other(static_cast<size_t>(n));
    const bool gated = support_margin > 0.0f;
    std::vector<float> floors(gated ? n : 0), score(gated ? n : 0), other_score(gated ? n : 0);
    {
        py::gil_scoped_release release;
        for (py::ssize_t b = 0; b < batch; ++b) {
            const Update update{q.data() + b * n * d, k.data() + b * n * d, own_score.data() + b * n * c,
                                colours.data() + b * n * 3, expected.data() + b * n * 3,
                                candidates.data() + b * n * c, valid.data() + b * n * c, has_key.data() + b * n,
                                key_ok.data() + b * n, n, static_cast<int>(d), static_cast<int>(c),
                                Grid{static_cast<int>(n / grid_w), grid_w}, colour_weight, continuity,
                                repeat_penalty, border_continuity, gated ? floors.data() : nullptr, window};
            int64_t* out = result.mutable_data() + b * n;
            std::copy(source.data() + b * n, source.data() + (b + 1) * n, out);
            if (gated) {   // `patchmatch.support_floors`, and the start's sources' scores
                for (int64_t t = 0; t < n; ++t) {
                    float best = kNoOption;
                    for (int i = 0; i < c; ++i)
                        if (update.valid[t * c + i]) best = std::max(best, update.own_score[t * c + i]);
                    floors[t] = best - support_margin;
                    score[t] = update.has_key[t] ? update.similarity(t, out[t]) : kNoOption;
                }
            }
            for (int sweep = 0; sweep < sweeps; ++sweep) {     // the second colour first, as the torch function
                update.run(out, other.data(), score.data(), other_score.data(), 1 - sweep % 2);
                std::copy(other.begin(), other.end(), out);
                std::swap(score, other_score);
            }
        }
    }
    return result;
}

}  // namespace

void register_source_sweep(py::module_& m) {
    m.def("propagate_sources", &propagate_sources, py::arg("q"), py::arg("k"), py::arg("candidates"),
          py::arg("own_score"), py::arg("valid"), py::arg("has_key"), py::arg("key_ok"), py::arg("source"),
          py::arg("grid_w"), py::arg("colours"), py::arg("expected"), py::arg("colour_weight"), py::arg("sweeps"),
          py::arg("continuity"), py::arg("repeat_radius"), py::arg("repeat_penalty"),
          py::arg("border_continuity") = 0.0f, py::arg("support_margin") = 0.0f);
}

}  // namespace rethined
