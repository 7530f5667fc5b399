"""Seam blend at the hole border (`model.upscale.blend_seams`) on a uint8 result, in place (Triton), with its
torch reference of the same signature.

With G the separable Gaussian of `seam_taps(sigma)` (radius R, zero outside the image), D = G * known and
N = G * (known x image): a hole pixel becomes N / D where gain D >= 1, else gain N + (1 - gain D) filled,
rounded half to even; hole pixels with D = 0 and known pixels are left as they are.

Two passes: `seam_rows_kernel` sums each row's 2R + 1 horizontal neighbours of known x (1, R, G, B) into
four fp32 planes (16 B per pixel); `seam_columns_kernel` sums those planes' 2R + 1 vertical neighbours at
hole pixels only (the N sums only where D > 0) and rewrites those pixels of the result. Bytes moved per
image: read 4 B (image + mask) and write 16 B, then read 16 B (neighbouring rows mostly from cache) and
read/write 3 B at the blended pixels.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .hr_upscale import _layout, _round_half_even

BLOCK_PIXELS = 128    # pixels per program (flattened row-major), 4 warps: 76 registers on sm_90 (256: 155, 512: 255 + spills)


@triton.jit
def seam_rows_kernel(image_ptr, mask_ptr, taps_ptr, sums_ptr, H, W, img_sy, img_sx, img_sc, mask_sy, mask_sx,
                     R: tl.constexpr, BLOCK: tl.constexpr):
    """sums (4, H, W) fp32: row sums of known, known x R, G, B (raw uint8 units) over x - R .. x + R."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < H * W
    y = offs // W
    x = offs % W
    d = tl.zeros((BLOCK,), tl.float32)
    n0 = tl.zeros((BLOCK,), tl.float32)
    n1 = tl.zeros((BLOCK,), tl.float32)
    n2 = tl.zeros((BLOCK,), tl.float32)
    for t in tl.static_range(2 * R + 1):
        xx = x + (t - R)
        valid = inside & (xx >= 0) & (xx < W)
        known = valid & (tl.load(mask_ptr + y * mask_sy + xx * mask_sx, mask=valid, other=1) == 0)
        g = tl.load(taps_ptr + t)
        px = image_ptr + y * img_sy + xx * img_sx
        d += tl.where(known, g, 0.0)
        n0 += g * tl.load(px, mask=known, other=0).to(tl.float32)
        n1 += g * tl.load(px + img_sc, mask=known, other=0).to(tl.float32)
        n2 += g * tl.load(px + 2 * img_sc, mask=known, other=0).to(tl.float32)
    plane = H * W
    tl.store(sums_ptr + offs, d, mask=inside)
    tl.store(sums_ptr + plane + offs, n0, mask=inside)
    tl.store(sums_ptr + 2 * plane + offs, n1, mask=inside)
    tl.store(sums_ptr + 3 * plane + offs, n2, mask=inside)


@triton.jit
def _blend_channel(out_ptr, out_off, n, d, gain, saturated, store):
    fill = tl.load(out_ptr + out_off, mask=store, other=0).to(tl.float32)
    v = tl.where(saturated, n / tl.where(saturated, d, 1.0), gain * n + (1.0 - gain * d) * fill)
    v = _round_half_even(tl.minimum(tl.maximum(v, 0.0), 255.0)).to(tl.uint8)
    tl.store(out_ptr + out_off, v, mask=store)


@triton.jit
def seam_columns_kernel(sums_ptr, mask_ptr, taps_ptr, out_ptr, H, W, gain, mask_sy, mask_sx, out_sy, out_sx, out_sc,
                        R: tl.constexpr, BLOCK: tl.constexpr):
    """Blend the hole pixels of out (uint8, any strides) that have known pixels within reach, in place."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < H * W
    y = offs // W
    x = offs % W
    hole = inside & (tl.load(mask_ptr + y * mask_sy + x * mask_sx, mask=inside, other=0) != 0)
    plane = H * W
    d = tl.zeros((BLOCK,), tl.float32)
    for t in tl.static_range(2 * R + 1):
        yy = y + (t - R)
        valid = hole & (yy >= 0) & (yy < H)
        d += tl.load(taps_ptr + t) * tl.load(sums_ptr + yy * W + x, mask=valid, other=0.0)
    store = hole & (d > 0.0)
    n0 = tl.zeros((BLOCK,), tl.float32)
    n1 = tl.zeros((BLOCK,), tl.float32)
    n2 = tl.zeros((BLOCK,), tl.float32)
    for t in tl.static_range(2 * R + 1):
        yy = y + (t - R)
        valid = store & (yy >= 0) & (yy < H)
        g = tl.load(taps_ptr + t)
        row = sums_ptr + yy * W + x
        n0 += g * tl.load(row + plane, mask=valid, other=0.0)
        n1 += g * tl.load(row + 2 * plane, mask=valid, other=0.0)
        n2 += g * tl.load(row + 3 * plane, mask=valid, other=0.0)
    saturated = gain * d >= 1.0
    out_off = y * out_sy + x * out_sx
    _blend_channel(out_ptr, out_off, n0, d, gain, saturated, store)
    _blend_channel(out_ptr, out_off + out_sc, n1, d, gain, saturated, store)
    _blend_channel(out_ptr, out_off + 2 * out_sc, n2, d, gain, saturated, store)


def seam_blend(image: torch.Tensor, mask: torch.Tensor, out: torch.Tensor, taps: torch.Tensor, gain: float,
               channels_last: bool = True) -> torch.Tensor:
    """image, out: uint8 (H, W, 3) if channels_last else (3, H, W), any strides (out: the HR stage's result,
    known pixels equal to image; blended in place and returned); mask (H, W) bool/uint8, True = hole;
    taps: `seam_taps(sigma)` as a float32 tensor on the device; gain > 0."""
    if image.dtype != torch.uint8 or out.dtype != torch.uint8:
        raise TypeError(f"image, out: expected uint8, got {image.dtype} and {out.dtype}")
    mask = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
    height, width = mask.shape
    radius = (taps.numel() - 1) // 2
    sums = torch.empty(4, height, width, dtype=torch.float32, device=image.device)
    grid = (triton.cdiv(height * width, BLOCK_PIXELS),)
    seam_rows_kernel[grid](image, mask, taps, sums, height, width, *_layout(image, channels_last),
                           mask.stride(0), mask.stride(1), R=radius, BLOCK=BLOCK_PIXELS)
    seam_columns_kernel[grid](sums, mask, taps, out, height, width, float(gain), mask.stride(0), mask.stride(1),
                              *_layout(out, channels_last), R=radius, BLOCK=BLOCK_PIXELS)
    return out


def seam_blend_reference(image: torch.Tensor, mask: torch.Tensor, out: torch.Tensor, taps: torch.Tensor, gain: float,
                         channels_last: bool = True) -> torch.Tensor:
    """Plain torch, same signature: `model.upscale.blend_seams`, written into out."""
    from rethined_engine.model.upscale import blend_seams

    to_chw = (lambda t: t.permute(2, 0, 1)) if channels_last else (lambda t: t)
    blended = blend_seams(to_chw(image)[None], mask.bool()[None, None], to_chw(out)[None], taps, gain)[0]
    return out.copy_(blended.permute(1, 2, 0) if channels_last else blended)
