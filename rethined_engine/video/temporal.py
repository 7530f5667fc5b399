"""Temporal parts of the streaming inpainter: a bounded memory of past frames with the flow from the current
frame to each (and, with a lookahead, flows to the waiting later frames), copying what they saw into the hole,
holding or blending the hole with the previous output moved by the flow, and a scene-cut test.

Sizes: full-resolution frames (H, W, 3) uint8 and masks (H, W) bool (True = hole); flow at a working size
(h, w) (`working_size`), in working px. A box is (y0, y1, x0, x1), end exclusive, in the px of the array it
indexes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from .flow import FlowEstimator, pixel_grid, push_pull, sample, warp_back
from .temporal_emit import TemporalSteps

ENGINE_BOX_MULTIPLE_CUDA = 64   # px: a thin hole's cut-out's sides on a CUDA engine (`engine_box_multiple`)


def working_size(frame_size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(h, w) with the longer side long_side (never above the frame's own), aspect kept, >= 1 px."""
    height, width = frame_size
    scale = min(1.0, long_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink_mask(mask: np.ndarray, size: tuple[int, int], margin: int) -> np.ndarray:
    """mask (H, W) bool -> (h, w) bool: every working pixel touching the hole, grown by margin working px."""
    small = cv2.resize(mask.view(np.uint8) * np.uint8(255), size[::-1], interpolation=cv2.INTER_AREA) > 0
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        small = cv2.dilate(small.view(np.uint8), kernel).view(bool)
    return small


def grow(mask: np.ndarray, margin: int) -> np.ndarray:
    """mask (H, W) bool grown by margin px (a square); only the box around its True pixels is dilated."""
    box = bounding_box(mask)
    if margin <= 0 or box is None:
        return mask
    y0, y1, x0, x1 = grow_box(box, margin, mask.shape)
    out = np.zeros_like(mask)
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    out[y0:y1, x0:x1] = cv2.dilate(np.ascontiguousarray(mask[y0:y1, x0:x1]).view(np.uint8), kernel).view(bool)
    return out


def hole_width(mask: np.ndarray) -> float:
    """Typical width in px of the hole mask (H, W) bool: 4 x the mean Euclidean distance from a hole pixel to
    the nearest pixel outside it (outside the frame counts as outside), which is a long stroke's width; 0 when
    there is no hole."""
    box = bounding_box(mask)
    if box is None:
        return 0.0
    y0, y1, x0, x1 = box
    padded = np.pad(mask[y0:y1, x0:x1], 1).view(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return 4.0 * float(distance[padded.view(bool)].mean())


def thin_hole(frame_size: tuple[int, int], width: float, lr_long_side: int, thin_width: float) -> bool:
    """Whether a hole of typical width `width` px (`hole_width`) in a (H, W) frame is thin for the engine: at most
    thin_width of its LR px over the whole frame (its HR scale, ceil(the frame's long side / lr_long_side) px
    each). The engine fills a thin hole on a cut-out around it (`VideoConfig.engine_margin`)."""
    return width <= thin_width * max(1, -(-max(frame_size) // lr_long_side))


def engine_box_multiple(setting: int | None, device: Any) -> int:
    """`VideoConfig.engine_box_multiple` for an engine on device: the setting, or for None ENGINE_BOX_MULTIPLE_CUDA
    on CUDA (the triton backend captures a CUDA graph per image shape) and 1 (the cut-out as it is) elsewhere."""
    if setting is not None:
        return setting
    return ENGINE_BOX_MULTIPLE_CUDA if str(device).startswith("cuda") else 1


def engine_box(box: tuple[int, int, int, int], margin: int, multiple: int, size: tuple[int, int]
               ) -> tuple[int, int, int, int]:
    """The cut-out the engine fills a thin hole on: box (y0, y1, x0, x1) grown by margin px, its height and width
    then rounded up to multiples of `multiple` px (at most the frame's size (H, W)), grown about its centre and
    shifted to lie inside the frame. A hole that moves or changes a little keeps the cut-out's shape, so that a
    backend that captures one CUDA graph per image shape (`backends.cuda_graph`) replays it."""
    out = []
    for (start, end), length in zip(((box[0], box[1]), (box[2], box[3])), size):
        start, end = max(0, start - margin), min(length, end + margin)
        target = min(length, -(-(end - start) // multiple) * multiple)
        start = min(max(0, start - (target - (end - start)) // 2), length - target)
        out += [start, start + target]
    return tuple(out)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the True pixels of mask (H, W), or None when there is none."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def to_working(positions: np.ndarray, frame_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Full-resolution positions (..., 2) (x, y) of a (H, W) frame -> the same places at the working size (h, w)
    (pixel centres aligned as in cv2.resize)."""
    (height, width), (h, w) = frame_size, size
    return (positions + 0.5) * np.array([w / width, h / height], np.float32) - 0.5


def upsample_flow(flow: np.ndarray, frame_size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """Working-size flow (h, w, 2) brought to full resolution over box only -> (box h, box w, 2) float32 in
    full-resolution px (bilinear, pixel centres aligned as in cv2.resize)."""
    (height, width), (h, w) = frame_size, flow.shape[:2]
    y0, y1, x0, x1 = box
    scale = np.array([width / w, height / h], np.float32)
    full = pixel_grid(height, width)[y0:y1, x0:x1]
    return sample(flow, to_working(full, frame_size, (h, w))) * scale


CANVAS_EPS = 1e-6             # confidence below this counts as nothing seen
FLOW_FILLS = ("affine", "push_pull")
AFFINE_MIN_POINTS = 12       # fewer known pixels around the unknown ones: push-pull instead of the affine fit
AFFINE_TRIM = 2.0            # the fit is redone without the pixels whose residual exceeds this x the median ...
AFFINE_MIN_RESIDUAL = 0.5    # ... or this many working px, whichever is more
MOVING_FIT_STRIDE = 4        # `moving_pixels`: working px between the known pixels the camera's motion is fitted to


def fill_flow(flow: np.ndarray, unknown: np.ndarray, fill: str, ring: int) -> np.ndarray:
    """Flow (h, w, 2) with its unknown (h, w) bool pixels filled from the known ones. fill "affine": the
    affine motion (x, y, 1) -> flow least-squares fitted to the known pixels within ring px of the unknown
    ones, refitted once without the outliers (AFFINE_TRIM); the pixels right at a hole's edge carry the
    hole's own motion into the flow, which a wide ring outvotes. "push_pull": `flow.push_pull`."""
    if fill not in FLOW_FILLS:
        raise ValueError(f"fill: expected one of {FLOW_FILLS}, got {fill!r}")
    if not unknown.any():
        return flow
    around = grow(unknown, ring) & ~unknown
    if fill == "push_pull" or np.count_nonzero(around) < AFFINE_MIN_POINTS:
        return push_pull(flow, ~unknown)
    motion = fit_affine(flow, around)
    ys, xs = np.nonzero(unknown)
    out = flow.copy()
    out[ys, xs] = np.stack([xs, ys, np.ones_like(xs)], 1).astype(np.float64) @ motion
    return out


def fit_affine(flow: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The affine motion (x, y, 1) -> flow (3, 2) float64 least-squares fitted to flow (h, w, 2) at points (h, w)
    bool (at least AFFINE_MIN_POINTS), refitted once without the outliers (AFFINE_TRIM)."""
    ys, xs = np.nonzero(points)
    coords = np.stack([xs, ys, np.ones_like(xs)], 1).astype(np.float64)
    values = flow[ys, xs].astype(np.float64)
    motion = np.linalg.lstsq(coords, values, rcond=None)[0]
    residual = np.linalg.norm(coords @ motion - values, axis=1)
    inliers = residual <= max(AFFINE_MIN_RESIDUAL, AFFINE_TRIM * float(np.median(residual)))
    if np.count_nonzero(inliers) >= AFFINE_MIN_POINTS:
        motion = np.linalg.lstsq(coords[inliers], values[inliers], rcond=None)[0]
    return motion


def moving_pixels(step: np.ndarray, hole: np.ndarray, threshold: float) -> np.ndarray:
    """(h, w) bool: the known pixels (outside hole (h, w) bool) whose step flow (h, w, 2) differs by more than
    threshold working px from the camera's motion (`fit_affine` to every MOVING_FIT_STRIDE-th known pixel),
    grown by one working px: content moving on its own (a walker), which a later frame must not copy into its
    hole along the camera's motion (it would show the walker where it was)."""
    known = ~hole
    sampled = np.zeros_like(known)
    sampled[::MOVING_FIT_STRIDE, ::MOVING_FIT_STRIDE] = known[::MOVING_FIT_STRIDE, ::MOVING_FIT_STRIDE]
    if np.count_nonzero(sampled) < AFFINE_MIN_POINTS:
        return np.zeros_like(hole)
    motion = fit_affine(step, sampled)
    grid = pixel_grid(*hole.shape).astype(np.float64)
    camera = grid[..., 0:1] * motion[0] + grid[..., 1:2] * motion[1] + motion[2]
    moving = (np.square(step - camera).sum(-1) > threshold * threshold) & known
    return cv2.dilate(moving.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)


def complete_flow(flow: np.ndarray, hole: np.ndarray, target_hole: np.ndarray, fill: str, ring: int) -> np.ndarray:
    """Flow (h, w, 2) to a target frame with its values replaced (`fill_flow`) where they cannot be trusted:
    in the hole (h, w) bool of its own frame and where it lands in the target's hole (h, w) bool."""
    landed = warp_back(target_hole.view(np.uint8), flow, cv2.INTER_NEAREST).astype(bool)
    return fill_flow(flow, hole | landed, fill, ring)


def grow_box(box: tuple[int, int, int, int], margin: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """box grown by margin px on every side, clipped to a frame of size (H, W)."""
    y0, y1, x0, x1 = box
    return max(0, y0 - margin), min(size[0], y1 + margin), max(0, x0 - margin), min(size[1], x1 + margin)


@dataclass
class PastFrame:
    """One remembered frame: frame (H, W, 3) uint8; source (H, W) bool, the pixels it may give (outside its
    hole grown by a margin; None for the anchor, an output); grey (h, w) uint8 and hole (h, w) bool at the
    working size (the grey's hole is not completed: `refine_near` completes it with the current frame's);
    flow (h, w, 2) float32 from the current frame to it and valid (h, w) uint8 (1 where every step of the
    chain that made that flow passed the forward-backward check); index: its position in the stream."""
    frame: np.ndarray
    source: np.ndarray | None
    grey: np.ndarray
    hole: np.ndarray
    flow: np.ndarray
    valid: np.ndarray
    index: int


class FrameMemory:
    """A bounded window of past frames, newest first: the `recent` latest frames and key frames (every
    `key_interval`-th), at most `capacity` in all (the oldest key frame leaves first). Flows are completed
    by `fill_flow` (fill, ring); with trust_hole, a step's completed flow in the current hole counts as
    checked (the forward-backward check of two completed flows says nothing, and failing it there would
    bar every copy into a moving hole)."""

    def __init__(self, capacity: int, recent: int, key_interval: int, fill: str, ring: int, trust_hole: bool):
        if capacity < 1 or recent < 1 or key_interval < 1:
            raise ValueError(f"capacity, recent, key_interval: expected >= 1, got {capacity}, {recent}, {key_interval}")
        self.capacity, self.recent, self.key_interval = capacity, recent, key_interval
        self.fill, self.ring, self.trust_hole = fill, ring, trust_hole
        self.frames: list[PastFrame] = []
        self.anchor: PastFrame | None = None   # the last output the engine filled (its frame: that output)
        self.latest = -1                       # index of the frame processed last (the caller sets it)
        self.box: tuple[int, int, int, int] | None = None   # where the flows are current (working px)

    def clear(self) -> None:
        self.frames, self.anchor, self.latest, self.box = [], None, -1, None

    def advance(self, step: np.ndarray, step_valid: np.ndarray, grey: np.ndarray, hole: np.ndarray,
                box: tuple[int, int, int, int], refine: FlowEstimator | None) -> None:
        """A new current frame, grey (h, w) uint8 with hole (h, w) bool: step (h, w, 2) is the flow from it to
        the previous current frame, step_valid (h, w) bool its forward-backward check (the chained check of
        each remembered flow is ANDed with it, or with trust_hole in the hole). Over box (working px),
        every remembered flow becomes step composed with it (as it was over the previous call's box, its edge
        standing for what lies beyond: flows outside the box are not kept current) and
        its hole is completed (`complete_flow`); with refine (a DIS estimator: given a flow, it starts from it),
        the flows to frames older than the newest are first re-estimated there (`refine_near`), so that
        the errors of the steps do not add up."""
        y0, y1, x0, x1 = box
        py0, py1, px0, px1 = self.box or box
        grid = pixel_grid(*grey.shape)[y0:y1, x0:x1]
        step_box = step[y0:y1, x0:x1]
        ends = grid + step_box - np.array([px0, py0], np.float32)   # in the previous box, border replicated
        trusted = step_valid[y0:y1, x0:x1] | (self.trust_hole & hole[y0:y1, x0:x1])
        for past in self.frames + ([self.anchor] if self.anchor is not None else []):
            valid, flow = past.valid[py0:py1, px0:px1].copy(), past.flow[py0:py1, px0:px1].copy()
            past.valid[y0:y1, x0:x1] = (sample(valid, ends, cv2.INTER_NEAREST) & trusted).astype(np.uint8)
            past.flow[y0:y1, x0:x1] = step_box + sample(flow, ends)
            if refine is not None and past.index < self.latest:
                refine_near(refine, grey, hole, past, box)
            flow = past.flow[y0:y1, x0:x1]
            landed = sample(past.hole.view(np.uint8), grid + flow, cv2.INTER_NEAREST).astype(bool)
            past.flow[y0:y1, x0:x1] = fill_flow(flow, hole[y0:y1, x0:x1] | landed, self.fill, self.ring)
        self.box = box

    def push(self, frame: np.ndarray, source: np.ndarray, grey: np.ndarray, hole: np.ndarray, index: int) -> None:
        """Remember the current frame: its flow to itself is zero and valid."""
        self.frames.insert(0, PastFrame(frame, source, grey, hole, np.zeros((*grey.shape, 2), np.float32),
                                        np.ones(grey.shape, np.uint8), index))

    def set_anchor(self, output: np.ndarray, grey: np.ndarray, hole: np.ndarray, index: int,
                   exclude: np.ndarray | None = None) -> None:
        """Anchor the current frame's output (H, W, 3) uint8, whose hole the engine filled: `hold` copies from
        it through its own flow, so held pixels are resampled once, not once per frame. exclude (H, W) bool: its
        pixels no fill may copy (the anchor's source is the rest; None: every pixel)."""
        self.anchor = PastFrame(output, None if exclude is None else ~exclude, grey, hole,
                                np.zeros((*grey.shape, 2), np.float32), np.ones(grey.shape, np.uint8), index)

    def evict(self) -> None:
        """Keep the `recent` newest frames and key frames, at most `capacity`."""
        kept = [p for i, p in enumerate(self.frames) if i < self.recent or p.index % self.key_interval == 0]
        self.frames = kept[:self.capacity]


class BackgroundCanvas:
    """One motion-compensated image of what was seen in and around the hole, at full resolution over the hole's
    box grown by margin px (its cost and memory follow the hole, not the frame, and a copy from it keeps the
    frame's detail). Each frame it is brought to the current frame by the step flow, its confidence times decay,
    and every pixel the frame may give is written in at confidence 1: a hole pixel keeps what was last seen there,
    however long ago, until its confidence falls below the caller's bound.

    Stored premultiplied (weighted = colour x confidence, (bh, bw, 3) float32; confidence (bh, bw) float32), so
    that bilinear sampling never mixes in a colour of confidence 0; box (y0, y1, x0, x1) in full-resolution px.
    """

    def __init__(self, margin: int, decay: float):
        if margin < 2 or not 0 < decay <= 1:
            raise ValueError(f"margin, decay: expected >= 2 and in (0, 1], got {margin}, {decay}")
        self.margin, self.decay = margin, decay
        self.clear()

    def clear(self) -> None:
        self.weighted: np.ndarray | None = None
        self.confidence: np.ndarray | None = None
        self.box: tuple[int, int, int, int] | None = None

    def nbytes(self) -> int:
        return 0 if self.box is None else self.weighted.nbytes + self.confidence.nbytes

    def advance(self, frame: np.ndarray, mask: np.ndarray, source: np.ndarray, previous: np.ndarray | None,
                step: np.ndarray | None, trusted: np.ndarray | None, barred: np.ndarray | None = None) -> None:
        """A new frame (H, W, 3) uint8 with its hole mask (H, W) bool; source (H, W) bool: the pixels it may
        give. previous (H, W, 3) uint8: the previous output, whose known pixels stand for the canvas outside its
        box, but for barred (H, W) bool (the previous frame's exclusion; None: none); step (h, w, 2) working flow
        from this frame to the previous one, trusted (h, w) bool where it may be followed (None, None, None after
        a cut or on the first frame: only what this frame shows)."""
        hole_box = bounding_box(mask)
        if hole_box is None:
            self.clear()
            return
        height, width = mask.shape
        y0, y1, x0, x1 = grow_box(hole_box, self.margin, mask.shape)
        colour = frame[y0:y1, x0:x1].astype(np.float32)
        confidence = np.zeros(colour.shape[:2], np.float32)
        if previous is not None and self.box is not None:
            grid = pixel_grid(height, width)[y0:y1, x0:x1]
            ends = grid + upsample_flow(step, mask.shape, (y0, y1, x0, x1))
            gate = sample(trusted.view(np.uint8), to_working(grid, mask.shape, step.shape[:2]), cv2.INTER_NEAREST)
            py0, py1, px0, px1 = self.box
            local = ends - np.array([px0, py0], np.float32)
            # the canvas's outer ring is known pixels (margin >= 2): beyond it the previous output holds
            inside = ((local[..., 0] >= 0) & (local[..., 0] <= px1 - px0 - 1)
                      & (local[..., 1] >= 0) & (local[..., 1] <= py1 - py0 - 1))
            in_frame = ((ends[..., 0] >= 0) & (ends[..., 0] <= width - 1)
                        & (ends[..., 1] >= 0) & (ends[..., 1] <= height - 1))
            seen = sample(self.confidence, local)
            weighted = sample(self.weighted, local)
            colour = np.where(inside[..., None], weighted / np.maximum(seen, CANVAS_EPS)[..., None],
                              sample(previous, ends).astype(np.float32))
            if barred is not None:
                in_frame &= ~sample(barred.view(np.uint8), ends, cv2.INTER_NEAREST).astype(bool)
            confidence = np.where(inside, seen, in_frame.astype(np.float32)) * self.decay * gate
        given = source[y0:y1, x0:x1]
        colour[given] = frame[y0:y1, x0:x1][given]
        confidence[given] = 1.0
        self.weighted, self.confidence, self.box = colour * confidence[..., None], confidence, (y0, y1, x0, x1)

    def refresh(self, filled: np.ndarray, copied: np.ndarray) -> None:
        """Take the colours of filled (H, W, 3) uint8 where copied (H, W) bool (pixels copied straight from a
        past frame: one resampling, not one per frame), at the confidence the canvas has there."""
        if self.box is None:
            return
        y0, y1, x0, x1 = self.box
        take = copied[y0:y1, x0:x1]
        self.weighted[take] = filled[y0:y1, x0:x1][take] * self.confidence[take][:, None]

    def fill(self, filled: np.ndarray, remaining: np.ndarray, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """Copy the canvas into the remaining (H, W) bool pixels of filled (H, W, 3) uint8 where its confidence
        is at least min_confidence -> (filled with them, the pixels still left (H, W) bool)."""
        if self.box is None:
            return filled, remaining
        y0, y1, x0, x1 = self.box
        take = remaining[y0:y1, x0:x1] & (self.confidence >= max(min_confidence, CANVAS_EPS))
        if not take.any():
            return filled, remaining
        out, left = filled.copy(), remaining.copy()
        colour = self.weighted[take] / self.confidence[take][:, None]
        out[y0:y1, x0:x1][take] = np.clip(np.round(colour), 0, 255).astype(np.uint8)
        left[y0:y1, x0:x1] &= ~take
        return out, left


def camera_motion(flow: np.ndarray, hole: np.ndarray, ring: int) -> float:
    """Median length (working px) of flow (h, w, 2) over the known pixels within ring px of hole (h, w) bool:
    how far the scene around the hole moved; 0 when there is no such pixel."""
    around = grow(hole, ring) & ~hole
    if not around.any():
        return 0.0
    return float(np.median(np.linalg.norm(flow[around], axis=-1)))


def refine_near(estimator: FlowEstimator, grey: np.ndarray, hole: np.ndarray, past: PastFrame,
                box: tuple[int, int, int, int]) -> None:
    """Re-estimate past.flow (h, w, 2) over box (working px) from itself: DIS from grey (h, w) uint8 over box
    to past.grey over box moved by the flow's median (rounded), given the flow less that move as a start (the
    torch estimator, built with from_start False, searches from zero there: from the start it measured worse,
    docs/video.md); both greys completed over hole (h, w) bool and past.hole so moved (`completed_pair`)."""
    y0, y1, x0, x1 = box
    start = past.flow[y0:y1, x0:x1]
    move = np.round(np.median(start.reshape(-1, 2), 0)).astype(np.float32)
    positions = pixel_grid(*grey.shape)[y0:y1, x0:x1] + move
    unknown = hole[y0:y1, x0:x1] | sample(past.hole.view(np.uint8), positions, cv2.INTER_NEAREST).astype(bool)
    source, target = completed_pair(grey[y0:y1, x0:x1], sample(past.grey, positions), unknown)
    past.flow[y0:y1, x0:x1] = estimator.calc(source, target, np.ascontiguousarray(start - move)) + move


def complete_grey(grey: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """grey (h, w) uint8 with its unknown (h, w) bool pixels filled from the others (`flow.push_pull`)."""
    if not unknown.any():
        return np.ascontiguousarray(grey)
    return np.round(push_pull(grey.astype(np.float32), ~unknown)).astype(np.uint8)


def completed_pair(grey: np.ndarray, other: np.ndarray, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two greys (h, w) uint8 of one size, each completed over the same unknown (h, w) bool pixels (the union
    of their holes) before flow is estimated between them. Completed over its own hole alone, a hole that moves
    between the frames is a smooth patch that moves, and DIS tracks it: the flow of the pixels around the hole
    takes the hole's motion (several working px where the scene moved a fraction of one), and the hole's flow
    completed from them copies from the wrong place."""
    return complete_grey(grey, unknown), complete_grey(other, unknown)


def _reads(past: PastFrame, grid: np.ndarray, box: tuple[int, int, int, int],
           frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Where the hole's box pixels (grid: their (bh, bw, 2) positions) land in a remembered frame, (bh, bw, 2),
    and whether it may give them, (bh, bw) bool: its flow passed every check, the end lies in the frame and on a
    pixel it may give."""
    height, width = frame_size
    ends = grid + upsample_flow(past.flow, frame_size, box)
    usable = (sample(past.valid, to_working(grid, frame_size, past.flow.shape[:2]), cv2.INTER_NEAREST).astype(bool)
              & (ends[..., 0] >= 0) & (ends[..., 0] <= width - 1)
              & (ends[..., 1] >= 0) & (ends[..., 1] <= height - 1)
              & sample(past.source.view(np.uint8), ends, cv2.INTER_NEAREST).astype(bool))
    return ends, usable


def propagate(frame: np.ndarray, mask: np.ndarray,
              sources: Iterable[PastFrame]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]]:
    """Copy into the hole what remembered frames saw: each hole pixel takes, from the first of sources (in order of
    preference; read only until no hole pixel is left) whose flow to it passed every check and lands on a pixel
    it may give, that frame's pixel there (bilinear).

    frame (H, W, 3) uint8, mask (H, W) bool -> (frame with the copied pixels, the hole still left (H, W) bool,
    per source that gave pixels (its index, the (bh, bw) bool pixels it gave over the hole's box)).
    """
    box = bounding_box(mask)
    out, remaining = frame.copy(), mask.copy()
    given = []
    if box is None:
        return out, remaining, given
    y0, y1, x0, x1 = box
    grid = pixel_grid(*mask.shape)[y0:y1, x0:x1]
    left = mask[y0:y1, x0:x1].copy()
    patch = out[y0:y1, x0:x1]
    for past in sources:
        ends, usable = _reads(past, grid, box, mask.shape)
        take = left & usable
        if take.any():
            patch[take] = sample(past.frame, ends)[take]
            left &= ~take
            given.append((past.index, take))
        if not left.any():
            break
    remaining[y0:y1, x0:x1] = left
    return out, remaining, given


def copy_nearer(filled: np.ndarray, mask: np.ndarray, left: np.ndarray, given: list[tuple[int, np.ndarray]],
                later: Iterable[PastFrame], index: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies from later frames (nearest first, read only while one could still give a pixel) into the hole of
    the frame at stream position index: a later frame at distance d gives the pixels past frames left (left
    (H, W) bool) and those a past frame farther than d gave (`propagate`'s given; a past frame keeps a pixel at
    equal distance), as `propagate` copies. filled (H, W, 3) uint8, mask (H, W) bool -> (filled with those
    copies, the pixels they replaced (H, W) bool)."""
    box = bounding_box(mask)
    out, taken = filled.copy(), np.zeros_like(mask)
    if box is None:
        return out, taken
    y0, y1, x0, x1 = box
    grid = pixel_grid(*mask.shape)[y0:y1, x0:x1]
    patch, open_ = out[y0:y1, x0:x1], left[y0:y1, x0:x1].copy()
    farther = [(index - past, pixels) for past, pixels in given]

    def wanted_at(distance: int) -> np.ndarray:
        """The box's pixels a later frame this far ahead would give: left open, or given by a farther past frame."""
        wanted = open_.copy()
        for past_distance, pixels in farther:
            if past_distance > distance:
                wanted |= pixels
        return wanted & ~taken[y0:y1, x0:x1]

    later, bound = iter(later), 1           # the next later frame is at least this far ahead
    while (wanted := wanted_at(bound)).any():   # some pixel it could give: only then is its flow asked for
        frame = next(later, None)
        if frame is None:
            break
        distance = frame.index - index
        if distance != bound:
            wanted = wanted_at(distance)
        bound = distance + 1
        ends, usable = _reads(frame, grid, box, mask.shape)
        take = wanted & usable
        if take.any():
            patch[take] = sample(frame.frame, ends)[take]
            taken[y0:y1, x0:x1] |= take
            open_ &= ~take
    return out, taken


def chain_reach(hole: np.ndarray, steps: list[np.ndarray]) -> float:
    """How far (working px) the pixels of hole (h, w) bool move along a chain of steps (each (h, w, 2), the flow
    from one frame to the next, as `chain_later` takes them), composed without refinement: the largest length
    of a hole pixel's composed flow to any frame of the chain; 0 for an empty hole."""
    box = bounding_box(hole)
    if box is None:
        return 0.0
    y0, y1, x0, x1 = box
    grid = pixel_grid(*hole.shape)[y0:y1, x0:x1]
    inside = hole[y0:y1, x0:x1]
    flow = np.zeros((y1 - y0, x1 - x0, 2), np.float32)
    reach = 0.0
    for step in steps:
        flow = flow + sample(step, grid + flow)
        reach = max(reach, float(np.sqrt(np.square(flow[inside]).sum(-1).max())))
    return reach


def chain_later(grey: np.ndarray, hole: np.ndarray, later: list[PastFrame], steps: list[np.ndarray],
                checks: list[np.ndarray], box: tuple[int, int, int, int], fill: str, ring: int, trust_hole: bool,
                refine: FlowEstimator | None) -> Iterator[PastFrame]:
    """Later frames (in stream order, the first right after the current frame: grey (h, w) uint8, hole (h, w)
    bool) with their flow from the current frame and its check set over box (working px; zero and unchecked
    elsewhere), one at a time as they are asked for, as `FrameMemory.advance` does for past frames: steps[k]
    (h, w, 2) is the flow from the frame before later[k] to it, checks[k] (h, w) bool its forward-backward
    check there (trusted in that frame's hole with trust_hole); composed along the chain, the checks ANDed; with
    refine (DIS), the flows past the first re-estimated (`refine_near`), and each completed in the holes
    (`fill_flow`)."""
    y0, y1, x0, x1 = box
    grid = pixel_grid(*grey.shape)[y0:y1, x0:x1]
    flow = np.zeros((y1 - y0, x1 - x0, 2), np.float32)
    valid = np.ones((y1 - y0, x1 - x0), bool)
    before_hole = hole
    for k, (frame, step, checked) in enumerate(zip(later, steps, checks)):
        ends = grid + flow
        trusted = checked | (trust_hole & before_hole)
        valid &= sample(trusted.view(np.uint8), ends, cv2.INTER_NEAREST).astype(bool)
        flow = flow + sample(step, ends)
        frame.flow = np.zeros((*grey.shape, 2), np.float32)
        frame.valid = np.zeros(grey.shape, np.uint8)
        frame.flow[y0:y1, x0:x1], frame.valid[y0:y1, x0:x1] = flow, valid
        if refine is not None and k > 0:
            refine_near(refine, grey, hole, frame, box)
            flow = frame.flow[y0:y1, x0:x1].copy()
        landed = sample(frame.hole.view(np.uint8), grid + flow, cv2.INTER_NEAREST).astype(bool)
        frame.flow[y0:y1, x0:x1] = fill_flow(flow, hole[y0:y1, x0:x1] | landed, fill, ring)
        before_hole = frame.hole
        yield frame


def follow(previous: np.ndarray, step: np.ndarray, step_valid: np.ndarray,
           box: tuple[int, int, int, int], barred: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The previous output (H, W, 3) uint8 brought to this frame over box by step (h, w, 2, working flow to
    the previous frame) -> (box h, box w, 3) float32 and (box h, box w) bool, where step_valid (h, w) bool holds
    and the flow does not land on a barred (H, W) bool pixel of the previous frame (its exclusion; None: none)."""
    y0, y1, x0, x1 = box
    grid = pixel_grid(*previous.shape[:2])[y0:y1, x0:x1]
    small = to_working(grid, previous.shape[:2], step.shape[:2])
    gate = sample(step_valid.view(np.uint8), small, cv2.INTER_NEAREST).astype(bool)
    ends = grid + upsample_flow(step, previous.shape[:2], box)
    if barred is not None:
        gate &= ~sample(barred.view(np.uint8), ends, cv2.INTER_NEAREST).astype(bool)
    return sample(previous, ends).astype(np.float32), gate


def stabilise(filled: np.ndarray, invented: np.ndarray, previous: np.ndarray, step: np.ndarray,
              step_valid: np.ndarray, weight: float, barred: np.ndarray | None = None) -> np.ndarray:
    """Blend the invented pixels of filled (H, W, 3) uint8 (invented (H, W) bool) with the previous output
    (H, W, 3) uint8 brought to this frame by step (`follow`, barred its exclusion): weight of the previous output
    where step_valid holds, 0 elsewhere. Other pixels unchanged."""
    box = bounding_box(invented)
    if box is None:
        return filled
    y0, y1, x0, x1 = box
    warped, gate = follow(previous, step, step_valid, box, barred)
    gate &= invented[y0:y1, x0:x1]
    out = filled.copy()
    patch = out[y0:y1, x0:x1]
    blended = weight * warped + (1 - weight) * patch.astype(np.float32)
    patch[gate] = np.clip(np.round(blended[gate]), 0, 255).astype(np.uint8)
    return out


def blend(base: np.ndarray, fresh: np.ndarray, pixels: np.ndarray, weight: float) -> np.ndarray:
    """base (H, W, 3) uint8 with its pixels (H, W) bool replaced by (1 - weight) base + weight fresh (H, W, 3)
    uint8, rounded; other pixels unchanged."""
    out = base.copy()
    mixed = (1 - weight) * base[pixels].astype(np.float32) + weight * fresh[pixels].astype(np.float32)
    out[pixels] = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    return out


def hold(frame: np.ndarray, mask: np.ndarray, invented: np.ndarray, anchor: PastFrame, ring: int,
         threshold: float) -> np.ndarray | None:
    """Keep what the anchor (an earlier output) showed where this frame's pixels would be invented, when the
    scene around the hole moved as the flow says.

    frame (H, W, 3) uint8 with its hole mask (H, W) bool; invented (H, W) bool, the pixels still to fill. The
    anchor is brought here by its flow (`follow`); if every invented pixel passed the flow's check and
    the known pixels within ring px of the hole differ from it by at most threshold (mean absolute
    difference, uint8 levels), returns frame with the invented pixels taken from it (rounded); else None."""
    box = bounding_box(invented)
    if box is None:
        return frame
    near = grow(mask, ring)
    y0, y1, x0, x1 = bounding_box(near)
    barred = None if anchor.source is None else ~anchor.source
    warped, gate = follow(anchor.frame, anchor.flow, anchor.valid, (y0, y1, x0, x1), barred)
    known_ring = near[y0:y1, x0:x1] & ~mask[y0:y1, x0:x1] & gate
    left = invented[y0:y1, x0:x1]
    if not known_ring.any() or not gate[left].all():
        return None
    change = np.abs(warped[known_ring] - frame[y0:y1, x0:x1][known_ring]).mean()
    if change > threshold:
        return None
    out = frame.copy()
    out[y0:y1, x0:x1][left] = np.clip(np.round(warped[left]), 0, 255).astype(np.uint8)
    return out


def scene_cut(thumb: np.ndarray, previous: np.ndarray, known: np.ndarray, threshold: float) -> bool:
    """True when grey thumbnails (s, t) uint8 of two frames differ by more than threshold (mean absolute
    difference, uint8 levels) over known (s, t) bool, the pixels known in both; False when none is."""
    if not known.any():
        return False
    return float(np.abs(thumb.astype(np.float32) - previous.astype(np.float32))[known].mean()) > threshold


def compose(mask: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """A copy of outside (H, W, ...) with inside's pixels where mask (H, W) bool holds (copied over the mask's
    box only)."""
    out = outside.copy()
    box = bounding_box(mask)
    if box is not None:
        y0, y1, x0, x1 = box
        out[y0:y1, x0:x1][mask[y0:y1, x0:x1]] = inside[y0:y1, x0:x1][mask[y0:y1, x0:x1]]
    return out


def any_set(mask: np.ndarray) -> bool:
    """Whether mask holds a True."""
    return bool(mask.any())


def owned(image: np.ndarray) -> np.ndarray:
    """A copy of image (C order) that the stream keeps while its caller may write to image."""
    return image.copy()


def array_nbytes(x: object) -> int:
    return x.nbytes if isinstance(x, np.ndarray) else 0


HOST_STEPS = TemporalSteps(
    PastFrame=PastFrame, propagate=propagate, copy_nearer=copy_nearer, camera_motion=camera_motion, hold=hold,
    blend=blend, stabilise=stabilise, chain_reach=chain_reach, chain_later=chain_later, bounding_box=bounding_box,
    grow_box=grow_box, equal=np.array_equal, any_set=any_set, compose=compose, owned=owned, nbytes=array_nbytes)
