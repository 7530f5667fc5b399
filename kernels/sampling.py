"""Bilinear reads shared by the video path's kernels (`dis_search`, `flow_refinement`)."""
import triton
import triton.language as tl


@triton.jit
def bilinear(image, px, py, h, w, mask):
    """image (h, w) float32 at positions px, py (one shape, px): clamped into the image, then bilinear (edges
    replicated, as `grid_sample` with border padding and align_corners) -> values of that shape."""
    px = tl.minimum(tl.maximum(px, 0.0), w - 1.0)
    py = tl.minimum(tl.maximum(py, 0.0), h - 1.0)
    left = tl.floor(px)
    top = tl.floor(py)
    fx = px - left
    fy = py - top
    x0 = left.to(tl.int32)
    y0 = top.to(tl.int32)
    x1 = tl.minimum(x0 + 1, w - 1)
    y1 = tl.minimum(y0 + 1, h - 1)
    upper = (tl.load(image + y0 * w + x0, mask=mask, other=0.0) * (1 - fx)
             + tl.load(image + y0 * w + x1, mask=mask, other=0.0) * fx)
    lower = (tl.load(image + y1 * w + x0, mask=mask, other=0.0) * (1 - fx)
             + tl.load(image + y1 * w + x1, mask=mask, other=0.0) * fx)
    return upper * (1 - fy) + lower * fy
