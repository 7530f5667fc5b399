"""The copy styles' LR copies (`model.patchmatch.copy_tokens`) as one Triton kernel, with its torch reference.

Every LR pixel is the weighted mean of up to four feathered token copies: its own token's source and those of
the row, column and diagonal neighbours on its side of the token's centre lines, each read at the pixel
shifted by that token's source displacement (clamped into the image), weighted by the feather fades and by
whether the source pixel is known (COPY_FLOOR if not). With two bands the base (`kernels.blur.blur_base`, made
before the launch) is blended as a weighted mean over the wider fade and the detail (image - base) with its
contrast kept (over the root of the summed products of the weights of copies with one displacement).
In torch that is ~500 small kernels per call (`bench.op_count`), here one plus the base's blur.
Float32 arithmetic in torch's order (the C++ twin is `csrc/native/lr_copy.cpp`); on the GPU the compiler may
fuse a multiply and an add, so results agree with the reference to float rounding (tests/test_kernel_token_copy.py).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.model import patchmatch

from . import blur
from .tuning import INTERPRET

BLOCK = 2048 if INTERPRET else 128    # LR pixels per program: one per thread of 4 warps (interpreted: few, wide)
COPY_FLOOR: tl.constexpr = tl.constexpr(patchmatch.COPY_FLOOR)


@triton.jit
def _fade(offset, PATCH: tl.constexpr, FEATHER: tl.constexpr):
    """`patchmatch.feather_weight` of an int offset (px from the token's first row or column)."""
    o = offset.to(tl.float32)
    if FEATHER == 0:
        return ((o > -1.0) & (PATCH - o > 0.0)).to(tl.float32)
    rising = (o + FEATHER) + 0.5
    falling = (PATCH + FEATHER - 0.5) - o
    return tl.minimum(tl.maximum(tl.where(falling > rising, rising, falling) / (2 * FEATHER), 0.0), 1.0)


@triton.jit
def _copy(image_ptr, base_ptr, known_ptr, source_ptr, y, x, ty, tx, ly, lx, ny, nx, h, w, grid_h, grid_w, plane,
          PATCH: tl.constexpr, FEATHER: tl.constexpr, BASE_FEATHER: tl.constexpr, mask):
    """One candidate copy: the token (ty + ny, tx + nx)'s -> (weight, base weight, dy, dx, 3 values, 3 base
    values); values are the detail (image - base) with two bands, else the image."""
    uy = ty + ny
    ux = tx + nx
    inside = (uy >= 0) & (uy < grid_h) & (ux >= 0) & (ux < grid_w)
    token = tl.minimum(tl.maximum(uy, 0), grid_h - 1) * grid_w + tl.minimum(tl.maximum(ux, 0), grid_w - 1)
    src = tl.load(source_ptr + token, mask=mask, other=0).to(tl.int32)
    sy = src // grid_w
    dy = tl.where(inside, (sy - uy) * PATCH, 0)
    dx = tl.where(inside, (src - sy * grid_w - ux) * PATCH, 0)
    qy = tl.minimum(tl.maximum(y + dy, 0), h - 1)
    qx = tl.minimum(tl.maximum(x + dx, 0), w - 1)
    q = qy * w + qx
    known_weight = inside.to(tl.float32) * (tl.load(known_ptr + q, mask=mask, other=0.0).to(tl.float32)
                                            + COPY_FLOOR)
    fy = _fade(ly - ny * PATCH, PATCH, FEATHER)
    fx = _fade(lx - nx * PATCH, PATCH, FEATHER)
    weight = (fy * fx) * known_weight
    v0 = tl.load(image_ptr + q, mask=mask, other=0.0).to(tl.float32)
    v1 = tl.load(image_ptr + plane + q, mask=mask, other=0.0).to(tl.float32)
    v2 = tl.load(image_ptr + 2 * plane + q, mask=mask, other=0.0).to(tl.float32)
    if BASE_FEATHER > 0:
        b0 = tl.load(base_ptr + q, mask=mask, other=0.0).to(tl.float32)
        b1 = tl.load(base_ptr + plane + q, mask=mask, other=0.0).to(tl.float32)
        b2 = tl.load(base_ptr + 2 * plane + q, mask=mask, other=0.0).to(tl.float32)
        base_weight = (_fade(ly - ny * PATCH, PATCH, BASE_FEATHER) * _fade(lx - nx * PATCH, PATCH, BASE_FEATHER)) \
            * known_weight
        return weight, base_weight, dy, dx, v0 - b0, v1 - b1, v2 - b2, b0, b1, b2
    return weight, weight, dy, dx, v0, v1, v2, v0, v1, v2


@triton.jit
def _pair(wi, dyi, dxi, wj, dyj, dxj):
    """w_i w_j where copies i and j have one displacement, else 0 (`copy_tokens`' keep_contrast)."""
    return (wi * wj) * ((dyi == dyj) & (dxi == dxj)).to(tl.float32)


@triton.jit
def copy_tokens_kernel(image_ptr, base_ptr, known_ptr, source_ptr, out_ptr, h, w, grid_h, grid_w,
                       PATCH: tl.constexpr, FEATHER: tl.constexpr, BASE_FEATHER: tl.constexpr, BLOCK: tl.constexpr):
    """Image program_id(1)'s LR pixels [program_id(0) * BLOCK, + BLOCK): image, base, out (B, 3, h, w), known
    (B, 1, h, w), source (B, N) int64, all contiguous."""
    b = tl.program_id(1).to(tl.int64)
    plane = h * w
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < plane
    y = offs // w
    x = offs - y * w
    ty = y // PATCH
    tx = x // PATCH
    ly = y - ty * PATCH
    lx = x - tx * PATCH
    side_y = tl.where(PATCH // 2 - ly > 0, -1, 1)
    side_x = tl.where(PATCH // 2 - lx > 0, -1, 1)
    image_ptr += b * 3 * plane
    base_ptr += b * 3 * plane
    known_ptr += b * plane
    source_ptr += b * grid_h * grid_w
    out_ptr += b * 3 * plane
    zero = tl.zeros_like(side_y)
    # copy_tokens' order: the own token, the row neighbour, the column neighbour, the diagonal one
    w0, c0, dy0, dx0, a0, a1, a2, e0, e1, e2 = _copy(image_ptr, base_ptr, known_ptr, source_ptr, y, x, ty, tx, ly, lx,
                                                     zero, zero, h, w, grid_h, grid_w, plane, PATCH, FEATHER,
                                                     BASE_FEATHER, mask)
    w1, c1, dy1, dx1, f0, f1, f2, g0, g1, g2 = _copy(image_ptr, base_ptr, known_ptr, source_ptr, y, x, ty, tx, ly, lx,
                                                     side_y, zero, h, w, grid_h, grid_w, plane, PATCH, FEATHER,
                                                     BASE_FEATHER, mask)
    w2, c2, dy2, dx2, i0, i1, i2, j0, j1, j2 = _copy(image_ptr, base_ptr, known_ptr, source_ptr, y, x, ty, tx, ly, lx,
                                                     zero, side_x, h, w, grid_h, grid_w, plane, PATCH, FEATHER,
                                                     BASE_FEATHER, mask)
    w3, c3, dy3, dx3, m0, m1, m2, n0, n1, n2 = _copy(image_ptr, base_ptr, known_ptr, source_ptr, y, x, ty, tx, ly, lx,
                                                     side_y, side_x, h, w, grid_h, grid_w, plane, PATCH, FEATHER,
                                                     BASE_FEATHER, mask)
    t0 = (((0.0 + w0 * a0) + w1 * f0) + w2 * i0) + w3 * m0
    t1 = (((0.0 + w0 * a1) + w1 * f1) + w2 * i1) + w3 * m1
    t2 = (((0.0 + w0 * a2) + w1 * f2) + w2 * i2) + w3 * m2
    if BASE_FEATHER > 0:
        s0 = (((0.0 + c0 * e0) + c1 * g0) + c2 * j0) + c3 * n0
        s1 = (((0.0 + c0 * e1) + c1 * g1) + c2 * j1) + c3 * n1
        s2 = (((0.0 + c0 * e2) + c1 * g2) + c2 * j2) + c3 * n2
        base_sum = (((0.0 + c0) + c1) + c2) + c3
        squares = 0.0 + _pair(w0, dy0, dx0, w0, dy0, dx0)
        squares += _pair(w0, dy0, dx0, w1, dy1, dx1)
        squares += _pair(w0, dy0, dx0, w2, dy2, dx2)
        squares += _pair(w0, dy0, dx0, w3, dy3, dx3)
        squares += _pair(w1, dy1, dx1, w0, dy0, dx0)
        squares += _pair(w1, dy1, dx1, w1, dy1, dx1)
        squares += _pair(w1, dy1, dx1, w2, dy2, dx2)
        squares += _pair(w1, dy1, dx1, w3, dy3, dx3)
        squares += _pair(w2, dy2, dx2, w0, dy0, dx0)
        squares += _pair(w2, dy2, dx2, w1, dy1, dx1)
        squares += _pair(w2, dy2, dx2, w2, dy2, dx2)
        squares += _pair(w2, dy2, dx2, w3, dy3, dx3)
        squares += _pair(w3, dy3, dx3, w0, dy0, dx0)
        squares += _pair(w3, dy3, dx3, w1, dy1, dx1)
        squares += _pair(w3, dy3, dx3, w2, dy2, dx2)
        squares += _pair(w3, dy3, dx3, w3, dy3, dx3)
        root = tl.where(mask, tl.sqrt_rn(squares), 1.0)         # lanes past the image: no 0 / 0
        base_sum = tl.where(mask, base_sum, 1.0)
        o0 = tl.math.div_rn(s0, base_sum) + tl.math.div_rn(t0, root)
        o1 = tl.math.div_rn(s1, base_sum) + tl.math.div_rn(t1, root)
        o2 = tl.math.div_rn(s2, base_sum) + tl.math.div_rn(t2, root)
    else:
        weight_sum = tl.where(mask, (((0.0 + w0) + w1) + w2) + w3, 1.0)
        o0 = tl.math.div_rn(t0, weight_sum)
        o1 = tl.math.div_rn(t1, weight_sum)
        o2 = tl.math.div_rn(t2, weight_sum)
    ty_out = out_ptr.dtype.element_ty
    tl.store(out_ptr + offs, o0.to(ty_out), mask=mask)
    tl.store(out_ptr + plane + offs, o1.to(ty_out), mask=mask)
    tl.store(out_ptr + 2 * plane + offs, o2.to(ty_out), mask=mask)


def copy_tokens(image: torch.Tensor, known: torch.Tensor, source: torch.Tensor, patch: int, feather: int,
                base_feather: int = 0, base_sigma: float = 1.0) -> torch.Tensor:
    """`patchmatch.copy_tokens` (keep_contrast off: the LR network's form) on Triton: image (B, 3, h, w), known
    (B, 1, h, w) float {0, 1}, source (B, N) int64 -> (B, 3, h, w) in image's dtype."""
    if image.dim() != 4 or image.shape[1] != 3 or known.shape != (image.shape[0], 1, *image.shape[2:]):
        raise ValueError(f"image, known: expected (B, 3, h, w) and (B, 1, h, w), got {tuple(image.shape)} and "
                         f"{tuple(known.shape)}")
    batch, _, h, w = image.shape
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"patch: expected >= 1 dividing h and w ({h}, {w}), got {patch}")
    patchmatch.check_copy_settings(patch, feather, base_feather, base_sigma)
    tokens = (h // patch) * (w // patch)
    if source.shape != (batch, tokens) or source.dtype != torch.int64:
        raise ValueError(f"source: expected ({batch}, {tokens}) int64, got {tuple(source.shape)} {source.dtype}")
    image, known, source = image.contiguous(), known.contiguous(), source.contiguous()
    base = blur.blur_base(image, base_sigma).contiguous() if base_feather > 0 else image
    out = torch.empty_like(image)
    grid = (triton.cdiv(h * w, BLOCK), batch)
    copy_tokens_kernel[grid](image, base, known, source, out, h, w, h // patch, w // patch, PATCH=patch,
                             FEATHER=feather, BASE_FEATHER=base_feather, BLOCK=BLOCK)
    return out


def copy_tokens_reference(image: torch.Tensor, known: torch.Tensor, source: torch.Tensor, patch: int, feather: int,
                          base_feather: int = 0, base_sigma: float = 1.0) -> torch.Tensor:
    """`copy_tokens` in torch: `patchmatch.copy_tokens`."""
    return patchmatch.copy_tokens(image, known, source, patch, feather, base_feather=base_feather,
                                  base_sigma=base_sigma)
