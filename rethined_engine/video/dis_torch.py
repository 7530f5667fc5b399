"""DIS optical flow (Kroeger et al., ECCV 2016, "Fast Optical Flow using Dense Inverse Search") in plain torch, so
that the flow runs on the device that holds the frames.

A coarse-to-fine pyramid: at each scale a grid of square patches of the source image is matched into the target by
inverse-compositional Gauss-Newton on mean-normalised patches (every patch at once), and the patches' flows are
made dense by averaging the patches over each pixel, each weighted by 1 / max(1, |its photometric error there|).
Each scale's dense flow is then refined variationally (`video.flow_refinement`), as OpenCV does. It follows
OpenCV's `DISOpticalFlow` (the presets' scales, patch sizes, strides, iteration counts, early stop and refinement),
with its sequential spatial propagation, which does not parallelise over patches, replaced by rounds of a parallel
one before each scale's search (`propagate`). A patch whose search moves it more than its own size from where it
started keeps its start.

Flow fields as in `video.flow`: (h, w, 2) px (dx, dy) from a source pixel to where it lies in the target,
source(x) ~ target(x + flow(x)); batched tensors are (B, 2, h, w).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .flow_refinement import RefinementParams, refine
from .torch_sampling import constant, sample_at


@dataclass(frozen=True)
class DISParams:
    """finest_scale: the finest pyramid scale searched (0 = full size; the flow is upsampled from it);
    patch_size, patch_stride: px of the square patches and between their origins; iterations: Gauss-Newton
    steps per patch and scale; refinement_iterations: fixed-point iterations of the variational refinement after
    each scale (0: none); propagation_rounds: rounds of `propagate` before each scale's search (0: none)."""
    finest_scale: int
    patch_size: int
    patch_stride: int
    iterations: int
    refinement_iterations: int
    propagation_rounds: int = 4


TORCH_DIS_PRESETS = {            # OpenCV's DISOpticalFlow presets
    "ultrafast": DISParams(2, 8, 4, 12, 0),
    "fast": DISParams(2, 8, 4, 16, 5),
    "medium": DISParams(1, 8, 3, 25, 5),
}
HESSIAN_EPS = 1e-3               # (intensity levels / px)^2 added to each patch's Hessian diagonal: flat patches stay put
DENSIFY_MIN_ERROR = 1.0          # intensity levels: a patch's weight at a pixel is 1 / max(this, |its error there|)
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8   # d/dx, intensity per px


def auto_coarsest_scale(height: int, width: int, patch_size: int) -> int:
    """OpenCV's choice of the coarsest scale: about a quarter of the long side per 4 patches, and patches that
    still fit the short side."""
    by_long = int(math.log2(max(height, width) / (4.0 * patch_size)) + 0.5)
    by_short = int(math.log2(min(height, width) / patch_size))
    return max(0, min(by_long, by_short))


def pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """image (B, 1, h, w) -> [image, halved, ...] (levels + 1 tensors), each an area average of the one before."""
    out = [image]
    for _ in range(levels):
        h, w = out[-1].shape[-2:]
        out.append(F.interpolate(out[-1], size=(max(1, h // 2), max(1, w // 2)), mode="area"))
    return out


def gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dx and d/dy of image (B, 1, h, w), Sobel, edges replicated, intensity per px."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    kernel = _sobel(image.device).to(image.dtype)
    return F.conv2d(padded, kernel[None, None]), F.conv2d(padded, kernel.t()[None, None])


@lru_cache(maxsize=8)
def _sobel(device: torch.device) -> torch.Tensor:
    return SOBEL_X.to(device)


def patch_count(length: int, size: int, stride: int) -> int:
    """How many patches of size px every stride px cover length px (`patch_origins`)."""
    return 1 if length <= size else 1 + -(-(length - size) // stride)


def patch_origins(length: int, size: int, stride: int) -> torch.Tensor:
    """Origins (n,) int64 of patches of size px every stride px along length px, the last flush with the end, so
    that every pixel is covered; one patch at 0 when length < size."""
    return torch.clamp(torch.arange(patch_count(length, size, stride)) * stride, max=max(0, length - size))


def patch_pixels(ys: torch.Tensor, xs: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns (P, size^2) int64 of every pixel of the patches whose origins are every (ys, xs) pair,
    P = len(ys) * len(xs), patches row by row, their pixels row by row."""
    offsets = torch.arange(size)
    rows = ys[:, None, None, None] + offsets[None, None, :, None]
    cols = xs[None, :, None, None] + offsets[None, None, None, :]
    shape = (len(ys), len(xs), size, size)
    return rows.expand(shape).reshape(-1, size * size), cols.expand(shape).reshape(-1, size * size)


@lru_cache(maxsize=64)
def patch_geometry(h: int, w: int, size: int, stride: int, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The patch grid of an (h, w) scale, made once per size and device: flat pixel index (P, n) int64 of every
    patch pixel, flat index (P,) of each patch's centre, and the pixels' columns and rows (P, n) float32."""
    ys, xs = patch_origins(h, size, stride), patch_origins(w, size, stride)
    rows, cols = patch_pixels(ys, xs, size)
    centre = ((ys[:, None] + size // 2) * w + (xs[None, :] + size // 2)).reshape(-1)
    return (rows * w + cols).to(device), centre.to(device), cols.float().to(device), rows.float().to(device)


def sample(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """image (B, 1, h, w) at positions x, y (B, P, n) or (P, n) px, bilinear, edges replicated -> (B, P, n)."""
    x, y = x.expand(image.shape[0], *x.shape[-2:]), y.expand(image.shape[0], *y.shape[-2:])
    return sample_at(image, torch.stack((x, y), -1))[:, 0]


def inverse_search(target: torch.Tensor, template: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor,
                   x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, iterations: int, size: int) -> torch.Tensor:
    """Every patch's inverse-compositional Gauss-Newton search: target (B, 1, h, w) intensities; template, gx, gy
    (B, P, n) the source's intensities and mean-normalised gradients over each patch's n pixels; x, y (P, n) those
    pixels' columns and rows (px); start (B, 2, P) each patch's start flow -> its flow (B, 2, P) px, the start
    where the search strayed more than size px from it.

    As in OpenCV, a patch stops after the step taken where its mean-normalised SSD (`patch_ssd`) stopped falling:
    under noise the later steps chase it (with it, on `bench.flow_accuracy`'s noisy known motions, the mean
    end-point error fell by 29-45 %)."""
    hxx = (gx * gx).sum(-1) + HESSIAN_EPS
    hxy = (gx * gy).sum(-1)
    hyy = (gy * gy).sum(-1) + HESSIAN_EPS
    det = hxx * hyy - hxy * hxy
    u, v = start[:, 0], start[:, 1]
    moving = torch.ones_like(u, dtype=torch.bool)
    previous = torch.full_like(u, math.inf)
    for _ in range(iterations):
        residual = sample(target, x + u[..., None], y + v[..., None]) - template
        bx, by = (gx * residual).sum(-1), (gy * residual).sum(-1)
        u = torch.where(moving, u - (hyy * bx - hxy * by) / det, u)
        v = torch.where(moving, v - (hxx * by - hxy * bx) / det, v)
        ssd = patch_ssd(residual)
        moving = moving & (ssd < previous)
        previous = ssd
    strayed = (u - start[:, 0]).square() + (v - start[:, 1]).square() > size * size
    return torch.stack((torch.where(strayed, start[:, 0], u), torch.where(strayed, start[:, 1], v)), 1)


def patch_ssd(residual: torch.Tensor) -> torch.Tensor:
    """Mean-normalised sum of squared differences (B, P) of each patch's residuals (B, P, n): what is left once
    the patch's mean difference (a brightness change) is taken out, intensity^2."""
    return residual.square().sum(-1) - residual.sum(-1).square() / residual.shape[-1]


def propagate(target: torch.Tensor, template: torch.Tensor, x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor,
              grid: tuple[int, int]) -> torch.Tensor:
    """One round of spatial propagation, every patch at once: each patch takes whichever of its own flow and its
    four grid neighbours' has the lowest mean-normalised SSD (`patch_ssd`) over its pixels. target (B, 1, h, w);
    template (B, P, n); x, y (P, n) px; flow (B, 2, P) with P = rows * cols of grid -> (B, 2, P).

    OpenCV's DIS propagates sequentially, in raster order and back, so that a good flow can cross the image in one
    pass; rounds of this parallel form carry it one patch per round."""
    b = flow.shape[0]
    rows, cols = grid
    own = flow.reshape(b, 2, rows, cols)
    edge = F.pad(own, (1, 1, 1, 1), mode="replicate")          # a missing neighbour repeats the patch itself
    left, right, up, down = edge[..., 1:-1, :-2], edge[..., 1:-1, 2:], edge[..., :-2, 1:-1], edge[..., 2:, 1:-1]
    candidates = torch.stack((own, left, right, up, down), 2).reshape(b, 2, 5, rows * cols)
    moved = x + candidates[:, 0, :, :, None], y + candidates[:, 1, :, :, None]          # (B, 5, P, n) each
    reads = sample(target, moved[0].flatten(1, 2), moved[1].flatten(1, 2))
    ssd = patch_ssd(reads.reshape(b, 5, rows * cols, -1) - template[:, None])          # (B, 5, P)
    best = ssd.argmin(1)[:, None, None].expand(b, 2, 1, rows * cols)
    return candidates.gather(2, best)[:, :, 0]


def search_function(device: torch.device, size: int):
    """The patches' search for tensors on device: the fused kernel (`kernels.dis_search.inverse_search`: every
    iteration in one launch) where `_patch_kernel` finds it; else `inverse_search`, a few torch operations per
    iteration."""
    return _patch_kernel("inverse_search", device, size) or inverse_search


def propagate_function(device: torch.device, size: int):
    """The patches' propagation round for tensors on device: the kernel (`kernels.dis_search.propagate`: one
    launch per round) where `_patch_kernel` finds it; else `propagate`."""
    return _patch_kernel("propagate", device, size) or propagate


def _patch_kernel(name: str, device: torch.device, size: int):
    """`kernels.dis_search`'s function of that name on CUDA with Triton installed where a patch's size^2 pixels
    are a power of two (the kernels hold a patch in one block); else None."""
    if device.type != "cuda" or size * size & (size * size - 1):
        return None
    try:
        from ..kernels import dis_search
    except ImportError:             # no Triton: torch
        return None
    return getattr(dis_search, name)


def refine_function(device: torch.device):
    """The variational refinement for tensors on device: on CUDA with Triton installed, the kernels of
    `kernels.flow_refinement` (one launch per image at the video working size); else `flow_refinement.refine`."""
    if device.type == "cuda":
        try:
            from ..kernels import flow_refinement as kernels
        except ImportError:         # no Triton: torch
            return refine
        return kernels.refine
    return refine


def search_scale(source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor, params: DISParams) -> torch.Tensor:
    """One scale of DIS: source, target (B, 1, h, w) float intensities; flow (B, 2, h, w) the start ->
    the dense flow (B, 2, h, w) from the patches' inverse search and densification."""
    b, _, h, w = source.shape
    size = min(params.patch_size, h, w)
    index, centre, x, y = patch_geometry(h, w, size, params.patch_stride, source.device)
    gx, gy = gradients(source)

    def gather(image: torch.Tensor) -> torch.Tensor:      # (B, 1, h, w) -> (B, P, n)
        return image.flatten(1)[:, index]

    template, gx, gy = gather(source), gather(gx), gather(gy)
    gx, gy = gx - gx.mean(-1, keepdim=True), gy - gy.mean(-1, keepdim=True)      # mean normalisation
    start = flow.flatten(2)[:, :, centre]                  # (B, 2, P)
    grid = (patch_count(h, size, params.patch_stride), patch_count(w, size, params.patch_stride))
    spread = propagate_function(source.device, size)
    for _ in range(params.propagation_rounds):
        start = spread(target, template, x, y, start, grid)
    u, v = search_function(source.device, size)(target, template, gx, gy, x, y, start, params.iterations, size).unbind(1)
    error = (sample(target, x + u[..., None], y + v[..., None]) - template).abs()
    weight = 1 / error.clamp(min=DENSIFY_MIN_ERROR)        # (B, P, n)
    flat = index.reshape(-1)
    total = torch.zeros(b, h * w, dtype=source.dtype, device=source.device)
    total.index_add_(1, flat, weight.reshape(b, -1))
    dense = torch.zeros(b, 2, h * w, dtype=source.dtype, device=source.device)
    dense[:, 0].index_add_(1, flat, (weight * u[..., None]).reshape(b, -1))
    dense[:, 1].index_add_(1, flat, (weight * v[..., None]).reshape(b, -1))
    return (dense / total[:, None]).reshape(b, 2, h, w)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """flow (B, 2, h, w) px -> (B, 2, *size), bilinear, its x and y scaled by the change of width and height."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    scale = constant((size[1] / w, size[0] / h), flow.device)
    if size[0] * size[1] < h * w:
        out = F.interpolate(flow, size=size, mode="area")
    else:
        out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    return out * scale[None, :, None, None]


def dis_flow(source: torch.Tensor, target: torch.Tensor, params: DISParams, initial: torch.Tensor | None = None,
             coarsest_scale: int | None = None) -> torch.Tensor:
    """Flow (B, 2, h, w) float32 from source to target, both (B, h, w) grey intensities (uint8 or float in 0..255);
    initial (B, 2, h, w) px, a flow to start from (brought down to the coarsest scale); coarsest_scale: an upper
    bound on `auto_coarsest_scale` (None: none); the search never starts below params.finest_scale."""
    if source.shape != target.shape or source.dim() != 3:
        raise ValueError(f"source, target: expected two (B, h, w) tensors of one shape, got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}")
    h, w = source.shape[-2:]
    coarsest = auto_coarsest_scale(h, w, params.patch_size)
    if coarsest_scale is not None:       # a bound, as OpenCV's setCoarsestScale: never above the automatic scale
        coarsest = min(coarsest, coarsest_scale)
    coarsest = max(coarsest, params.finest_scale)
    sources = pyramid(source[:, None].float(), coarsest)
    targets = pyramid(target[:, None].float(), coarsest)
    top = sources[coarsest].shape[-2:]
    if initial is None:
        flow = torch.zeros(source.shape[0], 2, *top, dtype=torch.float32, device=source.device)
    else:
        flow = resize_flow(initial.float(), top)
    refinement = RefinementParams(fixed_point_iterations=params.refinement_iterations)
    for scale in range(coarsest, params.finest_scale - 1, -1):
        flow = search_scale(sources[scale], targets[scale], resize_flow(flow, sources[scale].shape[-2:]), params)
        if params.refinement_iterations:
            flow = refine_function(source.device)(sources[scale], targets[scale], flow, refinement)
    return resize_flow(flow, (h, w))


class TorchDIS:
    """A DIS estimator on a torch device with OpenCV's `calc` interface: `calc(source, target, flow)` takes (h, w)
    uint8 grey numpy arrays and an optional start flow (h, w, 2) float32 (None: from zero) and returns the flow
    (h, w, 2) float32. preset: one of TORCH_DIS_PRESETS; scales_above_finest: search at most this many scales above
    the preset's finest (a local refinement of a given flow; small images get fewer, as OpenCV's automatic coarsest
    scale allows; None: that automatic scale). from_start False: a start flow given to `calc` or `flow` is not
    searched from (the search starts at zero)."""

    def __init__(self, preset: str = "fast", device: str | torch.device = "cpu", scales_above_finest: int | None = None,
                 from_start: bool = True):
        if preset not in TORCH_DIS_PRESETS:
            raise ValueError(f"preset: expected one of {tuple(TORCH_DIS_PRESETS)}, got {preset!r}")
        if scales_above_finest is not None and scales_above_finest < 0:
            raise ValueError(f"scales_above_finest: expected None or >= 0, got {scales_above_finest}")
        self.params = TORCH_DIS_PRESETS[preset]
        self.device = torch.device(device)
        self.coarsest_scale = None if scales_above_finest is None else self.params.finest_scale + scales_above_finest
        self.from_start = from_start

    def flow(self, source: torch.Tensor, target: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """Flow (2, h, w) float32 from source to target, (h, w) uint8 tensors each on the device, or (B, 2, h, w)
        from (B, h, w) pairs; start: (2, h, w) or (B, 2, h, w) px, or None."""
        single = source.dim() == 2
        start = start if self.from_start else None
        if single:
            source, target = source[None], target[None]
            start = None if start is None else start[None]
        out = dis_flow(source, target, self.params, start, self.coarsest_scale)
        return out[0] if single else out

    def calc(self, source: np.ndarray, target: np.ndarray, flow: np.ndarray | None) -> np.ndarray:
        """Flow (h, w, 2) float32 from source to target, (h, w) uint8 each; flow: the start, or None."""
        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

        initial = None if flow is None or not self.from_start else tensor(flow).permute(2, 0, 1)[None]
        out = dis_flow(tensor(source)[None], tensor(target)[None], self.params, initial, self.coarsest_scale)
        return out[0].permute(1, 2, 0).contiguous().cpu().numpy()
