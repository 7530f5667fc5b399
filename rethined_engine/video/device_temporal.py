"""Temporal mode on a torch device: `video.temporal` (the numpy/OpenCV reference) step for step in torch, so that
frames, flows and every copy stay on the device that runs the engine (a CUDA GPU: no frame crosses PCIe unless the
caller's frames live on the host).

Same algorithm, same `VideoConfig`, same decisions (one code for both paths: `temporal_emit.TemporalEmitter`
over `DEVICE_STEPS`); the differences are the arithmetic of the primitives: area resizes with torch's integer
windows (OpenCV weighs partial pixels), bilinear reads in float32 (OpenCV's remap quantises positions to 1/32 px),
the flow by `video.dis_torch.TorchDIS` (a parallel form of DIS's spatial propagation), a hole's width measured on
the host (`temporal.hole_width`, a distance transform) once per distinct mask. `DeviceTemporal` is the stream;
`VideoInpainter` uses it where `VideoConfig.temporal_device` says so.

Layouts: frames (3, H, W) uint8 and masks (H, W) bool (True = hole) at full resolution; flows (2, h, w) float32
(dx, dy) in working px at the working size, masks there (h, w) bool; positions (..., 2) float32 (x, y) px. A box
is (y0, y1, x0, x1), end exclusive, in the px of the array it indexes.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import temporal
from .dis_torch import TorchDIS
from .flow import PUSH_PULL_EPS, PUSH_PULL_MIN_SIDE, push_pull_box
from .temporal import (
    AFFINE_MIN_POINTS,
    AFFINE_MIN_RESIDUAL,
    AFFINE_TRIM,
    CANVAS_EPS,
    FLOW_FILLS,
    MOVING_FIT_STRIDE,
    grow_box,
    working_size,
)
from .temporal_emit import Previous, TemporalEmitter, TemporalSteps, engine_inpaint
from .torch_sampling import constant, pixel_grid, sample_at

Box = tuple[int, int, int, int]
LUMA = (0.299, 0.587, 0.114)      # RGB -> grey, as OpenCV's COLOR_RGB2GRAY
AFFINE_RIDGE = 1e-9               # added to the diagonal of an affine fit's normal equations


# --- primitives ----------------------------------------------------------------------------------------------

def sample_each(images: torch.Tensor, positions: torch.Tensor, nearest: bool = False) -> torch.Tensor:
    """images (N, h, w) or (N, C, h, w), each at its own positions (N, bh, bw, 2) (x, y) px, edges replicated ->
    (N, bh, bw) or (N, C, bh, bw) float32."""
    out = sample_at(images.float().reshape(images.shape[0], -1, *images.shape[-2:]), positions, nearest)
    return out[:, 0] if images.dim() == 3 else out


def sample(image: torch.Tensor, positions: torch.Tensor, nearest: bool = False) -> torch.Tensor:
    """image (h, w) or (C, h, w), any dtype, at positions (bh, bw, 2) (x, y) px, edges replicated -> (bh, bw) or
    (C, bh, bw) float32 (bilinear, or the nearest pixel)."""
    return sample_each(image[None], positions[None], nearest)[0]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float levels -> uint8, rounded and clipped."""
    return x.round().clamp(0, 255).to(torch.uint8)


@lru_cache(maxsize=8)
def _box_weights(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(4, height + width) int32: over [rows | columns] set, each row's maximum is one end of the box: height - y0,
    y1, width - x0, x1 (0 where nothing is set)."""
    rows, cols = torch.arange(height, dtype=torch.int32), torch.arange(width, dtype=torch.int32)
    none_r, none_c = torch.zeros_like(rows), torch.zeros_like(cols)
    return torch.stack((torch.cat((height - rows, none_c)), torch.cat((rows + 1, none_c)),
                        torch.cat((none_r, width - cols)), torch.cat((none_r, cols + 1)))).to(device)


def bounding_box(mask: torch.Tensor) -> Box | None:
    """(y0, y1, x0, x1) of the True pixels of mask (H, W), or None when there is none; one read to the host (on
    a GPU the host waits once), five operations."""
    if mask.numel() == 0:
        return None
    height, width = mask.shape
    lines = torch.cat((mask.any(1), mask.any(0)))                                   # (H + W,) bool
    from_top, y1, from_left, x1 = (lines * _box_weights(height, width, mask.device)).amax(1).tolist()
    return (height - from_top, y1, width - from_left, x1) if y1 else None


def grow(mask: torch.Tensor, margin: int) -> torch.Tensor:
    """mask (H, W) or (N, H, W) bool grown by margin px (a square), as two 1-D max filters."""
    if margin <= 0:
        return mask
    x = mask.reshape(-1, 1, *mask.shape[-2:]).to(torch.float16 if mask.is_cuda else torch.float32)
    x = F.max_pool2d(x, (1, 2 * margin + 1), stride=1, padding=(0, margin))
    x = F.max_pool2d(x, (2 * margin + 1, 1), stride=1, padding=(margin, 0))
    return x.reshape(mask.shape) > 0


@lru_cache(maxsize=8)
def _ellipse(margin: int, device: torch.device) -> torch.Tensor:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)).astype(np.float32)
    return torch.from_numpy(kernel).to(device)[None, None]


def resize_area(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """image (h, w) or (C, h, w) -> float32 at size (h', w') <= its own, each pixel the mean of those it covers."""
    planes = image.float().reshape(1, -1, *image.shape[-2:])
    out = F.interpolate(planes, size=size, mode="area")[0]
    return out[0] if image.dim() == 2 else out


def shrink_mask(mask: torch.Tensor, size: tuple[int, int], margin: int) -> torch.Tensor:
    """mask (H, W) bool -> (h, w) bool: every working pixel touching the hole, grown by margin working px (an
    ellipse, as `temporal.shrink_mask`)."""
    small = resize_area(mask, size) > 0
    if margin > 0:
        spread = F.conv2d(small[None, None].float(), _ellipse(margin, mask.device), padding=margin)
        small = spread[0, 0] > 0.5
    return small


def grey(frame: torch.Tensor) -> torch.Tensor:
    """(3, H, W) uint8 RGB -> (H, W) uint8 luma."""
    weights = constant(LUMA, frame.device)[:, None, None]
    return to_uint8((frame.float() * weights).sum(0))


def to_working(positions: torch.Tensor, frame_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Full-resolution positions (..., 2) (x, y) of a (H, W) frame -> the same places at the working size (h, w)."""
    (height, width), (h, w) = frame_size, size
    return (positions + 0.5) * constant((w / width, h / height), positions.device) - 0.5


def upsample_flow(flow: torch.Tensor, frame_size: tuple[int, int], box: Box) -> torch.Tensor:
    """Working-size flow (2, h, w) brought to full resolution over box -> (box h, box w, 2) float32, full px."""
    (height, width), (h, w) = frame_size, flow.shape[-2:]
    y0, y1, x0, x1 = box
    full = pixel_grid(height, width, flow.device)[y0:y1, x0:x1]
    scale = constant((width / w, height / h), flow.device)
    return sample(flow, to_working(full, frame_size, (h, w))).permute(1, 2, 0) * scale


def warp_back(image: torch.Tensor, flow: torch.Tensor, nearest: bool = False) -> torch.Tensor:
    """image (h, w) or (C, h, w) read at x + flow(x) for every pixel x of flow (2, h, w) -> float32."""
    return sample(image, pixel_grid(*flow.shape[-2:], flow.device) + flow.permute(1, 2, 0), nearest)


def forward_backward_valid(forward: torch.Tensor, backward: torch.Tensor, relative: float, absolute: float,
                           box: Box) -> torch.Tensor:
    """(h, w) bool: pixels inside box whose forward flow (2, h, w) the backward flow, read at its end, undoes
    (`video.flow.forward_backward_valid`) and whose end lies inside the frame."""
    y0, y1, x0, x1 = box
    h, w = forward.shape[-2:]
    ahead = forward[:, y0:y1, x0:x1]
    end = pixel_grid(h, w, forward.device)[y0:y1, x0:x1] + ahead.permute(1, 2, 0)
    back = sample(backward, end)
    error = (ahead + back).square().sum(0)
    bound = relative * (ahead.square().sum(0) + back.square().sum(0)) + absolute
    inside = (end[..., 0] >= 0) & (end[..., 0] <= w - 1) & (end[..., 1] >= 0) & (end[..., 1] <= h - 1)
    valid = torch.zeros(h, w, dtype=torch.bool, device=forward.device)
    valid[y0:y1, x0:x1] = (error <= bound) & inside
    return valid


def push_pull(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """`video.flow.push_pull` for values (C, h, w) or (N, C, h, w) float32 with known (h, w) or (N, h, w) bool: the
    unknown pixels filled over the box around them (the union of the N images' unknown pixels) grown by
    PUSH_PULL_CONTEXT of its size; known pixels unchanged. Each level halves the weighted values and the weights
    together (one area resize)."""
    single = values.dim() == 3
    values, known = (values[None], known[None]) if single else (values, known)
    box = bounding_box(~known.all(0))
    if box is None:
        return values[0] if single else values
    y0, y1, x0, x1 = push_pull_box(box, tuple(known.shape[1:]))
    out = values.clone()
    part, inside = values[..., y0:y1, x0:x1], known[:, None, y0:y1, x0:x1]
    weight = inside.float()
    levels = [torch.cat((part * weight, weight), 1)]       # (N, C + 1, h, w): weighted values, then the weight
    while min(levels[-1].shape[-2:]) > PUSH_PULL_MIN_SIDE:
        h, w = levels[-1].shape[-2:]
        levels.append(F.interpolate(levels[-1], size=((h + 1) // 2, (w + 1) // 2), mode="area"))
    filled = levels[-1][:, :-1] / levels[-1][:, -1:].clamp(min=PUSH_PULL_EPS)
    for level in reversed(levels[:-1]):          # five operations a level: one launch each on a GPU
        summed, weights = level[:, :-1], level[:, -1:]
        coarse = F.interpolate(filled, size=weights.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.lerp(coarse, summed / weights.clamp(min=PUSH_PULL_EPS), weights.clamp(max=1.0))
    filled = torch.where(inside.flatten(1).any(1)[:, None, None, None], filled, 0.0)   # no known pixel: zeros
    out[..., y0:y1, x0:x1] = torch.where(inside, part, filled)
    return out[0] if single else out


# --- flow completion -----------------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _homogeneous_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(height, width, 3) float64 (x, y, 1) of every pixel on device; shared, not to be written."""
    grid = pixel_grid(height, width, device).double()
    return torch.cat((grid, torch.ones_like(grid[..., :1])), -1)


@lru_cache(maxsize=4)
def _ridge(device: torch.device) -> torch.Tensor:
    """(3, 3) float64: what keeps the normal equations of an affine fit solvable with too few points."""
    return torch.eye(3, dtype=torch.float64, device=device) * AFFINE_RIDGE


def affine_fields(motions: torch.Tensor, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Affine motions (x, y, 1) -> flow, (N, 3, 2) float64, over a (h, w) grid -> (N, 2, h, w) float64."""
    return torch.einsum("hwi,nij->njhw", _homogeneous_grid(*size, device), motions)


def fit_affine(flows: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """`temporal.fit_affine` for N fields at once: the affine motions (N, 3, 2) float64 least-squares fitted to
    flows (N, 2, h, w) at points (N, h, w) bool (each at least AFFINE_MIN_POINTS), each refitted once without its
    outliers (residual above AFFINE_TRIM x its median or AFFINE_MIN_RESIDUAL) where that leaves enough points.
    Normal equations in float64. The median of an even count is the lower middle value (the reference's: the mean
    of the two; one operation against nineteen for the quantile)."""
    coords = _homogeneous_grid(*flows.shape[-2:], flows.device).reshape(-1, 3)    # (hw, 3)
    values = flows.flatten(2).transpose(1, 2).double()                       # (N, hw, 2)
    ridge = _ridge(flows.device)

    def solve(weights: torch.Tensor) -> torch.Tensor:                         # weights (N, hw) -> (N, 3, 2)
        normal = torch.einsum("nk,ki,kj->nij", weights, coords, coords) + ridge
        return torch.linalg.solve(normal, torch.einsum("nk,ki,nkj->nij", weights, coords, values))

    chosen = points.flatten(1)
    motions = solve(chosen.double())
    residual = torch.linalg.vector_norm(torch.einsum("ki,nij->nkj", coords, motions) - values, dim=2)
    median = torch.nanmedian(torch.where(chosen, residual, torch.nan), dim=1).values
    inliers = chosen & (residual <= (AFFINE_TRIM * median).clamp(min=AFFINE_MIN_RESIDUAL)[:, None])
    enough = inliers.sum(1) >= AFFINE_MIN_POINTS
    return torch.where(enough[:, None, None], solve(inliers.double()), motions)


def fill_flows(flows: torch.Tensor, unknown: torch.Tensor, fill: str, ring: int) -> torch.Tensor:
    """`temporal.fill_flow` for N fields at once: flows (N, 2, h, w) with their unknown (N, h, w) bool pixels
    filled, each by the affine fit to the known pixels within ring of its unknown ones, or by push-pull (fill
    "push_pull", or fewer than AFFINE_MIN_POINTS such pixels)."""
    if fill not in FLOW_FILLS:
        raise ValueError(f"fill: expected one of {FLOW_FILLS}, got {fill!r}")
    around = grow(unknown, ring) & ~unknown
    counts, any_unknown = torch.stack((around.flatten(1).sum(1), unknown.flatten(1).any(1).long())).tolist()
    affine = [k for k, (n, u) in enumerate(zip(counts, any_unknown)) if u and fill == "affine" and n >= AFFINE_MIN_POINTS]
    pushed = [k for k, u in enumerate(any_unknown) if u and k not in affine]
    out = flows
    if affine:
        fields = affine_fields(fit_affine(flows[affine], around[affine]), flows.shape[-2:], flows.device).float()
        out = out.clone()
        out[affine] = torch.where(unknown[affine][:, None], fields, flows[affine])
    for k in pushed:
        out = out.clone() if out is flows else out
        out[k] = push_pull(flows[k], ~unknown[k])
    return out


def fill_flow(flow: torch.Tensor, unknown: torch.Tensor, fill: str, ring: int) -> torch.Tensor:
    """`temporal.fill_flow` for flow (2, h, w) and unknown (h, w) bool (`fill_flows` of one)."""
    return fill_flows(flow[None], unknown[None], fill, ring)[0]


def complete_flow(flow: torch.Tensor, hole: torch.Tensor, target_hole: torch.Tensor, fill: str,
                  ring: int) -> torch.Tensor:
    """`temporal.complete_flow`: flow (2, h, w) completed in hole and where it lands in target_hole (h, w)."""
    landed = warp_back(target_hole, flow, nearest=True) > 0.5
    return fill_flow(flow, hole | landed, fill, ring)


def moving_pixels(step: torch.Tensor, hole: torch.Tensor, threshold: float) -> torch.Tensor:
    """`temporal.moving_pixels` for a step flow (2, h, w) and hole (h, w) bool."""
    known = ~hole
    sampled = torch.zeros_like(known)
    sampled[::MOVING_FIT_STRIDE, ::MOVING_FIT_STRIDE] = known[::MOVING_FIT_STRIDE, ::MOVING_FIT_STRIDE]
    enough = sampled.sum() >= AFFINE_MIN_POINTS          # on the device: too few points leave nothing moving
    camera = affine_fields(fit_affine(step[None], sampled[None]), step.shape[-2:], step.device)[0]
    moving = ((step.double() - camera).square().sum(0) > threshold * threshold) & known & enough
    return grow(moving, 1)


def complete_grey(luma: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """grey (h, w) or greys (N, h, w) uint8 with their unknown (h, w) or (N, h, w) pixels filled from the others
    (push-pull; N greys over the box of all their unknown pixels; none unknown: luma's values)."""
    if luma.dim() == 2:
        return to_uint8(push_pull(luma.float()[None], ~unknown)[0])
    return to_uint8(push_pull(luma.float()[:, None], ~unknown)[:, 0])


def camera_motion(flow: torch.Tensor, hole: torch.Tensor, ring: int) -> float:
    """`temporal.camera_motion`: median length of flow (2, h, w) over the known pixels within ring of hole."""
    around = grow(hole, ring) & ~hole
    lengths = torch.where(around, torch.linalg.vector_norm(flow, dim=0), torch.nan)
    median = float(torch.nanquantile(lengths.flatten(), 0.5))           # one read; nan: no such pixel
    return 0.0 if math.isnan(median) else median


def scene_cut(thumb: torch.Tensor, previous: torch.Tensor, known: torch.Tensor, threshold: float) -> bool:
    """`temporal.scene_cut` for thumbnails (s, t) uint8 and known (s, t) bool."""
    change = torch.where(known, (thumb.float() - previous.float()).abs(), 0.0)
    total, count = torch.stack((change.sum(), known.sum().float())).tolist()      # one read
    return count > 0 and total / count > threshold


# --- memory of past frames -------------------------------------------------------------------------------------

@dataclass
class PastFrame:
    """`temporal.PastFrame` on the device: frame (3, H, W) uint8; source (H, W) bool or None (the anchor);
    grey (h, w) uint8; hole (h, w) bool; flow (2, h, w) float32 from the current frame to it; valid (h, w) bool."""
    frame: torch.Tensor
    source: torch.Tensor | None
    grey: torch.Tensor
    hole: torch.Tensor
    flow: torch.Tensor
    valid: torch.Tensor
    index: int


def refine_near(estimator: TorchDIS, luma: torch.Tensor, hole: torch.Tensor, pasts: list[PastFrame],
                flows: torch.Tensor, box: Box) -> torch.Tensor:
    """`temporal.refine_near` for several past frames at once: their flows (R, 2, bh, bw) over box re-estimated
    from themselves, each moved by its median (rounded), in one batched DIS call (estimator built with from_start
    False, as the host's) -> (R, 2, bh, bw). The greys
    are completed over the box of all R holes (the host completes each over its own)."""
    y0, y1, x0, x1 = box
    move = torch.quantile(flows.flatten(2), 0.5, dim=2).round()                      # (R, 2)
    positions = pixel_grid(*luma.shape, luma.device)[y0:y1, x0:x1] + move[:, None, None, :]
    landed = sample_each(torch.stack([p.hole for p in pasts]), positions, nearest=True) > 0.5
    unknown = hole[y0:y1, x0:x1] | landed
    source = complete_grey(luma[y0:y1, x0:x1].expand(len(pasts), -1, -1), unknown)
    target = complete_grey(to_uint8(sample_each(torch.stack([p.grey for p in pasts]), positions)), unknown)
    shift = move[:, :, None, None]
    return estimator.flow(source, target, flows - shift) + shift


class FrameMemory:
    """`temporal.FrameMemory` on the device: the same window of past frames, flows and checks as tensors."""

    def __init__(self, capacity: int, recent: int, key_interval: int, fill: str, ring: int, trust_hole: bool):
        self.capacity, self.recent, self.key_interval = capacity, recent, key_interval
        self.fill, self.ring, self.trust_hole = fill, ring, trust_hole
        self.clear()

    def clear(self) -> None:
        self.frames: list[PastFrame] = []
        self.anchor: PastFrame | None = None
        self.latest = -1
        self.box: Box | None = None

    def advance(self, step: torch.Tensor, step_valid: torch.Tensor, luma: torch.Tensor, hole: torch.Tensor,
                box: Box, refine: TorchDIS | None) -> None:
        """`temporal.FrameMemory.advance`: every remembered flow composed with step (2, h, w) over box, all of
        them at once (the refinements in one DIS call, the completions in one fit)."""
        pasts = self.frames + ([self.anchor] if self.anchor is not None else [])
        y0, y1, x0, x1 = box
        py0, py1, px0, px1 = self.box or box
        self.box = box
        if not pasts:
            return
        grid = pixel_grid(*luma.shape, luma.device)[y0:y1, x0:x1]
        step_box = step[:, y0:y1, x0:x1]
        ends = grid + step_box.permute(1, 2, 0)
        ends[..., 0] -= px0        # in the previous box, border replicated
        ends[..., 1] -= py0
        trusted = step_valid[y0:y1, x0:x1] | (self.trust_hole & hole[y0:y1, x0:x1])
        valid = (sample(torch.stack([p.valid[py0:py1, px0:px1] for p in pasts]), ends, nearest=True) > 0.5) & trusted
        before = torch.stack([p.flow[:, py0:py1, px0:px1] for p in pasts])           # (P, 2, ph, pw)
        flows = step_box + sample(before.flatten(0, 1), ends).unflatten(0, (len(pasts), 2))
        older = [k for k, p in enumerate(pasts) if refine is not None and p.index < self.latest]
        if older:
            flows[older] = refine_near(refine, luma, hole, [pasts[k] for k in older], flows[older], box)
        landed = sample_each(torch.stack([p.hole for p in pasts]), grid + flows.permute(0, 2, 3, 1), nearest=True)
        flows = fill_flows(flows, hole[y0:y1, x0:x1] | (landed > 0.5), self.fill, self.ring)
        for past, flow, checked in zip(pasts, flows, valid):
            past.flow[:, y0:y1, x0:x1] = flow
            past.valid[y0:y1, x0:x1] = checked

    def push(self, frame: torch.Tensor, source: torch.Tensor, luma: torch.Tensor, hole: torch.Tensor,
             index: int) -> None:
        self.frames.insert(0, PastFrame(frame, source, luma, hole, torch.zeros(2, *luma.shape, device=luma.device),
                                        torch.ones(luma.shape, dtype=torch.bool, device=luma.device), index))

    def set_anchor(self, output: torch.Tensor, luma: torch.Tensor, hole: torch.Tensor, index: int,
                   exclude: torch.Tensor | None = None) -> None:
        self.anchor = PastFrame(output, None if exclude is None else ~exclude, luma, hole,
                                torch.zeros(2, *luma.shape, device=luma.device),
                                torch.ones(luma.shape, dtype=torch.bool, device=luma.device), index)

    def evict(self) -> None:
        kept = [p for i, p in enumerate(self.frames) if i < self.recent or p.index % self.key_interval == 0]
        self.frames = kept[:self.capacity]


class BackgroundCanvas:
    """`temporal.BackgroundCanvas` on the device: weighted (3, bh, bw) and confidence (bh, bw) float32 over box."""

    def __init__(self, margin: int, decay: float):
        self.margin, self.decay = margin, decay
        self.clear()

    def clear(self) -> None:
        self.weighted: torch.Tensor | None = None
        self.confidence: torch.Tensor | None = None
        self.box: Box | None = None

    def nbytes(self) -> int:
        return 0 if self.box is None else _nbytes(self.weighted) + _nbytes(self.confidence)

    def advance(self, frame: torch.Tensor, mask: torch.Tensor, source: torch.Tensor, previous: torch.Tensor | None,
                step: torch.Tensor | None, trusted: torch.Tensor | None, barred: torch.Tensor | None = None) -> None:
        """`temporal.BackgroundCanvas.advance` (frame, previous (3, H, W) uint8; step (2, h, w))."""
        hole_box = bounding_box(mask)
        if hole_box is None:
            self.clear()
            return
        height, width = mask.shape
        y0, y1, x0, x1 = grow_box(hole_box, self.margin, mask.shape)
        colour = frame[:, y0:y1, x0:x1].float()
        confidence = torch.zeros(y1 - y0, x1 - x0, device=frame.device)
        if previous is not None and self.box is not None:
            grid = pixel_grid(height, width, frame.device)[y0:y1, x0:x1]
            ends = grid + upsample_flow(step, mask.shape, (y0, y1, x0, x1))
            gate = sample(trusted, to_working(grid, mask.shape, step.shape[-2:]), nearest=True)
            py0, py1, px0, px1 = self.box
            local = ends.clone()
            local[..., 0] -= px0
            local[..., 1] -= py0
            inside = ((local[..., 0] >= 0) & (local[..., 0] <= px1 - px0 - 1)
                      & (local[..., 1] >= 0) & (local[..., 1] <= py1 - py0 - 1))
            in_frame = ((ends[..., 0] >= 0) & (ends[..., 0] <= width - 1)
                        & (ends[..., 1] >= 0) & (ends[..., 1] <= height - 1))
            seen = sample(self.confidence, local)
            weighted = sample(self.weighted, local)
            colour = torch.where(inside, weighted / seen.clamp(min=CANVAS_EPS), to_uint8(sample(previous, ends)).float())
            if barred is not None:
                in_frame &= sample(barred, ends, nearest=True) < 0.5
            confidence = torch.where(inside, seen, in_frame.float()) * self.decay * gate
        given = source[y0:y1, x0:x1]
        colour = torch.where(given, frame[:, y0:y1, x0:x1].float(), colour)
        confidence = torch.where(given, 1.0, confidence)
        self.weighted, self.confidence, self.box = colour * confidence, confidence, (y0, y1, x0, x1)

    def refresh(self, filled: torch.Tensor, copied: torch.Tensor) -> None:
        if self.box is None:
            return
        y0, y1, x0, x1 = self.box
        take = copied[y0:y1, x0:x1]
        self.weighted = torch.where(take, filled[:, y0:y1, x0:x1].float() * self.confidence, self.weighted)

    def fill(self, filled: torch.Tensor, remaining: torch.Tensor, min_confidence: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.box is None:
            return filled, remaining
        y0, y1, x0, x1 = self.box
        take = remaining[y0:y1, x0:x1] & (self.confidence >= max(min_confidence, CANVAS_EPS))
        if not bool(take.any()):
            return filled, remaining
        out, left = filled.clone(), remaining.clone()
        colour = to_uint8(self.weighted / self.confidence.clamp(min=CANVAS_EPS))
        out[:, y0:y1, x0:x1] = torch.where(take, colour, out[:, y0:y1, x0:x1])
        left[y0:y1, x0:x1] &= ~take
        return out, left


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# --- copies and blends at full resolution ---------------------------------------------------------------------

def _reads(past: PastFrame, grid: torch.Tensor, box: Box, frame_size: tuple[int, int]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """`temporal._reads`: where the box's pixels land in past, (bh, bw, 2), and whether it may give them."""
    height, width = frame_size
    ends = grid + upsample_flow(past.flow, frame_size, box)
    usable = ((sample(past.valid, to_working(grid, frame_size, past.flow.shape[-2:]), nearest=True) > 0.5)
              & (ends[..., 0] >= 0) & (ends[..., 0] <= width - 1)
              & (ends[..., 1] >= 0) & (ends[..., 1] <= height - 1)
              & (sample(past.source, ends, nearest=True) > 0.5))
    return ends, usable


def propagate(frame: torch.Tensor, mask: torch.Tensor, sources: Iterable[PastFrame]
              ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, torch.Tensor]]]:
    """`temporal.propagate` for frame (3, H, W) uint8 and mask (H, W) bool -> (frame with the copies, the hole
    still left, per source read (its index, the (bh, bw) bool pixels it gave over the hole's box; maybe none))."""
    box = bounding_box(mask)
    out, remaining = frame.clone(), mask.clone()
    given = []
    if box is None:
        return out, remaining, given
    y0, y1, x0, x1 = box
    grid = pixel_grid(*mask.shape, mask.device)[y0:y1, x0:x1]
    left = mask[y0:y1, x0:x1].clone()
    patch = out[:, y0:y1, x0:x1]
    for past in sources:
        ends, usable = _reads(past, grid, box, mask.shape)
        take = left & usable
        patch.copy_(torch.where(take, to_uint8(sample(past.frame, ends)), patch))
        given.append((past.index, take))
        left &= ~take
        if not bool(left.any()):
            break
    remaining[y0:y1, x0:x1] = left
    return out, remaining, given


def copy_nearer(filled: torch.Tensor, mask: torch.Tensor, left: torch.Tensor, given: list[tuple[int, torch.Tensor]],
                later: Iterable[PastFrame], index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`temporal.copy_nearer` for filled (3, H, W) uint8 and mask, left (H, W) bool -> (filled with the later
    frames' copies, the pixels they replaced (H, W) bool)."""
    box = bounding_box(mask)
    out, taken = filled.clone(), torch.zeros_like(mask)
    if box is None:
        return out, taken
    y0, y1, x0, x1 = box
    grid = pixel_grid(*mask.shape, mask.device)[y0:y1, x0:x1]
    patch, open_ = out[:, y0:y1, x0:x1], left[y0:y1, x0:x1].clone()
    farther = [(index - past, pixels) for past, pixels in given]

    def wanted_at(distance: int) -> torch.Tensor:
        wanted = open_.clone()
        for past_distance, pixels in farther:
            if past_distance > distance:
                wanted |= pixels
        return wanted & ~taken[y0:y1, x0:x1]

    later, bound = iter(later), 1
    while bool((wanted := wanted_at(bound)).any()):
        frame = next(later, None)
        if frame is None:
            break
        distance = frame.index - index
        if distance != bound:
            wanted = wanted_at(distance)
        bound = distance + 1
        ends, usable = _reads(frame, grid, box, mask.shape)
        take = wanted & usable
        patch.copy_(torch.where(take, to_uint8(sample(frame.frame, ends)), patch))
        taken[y0:y1, x0:x1] |= take
        open_ &= ~take
    return out, taken


def chain_reach(hole: torch.Tensor, steps: list[torch.Tensor]) -> float:
    """`temporal.chain_reach` for hole (h, w) bool and step flows (2, h, w)."""
    box = bounding_box(hole)
    if box is None:
        return 0.0
    y0, y1, x0, x1 = box
    grid = pixel_grid(*hole.shape, hole.device)[y0:y1, x0:x1]
    inside = hole[y0:y1, x0:x1]
    flow = torch.zeros(2, y1 - y0, x1 - x0, device=hole.device)
    reach = torch.zeros((), device=hole.device)
    for step in steps:
        flow = flow + sample(step, grid + flow.permute(1, 2, 0))
        reach = torch.maximum(reach, flow.square().sum(0)[inside].max())
    return float(reach.sqrt())


def chain_later(luma: torch.Tensor, hole: torch.Tensor, later: list[PastFrame], steps: list[torch.Tensor],
                checks: list[torch.Tensor], box: Box, fill: str, ring: int, trust_hole: bool,
                refine: TorchDIS | None) -> Iterator[PastFrame]:
    """`temporal.chain_later`: the later frames with their flows (2, h, w) from the current frame and checks
    (h, w) set over box, composed along the chain one frame at a time as they are asked for."""
    y0, y1, x0, x1 = box
    h, w = luma.shape
    grid = pixel_grid(h, w, luma.device)[y0:y1, x0:x1]
    flow = torch.zeros(2, y1 - y0, x1 - x0, device=luma.device)
    valid = torch.ones(y1 - y0, x1 - x0, dtype=torch.bool, device=luma.device)
    before_hole = hole
    for k, (frame, step, checked) in enumerate(zip(later, steps, checks)):
        ends = grid + flow.permute(1, 2, 0)
        trusted = checked | (trust_hole & before_hole)
        valid = valid & (sample(trusted, ends, nearest=True) > 0.5)
        flow = flow + sample(step, ends)
        if refine is not None and k > 0:
            flow = refine_near(refine, luma, hole, [frame], flow[None], box)[0]
        landed = sample(frame.hole, grid + flow.permute(1, 2, 0), nearest=True) > 0.5
        frame.flow = torch.zeros(2, h, w, device=luma.device)
        frame.valid = torch.zeros(h, w, dtype=torch.bool, device=luma.device)
        frame.flow[:, y0:y1, x0:x1] = fill_flow(flow, hole[y0:y1, x0:x1] | landed, fill, ring)
        frame.valid[y0:y1, x0:x1] = valid
        before_hole = frame.hole
        yield frame


def follow(previous: torch.Tensor, step: torch.Tensor, step_valid: torch.Tensor, box: Box,
           barred: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`temporal.follow`: the previous output (3, H, W) uint8 brought here over box -> (3, bh, bw) float32
    (rounded to levels, as OpenCV's remap of uint8) and (bh, bw) bool where step_valid holds and the flow does
    not land on a barred (H, W) bool pixel."""
    y0, y1, x0, x1 = box
    size = previous.shape[-2:]
    grid = pixel_grid(*size, previous.device)[y0:y1, x0:x1]
    gate = sample(step_valid, to_working(grid, size, step.shape[-2:]), nearest=True) > 0.5
    ends = grid + upsample_flow(step, size, box)
    if barred is not None:
        gate &= sample(barred, ends, nearest=True) < 0.5
    return to_uint8(sample(previous, ends)).float(), gate


def stabilise(filled: torch.Tensor, invented: torch.Tensor, previous: torch.Tensor, step: torch.Tensor,
              step_valid: torch.Tensor, weight: float, barred: torch.Tensor | None = None) -> torch.Tensor:
    """`temporal.stabilise` for (3, H, W) uint8 frames."""
    box = bounding_box(invented)
    if box is None:
        return filled
    y0, y1, x0, x1 = box
    warped, gate = follow(previous, step, step_valid, box, barred)
    gate &= invented[y0:y1, x0:x1]
    out = filled.clone()
    patch = out[:, y0:y1, x0:x1]
    patch.copy_(torch.where(gate, to_uint8(weight * warped + (1 - weight) * patch.float()), patch))
    return out


def blend(base: torch.Tensor, fresh: torch.Tensor, pixels: torch.Tensor, weight: float) -> torch.Tensor:
    """`temporal.blend` for (3, H, W) uint8 frames and pixels (H, W) bool."""
    return torch.where(pixels, to_uint8((1 - weight) * base.float() + weight * fresh.float()), base)


def hold(frame: torch.Tensor, mask: torch.Tensor, invented: torch.Tensor, anchor: PastFrame, ring: int,
         threshold: float) -> torch.Tensor | None:
    """`temporal.hold` for frame (3, H, W) uint8 with mask and invented (H, W) bool."""
    if bounding_box(invented) is None:
        return frame
    near = grow(mask, ring)
    y0, y1, x0, x1 = bounding_box(near)
    barred = None if anchor.source is None else ~anchor.source
    warped, gate = follow(anchor.frame, anchor.flow, anchor.valid, (y0, y1, x0, x1), barred)
    known_ring = near[y0:y1, x0:x1] & ~mask[y0:y1, x0:x1] & gate
    left = invented[y0:y1, x0:x1]
    if not bool(known_ring.any()) or not bool(gate[left].all()):
        return None
    change = (warped[:, known_ring] - frame[:, y0:y1, x0:x1][:, known_ring].float()).abs().mean()
    if float(change) > threshold:
        return None
    out = frame.clone()
    out[:, y0:y1, x0:x1] = torch.where(left, to_uint8(warped), out[:, y0:y1, x0:x1])
    return out


def any_set(mask: torch.Tensor) -> bool:
    """Whether mask holds a True (on a GPU: the host waits for it)."""
    return bool(mask.any())


def compose(mask: torch.Tensor, inside: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """inside (3, H, W) where mask (H, W) holds, else outside."""
    return torch.where(mask, inside, outside)


def owned(image: torch.Tensor) -> torch.Tensor:
    """image itself: the device path's frames are its own copies, its outputs new tensors."""
    return image


def tensor_nbytes(x: object) -> int:
    return _nbytes(x) if isinstance(x, torch.Tensor) else 0


DEVICE_STEPS = TemporalSteps(
    PastFrame=PastFrame, propagate=propagate, copy_nearer=copy_nearer, camera_motion=camera_motion, hold=hold,
    blend=blend, stabilise=stabilise, chain_reach=chain_reach, chain_later=chain_later, bounding_box=bounding_box,
    grow_box=grow_box, equal=torch.equal, any_set=any_set, compose=compose, owned=owned, nbytes=tensor_nbytes)


# --- the stream ------------------------------------------------------------------------------------------------

@dataclass
class _Arrival:
    """`stream._Arrival` on the device: frame (3, H, W) uint8, mask (H, W) bool, grey and hole at the working size,
    the scene-cut thumbnail, the pixels it may give, the flows to the frame before it (step, its check over box)
    and, with a lookahead, from it (ahead, its check), and whether its mask equals that frame's (then it holds
    that frame's mask tensor), and the pixels it must not give nor the engine copy (exclude, or None)."""
    frame: torch.Tensor
    mask: torch.Tensor
    grey: torch.Tensor
    hole: torch.Tensor
    thumb: torch.Tensor
    thumb_known: torch.Tensor
    source: torch.Tensor | None = None
    step: torch.Tensor | None = None
    step_valid: torch.Tensor | None = None
    box: Box | None = None
    ahead: torch.Tensor | None = None
    ahead_valid: torch.Tensor | None = None
    same_mask: bool = False
    exclude: torch.Tensor | None = None


class DeviceTemporal(TemporalEmitter):
    """Temporal mode ("on") with every step on `device`, as `VideoInpainter` runs it on the host: `push(frame, mask)`
    takes a frame (3, H, W) uint8 and its mask (H, W) bool on the device and returns the outputs now ready there
    (with config.lookahead n, frame i's comes with frame i + n; `flush` gives the rest). engine: an `Engine` (its
    inpaint takes and returns CHW tensors on its device); config: a `VideoConfig`."""

    _steps = DEVICE_STEPS

    def __init__(self, engine: Any, config: Any, device: torch.device):
        self.engine, self.config, self.device = engine, config, torch.device(device)
        self._dis = TorchDIS(config.flow_preset, self.device)
        self._refine = TorchDIS(config.flow_preset, self.device, config.refine_scales, from_start=False)
        self._memory = FrameMemory(config.memory_frames, config.recent_frames, config.key_interval,
                                   config.flow_fill, config.flow_fill_ring, config.trust_hole_flow)
        self._canvas = BackgroundCanvas(config.canvas_margin, config.canvas_decay)
        self.scene_cuts = 0
        self.held_frames = 0
        self._widths: tuple[torch.Tensor, float] | None = None   # the last mask whose width was measured, its width
        self.reset()

    def reset(self) -> None:
        """Forget everything, the frames held back for the lookahead included."""
        self._waiting: deque[_Arrival] = deque()
        self._arrived: _Arrival | None = None
        self._forget_scene()

    def _forget_scene(self) -> None:
        self._previous: Previous | None = None      # hole (h, w), output (3, H, W)
        self._index = 0
        self._anchor_fills = 0
        self._memory.clear()
        self._canvas.clear()

    def push(self, frame: torch.Tensor, mask: torch.Tensor, exclude: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One frame (3, H, W) uint8 and its mask (H, W) bool on the device, the path's own copies (and exclude,
        (H, W) bool: pixels no fill may copy, or None) -> the outputs now ready, (3, H, W) uint8 each, in order."""
        self._arrived = self._arrive(frame, mask)
        if exclude is not None:
            self._arrived.exclude = exclude
            self._arrived.source = self._arrived.source & ~exclude
        self._waiting.append(self._arrived)
        outputs = []
        while len(self._waiting) > self.config.lookahead:
            outputs.append(self._emit())
        return outputs

    def flush(self) -> list[torch.Tensor]:
        """The outputs of the frames still held back, in order."""
        return [self._emit() for _ in range(len(self._waiting))]

    def _hole_width(self, mask: torch.Tensor) -> float:
        """`temporal.hole_width` of mask (H, W) bool, measured on the host once per distinct mask."""
        if self._widths is not None and self._widths[0].shape == mask.shape and torch.equal(self._widths[0], mask):
            return self._widths[1]
        box = bounding_box(mask)
        width = 0.0 if box is None else temporal.hole_width(mask[box[0]:box[1], box[2]:box[3]].cpu().numpy())
        self._widths = (mask, width)
        return width

    def _engine_fill(self, frame: torch.Tensor, mask: torch.Tensor,
                     exclude: torch.Tensor | None = None) -> torch.Tensor:
        """`VideoInpainter._engine_fill`: the engine over the thin hole's cut-out or the whole frame."""
        cfg, model = self.config, getattr(self.engine, "config", None)
        if (cfg.engine_margin == 0 or model is None or not temporal.thin_hole(
                tuple(mask.shape), self._hole_width(mask), model.lr_long_side, cfg.engine_thin_width)):
            return engine_inpaint(self.engine, frame, mask, exclude)
        multiple = temporal.engine_box_multiple(cfg.engine_box_multiple, self.device)
        y0, y1, x0, x1 = temporal.engine_box(bounding_box(mask), cfg.engine_margin, multiple, tuple(mask.shape))
        out = frame.clone()
        cut = None if exclude is None else exclude[y0:y1, x0:x1].contiguous()
        out[:, y0:y1, x0:x1] = engine_inpaint(self.engine, frame[:, y0:y1, x0:x1].contiguous(),
                                              mask[y0:y1, x0:x1].contiguous(), cut)
        return out

    def _arrive(self, frame: torch.Tensor, mask: torch.Tensor) -> _Arrival:
        """`VideoInpainter._arrive`."""
        cfg = self.config
        full = tuple(frame.shape[-2:])
        size = working_size(full, cfg.flow_long_side)
        hole = shrink_mask(mask, size, cfg.flow_margin)
        luma = to_uint8(resize_area(grey(frame), size))
        thumb_size = working_size(full, cfg.scene_cut_side)
        thumb = to_uint8(resize_area(complete_grey(luma, hole), thumb_size))
        now = _Arrival(frame, mask, luma, hole, thumb, ~shrink_mask(mask, thumb_size, 0))
        before = self._arrived
        if before is not None and cfg.scene_cut and scene_cut(
                thumb, before.thumb, now.thumb_known & before.thumb_known, cfg.scene_cut_threshold):
            self.scene_cuts += 1
            before = None
        if before is None:
            now.source = ~grow(mask, cfg.source_margin)
            return now
        fill = (cfg.flow_fill, cfg.flow_fill_ring)
        unknown = hole | before.hole
        here, there = complete_grey(torch.stack((luma, before.grey)), unknown.expand(2, -1, -1))
        both = self._dis.flow(torch.stack((here, there)), torch.stack((there, here)))    # one batched estimate
        now.step = complete_flow(both[0], hole, before.hole, *fill)
        back = complete_flow(both[1], before.hole, hole, *fill)
        now.box = grow_box(bounding_box(unknown) or (0, 0, 0, 0), cfg.flow_context, size)
        now.step_valid = forward_backward_valid(now.step, back, cfg.fb_relative, cfg.fb_absolute, now.box)
        if cfg.lookahead:
            now.same_mask = torch.equal(mask, before.mask)
            if now.same_mask:        # a still mask: the waiting frames hold one tensor
                now.mask = before.mask
            now.ahead = back
            now.ahead_valid = forward_backward_valid(back, now.step, cfg.fb_relative, cfg.fb_absolute, now.box)
        now.source = ~grow(now.mask, cfg.source_margin)
        if cfg.moving_source_threshold > 0:
            moving = moving_pixels(now.step, hole, cfg.moving_source_threshold)
            now.source &= ~(F.interpolate(moving[None, None].float(), size=full, mode="nearest")[0, 0] > 0.5)
        return now
