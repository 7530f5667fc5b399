"""Seam blend at the hole border (`model.upscale.blend_seams`) on a uint8 result, in place (Triton), with its
torch reference of the same signature.

With G the separable Gaussian of `seam_taps(sigma)` (radius R, zero outside the image), D = G * known and
N = G * (known x image): a hole pixel becomes N / D where gain D >= 1, else gain N + (1 - gain D) filled,
rounded half to even; hole pixels with D = 0 and known pixels are left as they are.

One pass over (TILE_H, TILE_W) tiles of the result. A tile with no hole pixel, or no known pixel within
R of it, returns after reading its mask (most tiles of a large image: at 4096², 40 % free-form mask, 10 % of
the tiles meet the hole border). Otherwise it sums the 2R + 1 horizontal neighbours of known x (1, R, G, B)
for its TILE_H + 2R rows (ROWS, padded to a power of two) in registers, sums vertically as a product with
the banded (TILE_H, ROWS) matrix of the taps (`tl.dot` in IEEE fp32), and rewrites its hole pixels that have
known pixels within reach. Nothing else is written and nothing is allocated. On an H200 (2026-11-26, 40 %
mask, (3, H, W) layout) 0.106 / 0.270 / 0.709 ms at 2048² / 4096² / 8192², against 0.178 / 0.672 / 2.616 ms
for the earlier two-pass version (dense fp32 row-sum planes, 16 B per pixel).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .hr_upscale import _layout, _round_half_even

TILE_H = 16           # output rows per program (the dot's M: >= 16)
TILE_W = 32           # output columns per program (the dot's N); 16 x 32 x 4 warps beat 16 x 64 and 32 x 32
NUM_WARPS = 4         # x 8 warps on an H200 (bench/results/seam-ab-NVIDIA_H200.json); sm_90: 192 registers


@triton.jit
def _blend_channel(out_ptr, out_off, n, d, gain, saturated, store):
    fill = tl.load(out_ptr + out_off, mask=store, other=0).to(tl.float32)
    v = tl.where(saturated, n / tl.where(saturated, d, 1.0), gain * n + (1.0 - gain * d) * fill)
    v = _round_half_even(tl.minimum(tl.maximum(v, 0.0), 255.0)).to(tl.uint8)
    tl.store(out_ptr + out_off, v, mask=store)


@triton.jit
def seam_blend_kernel(image_ptr, mask_ptr, taps_ptr, out_ptr, H, W, gain, img_sy, img_sx, img_sc, mask_sy, mask_sx,
                      out_sy, out_sx, out_sc, R: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr,
                      ROWS: tl.constexpr, HALO_W: tl.constexpr):
    """Blend the hole pixels of out (uint8, any strides) that have known pixels within reach, in place."""
    y0 = tl.program_id(0) * TILE_H
    x0 = tl.program_id(1) * TILE_W
    x = x0 + tl.arange(0, TILE_W)[None, :]                                         # (1, TILE_W)
    y = y0 + tl.arange(0, TILE_H)[:, None]                                         # (TILE_H, 1)
    inside = (y < H) & (x < W)
    hole = inside & (tl.load(mask_ptr + y * mask_sy + x * mask_sx, mask=inside, other=0) != 0)
    j = tl.arange(0, ROWS)[:, None]                                                # halo row j is y0 - R + j
    ry = y0 - R + j
    halo_rows = (j < TILE_H + 2 * R) & (ry >= 0) & (ry < H)
    hx = x0 - R + tl.arange(0, HALO_W)[None, :]
    in_halo = halo_rows & (hx < x0 + TILE_W + R) & (hx >= 0) & (hx < W)
    known_near = in_halo & (tl.load(mask_ptr + ry * mask_sy + hx * mask_sx, mask=in_halo, other=1) == 0)
    if (tl.max(hole.to(tl.int32)) > 0) & (tl.max(known_near.to(tl.int32)) > 0):   # the tile meets the border
        row_ok = halo_rows & (x < W)
        d = tl.zeros((ROWS, TILE_W), tl.float32)
        n0 = tl.zeros((ROWS, TILE_W), tl.float32)
        n1 = tl.zeros((ROWS, TILE_W), tl.float32)
        n2 = tl.zeros((ROWS, TILE_W), tl.float32)
        for t in tl.static_range(2 * R + 1):
            xx = x + (t - R)
            valid = row_ok & (xx >= 0) & (xx < W)
            known = valid & (tl.load(mask_ptr + ry * mask_sy + xx * mask_sx, mask=valid, other=1) == 0)
            g = tl.load(taps_ptr + t)
            px = image_ptr + ry * img_sy + xx * img_sx
            d += tl.where(known, g, 0.0)
            n0 += g * tl.load(px, mask=known, other=0).to(tl.float32)
            n1 += g * tl.load(px + img_sc, mask=known, other=0).to(tl.float32)
            n2 += g * tl.load(px + 2 * img_sc, mask=known, other=0).to(tl.float32)
        # banded taps: output row i takes halo rows i .. i + 2R with taps 0 .. 2R
        k = tl.arange(0, ROWS)[None, :] - tl.arange(0, TILE_H)[:, None]           # (TILE_H, ROWS)
        band = (k >= 0) & (k <= 2 * R)
        taps = tl.load(taps_ptr + k, mask=band, other=0.0)
        d = tl.dot(taps, d, input_precision="ieee")
        store = hole & (d > 0.0)
        saturated = gain * d >= 1.0
        out_off = y * out_sy + x * out_sx
        _blend_channel(out_ptr, out_off, tl.dot(taps, n0, input_precision="ieee"), d, gain, saturated, store)
        _blend_channel(out_ptr, out_off + out_sc, tl.dot(taps, n1, input_precision="ieee"), d, gain, saturated, store)
        _blend_channel(out_ptr, out_off + 2 * out_sc, tl.dot(taps, n2, input_precision="ieee"), d, gain, saturated,
                       store)


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
    grid = (triton.cdiv(height, TILE_H), triton.cdiv(width, TILE_W))
    seam_blend_kernel[grid](image, mask, taps, out, height, width, float(gain), *_layout(image, channels_last),
                            mask.stride(0), mask.stride(1), *_layout(out, channels_last), R=radius, TILE_H=TILE_H,
                            TILE_W=TILE_W, ROWS=triton.next_power_of_2(TILE_H + 2 * radius),
                            HALO_W=triton.next_power_of_2(TILE_W + 2 * radius), num_warps=NUM_WARPS)
    return out


def seam_blend_reference(image: torch.Tensor, mask: torch.Tensor, out: torch.Tensor, taps: torch.Tensor, gain: float,
                         channels_last: bool = True) -> torch.Tensor:
    """Plain torch, same signature: `model.upscale.blend_seams`, written into out."""
    from rethined_engine.model.upscale import blend_seams

    to_chw = (lambda t: t.permute(2, 0, 1)) if channels_last else (lambda t: t)
    blended = blend_seams(to_chw(image)[None], mask.bool()[None, None], to_chw(out)[None], taps, gain)[0]
    return out.copy_(blended.permute(1, 2, 0) if channels_last else blended)
