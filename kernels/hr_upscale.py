"""HR attention upscale: one pass over the HR image, uint8 in -> uint8 out (Triton), with its torch
reference of the same signature.

A hole pixel p of token i (token = (s*P)^2 HR pixels) becomes (then * 255, rounded)
    clamp(up(p) + sum_k weight[i, k] * (y(q_k) - up(q_k)) + fine_weight[i, k] * (y(q_k) - B(y)(q_k)), 0, 1)
with y = image / 255, up = bilinear(lr_result) (half-pixel centres, edge clamped), q_k the pixel at p's
offset in source token index[i, k], and B the 3x3 binomial blur inside that token (edge pixels
replicated: `model.upscale.fine_band`). Sources with a nonzero weight are known tokens inside the image
(the LR network's top-K rows guarantee it), so every pixel read is known. Known pixels are copied. The
image is read in the caller's layout (any strides: HWC numpy-style or CHW torch-style).

Bytes moved per image: read 3 B (image) + 1 B (mask) + 3 B per source for hole pixels, write 3 B (the
fine band's 3x3 neighbourhood comes from the cache lines the source row already brought in).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.geometry import Geometry

BLOCK_PIXELS = 256   # pixels per program (flattened row-major), 4 warps: 168 registers at K=4, no spill on
                     # sm_90 (512: 210; kernels/compile_check.py)
BLOCK_PIXELS_FINE = 128   # with the fine band (its 3x3 neighbourhoods): 255 registers + 32 B of spills at K=4 on
                          # sm_90 (256: 444 B of spills)


@triton.jit
def _bilinear_taps(h, w, inv_scale, y, x):
    """Flat offsets of the 4 LR taps around HR pixels (y, x) and their weights (ly, lx); half-pixel
    centres, edge clamp. The same for every channel."""
    sy = tl.maximum((y.to(tl.float32) + 0.5) * inv_scale - 0.5, 0.0)
    sx = tl.maximum((x.to(tl.float32) + 0.5) * inv_scale - 0.5, 0.0)
    y0 = sy.to(tl.int32)
    x0 = sx.to(tl.int32)
    y1 = tl.minimum(y0 + 1, h - 1)
    x1 = tl.minimum(x0 + 1, w - 1)
    return y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1, sy - y0.to(tl.float32), sx - x0.to(tl.float32)


@triton.jit
def _bilinear(plane_ptr, o00, o01, o10, o11, ly, lx, valid):
    """One LR channel plane sampled with `_bilinear_taps`' offsets and weights."""
    top = tl.load(plane_ptr + o00, mask=valid, other=0.0) * (1.0 - lx) + tl.load(plane_ptr + o01, mask=valid, other=0.0) * lx
    bottom = tl.load(plane_ptr + o10, mask=valid, other=0.0) * (1.0 - lx) + tl.load(plane_ptr + o11, mask=valid, other=0.0) * lx
    return top * (1.0 - ly) + bottom * ly


@triton.jit
def _round_half_even(v):
    f = tl.floor(v)
    d = v - f
    odd = f - 2.0 * tl.floor(f * 0.5)
    return tl.where(d > 0.5, f + 1.0, tl.where(d < 0.5, f, f + odd))


@triton.jit
def _blur_offsets(y0, x0, oy, ox, span, img_sy, img_sx):
    """Row and column offsets of the 3x3 neighbourhood of offset (oy, ox) in the token whose top-left HR
    pixel is (y0, x0), the token's edge pixels replicated."""
    r0 = (y0 + tl.maximum(oy - 1, 0)) * img_sy
    r1 = (y0 + oy) * img_sy
    r2 = (y0 + tl.minimum(oy + 1, span - 1)) * img_sy
    c0 = (x0 + tl.maximum(ox - 1, 0)) * img_sx
    c1 = (x0 + ox) * img_sx
    c2 = (x0 + tl.minimum(ox + 1, span - 1)) * img_sx
    return r0, r1, r2, c0, c1, c2


@triton.jit
def _blur_row(plane_ptr, r, c0, c1, c2, use):
    return (tl.load(plane_ptr + r + c0, mask=use, other=0).to(tl.float32) * 0.25
            + tl.load(plane_ptr + r + c1, mask=use, other=0).to(tl.float32) * 0.5
            + tl.load(plane_ptr + r + c2, mask=use, other=0).to(tl.float32) * 0.25)


@triton.jit
def _token_blur(plane_ptr, r0, r1, r2, c0, c1, c2, use):
    """3x3 binomial blur (FINE_TAPS) of one image channel plane / 255 at `_blur_offsets`."""
    acc = _blur_row(plane_ptr, r0, c0, c1, c2, use) * 0.25
    acc += _blur_row(plane_ptr, r1, c0, c1, c2, use) * 0.5
    acc += _blur_row(plane_ptr, r2, c0, c1, c2, use) * 0.25
    return acc / 255.0


@triton.jit
def _source_term(image_ptr, lr_ptr, c, img_sc, lr_plane, q_off, o00, o01, o10, o11, ly, lx, wk, use,
                 fk, fine, r0, r1, r2, c0, c1, c2, FINE: tl.constexpr):
    """Channel c of one source's contribution: wk (q - up(q)) [+ fk (q - B(y)(q))]."""
    plane = image_ptr + c * img_sc
    q = tl.load(plane + q_off, mask=use, other=0).to(tl.float32) / 255.0
    term = tl.where(use, wk * (q - _bilinear(lr_ptr + c * lr_plane, o00, o01, o10, o11, ly, lx, use)), 0.0)
    if FINE:
        term += tl.where(fine, fk * (q - _token_blur(plane, r0, r1, r2, c0, c1, c2, fine)), 0.0)
    return term


@triton.jit
def _store_channel(out_ptr, image_ptr, c, img_sc, out_sc, pix_off, out_off, acc, hole, inside):
    pix = tl.load(image_ptr + pix_off + c * img_sc, mask=inside, other=0)
    filled = _round_half_even(tl.minimum(tl.maximum(acc, 0.0), 1.0) * 255.0).to(tl.uint8)
    tl.store(out_ptr + out_off + c * out_sc, tl.where(hole, filled, pix), mask=inside)


@triton.jit
def hr_upscale_kernel(image_ptr, mask_ptr, lr_ptr, weight_ptr, fine_weight_ptr, index_ptr, out_ptr,
                      H, W, h, w, scale, patch, grid_w,
                      img_sy, img_sx, img_sc, out_sy, out_sx, out_sc, mask_sy, mask_sx,
                      K: tl.constexpr, FINE: tl.constexpr, BLOCK: tl.constexpr):
    """Per-pixel geometry, each source's index, weights, LR taps and blur offsets are computed once and
    shared by the 3 channels."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inside = offs < H * W
    y = offs // W
    x = offs % W
    hole = tl.load(mask_ptr + y * mask_sy + x * mask_sx, mask=inside, other=0) != 0
    live = inside & hole
    span = scale * patch
    ty = y // span
    tx = x // span
    oy = y - ty * span
    ox = x - tx * span
    token = ty * grid_w + tx
    inv_scale = 1.0 / scale          # no .to(): an int argument equal to 1 is specialised to a constexpr on GPU
    lr_plane = h * w
    o00, o01, o10, o11, ly, lx = _bilinear_taps(h, w, inv_scale, y, x)
    acc0 = _bilinear(lr_ptr, o00, o01, o10, o11, ly, lx, live)
    acc1 = _bilinear(lr_ptr + lr_plane, o00, o01, o10, o11, ly, lx, live)
    acc2 = _bilinear(lr_ptr + 2 * lr_plane, o00, o01, o10, o11, ly, lx, live)
    for k in tl.static_range(K):
        wk = tl.load(weight_ptr + token * K + k, mask=live, other=0.0)
        use = live & (wk != 0.0)
        fk = wk
        fine = use
        if FINE:
            fk = tl.load(fine_weight_ptr + token * K + k, mask=live, other=0.0)
            fine = live & (fk != 0.0)
            use = use | fine
        src = tl.load(index_ptr + token * K + k, mask=use, other=0)
        y0 = (src // grid_w) * span
        x0 = (src % grid_w) * span
        sy = y0 + oy
        sx = x0 + ox
        q_off = sy * img_sy + sx * img_sx
        s00, s01, s10, s11, sly, slx = _bilinear_taps(h, w, inv_scale, sy, sx)
        r0, r1, r2, c0, c1, c2 = _blur_offsets(y0, x0, oy, ox, span, img_sy, img_sx)
        acc0 += _source_term(image_ptr, lr_ptr, 0, img_sc, lr_plane, q_off, s00, s01, s10, s11, sly, slx, wk, use,
                             fk, fine, r0, r1, r2, c0, c1, c2, FINE)
        acc1 += _source_term(image_ptr, lr_ptr, 1, img_sc, lr_plane, q_off, s00, s01, s10, s11, sly, slx, wk, use,
                             fk, fine, r0, r1, r2, c0, c1, c2, FINE)
        acc2 += _source_term(image_ptr, lr_ptr, 2, img_sc, lr_plane, q_off, s00, s01, s10, s11, sly, slx, wk, use,
                             fk, fine, r0, r1, r2, c0, c1, c2, FINE)
    pix_off = y * img_sy + x * img_sx
    out_off = y * out_sy + x * out_sx
    _store_channel(out_ptr, image_ptr, 0, img_sc, out_sc, pix_off, out_off, acc0, hole, inside)
    _store_channel(out_ptr, image_ptr, 1, img_sc, out_sc, pix_off, out_off, acc1, hole, inside)
    _store_channel(out_ptr, image_ptr, 2, img_sc, out_sc, pix_off, out_off, acc2, hole, inside)


def _layout(t: torch.Tensor, channels_last: bool) -> tuple[int, int, int]:
    """(stride_y, stride_x, stride_c) of an (H, W, 3) or (3, H, W) view."""
    return (t.stride(0), t.stride(1), t.stride(2)) if channels_last else (t.stride(1), t.stride(2), t.stride(0))


def hr_upscale(image: torch.Tensor, mask: torch.Tensor, lr_result: torch.Tensor, weight: torch.Tensor,
               fine_weight: torch.Tensor | None, index: torch.Tensor, geom: Geometry, channels_last: bool = True,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """image uint8 (H, W, 3) if channels_last else (3, H, W), any strides; mask (H, W) bool/uint8;
    lr_result (1, 3, h, w) float32; weight, fine_weight (N, K) float32 (fine_weight None: one band, the
    kernel without the fine band's loads); index (N, K) int32. Writes `out` (default: a new contiguous
    uint8 tensor of image's shape) and returns it."""
    if image.dtype != torch.uint8:
        raise TypeError(f"image: expected uint8, got {image.dtype}")
    if out is None:
        out = torch.empty(image.shape, dtype=torch.uint8, device=image.device)
    mask = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
    lr = lr_result.float().contiguous()
    h, w = geom.lr_size
    transfer = geom.scale > 1        # at scale 1 the LR result is the result: no sources read (K = 0)
    fine = fine_weight is not None and transfer
    block = BLOCK_PIXELS_FINE if fine else BLOCK_PIXELS
    weight = weight.float().contiguous()
    grid = (triton.cdiv(geom.height * geom.width, block),)
    hr_upscale_kernel[grid](image, mask, lr, weight, fine_weight.float().contiguous() if fine else weight,
                            index.to(torch.int32).contiguous(), out,
                            geom.height, geom.width, h, w, geom.scale, geom.patch, geom.grid_w,
                            *_layout(image, channels_last), *_layout(out, channels_last),
                            mask.stride(0), mask.stride(1), K=weight.shape[-1] if transfer else 0, FINE=fine,
                            BLOCK=block)
    return out


def hr_upscale_reference(image: torch.Tensor, mask: torch.Tensor, lr_result: torch.Tensor, weight: torch.Tensor,
                         fine_weight: torch.Tensor | None, index: torch.Tensor, geom: Geometry, channels_last: bool = True,
                         out: torch.Tensor | None = None, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Plain torch, same signature and math: what `Rethined.forward` computes for top-K rows, in
    compute_dtype (float32 as the model runs; float64 is the yardstick tests judge both against)."""
    from rethined_engine.geometry import pad_to
    from rethined_engine.model.patchmatch import patchify, unpatchify
    from rethined_engine.model.upscale import fine_band, upsample

    chw = image.permute(2, 0, 1) if channels_last else image
    hole = mask.bool()
    img = chw.to(compute_dtype) / 255.0
    up = upsample(lr_result.to(compute_dtype), geom.scale)
    span = geom.scale * geom.patch
    if geom.scale > 1:
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
