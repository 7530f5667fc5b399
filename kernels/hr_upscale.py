"""HR attention upscale: one pass over the HR image, uint8 in -> uint8 out (Triton), with its torch
reference of the same signature.

A hole pixel p of token i (token = (s*P)^2 HR pixels) becomes (then * 255, rounded)
    clamp(up(p) + sum_k weight[i, k] * (y(q_k) - up(q_k)) + fine_weight[i, k] * (y(q_k) - B(y)(q_k)), 0, 1)
with y = image / 255, up = bilinear(lr_result) (half-pixel centres, edge clamped), q_k the pixel at p's
offset in source token index[i, k], and B the 3x3 binomial blur inside that token (edge pixels
replicated: `model.upscale.fine_band`). Sources with a nonzero weight are known tokens inside the image
(the LR network's top-K rows guarantee it), so every pixel read is known. Known pixels are copied. The
image is read in the caller's layout (any strides: HWC numpy-style or CHW torch-style).

With feather > 0 (`ModelConfig.hr_feather`, LR px; one source per token, one band) the term of a copying token
(weight[i] = its gain g) is g x the cross-faded texture of `model.upscale.feathered_texture`: the copies of
the pixel's token and of the (up to) three neighbours on its side of the token's centre lines, each weighted
by `feather_weight` (feather * s HR px) along both axes and by whether the sampled pixel's token is known
(+ COPY_FLOOR), one sample per distinct offset, summed over the root of the summed squared weights. Token
interiors (farther than feather * s from every edge) get their own copy alone, as without feather.

Bytes moved per image: read 3 B (image) + 1 B (mask) + 3 B per source for hole pixels, write 3 B (the
fine band's 3x3 neighbourhood comes from the cache lines the source row already brought in).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.deploy.host import check_feather
from rethined_engine.geometry import Geometry

from .tuning import INTERPRET

TILE_PIXELS_GPU = 32   # HR pixels per program (one row of 32 in a large token), one per thread of one warp: the
NUM_WARPS = 1       # fastest of 32-512 px x 1-8 warps on an H100 at 2048^2-8192^2 (engine call, two bands, K = 1:
                    # 0.092 / 0.333 / 1.29 ms vs 0.120 / 0.410 / 1.58 at 128 px x 4 warps;
                    # bench/results/hr-upscale-tile-sweep-*.json); 64 registers at K = 1 and 4 (sm_90)
MAX_TILE_W = 32     # tile columns: one 32-byte sector per row and channel (CHW)
TILE_PIXELS = 4 * TILE_PIXELS_GPU if INTERPRET else TILE_PIXELS_GPU   # interpreted: 4 rows, a quarter of the programs
INV_255 = tl.constexpr(1.0 / 255.0)
INV_BLUR = tl.constexpr(1.0 / (16.0 * 255.0))   # the integer binomial taps (1 2 1) x (1 2 1) sum to 16
COPY_FLOOR = tl.constexpr(1e-3)   # `model.patchmatch.COPY_FLOOR`: weight of a copy whose source token is not known


@triton.jit
def _axis_taps(v, n, inv_scale):
    """LR taps (i0, i1) and weight of i1 along one axis for HR coordinates v; half-pixel centres, edge
    clamp. The bilinear weights are separable, so rows and columns are computed once per tile."""
    s = tl.maximum((v.to(tl.float32) + 0.5) * inv_scale - 0.5, 0.0)
    i0 = s.to(tl.int32)
    return i0, tl.minimum(i0 + 1, n - 1), s - i0.to(tl.float32)


@triton.jit
def _bilinear(plane_ptr, w, y0, y1, ly, x0, x1, lx, valid):
    """One LR channel plane (row length w) at rows (y0, y1, ly) (TILE_H, 1) x columns (x0, x1, lx) (1, TILE_W)."""
    top = tl.load(plane_ptr + y0 * w + x0, mask=valid, other=0.0) * (1.0 - lx) + tl.load(plane_ptr + y0 * w + x1, mask=valid, other=0.0) * lx
    bottom = tl.load(plane_ptr + y1 * w + x0, mask=valid, other=0.0) * (1.0 - lx) + tl.load(plane_ptr + y1 * w + x1, mask=valid, other=0.0) * lx
    return top * (1.0 - ly) + bottom * ly


@triton.jit
def _round_half_even(v):
    f = tl.floor(v)
    d = v - f
    odd = f - 2.0 * tl.floor(f * 0.5)
    return tl.where(d > 0.5, f + 1.0, tl.where(d < 0.5, f, f + odd))


@triton.jit
def _blur_row(plane_ptr, r, c0, c1, c2, valid):
    return (tl.load(plane_ptr + r + c0, mask=valid, other=0).to(tl.int32)
            + 2 * tl.load(plane_ptr + r + c1, mask=valid, other=0).to(tl.int32)
            + tl.load(plane_ptr + r + c2, mask=valid, other=0).to(tl.int32))


@triton.jit
def _source_term(plane_ptr, lr_plane_ptr, w, q_off, sy0, sy1, sly, sx0, sx1, slx, wk, fk, valid,
                 r0, r1, r2, c0, c1, c2, FINE: tl.constexpr):
    """One channel of one source's contribution: wk (q - up(q)) [+ fk (q - B(y)(q))], q = y at the source."""
    q = tl.load(plane_ptr + q_off, mask=valid, other=0).to(tl.float32) * INV_255
    term = wk * (q - _bilinear(lr_plane_ptr, w, sy0, sy1, sly, sx0, sx1, slx, valid))
    if FINE:   # 3x3 binomial blur inside the source token, summed exactly in integers
        blur = (_blur_row(plane_ptr, r0, c0, c1, c2, valid) + 2 * _blur_row(plane_ptr, r1, c0, c1, c2, valid)
                + _blur_row(plane_ptr, r2, c0, c1, c2, valid))
        term += fk * (q - blur.to(tl.float32) * INV_BLUR)
    return term


@triton.jit
def _store_channel(out_ptr, image_ptr, c, img_sc, out_sc, pix_off, out_off, acc, hole, inside):
    pix = tl.load(image_ptr + pix_off + c * img_sc, mask=inside, other=0)
    filled = _round_half_even(tl.minimum(tl.maximum(acc, 0.0), 1.0) * 255.0).to(tl.uint8)
    tl.store(out_ptr + out_off + c * out_sc, tl.where(hole, filled, pix), mask=inside)


@triton.jit
def _feather_weight(offset, span, feather):
    """`model.patchmatch.feather_weight` (feather > 0 HR px) of offsets (float32 px from a token's first row/column)."""
    rising = offset + feather + 0.5
    falling = span + feather - 0.5 - offset
    return tl.minimum(tl.maximum(tl.minimum(rising, falling) / (2.0 * feather), 0.0), 1.0)


@triton.jit
def _neighbour_copy(weight_ptr, index_ptr, ty, tx, oy, ox, ny, nx, span, feather, grid_h, grid_w, live):
    """The copy that token (ty + ny, tx + nx) brings to pixels at offsets (oy, ox) of token (ty, tx): its
    feather weight along both axes (0 outside the grid) and its offset (dy, dx) in HR px (a token with
    weight 0 keeps itself: offset 0)."""
    uy = ty + ny
    ux = tx + nx
    fw = (_feather_weight((oy - ny * span).to(tl.float32), span, feather)
          * _feather_weight((ox - nx * span).to(tl.float32), span, feather))
    fw = tl.where((uy >= 0) & (uy < grid_h) & (ux >= 0) & (ux < grid_w), fw, 0.0)
    u = uy * grid_w + ux
    reads = live & (fw > 0.0)
    copies = tl.load(weight_ptr + u, mask=reads, other=0.0) != 0.0
    source = tl.where(copies, tl.load(index_ptr + u, mask=reads, other=0), u)
    return fw, (source // grid_w - uy) * span, (source % grid_w - ux) * span


@triton.jit
def _same(dy_a, dx_a, dy_b, dx_b):
    return ((dy_a == dy_b) & (dx_a == dx_b)).to(tl.float32)


@triton.jit
def _mirror(offset, span):
    """`model.patchmatch._mirror`: an offset from a token's first row / column reflected into the token."""
    return tl.where(offset >= span, 2 * span - 1 - offset, tl.where(offset < 0, -1 - offset, offset))


@triton.jit
def _copy_read(known_ptr, y, x, oy, ox, ny, nx, dy, dx, fw, span, grid_h, grid_w, live, REFLECT: tl.constexpr):
    """Where the copy of neighbour (ny, nx), moving the pixel by (dy, dx), reads: the moved pixel, or with REFLECT
    (`hr_fade_reflect`, `copy_tokens(reflect_unknown=True)`) where that lies in a token not known, the pixel mirrored
    about the source's edge (if known). Returns (qy, qx, known, weight fw x (known + COPY_FLOOR))."""
    max_y = grid_h * span - 1
    max_x = grid_w * span - 1
    qy = tl.minimum(tl.maximum(y + dy, 0), max_y)
    qx = tl.minimum(tl.maximum(x + dx, 0), max_x)
    reads = live & (fw > 0.0)
    known = tl.load(known_ptr + (qy // span) * grid_w + qx // span, mask=reads, other=0) != 0
    if REFLECT:
        off_y = oy - ny * span
        off_x = ox - nx * span
        my = tl.minimum(tl.maximum(y + dy - (off_y - _mirror(off_y, span)), 0), max_y)
        mx = tl.minimum(tl.maximum(x + dx - (off_x - _mirror(off_x, span)), 0), max_x)
        mirrored = tl.load(known_ptr + (my // span) * grid_w + mx // span, mask=reads & ~known, other=0) != 0
        qy = tl.where(known, qy, my)
        qx = tl.where(known, qx, mx)
        known = known | mirrored
    return qy, qx, known, fw * (known.to(tl.float32) + COPY_FLOOR)


@triton.jit
def _sample_at(image_ptr, lr_ptr, qy, qx, weight, h, w, inv_scale, img_sy, img_sx, img_sc, reads):
    """weight x (y - up) at pixels (qy, qx) per channel, read where `reads`."""
    qy0, qy1, qly = _axis_taps(qy, h, inv_scale)
    qx0, qx1, qlx = _axis_taps(qx, w, inv_scale)
    q_off = qy * img_sy + qx * img_sx
    lr_plane = h * w
    t0 = tl.load(image_ptr + q_off, mask=reads, other=0).to(tl.float32) * INV_255 - _bilinear(
        lr_ptr, w, qy0, qy1, qly, qx0, qx1, qlx, reads)
    t1 = tl.load(image_ptr + img_sc + q_off, mask=reads, other=0).to(tl.float32) * INV_255 - _bilinear(
        lr_ptr + lr_plane, w, qy0, qy1, qly, qx0, qx1, qlx, reads)
    t2 = tl.load(image_ptr + 2 * img_sc + q_off, mask=reads, other=0).to(tl.float32) * INV_255 - _bilinear(
        lr_ptr + 2 * lr_plane, w, qy0, qy1, qly, qx0, qx1, qlx, reads)
    return weight * t0, weight * t1, weight * t2


@triton.jit
def _feathered_texture(image_ptr, lr_ptr, weight_ptr, index_ptr, known_ptr, y, x, ty, tx, oy, ox, h, w, inv_scale,
                       span, feather, grid_h, grid_w, img_sy, img_sx, img_sc, live, REFLECT: tl.constexpr):
    """The cross-faded copied texture (3 channels) at pixels (y, x) of token (ty, tx): the copies of the token
    and of the (up to) three neighbours on each pixel's side of the token's centre lines, one sample per
    distinct pixel read, summed over the root of the summed squared weights (the weights of copies with one
    offset added first; `copy_tokens(keep_contrast=True)`, the native `feathered_texture`). REFLECT
    (`hr_fade_reflect`): a read past a source's edge into a token not known is mirrored into the source."""
    side_y = tl.where(span // 2 - oy > 0, -1, 1)
    side_x = tl.where(span // 2 - ox > 0, -1, 1)
    fw0, dy0, dx0 = _neighbour_copy(weight_ptr, index_ptr, ty, tx, oy, ox, 0 * side_y, 0 * side_x, span, feather,
                                    grid_h, grid_w, live)
    fw1, dy1, dx1 = _neighbour_copy(weight_ptr, index_ptr, ty, tx, oy, ox, side_y, 0 * side_x, span, feather,
                                    grid_h, grid_w, live)
    fw2, dy2, dx2 = _neighbour_copy(weight_ptr, index_ptr, ty, tx, oy, ox, 0 * side_y, side_x, span, feather,
                                    grid_h, grid_w, live)
    fw3, dy3, dx3 = _neighbour_copy(weight_ptr, index_ptr, ty, tx, oy, ox, side_y, side_x, span, feather,
                                    grid_h, grid_w, live)
    s01 = _same(dy0, dx0, dy1, dx1)
    s02 = _same(dy0, dx0, dy2, dx2)
    s03 = _same(dy0, dx0, dy3, dx3)
    s12 = _same(dy1, dx1, dy2, dx2)
    s13 = _same(dy1, dx1, dy3, dx3)
    s23 = _same(dy2, dx2, dy3, dx3)
    # each copy's read (mirrored where needed with REFLECT); each distinct pixel read sampled once
    qy0, qx0, k0, w0 = _copy_read(known_ptr, y, x, oy, ox, 0 * side_y, 0 * side_x, dy0, dx0, fw0, span,
                                  grid_h, grid_w, live, REFLECT)
    qy1, qx1, k1, w1 = _copy_read(known_ptr, y, x, oy, ox, side_y, 0 * side_x, dy1, dx1, fw1, span,
                                  grid_h, grid_w, live, REFLECT)
    qy2, qx2, k2, w2 = _copy_read(known_ptr, y, x, oy, ox, 0 * side_y, side_x, dy2, dx2, fw2, span,
                                  grid_h, grid_w, live, REFLECT)
    qy3, qx3, k3, w3 = _copy_read(known_ptr, y, x, oy, ox, side_y, side_x, dy3, dx3, fw3, span,
                                  grid_h, grid_w, live, REFLECT)
    v0 = w0 * k0.to(tl.float32)      # what a read contributes (0 where nothing known was found)
    v1 = w1 * k1.to(tl.float32)
    v2 = w2 * k2.to(tl.float32)
    v3 = w3 * k3.to(tl.float32)
    p01 = _same(qy0, qx0, qy1, qx1)
    p02 = _same(qy0, qx0, qy2, qx2)
    p03 = _same(qy0, qx0, qy3, qx3)
    p12 = _same(qy1, qx1, qy2, qx2)
    p13 = _same(qy1, qx1, qy3, qx3)
    p23 = _same(qy2, qx2, qy3, qx3)
    r0 = v0 + v1 * p01 + v2 * p02 + v3 * p03
    r1 = (v1 + v0 * p01 + v2 * p12 + v3 * p13) * (1.0 - p01)
    r2 = (v2 + v0 * p02 + v1 * p12 + v3 * p23) * (1.0 - p02) * (1.0 - p12)
    r3 = (v3 + v0 * p03 + v1 * p13 + v2 * p23) * (1.0 - p03) * (1.0 - p13) * (1.0 - p23)
    a0, b0, c0 = _sample_at(image_ptr, lr_ptr, qy0, qx0, r0, h, w, inv_scale, img_sy, img_sx, img_sc,
                            live & (r0 > 0.0))
    a1, b1, c1 = _sample_at(image_ptr, lr_ptr, qy1, qx1, r1, h, w, inv_scale, img_sy, img_sx, img_sc,
                            live & (r1 > 0.0))
    a2, b2, c2 = _sample_at(image_ptr, lr_ptr, qy2, qx2, r2, h, w, inv_scale, img_sy, img_sx, img_sc,
                            live & (r2 > 0.0))
    a3, b3, c3 = _sample_at(image_ptr, lr_ptr, qy3, qx3, r3, h, w, inv_scale, img_sy, img_sx, img_sc,
                            live & (r3 > 0.0))
    # the weights of copies with one offset add before squaring (they continue each other)
    squares = (w0 * w0 + w1 * w1 + w2 * w2 + w3 * w3
               + 2.0 * (w0 * w1 * s01 + w0 * w2 * s02 + w0 * w3 * s03 + w1 * w2 * s12 + w1 * w3 * s13
                        + w2 * w3 * s23))
    norm = tl.where(squares > 0.0, 1.0 / tl.sqrt(tl.where(squares > 0.0, squares, 1.0)), 0.0)
    return (a0 + a1 + a2 + a3) * norm, (b0 + b1 + b2 + b3) * norm, (c0 + c1 + c2 + c3) * norm


@triton.jit
def hr_upscale_kernel(image_ptr, mask_ptr, lr_ptr, weight_ptr, fine_weight_ptr, index_ptr, known_ptr, out_ptr,
                      H, W, h, w, scale, span, grid_h, grid_w, cols, tiles_x, feather,
                      img_sy, img_sx, img_sc, out_sy, out_sx, out_sc, mask_sy, mask_sx,
                      K: tl.constexpr, FINE: tl.constexpr, FEATHER: tl.constexpr, TILE_H: tl.constexpr,
                      TILE_W: tl.constexpr, REFLECT: tl.constexpr):
    """Program (token, tile): a TILE_H x TILE_W tile of one span x span token, so the token's sources and
    weights are scalars, a source with zero weights is skipped, a tile without hole pixels only copies,
    and the LR taps and blur offsets are computed per row and per column. FEATHER (K = 1, one band; feather
    HR px): a copying token's texture is `_feathered_texture` (its own copy inside, cross-faded near edges)."""
    ty = tl.program_id(0) // cols       # the tokens that meet the image, `cols` of them per row
    tx = tl.program_id(0) - ty * cols
    token = ty * grid_w + tx
    tile = tl.program_id(1)
    oy = (tile // tiles_x) * TILE_H + tl.arange(0, TILE_H)[:, None]     # offsets inside the token
    ox = (tile % tiles_x) * TILE_W + tl.arange(0, TILE_W)[None, :]
    y = ty * span + oy
    x = tx * span + ox
    inside = (oy < span) & (ox < span) & (y < H) & (x < W)
    hole = tl.load(mask_ptr + y * mask_sy + x * mask_sx, mask=inside, other=0) != 0
    live = inside & hole
    acc0 = tl.zeros((TILE_H, TILE_W), tl.float32)
    acc1 = tl.zeros((TILE_H, TILE_W), tl.float32)
    acc2 = tl.zeros((TILE_H, TILE_W), tl.float32)
    if tl.max(tl.max(live.to(tl.int32), axis=1), axis=0) > 0:
        inv_scale = 1.0 / scale      # no .to(): an int argument equal to 1 is specialised to a constexpr on GPU
        lr_plane = h * w
        py0, py1, ply = _axis_taps(y, h, inv_scale)
        px0, px1, plx = _axis_taps(x, w, inv_scale)
        acc0 = _bilinear(lr_ptr, w, py0, py1, ply, px0, px1, plx, live)
        acc1 = _bilinear(lr_ptr + lr_plane, w, py0, py1, ply, px0, px1, plx, live)
        acc2 = _bilinear(lr_ptr + 2 * lr_plane, w, py0, py1, ply, px0, px1, plx, live)
        if FEATHER:
            gain = tl.load(weight_ptr + token)
            if gain != 0.0:
                t0, t1, t2 = _feathered_texture(image_ptr, lr_ptr, weight_ptr, index_ptr, known_ptr, y, x, ty, tx,
                                                oy, ox, h, w, inv_scale, span, feather, grid_h, grid_w,
                                                img_sy, img_sx, img_sc, live, REFLECT)
                acc0 += gain * t0
                acc1 += gain * t1
                acc2 += gain * t2
        else:
            for k in tl.static_range(K):
                wk = tl.load(weight_ptr + token * K + k)
                fk = wk                  # unused without the fine band
                use = wk != 0.0
                if FINE:
                    fk = tl.load(fine_weight_ptr + token * K + k)
                    use = use | (fk != 0.0)
                if use:
                    src = tl.load(index_ptr + token * K + k)
                    src_y = (src // grid_w) * span
                    src_x = (src % grid_w) * span
                    sy = src_y + oy
                    sx = src_x + ox
                    q_off = sy * img_sy + sx * img_sx
                    sy0, sy1, sly = _axis_taps(sy, h, inv_scale)
                    sx0, sx1, slx = _axis_taps(sx, w, inv_scale)
                    r0 = (src_y + tl.maximum(oy - 1, 0)) * img_sy            # the token's edge pixels replicated
                    r1 = sy * img_sy
                    r2 = (src_y + tl.minimum(oy + 1, span - 1)) * img_sy
                    c0 = (src_x + tl.maximum(ox - 1, 0)) * img_sx
                    c1 = sx * img_sx
                    c2 = (src_x + tl.minimum(ox + 1, span - 1)) * img_sx
                    acc0 += _source_term(image_ptr, lr_ptr, w, q_off, sy0, sy1, sly, sx0, sx1, slx, wk, fk, live,
                                         r0, r1, r2, c0, c1, c2, FINE)
                    acc1 += _source_term(image_ptr + img_sc, lr_ptr + lr_plane, w, q_off, sy0, sy1, sly, sx0, sx1, slx,
                                         wk, fk, live, r0, r1, r2, c0, c1, c2, FINE)
                    acc2 += _source_term(image_ptr + 2 * img_sc, lr_ptr + 2 * lr_plane, w, q_off, sy0, sy1, sly, sx0,
                                         sx1, slx, wk, fk, live, r0, r1, r2, c0, c1, c2, FINE)
    pix_off = y * img_sy + x * img_sx
    out_off = y * out_sy + x * out_sx
    _store_channel(out_ptr, image_ptr, 0, img_sc, out_sc, pix_off, out_off, acc0, hole, inside)
    _store_channel(out_ptr, image_ptr, 1, img_sc, out_sc, pix_off, out_off, acc1, hole, inside)
    _store_channel(out_ptr, image_ptr, 2, img_sc, out_sc, pix_off, out_off, acc2, hole, inside)


def _layout(t: torch.Tensor, channels_last: bool) -> tuple[int, int, int]:
    """(stride_y, stride_x, stride_c) of an (H, W, 3) or (3, H, W) view."""
    return (t.stride(0), t.stride(1), t.stride(2)) if channels_last else (t.stride(1), t.stride(2), t.stride(0))


def tile_shape(span: int) -> tuple[int, int]:
    """(TILE_H, TILE_W) of a program's tile inside a span x span token: powers of two, no wider than the
    token (rounded up to a power of two) or MAX_TILE_W, TILE_PIXELS pixels when the token is large."""
    tile_w = min(MAX_TILE_W, triton.next_power_of_2(span))
    return min(TILE_PIXELS // tile_w, triton.next_power_of_2(span)), tile_w


def hr_upscale(image: torch.Tensor, mask: torch.Tensor, lr_result: torch.Tensor, weight: torch.Tensor,
               fine_weight: torch.Tensor | None, index: torch.Tensor, geom: Geometry, channels_last: bool = True,
               out: torch.Tensor | None = None, feather: int = 0, known: torch.Tensor | None = None,
               reflect: bool = False) -> torch.Tensor:
    """image uint8 (H, W, 3) if channels_last else (3, H, W), any strides; mask (H, W) bool/uint8;
    lr_result (1, 3, h, w) float32; weight, fine_weight (N, K) float32 (fine_weight None: one band, the
    kernel without the fine band's loads); index (N, K) int32. Writes `out` (default: a new contiguous
    uint8 tensor of image's shape) and returns it.
    feather: LR px (`ModelConfig.hr_feather`; `deploy.host.check_feather`: > 0 needs K = 1 and fine_weight
    None); known: (N,) bool, the tokens whose texture a feathered copy may read (`deploy.host.known_tokens`),
    needed with feather > 0: a token with a nonzero weight copies token index, cross-faded with its
    neighbours' copies within feather * scale HR px of its edges; reflect (`ModelConfig.hr_fade_reflect`, with
    feather > 0): past a source's edge where a token is not known, its own texture mirrored."""
    if image.dtype != torch.uint8:
        raise TypeError(f"image: expected uint8, got {image.dtype}")
    check_feather(feather, geom.patch, weight.shape[-1], fine_weight is not None)
    if feather > 0 and (known is None or known.shape != (geom.grid_h * geom.grid_w,)):
        raise ValueError(f"known: feather > 0 needs the known tokens, a ({geom.grid_h * geom.grid_w},) bool tensor; "
                         f"got {None if known is None else tuple(known.shape)}")
    if out is None:
        out = torch.empty(image.shape, dtype=torch.uint8, device=image.device)
    mask = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
    lr = lr_result.float().contiguous()
    h, w = geom.lr_size
    span = geom.scale * geom.patch
    transfer = geom.scale > 1        # at scale 1 the LR result is the result: no sources read (K = 0)
    fine = fine_weight is not None and transfer
    tile_h, tile_w = tile_shape(span)
    tiles_x = triton.cdiv(span, tile_w)
    weight = weight.float().contiguous()
    cols = triton.cdiv(geom.width, span)       # padding tokens wholly outside the image get no program
    grid = (triton.cdiv(geom.height, span) * cols, triton.cdiv(span, tile_h) * tiles_x)
    feathered = feather > 0 and transfer
    known = known.view(torch.uint8) if feathered and known.dtype == torch.bool else known
    hr_upscale_kernel[grid](image, mask, lr, weight, fine_weight.float().contiguous() if fine else weight,
                            index.to(torch.int32).contiguous(), known.contiguous() if feathered else mask, out,
                            geom.height, geom.width, h, w, geom.scale, span, geom.grid_h, geom.grid_w, cols, tiles_x,
                            feather * geom.scale, *_layout(image, channels_last), *_layout(out, channels_last),
                            mask.stride(0), mask.stride(1), K=weight.shape[-1] if transfer else 0, FINE=fine,
                            FEATHER=feathered, TILE_H=tile_h, TILE_W=tile_w, REFLECT=feathered and reflect,
                            num_warps=NUM_WARPS)
    return out


def hr_upscale_reference(image: torch.Tensor, mask: torch.Tensor, lr_result: torch.Tensor, weight: torch.Tensor,
                         fine_weight: torch.Tensor | None, index: torch.Tensor, geom: Geometry, channels_last: bool = True,
                         out: torch.Tensor | None = None, feather: int = 0, known: torch.Tensor | None = None,
                         compute_dtype: torch.dtype = torch.float32, reflect: bool = False) -> torch.Tensor:
    """Plain torch, same signature and math: what `Rethined.forward` computes for top-K rows, in
    compute_dtype (float32 as the model runs; float64 is the yardstick tests judge both against); with
    feather > 0, up + gain x `model.upscale.feathered_texture` on the hole tokens that copy (K = 1)."""
    from rethined_engine.geometry import pad_to
    from rethined_engine.model.patchmatch import TopKRows, patchify, unpatchify
    from rethined_engine.model.upscale import feathered_texture, fine_band, upsample

    chw = image.permute(2, 0, 1) if channels_last else image
    hole = mask.bool()
    img = chw.to(compute_dtype) / 255.0
    up = upsample(lr_result.to(compute_dtype), geom.scale)
    span = geom.scale * geom.patch
    if geom.scale > 1 and feather > 0:
        padded = pad_to((img * ~hole)[None], geom.padded_size)
        token = (weight[:, 0] != 0).nonzero()[:, 0]
        rows = TopKRows((weight != 0).to(compute_dtype)[None], index.long()[None])
        gain = weight[token, :1].to(compute_dtype)
        up = up + feathered_texture(padded - up, known.bool()[None], rows, gain, torch.zeros_like(token), token,
                                    geom.patch, geom.scale, feather, reflect)
    elif geom.scale > 1:
        padded = pad_to((img * ~hole)[None], geom.padded_size)
        hf = patchify(padded - up, span)[0]                                   # (N, 3 * span^2)
        tokens = patchify(up, span)[0].clone()
        src = index.long()
        weight = weight.to(compute_dtype)
        live = weight != 0
        mixed = weight[..., None] * hf[src]
        if fine_weight is not None:                                           # one band: no fine band to build
            live = live | (fine_weight != 0)
            fine_weight = fine_weight.to(compute_dtype)
            mixed = mixed + fine_weight[..., None] * fine_band(patchify(padded, span)[0], span)[src]
        mixed = (live[..., None] * mixed).sum(dim=1)
        up = unpatchify((tokens + mixed)[None], span, geom.grid_h, geom.grid_w)
    filled = (up[0, :, :geom.height, :geom.width].clamp(0, 1) * 255.0).round().to(torch.uint8)
    result = torch.where(hole, filled, chw)
    result = result.permute(1, 2, 0) if channels_last else result
    return out.copy_(result) if out is not None else result.contiguous()
