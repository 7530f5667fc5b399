"""Bilinear reads shared by the kernels: at free positions (the video path's `dis_search`, `flow_refinement`) and
as torch's 2-D upsampling of a cell grid (the LR copy steps' `colour_anchor`, `flat_fill`), with the program layout
of the per-pixel and per-cell launches that read them and a cell's count of known pixels."""
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


@triton.jit
def program_places(h, w, total, BLOCK: tl.constexpr):
    """This program's BLOCK places of a stack of B (h, w) grids, pixels or cells (total = B * h * w): (flat
    offsets, which are live, grid b, flat place in its grid, row, column)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    pixel = offs % (h * w)
    return offs, offs < total, offs // (h * w), pixel, pixel // w, pixel % w


@triton.jit
def upsample_taps(y, x, gh, gw, SCALE: tl.constexpr):
    """Where the pixel (y, x) reads a (gh, gw) grid upsampled SCALE times (torch's `interpolate(scale_factor=SCALE,
    mode="bilinear", align_corners=False)`): (row above, row below, column left, column right, their weights)."""
    src_y = tl.maximum((y.to(tl.float32) + 0.5) / SCALE - 0.5, 0.0)
    src_x = tl.maximum((x.to(tl.float32) + 0.5) / SCALE - 0.5, 0.0)
    y0 = tl.minimum(src_y.to(tl.int32), gh - 1)
    x0 = tl.minimum(src_x.to(tl.int32), gw - 1)
    return (y0, tl.minimum(y0 + 1, gh - 1), x0, tl.minimum(x0 + 1, gw - 1), src_y - y0.to(tl.float32),
            src_x - x0.to(tl.float32))


@triton.jit
def upsampled(ptr, plane, gw, y0, y1, x0, x1, ly, lx, live):
    """The grid plane starting at ptr + plane (rows gw long) read bilinearly at `upsample_taps`' place, float32."""
    v00 = tl.load(ptr + plane + y0 * gw + x0, mask=live, other=0.0).to(tl.float32)
    v01 = tl.load(ptr + plane + y0 * gw + x1, mask=live, other=0.0).to(tl.float32)
    v10 = tl.load(ptr + plane + y1 * gw + x0, mask=live, other=0.0).to(tl.float32)
    v11 = tl.load(ptr + plane + y1 * gw + x1, mask=live, other=0.0).to(tl.float32)
    return (1.0 - ly) * ((1.0 - lx) * v00 + lx * v01) + ly * ((1.0 - lx) * v10 + lx * v11)


@triton.jit
def known_count(hole_ptr, b, h, w, cy, cx, live, CELL: tl.constexpr, BLOCK: tl.constexpr):
    """How many of the CELL x CELL pixels of cell (cy, cx) of image b of hole (B, 1, h, w) {0, 1} are known, summed
    from zero row by row as `model.anchor.cell_sums` sums (each row, then the rows), float32."""
    weight = tl.zeros((BLOCK,), tl.float32)
    for r in tl.static_range(CELL):
        row = tl.zeros((BLOCK,), tl.float32)
        for c in tl.static_range(CELL):
            row += 1.0 - tl.load(hole_ptr + (b * h + cy * CELL + r) * w + cx * CELL + c, mask=live,
                                 other=1.0).to(tl.float32)
        weight += row
    return weight
