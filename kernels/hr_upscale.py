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

BLOCK_PIXELS = 512   # pixels per program (flattened row-major), 4 warps: 148 registers, no spill on sm_90
                     # (1024 needed 255 registers + 176 B of spills; kernels/compile_check.py)
BLOCK_PIXELS_FINE = 256   # with the fine band (its 3x3 neighbourhoods): 512 spilled 612 B at K=4 on sm_90


@triton.jit
def _bilinear(lr_ptr, h, w, inv_scale, y, x, c, valid):
    """LR result (3, h, w) sampled at HR pixels (y, x), channel c; half-pixel centres, edge clamp."""
    sy = tl.maximum((y.to(tl.float32) + 0.5) * inv_scale - 0.5, 0.0)
    sx = tl.maximum((x.to(tl.float32) + 0.5) * inv_scale - 0.5, 0.0)
    y0 = sy.to(tl.int32)
    x0 = sx.to(tl.int32)
    y1 = tl.minimum(y0 + 1, h - 1)
    x1 = tl.minimum(x0 + 1, w - 1)
    ly = sy - y0.to(tl.float32)
    lx = sx - x0.to(tl.float32)
    base = lr_ptr + c * h * w
    top = tl.load(base + y0 * w + x0, mask=valid, other=0.0) * (1.0 - lx) + tl.load(base + y0 * w + x1, mask=valid, other=0.0) * lx
    bottom = tl.load(base + y1 * w + x0, mask=valid, other=0.0) * (1.0 - lx) + tl.load(base + y1 * w + x1, mask=valid, other=0.0) * lx
    return top * (1.0 - ly) + bottom * ly


@triton.jit
def _round_half_even(v):
    f = tl.floor(v)
    d = v - f
    odd = f - 2.0 * tl.floor(f * 0.5)
    return tl.where(d > 0.5, f + 1.0, tl.where(d < 0.5, f, f + odd))


@triton.jit
def _token_blur(image_ptr, y0, x0, oy, ox, span, img_sy, img_sx, chan, use):
    """3x3 binomial blur (FINE_TAPS) of image / 255 at offset (oy, ox) of the token whose top-left HR pixel
    is (y0, x0), the token's edge pixels replicated; chan: channel offset (c * stride_c)."""
    acc = tl.zeros(oy.shape, tl.float32)
    for dy in tl.static_range(3):
        ry = y0 + tl.minimum(tl.maximum(oy + (dy - 1), 0), span - 1)
        row = tl.zeros(oy.shape, tl.float32)
        for dx in tl.static_range(3):
            rx = x0 + tl.minimum(tl.maximum(ox + (dx - 1), 0), span - 1)
            v = tl.load(image_ptr + ry * img_sy + rx * img_sx + chan, mask=use, other=0).to(tl.float32)
            row += v * (0.5 if dx == 1 else 0.25)
        acc += row * (0.5 if dy == 1 else 0.25)
    return acc / 255.0


@triton.jit
def hr_upscale_kernel(image_ptr, mask_ptr, lr_ptr, weight_ptr, fine_weight_ptr, index_ptr, out_ptr,
                      H, W, h, w, scale, patch, grid_w,
                      img_sy, img_sx, img_sc, out_sy, out_sx, out_sc, mask_sy, mask_sx,
                      K: tl.constexpr, FINE: tl.constexpr, BLOCK: tl.constexpr):
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
    for c in tl.static_range(3):
        pix = tl.load(image_ptr + y * img_sy + x * img_sx + c * img_sc, mask=inside, other=0)
        acc = _bilinear(lr_ptr, h, w, inv_scale, y, x, c, live)
        for k in tl.static_range(K):
            wk = tl.load(weight_ptr + token * K + k, mask=live, other=0.0)
            use = live & (wk != 0.0)
            if FINE:
                fk = tl.load(fine_weight_ptr + token * K + k, mask=live, other=0.0)
                use = use | (live & (fk != 0.0))
            src = tl.load(index_ptr + token * K + k, mask=use, other=0)
            y0 = (src // grid_w) * span
            x0 = (src % grid_w) * span
            sy = y0 + oy
            sx = x0 + ox
            q = tl.load(image_ptr + sy * img_sy + sx * img_sx + c * img_sc, mask=use, other=0).to(tl.float32) / 255.0
            acc += tl.where(use, wk * (q - _bilinear(lr_ptr, h, w, inv_scale, sy, sx, c, use)), 0.0)
            if FINE:
                fine = use & (fk != 0.0)
                acc += tl.where(fine, fk * (q - _token_blur(image_ptr, y0, x0, oy, ox, span, img_sy, img_sx,
                                                            c * img_sc, fine)), 0.0)
        filled = _round_half_even(tl.minimum(tl.maximum(acc, 0.0), 1.0) * 255.0).to(tl.uint8)
        tl.store(out_ptr + y * out_sy + x * out_sx + c * out_sc, tl.where(hole, filled, pix), mask=inside)


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
