// Bilinear resampling along one axis, half-pixel centres, edge clamped (torch's F.interpolate with
// align_corners=False): shared by the HR stage (rethined_native.cpp) and the CNN's 2x joins (cnn_ops.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace rethined {

// Output position v of an axis reads input samples i0 and i1 (edge clamped), with weight l on i1.
struct AxisTap {
    int i0, i1;
    float l;
};

// The taps of `count` output positions over n input samples, inv_scale = input / output size:
// source = max((v + 0.5) inv_scale - 0.5, 0), i0 = floor(source), l = source - i0.
inline std::vector<AxisTap> axis_taps(int count, int n, float inv_scale) {
    std::vector<AxisTap> out(count);
    for (int v = 0; v < count; ++v) {
        const float s = std::max((static_cast<float>(v) + 0.5f) * inv_scale - 0.5f, 0.0f);
        const int i0 = static_cast<int>(s);
        out[v] = {i0, std::min(i0 + 1, n - 1), s - static_cast<float>(i0)};
    }
    return out;
}

// The bilinear sample of channel c of a (rows, w, C) grid at (ty, tx): along x first, then along y (the order of
// torch's upsample_bilinear2d on the CPU).
inline float bilinear_at(const float* grid, int w, int C, int c, const AxisTap& ty, const AxisTap& tx) {
    const float top = (1.0f - tx.l) * grid[(static_cast<size_t>(ty.i0) * w + tx.i0) * C + c] +
                      tx.l * grid[(static_cast<size_t>(ty.i0) * w + tx.i1) * C + c];
    const float bottom = (1.0f - tx.l) * grid[(static_cast<size_t>(ty.i1) * w + tx.i0) * C + c] +
                         tx.l * grid[(static_cast<size_t>(ty.i1) * w + tx.i1) * C + c];
    return (1.0f - ty.l) * top + ty.l * bottom;
}

}  // namespace rethined
