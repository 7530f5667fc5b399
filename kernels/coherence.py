"""Coherence epilogue at LR: the coherence layer's last 3x3 conv + residual add + clamp + composite in one
pass (Triton), with its torch reference of the same signature.

    result = where(mask > 0, clamp(mixed + conv3x3(hidden, weight, bias, padding=1), 0, 1), image)

`hidden` is the output of the coherence layer's earlier convs (+ ReLU), which stay on cuDNN: they are
dense 16-channel convs that cuDNN runs well. This kernel replaces the last conv, the add, the clamp and
the composite (four launches and three (3, h, w) round trips to memory) with one read of hidden, mixed,
image and mask and one write of the LR result. Program: a BLOCK_ROWS x BLOCK_COLS tile; every hidden
value is loaded once per tap and used for the three output channels.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_ROWS, BLOCK_COLS = 8, 64  # LR pixels per program: a tile, so that neighbouring taps hit the cache


@triton.jit
def _composite(mixed_ptr, image_ptr, out_ptr, correction, hole, offs, valid):
    """One channel: hole pixels get clamp(mixed + correction, 0, 1), known pixels the LR input."""
    refined = tl.load(mixed_ptr + offs, mask=valid, other=0.0).to(tl.float32) + correction
    known = tl.load(image_ptr + offs, mask=valid, other=0.0)
    filled = tl.minimum(tl.maximum(refined, 0.0), 1.0).to(known.dtype)
    tl.store(out_ptr + offs, tl.where(hole, filled, known), mask=valid)


@triton.jit
def coherence_epilogue_kernel(hidden_ptr, weight_ptr, bias_ptr, mixed_ptr, image_ptr, mask_ptr, out_ptr, h, w,
                              C: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    y = tl.program_id(0) * BH + tl.arange(0, BH)[:, None]
    x = tl.program_id(1) * BW + tl.arange(0, BW)[None, :]
    valid = (y < h) & (x < w)
    plane = h * w
    acc0 = tl.zeros([BH, BW], tl.float32) + tl.load(bias_ptr + 0).to(tl.float32)
    acc1 = tl.zeros([BH, BW], tl.float32) + tl.load(bias_ptr + 1).to(tl.float32)
    acc2 = tl.zeros([BH, BW], tl.float32) + tl.load(bias_ptr + 2).to(tl.float32)
    for ci in range(C):
        for ky in tl.static_range(3):
            sy = y + (ky - 1)
            for kx in tl.static_range(3):
                sx = x + (kx - 1)
                ok = valid & (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)   # zero padding
                v = tl.load(hidden_ptr + ci * plane + sy * w + sx, mask=ok, other=0.0).to(tl.float32)
                tap = ci * 9 + ky * 3 + kx                                 # weight (3, C, 3, 3), contiguous
                acc0 += v * tl.load(weight_ptr + tap).to(tl.float32)
                acc1 += v * tl.load(weight_ptr + C * 9 + tap).to(tl.float32)
                acc2 += v * tl.load(weight_ptr + 2 * C * 9 + tap).to(tl.float32)
    offs = y * w + x
    hole = tl.load(mask_ptr + offs, mask=valid, other=0.0) > 0
    _composite(mixed_ptr, image_ptr, out_ptr, acc0, hole, offs, valid)
    _composite(mixed_ptr + plane, image_ptr + plane, out_ptr + plane, acc1, hole, offs, valid)
    _composite(mixed_ptr + 2 * plane, image_ptr + 2 * plane, out_ptr + 2 * plane, acc2, hole, offs, valid)


def coherence_epilogue(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mixed: torch.Tensor,
                       image: torch.Tensor, mask: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """hidden (C, h, w); weight (3, C, 3, 3), bias (3,) of the last coherence conv; mixed, image (3, h, w)
    (attention-mixed tokens, LR input); mask (h, w) float {0, 1}. Returns the LR result (3, h, w) in
    image.dtype, written into `out` (default new)."""
    c, h, w = hidden.shape
    if weight.shape != (3, c, 3, 3) or bias.shape != (3,):
        raise ValueError(f"weight, bias: expected (3, {c}, 3, 3) and (3,), got {tuple(weight.shape)}, {tuple(bias.shape)}")
    if mixed.shape != (3, h, w) or image.shape != (3, h, w) or mask.shape != (h, w):
        raise ValueError(f"mixed, image, mask: expected (3, {h}, {w}), (3, {h}, {w}), ({h}, {w}); got "
                         f"{tuple(mixed.shape)}, {tuple(image.shape)}, {tuple(mask.shape)}")
    image = image.contiguous()
    out = torch.empty_like(image) if out is None else out
    if out.shape != image.shape or out.dtype != image.dtype or not out.is_contiguous():
        raise ValueError(f"out: expected a contiguous {tuple(image.shape)} {image.dtype} tensor")
    grid = (triton.cdiv(h, BLOCK_ROWS), triton.cdiv(w, BLOCK_COLS))
    coherence_epilogue_kernel[grid](hidden.contiguous(), weight.contiguous(), bias.contiguous(), mixed.contiguous(),
                                    image, mask.contiguous(), out, h, w, C=c, BH=BLOCK_ROWS, BW=BLOCK_COLS)
    return out


def coherence_epilogue_reference(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mixed: torch.Tensor,
                                 image: torch.Tensor, mask: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Plain torch, same signature and math: the end of `NeuralPatchMatch.forward` and `Rethined.forward_lr`."""
    import torch.nn.functional as F

    refined = mixed + F.conv2d(hidden[None], weight.to(hidden.dtype), bias.to(hidden.dtype), padding=1)[0].to(mixed.dtype)
    result = torch.where(mask[None] > 0, refined.clamp(0.0, 1.0).to(image.dtype), image)
    return out.copy_(result) if out is not None else result
