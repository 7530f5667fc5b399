"""Dense optical flow primitives (OpenCV): DIS flow, backward warping, the forward-backward check and
push-pull completion of fields with holes.

A flow field is (h, w, 2) float32 in px, (dx, dy), pointing from a pixel of the source frame to where it lies
in the target frame: source(x) ~ target(x + flow(x)).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

import cv2
import numpy as np

DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
FB_RELATIVE = 0.01   # forward-backward check (Ruder et al. 2016): |f + b|^2 <= rel (|f|^2 + |b|^2) + abs
FB_ABSOLUTE = 0.5    # px^2
PUSH_PULL_MIN_SIDE = 2      # push-pull stops halving at this side (px)
PUSH_PULL_CONTEXT = 0.5     # push-pull works in the unknown pixels' box grown by this share of its size ...
PUSH_PULL_MIN_CONTEXT = 16  # ... and by at least this many px
PUSH_PULL_EPS = 1e-12       # floor of the weights it divides by


def dis(preset: str = "medium") -> cv2.DISOpticalFlow:
    """A DIS flow estimator; preset: one of DIS_PRESETS."""
    if preset not in DIS_PRESETS:
        raise ValueError(f"preset: expected one of {tuple(DIS_PRESETS)}, got {preset!r}")
    return cv2.DISOpticalFlow_create(DIS_PRESETS[preset])


class FlowEstimator(Protocol):
    """What the temporal steps need of a flow estimator (OpenCV's DIS interface): calc(source, target, start)
    with (h, w) uint8 greys and a start flow (h, w, 2) float32 or None -> the flow (h, w, 2) float32."""

    def calc(self, source: np.ndarray, target: np.ndarray, flow: np.ndarray | None) -> np.ndarray: ...


FLOW_ESTIMATORS = ("opencv", "torch")   # OpenCV's DIS on the CPU; `video.dis_torch.TorchDIS` on a torch device


def estimator(kind: str = "opencv", preset: str = "medium", device: Any = "cpu", scales_above_finest: int | None = None,
              from_start: bool = True) -> FlowEstimator:
    """A DIS estimator with OpenCV's `calc(source, target, flow)`: kind one of FLOW_ESTIMATORS ("torch" runs on
    device); preset one of DIS_PRESETS; scales_above_finest: search at most this many scales above the preset's
    finest (a local refinement of a given start flow; never above the automatic coarsest scale, so small images
    get fewer; None: the automatic coarsest scale); from_start False: a start flow given to calc is not searched
    from ("torch" only, `dis_torch.TorchDIS`)."""
    if kind not in FLOW_ESTIMATORS:
        raise ValueError(f"kind: expected one of {FLOW_ESTIMATORS}, got {kind!r}")
    if kind == "torch":
        from .dis_torch import TorchDIS

        return TorchDIS(preset, device, scales_above_finest, from_start)
    out = dis(preset)
    if scales_above_finest is not None:
        out.setCoarsestScale(out.getFinestScale() + scales_above_finest)
    return out


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luma."""
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def dis_flow(source: np.ndarray, target: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Flow (H, W, 2) float32 from source to target, both (H, W, 3) uint8 RGB or (H, W) uint8 grey."""
    source, target = (x if x.ndim == 2 else grey(x) for x in (source, target))
    return dis(preset).calc(source, target, None)


@lru_cache(maxsize=8)
def pixel_grid(height: int, width: int) -> np.ndarray:
    """(height, width, 2) float32 (x, y) coordinates of every pixel; read-only, shared."""
    grid = np.stack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)), -1)
    grid.flags.writeable = False
    return grid


def sample(image: np.ndarray, positions: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """image (H, W) or (H, W, C) sampled at positions (h, w, 2) float32 (x, y) px, border replicated ->
    (h, w) or (h, w, C) of image's dtype (float32 for bilinear sampling of integer images is the caller's)."""
    return cv2.remap(image, positions[..., 0], positions[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def warp_back(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """image (H, W[, C]) sampled at x + flow(x) for every pixel x of flow (H, W, 2): the target frame brought
    to the source frame. Same dtype as image; C = 1 comes back as (H, W)."""
    return sample(image, pixel_grid(*flow.shape[:2]) + flow, interpolation)


def forward_backward_valid(forward: np.ndarray, backward: np.ndarray, relative: float = FB_RELATIVE,
                           absolute: float = FB_ABSOLUTE, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """(H, W) bool: pixels whose forward flow (H, W, 2) the backward flow, sampled at its end, undoes
    (|f + b|^2 <= relative (|f|^2 + |b|^2) + absolute, px^2) and whose end lies inside the frame. With box
    (y0, y1, x0, x1), only the pixels inside it are checked; the others are False."""
    y0, y1, x0, x1 = box or (0, forward.shape[0], 0, forward.shape[1])
    h, w = forward.shape[:2]
    ahead = forward[y0:y1, x0:x1]
    end = pixel_grid(h, w)[y0:y1, x0:x1] + ahead
    back = sample(backward, end)
    error = np.square(ahead + back).sum(-1)
    bound = relative * (np.square(ahead).sum(-1) + np.square(back).sum(-1)) + absolute
    inside = (end[..., 0] >= 0) & (end[..., 0] <= w - 1) & (end[..., 1] >= 0) & (end[..., 1] <= h - 1)
    valid = np.zeros((h, w), bool)
    valid[y0:y1, x0:x1] = (error <= bound) & inside
    return valid


def push_pull_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part of an (H, W) image push-pull works in: box (y0, y1, x0, x1), the unknown pixels' bounding box,
    grown by PUSH_PULL_CONTEXT times its size (at least PUSH_PULL_MIN_CONTEXT px) on every side, clipped."""
    y0, y1, x0, x1 = box
    grow_y = max(PUSH_PULL_MIN_CONTEXT, round(PUSH_PULL_CONTEXT * (y1 - y0)))
    grow_x = max(PUSH_PULL_MIN_CONTEXT, round(PUSH_PULL_CONTEXT * (x1 - x0)))
    return max(0, y0 - grow_y), min(size[0], y1 + grow_y), max(0, x0 - grow_x), min(size[1], x1 + grow_x)


def push_pull(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels of values (H, W) or (H, W, C) float32 from the known ones (known (H, W) bool):
    push (halve the weighted values and the weights, INTER_AREA, down to PUSH_PULL_MIN_SIDE) then pull (each
    level's unknown share taken from the coarser level, bilinear). Only a box around the unknown pixels (their
    bounding box grown by PUSH_PULL_CONTEXT times its size on every side) takes part. Known pixels are returned
    unchanged; with no known pixel in that box, zeros fill it."""
    rows, cols = np.flatnonzero(~known.all(1)), np.flatnonzero(~known.all(0))
    if rows.size == 0:
        return values
    y0, y1, x0, x1 = push_pull_box((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1), known.shape)
    out = values.copy()
    out[y0:y1, x0:x1] = _push_pull(values[y0:y1, x0:x1], known[y0:y1, x0:x1])
    return out


def _push_pull(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """push_pull over the whole of values (H, W[, C]) float32, known (H, W) bool."""
    weight = known.astype(np.float32)
    if not weight.any():
        return np.zeros_like(values)
    channels = values.shape[2:]

    def per_channel(x: np.ndarray) -> np.ndarray:
        return x.reshape(*x.shape, *([1] * len(channels)))

    levels = [(values * per_channel(weight), weight)]
    while min(levels[-1][1].shape) > PUSH_PULL_MIN_SIDE:
        summed, weights = levels[-1]
        size = ((weights.shape[1] + 1) // 2, (weights.shape[0] + 1) // 2)
        levels.append((cv2.resize(summed, size, interpolation=cv2.INTER_AREA).reshape(*size[::-1], *channels),
                       cv2.resize(weights, size, interpolation=cv2.INTER_AREA)))
    summed, weights = levels[-1]
    filled = summed / per_channel(np.maximum(weights, PUSH_PULL_EPS))
    for summed, weights in reversed(levels[:-1]):
        coarse = cv2.resize(filled, weights.shape[::-1], interpolation=cv2.INTER_LINEAR).reshape(summed.shape)
        share = per_channel(np.minimum(weights, 1.0))
        filled = share * (summed / per_channel(np.maximum(weights, PUSH_PULL_EPS))) + (1 - share) * coarse
    return np.where(per_channel(known), values, filled).astype(values.dtype)
