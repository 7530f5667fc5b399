"""The copy styles' normalised Gaussian blur (`model.patchmatch.blur_base`: the two-band copies' base and the border
match's Gaussian means) as two Triton passes, one per axis, with its torch reference of the same signature.

torch filters by sums of shifted slices (`patchmatch._filter_along`: a multiply-add per tap and axis, ~38
operations per pass at sigma 3 px, 72 per call of the realistic style at 512^2 LR, `bench.op_count`); here each
pass is one kernel that sums the taps in the same order from zero, so results agree with the reference to float
rounding (the GPU fuses each multiply-add, as ATen's add with alpha does on the CPU; tests/test_kernel_blur.py).
The taps are a float32 tensor on the device, made once per sigma and device (`gaussian_taps`, on the first call:
the eager warm-up before a CUDA graph is captured; a captured graph cannot copy them from the host).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from rethined_engine.geometry import seam_taps
from rethined_engine.model import patchmatch

from .tuning import INTERPRET

BLOCK = 4096 if INTERPRET else 256    # values per program (the interpreter runs programs one by one: few, wide)


@triton.jit
def filter_axis_kernel(x_ptr, taps_ptr, out_ptr, total, length, inner, n_taps, BLOCK: tl.constexpr):
    """out = the 1-D filter taps (n_taps, odd, centred) along one axis of contiguous x (total values; the axis has
    `length` positions, `inner` values apart), zero outside: sum over t of taps[t] * x[pos + t - radius]."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < total
    pos = (offs // inner) % length
    radius = n_taps // 2
    acc = tl.zeros((BLOCK,), tl.float32)
    for t in range(0, n_taps):
        shift = t - radius
        at = pos + shift
        value = tl.load(x_ptr + offs + shift * inner, mask=live & (at >= 0) & (at < length), other=0.0)
        acc += tl.load(taps_ptr + t) * value.to(tl.float32)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=live)


@functools.lru_cache(maxsize=16)
def gaussian_taps(sigma: float, device: torch.device) -> torch.Tensor:
    """The float32 taps of `blur_base` (`geometry.gaussian_kernel_list`: radius ceil(3 sigma)) on device, made once
    (not to be written)."""
    return torch.from_numpy(seam_taps(sigma)).to(device)


def filter_axis(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """`patchmatch._filter_along(x, taps, dim)` for a 4-D x and float32 taps (2r + 1,) on x's device: one launch."""
    if x.dim() != 4 or dim not in (2, 3):
        raise ValueError(f"x, dim: expected (B, C, h, w) and dim 2 or 3, got {tuple(x.shape)} and {dim}")
    if taps.dim() != 1 or taps.numel() % 2 == 0 or taps.dtype != torch.float32 or taps.device != x.device:
        raise ValueError(f"taps: expected an odd number of float32 taps on {x.device}, got {tuple(taps.shape)} "
                         f"{taps.dtype} on {taps.device}")
    x = x.contiguous()
    out = torch.empty_like(x)
    inner = x.shape[3] if dim == 2 else 1
    filter_axis_kernel[(triton.cdiv(x.numel(), BLOCK),)](x, taps, out, x.numel(), x.shape[dim], inner, taps.numel(),
                                                         BLOCK=BLOCK)
    return out


def gaussian_sums(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """The separable Gaussian (sigma px, `blur_base`'s taps) of (B, C, h, w), not normalised at the image's edges
    (zero outside): one launch per axis. For a ratio of two such sums (a mean over some pixels) the normalisation
    cancels."""
    taps = gaussian_taps(float(sigma), image.device)
    return filter_axis(filter_axis(image, taps, 2), taps, 3)


def blur_base(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """`patchmatch.blur_base` (same arguments and result) with each axis's filter one launch: (B, C, h, w) ->
    (B, C, h, w), normalised by the taps inside the image."""
    if not sigma > 0.0:
        raise ValueError(f"sigma: expected > 0 px, got {sigma}")
    channels = image.shape[1]
    stack = gaussian_sums(torch.cat([image, torch.ones_like(image[:, :1])], dim=1), sigma)
    return stack[:, :channels] / stack[:, channels:]


def blur_base_reference(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """`blur_base` in torch: `patchmatch.blur_base`."""
    return patchmatch.blur_base(image, sigma)
