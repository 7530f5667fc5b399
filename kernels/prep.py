"""Preparation: HR uint8 image + hole mask -> the LR network's inputs (Triton, two passes), with its
torch reference of the same signature.

LR pixel (y, x) = sum over the (s + 2r)^2 Gaussian window of the padded HR image's known pixels,
divided by the sum of their weights (normalised convolution: holes never bleed in); LR mask = any hole
in the s x s cell. Padding as `Rethined.prepare`: bottom/right to the token grid (reflect, or replicate
where the pad exceeds the image), then the blur's own reflect pad of r. The Gaussian is separable and so
is the normalised convolution: `prep_rows_kernel` sums each image row's known pixels (and their weights)
along x into a (4, H, w) fp32 buffer, `prep_cols_kernel` sums that along y, normalises and any-pools the
mask: (s + 2r) taps per pass instead of (s + 2r)^2 (62 vs 3844 at s = 16, 8192^2; the one-pass 2-D kernel
took 2.0 ms of the H100's 4.9 ms at 8192^2). The image is read in the caller's layout (strides) straight
from uint8 — no HR float copy.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import triton
import triton.language as tl

from rethined_engine.geometry import Geometry, gaussian_taps, pad_mode

BLOCK_LR = 128  # LR pixels per program


@triton.jit
def _source_index(i, padded_n, n, radius, reflect_pad: tl.constexpr):
    """Index in the blur-padded axis -> index into the image axis of length n."""
    j = i - radius
    j = tl.where(j < 0, -j, j)                                   # blur's reflect pad (edge not repeated)
    j = tl.where(j >= padded_n, 2 * (padded_n - 1) - j, j)
    if reflect_pad:                                             # grid pad: reflect ...
        j = tl.where(j >= n, 2 * (n - 1) - j, j)
    else:                                                       # ... or replicate
        j = tl.minimum(j, n - 1)
    return j


@triton.jit
def prep_rows_kernel(image_ptr, mask_ptr, taps_ptr, rows_ptr, H, W, Wp, w, scale, radius,
                     img_sy, img_sx, img_sc, mask_sy, mask_sx, n_taps,
                     REFLECT: tl.constexpr, BLOCK: tl.constexpr):
    """Horizontal pass, one image row y per program row: rows (4, H, w) fp32 = the tap-weighted sums along
    x of the known pixels' r, g, b (0..255) and of their weights, for BLOCK LR columns."""
    y = tl.program_id(0)
    ox = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = ox < w
    acc_r = tl.zeros([BLOCK], tl.float32)
    acc_g = tl.zeros([BLOCK], tl.float32)
    acc_b = tl.zeros([BLOCK], tl.float32)
    acc_k = tl.zeros([BLOCK], tl.float32)
    for u in range(0, n_taps):
        sx = _source_index(ox * scale + u, Wp, W, radius, REFLECT)
        known = tl.load(mask_ptr + y * mask_sy + sx * mask_sx, mask=valid, other=1) == 0
        wgt = tl.where(known, tl.load(taps_ptr + u), 0.0)
        base = image_ptr + y * img_sy + sx * img_sx
        acc_r += wgt * tl.load(base, mask=valid & known, other=0).to(tl.float32)
        acc_g += wgt * tl.load(base + img_sc, mask=valid & known, other=0).to(tl.float32)
        acc_b += wgt * tl.load(base + 2 * img_sc, mask=valid & known, other=0).to(tl.float32)
        acc_k += wgt
    plane = H * w
    out = rows_ptr + y * w + ox
    tl.store(out, acc_r, mask=valid)
    tl.store(out + plane, acc_g, mask=valid)
    tl.store(out + 2 * plane, acc_b, mask=valid)
    tl.store(out + 3 * plane, acc_k, mask=valid)


@triton.jit
def prep_cols_kernel(rows_ptr, mask_ptr, taps_ptr, lr_ptr, lr_mask_ptr, H, W, Hp, h, w, scale, radius,
                     mask_sy, mask_sx, n_taps, REFLECT: tl.constexpr, BLOCK: tl.constexpr):
    """Vertical pass over `rows` + normalisation, and the LR mask (any hole in the s x s cell), for BLOCK
    LR pixels of LR row oy."""
    oy = tl.program_id(0)
    ox = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = ox < w
    acc_r = tl.zeros([BLOCK], tl.float32)
    acc_g = tl.zeros([BLOCK], tl.float32)
    acc_b = tl.zeros([BLOCK], tl.float32)
    acc_k = tl.zeros([BLOCK], tl.float32)
    row_plane = H * w
    for t in range(0, n_taps):
        sy = _source_index(oy * scale + t, Hp, H, radius, REFLECT)
        tap = tl.load(taps_ptr + t)
        base = rows_ptr + sy * w + ox
        acc_r += tap * tl.load(base, mask=valid, other=0.0)
        acc_g += tap * tl.load(base + row_plane, mask=valid, other=0.0)
        acc_b += tap * tl.load(base + 2 * row_plane, mask=valid, other=0.0)
        acc_k += tap * tl.load(base + 3 * row_plane, mask=valid, other=0.0)
    norm = tl.where(acc_k > 0, 1.0 / (255.0 * tl.maximum(acc_k, 1e-12)), 0.0)
    plane = h * w
    out = lr_ptr + oy * w + ox
    tl.store(out, acc_r * norm, mask=valid)
    tl.store(out + plane, acc_g * norm, mask=valid)
    tl.store(out + 2 * plane, acc_b * norm, mask=valid)
    hole = tl.zeros([BLOCK], tl.int32)
    for dy in range(0, scale):
        py = oy * scale + dy
        sy = tl.where(py >= H, 2 * (H - 1) - py, py) if REFLECT else tl.minimum(py, H - 1)
        for dx in range(0, scale):
            px = ox * scale + dx
            sx = tl.where(px >= W, 2 * (W - 1) - px, px) if REFLECT else tl.minimum(px, W - 1)
            hole = tl.maximum(hole, (tl.load(mask_ptr + sy * mask_sy + sx * mask_sx, mask=valid, other=0) != 0).to(tl.int32))
    tl.store(lr_mask_ptr + oy * w + ox, hole.to(tl.float32), mask=valid)


@lru_cache(maxsize=None)
def _device_taps(scale: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """`gaussian_taps` as float32 on the device, made once: a call copies nothing from the host (so the
    launcher can be captured in a CUDA graph)."""
    taps, radius = gaussian_taps(scale) if scale > 1 else (np.ones(1), 0)
    return torch.as_tensor(taps, dtype=torch.float32, device=device), radius


def prepare_lr(image: torch.Tensor, mask: torch.Tensor, geom: Geometry,
               channels_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """image uint8 (H, W, 3) if channels_last else (3, H, W), any strides; mask (H, W) bool/uint8.
    Returns (lr_image (1, 3, h, w) float32 in [0, 1], lr_mask (1, 1, h, w) float32)."""
    if image.dtype != torch.uint8:
        raise TypeError(f"image: expected uint8, got {image.dtype}")
    mask = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
    h, w = geom.lr_size
    hp, wp = geom.padded_size
    taps, radius = _device_taps(geom.scale, image.device)
    lr = torch.empty(1, 3, h, w, dtype=torch.float32, device=image.device)
    lr_mask = torch.empty(1, 1, h, w, dtype=torch.float32, device=image.device)
    sy, sx, sc = (image.stride(0), image.stride(1), image.stride(2)) if channels_last else (
        image.stride(1), image.stride(2), image.stride(0))
    reflect = pad_mode(geom.height, geom.width, geom.padded_size) == "reflect"
    rows = torch.empty(4, geom.height, w, dtype=torch.float32, device=image.device)
    prep_rows_kernel[(geom.height, triton.cdiv(w, BLOCK_LR))](
        image, mask, taps, rows, geom.height, geom.width, wp, w, geom.scale, radius, sy, sx, sc,
        mask.stride(0), mask.stride(1), taps.numel(), REFLECT=reflect, BLOCK=BLOCK_LR)
    prep_cols_kernel[(h, triton.cdiv(w, BLOCK_LR))](
        rows, mask, taps, lr, lr_mask, geom.height, geom.width, hp, h, w, geom.scale, radius,
        mask.stride(0), mask.stride(1), taps.numel(), REFLECT=reflect, BLOCK=BLOCK_LR)
    return lr, lr_mask


def prepare_lr_reference(image: torch.Tensor, mask: torch.Tensor, geom: Geometry,
                         channels_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch, same signature: `Rethined.prepare`'s LR outputs."""
    from rethined_engine.geometry import pad_to
    from rethined_engine.model.upscale import downsample

    chw = (image.permute(2, 0, 1) if channels_last else image)[None].float() / 255.0
    hole = mask.bool()[None, None].float()
    return downsample(pad_to(chw * (1 - hole), geom.padded_size), pad_to(hole, geom.padded_size), geom.scale)
