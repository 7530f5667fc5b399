// The coarse CNN's decoder joins on channels-last float32 buffers, OpenMP:
//
//   upsample_cat(x (B, h, w, C1), skip (B, 2h, 2w, C2), out=None) -> (B, 2h, 2w, C1 + C2), written into out when
//   given (a buffer of that shape reused across calls: a fresh one costs page faults on every call)
//       x upsampled 2x (bilinear, half-pixel centres, edge clamped: F.interpolate(scale_factor=2,
//       mode="bilinear", align_corners=False)) and skip after it along the channels: one pass where torch makes
//       the upsampled tensor and then copies both into the concatenation (`model.coarse.CoarseNet.forward`,
//       `model.layout.cat_channels`).
//
// The torch functions are the specification: each output is h0 (w0 a + w1 b) + h1 (w0 c + w1 d) with ATen's
// source index max(0.5 (o + 0.5) - 0.5, 0) and weights, so the results agree to float rounding
// (tests/test_native.py).
#include "cnn_ops.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bilinear.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <vector>

namespace py = pybind11;

namespace rethined {
namespace {

using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

Floats upsample_cat(Floats x, Floats skip, std::optional<py::array_t<float, py::array::c_style>> out_buffer) {
    const auto xb = x.request(), sb = skip.request();
    if (xb.ndim != 4 || sb.ndim != 4) throw std::invalid_argument("x, skip: expected (B, h, w, C) and (B, 2h, 2w, C2)");
    const int B = static_cast<int>(xb.shape[0]), h = static_cast<int>(xb.shape[1]), w = static_cast<int>(xb.shape[2]);
    const int c1 = static_cast<int>(xb.shape[3]), c2 = static_cast<int>(sb.shape[3]);
    if (sb.shape[0] != B || sb.shape[1] != 2 * h || sb.shape[2] != 2 * w)
        throw std::invalid_argument("skip: expected (B, 2h, 2w, C2) for x of (B, h, w, C1)");
    const int c = c1 + c2, H = 2 * h, W = 2 * w;
    Floats out = out_buffer ? Floats(*out_buffer) : Floats({B, H, W, c});
    if (out_buffer) {
        const auto ob = out.request();
        if (ob.ndim != 4 || ob.shape[0] != B || ob.shape[1] != H || ob.shape[2] != W || ob.shape[3] != c
            || !out_buffer->writeable())
            throw std::invalid_argument("out: expected a writeable C-contiguous float32 (B, 2h, 2w, C1 + C2) array");
    }
    const float* xs = static_cast<const float*>(xb.ptr);
    const float* ss = static_cast<const float*>(sb.ptr);
    float* os = out.mutable_data();
    const std::vector<AxisTap> rows = axis_taps(H, h, 0.5f), cols = axis_taps(W, w, 0.5f);
    {
        py::gil_scoped_release release;
#pragma omp parallel for schedule(static)
        for (int by = 0; by < B * H; ++by) {
            const int b = by / H, y = by - b * H;
            const AxisTap& ty = rows[y];
            const float* r0 = xs + (static_cast<size_t>(b) * h + ty.i0) * w * c1;
            const float* r1 = xs + (static_cast<size_t>(b) * h + ty.i1) * w * c1;
            const float* srow = ss + static_cast<size_t>(by) * W * c2;
            float* orow = os + static_cast<size_t>(by) * W * c;
            for (int X = 0; X < W; ++X) {
                const AxisTap& tx = cols[X];
                const float* a = r0 + static_cast<size_t>(tx.i0) * c1;
                const float* bb = r0 + static_cast<size_t>(tx.i1) * c1;
                const float* cc = r1 + static_cast<size_t>(tx.i0) * c1;
                const float* d = r1 + static_cast<size_t>(tx.i1) * c1;
                float* o = orow + static_cast<size_t>(X) * c;
                const float h0 = 1.0f - ty.l, h1 = ty.l, w0 = 1.0f - tx.l, w1 = tx.l;
                for (int k = 0; k < c1; ++k) o[k] = h0 * (w0 * a[k] + w1 * bb[k]) + h1 * (w0 * cc[k] + w1 * d[k]);
                std::copy(srow + static_cast<size_t>(X) * c2, srow + static_cast<size_t>(X + 1) * c2, o + c1);
            }
        }
    }
    return out;
}

}  // namespace

void register_cnn_ops(py::module_& m) {
    m.def("upsample_cat", &upsample_cat, py::arg("x"), py::arg("skip"), py::arg("out") = py::none());
}

}  // namespace rethined
