"""Frame lines: a thin line along an image's edge (a scan edge, a drawn border, a resize's dark last row) that
differs from the image just inside it. A copy of an edge token carries the line into the hole, as a line one token
long across the fill (dark dashes in water), so with `ModelConfig.key_frame_lines` the edge tokens along a side
that holds one are no sources (`keep_grid`).

A side holds a frame line when its outermost line departs from the image just inside, consistently along the edge:
each position's departure is the outermost line's value minus the value the least-squares line through the
FRAME_LINE_BAND lines (4-7 px from the edge) predicts there, so a vignette or a sky's gradient departs by little.
Per token span along the edge the departure's median is taken over the positions known on every line of the strip
(a span with fewer than half of them known is not judged); the side holds a frame line when, in some colour
channel, the mean of the judged spans' medians is at least FRAME_LINE_MIN_STEP from 0 and at least
FRAME_LINE_AGREEMENT of them depart the same way by at least half as much (a scene edge cut by the frame over part
of a side does not); a side with fewer than FRAME_LINE_MIN_SPANS judged spans is not judged. A line up to 3 px
thick counts; a wide border (one that reaches the band) does not.

The numpy form here serves the hosts (the native backend, the deployed pipelines: no torch); the tensor form is
`model.rethined.frame_line_keys` (the torch and Triton backends). Both judge the four sides at once. Layout:
strips (B, 4, C, STRIP_LINES, n), sides in SIDES' order, line 0 the outermost, n = max(H, W) positions along the
edge (left to right, top to bottom; a shorter side padded with positions that are not known); values in [0, 1].
"""
from __future__ import annotations

import numpy as np

FRAME_LINE_BAND = (4, 8)        # px from the edge: the lines the outermost one is compared with (a line through them)
STRIP_LINES = FRAME_LINE_BAND[1]   # lines read per side
FRAME_LINE_MIN_STEP = 12.0 / 255.0  # the least mean departure of a frame line, in [0, 1] units
FRAME_LINE_AGREEMENT = 0.8      # share of the side's judged token spans that must depart the same way, by half as much
FRAME_LINE_MIN_SPANS = 8        # judged token spans a side needs to be judged at all (a few spans agree by chance)
SIDES = ("top", "bottom", "left", "right")


def band_weights() -> np.ndarray:
    """(len(band),) float32: w . values over the FRAME_LINE_BAND lines = the value at line 0 of the least-squares
    line through them."""
    depth = np.arange(*FRAME_LINE_BAND, dtype=np.float64)
    centred = depth - depth.mean()
    return (1.0 / depth.size - depth.mean() * centred / (centred ** 2).sum()).astype(np.float32)


def side_strips(x: np.ndarray, fill) -> np.ndarray:
    """x (B, [C,] H, W) -> (B, 4, [C,] STRIP_LINES, max(H, W)): the STRIP_LINES outermost lines of each side in
    SIDES' order, line 0 the outermost, a shorter side padded with `fill`."""
    lines, n = STRIP_LINES, max(x.shape[-2:])
    sides = [x[..., :lines, :], np.flip(x[..., -lines:, :], -2), np.swapaxes(x[..., :lines], -1, -2),
             np.swapaxes(np.flip(x[..., -lines:], -1), -1, -2)]
    return np.stack([np.concatenate([side, np.full((*side.shape[:-1], n - side.shape[-1]), fill, x.dtype)], -1)
                     for side in sides], 1)


def whole_spans(height: int, width: int, span: int) -> np.ndarray:
    """(4,) int: per side, the positions its whole token spans cover (the rest is not judged)."""
    return np.array([width, width, height, height]) // span * span


def lower_median(values: np.ndarray) -> np.ndarray:
    """(..., n) with NaN for missing -> (...,): the lower middle of the present values, NaN where none (as
    `torch.nanmedian` takes it)."""
    ordered = np.sort(values, axis=-1)                     # NaN last
    present = (~np.isnan(values)).sum(-1)
    middle = np.take_along_axis(ordered, (np.maximum(present - 1, 0) // 2)[..., None], -1)[..., 0]
    return np.where(present > 0, middle, np.nan)


def side_statistics(strips: np.ndarray, known: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """strips (B, 4, C, STRIP_LINES, n) float32 in [0, 1], known (B, 4, n) bool (the positions known on every
    line and inside a whole span) -> per side and channel (B, 4, C): the mean of the judged spans' median departures
    (0 where none is judged) and the share of them that depart the same way by at least half as much (0 where
    fewer than FRAME_LINE_MIN_SPANS are)."""
    b, c, n = strips.shape[0], strips.shape[2], strips.shape[-1]
    spans = n // span
    band = strips[..., FRAME_LINE_BAND[0]:FRAME_LINE_BAND[1], :spans * span]
    departure = strips[..., 0, :spans * span] - np.einsum("bscln,l->bscn", band, band_weights())  # (B, 4, C, n')
    known = known[..., :spans * span]
    departure = np.where(known[:, :, None], departure, np.nan).reshape(b, 4, c, spans, span)
    judged = known.reshape(b, 4, 1, spans, span).sum(-1) >= span / 2                                # (B, 4, 1, S)
    per_span = np.where(judged, lower_median(departure), 0.0)
    judged_count = np.maximum(judged.sum(-1), 1)
    mean = per_span.sum(-1) / judged_count                                                         # (B, 4, C)
    agree = judged & (np.sign(per_span) == np.sign(mean)[..., None]) & (np.abs(per_span) >= np.abs(mean)[..., None] / 2)
    share = np.where(judged_count >= FRAME_LINE_MIN_SPANS, agree.sum(-1) / judged_count, 0.0)
    return mean, share


def frame_line_statistics(image: np.ndarray, mask: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """image (B, C, H, W) uint8 or float in [0, 1], mask (B, H, W) bool or {0, 1} (1 = hole), span: HR px per token
    -> `side_statistics` of its four sides, (B, 4, C) each; zeros for an image under 2 * STRIP_LINES px on a side.
    Only the strips are read and converted."""
    height, width = image.shape[-2:]
    if min(height, width) < 2 * STRIP_LINES:
        none = np.zeros((image.shape[0], len(SIDES), image.shape[1]))
        return none, none
    scale = np.float32(255.0) if image.dtype == np.uint8 else np.float32(1.0)
    strips = side_strips(image, 0).astype(np.float32) / scale
    inside = np.arange(strips.shape[-1]) < whole_spans(height, width, span)[:, None]          # (4, n)
    known = (side_strips(mask, 1) == 0).all(2) & inside
    return side_statistics(strips, known, span)


def holds_line(mean: np.ndarray, share: np.ndarray) -> np.ndarray:
    """`side_statistics`' (mean, share), (..., C) each -> (...,) bool: whether the side holds a frame line."""
    return ((np.abs(mean) >= FRAME_LINE_MIN_STEP) & (share >= FRAME_LINE_AGREEMENT)).any(-1)


def frame_line_sides(image: np.ndarray, mask: np.ndarray, span: int) -> np.ndarray:
    """image (B, 3, H, W), mask (B, H, W) as `frame_line_statistics` takes them -> (B, 4) bool: per side (SIDES'
    order) whether it holds a frame line."""
    return holds_line(*frame_line_statistics(image, mask, span))


def keep_range(sides_first_last: tuple[bool, bool], extent: int, span: int) -> tuple[int, int]:
    """(first, stop): the tokens along one axis of `extent` HR px that stay sources when the side at its start
    (first element) or end (second) holds a frame line: the token touching that side's outermost line leaves,
    unless that would leave none. The end's token touches it only when the tokens fill the extent exactly."""
    inside = extent // span
    first = 1 if sides_first_last[0] else 0
    stop = inside - 1 if sides_first_last[1] and extent % span == 0 else inside
    return (first, stop) if stop > first else (0, inside)


def keep_grid(image: np.ndarray, mask: np.ndarray, span: int, grid_h: int, grid_w: int) -> np.ndarray:
    """image (H, W, 3) uint8 or float in [0, 1], mask (H, W) bool or {0, 1} -> (grid_h, grid_w) bool: the tokens
    that stay sources, all but those along a side holding a frame line (`frame_line_sides`). Tokens outside the
    image are kept here (`Geometry.key_inside_grid` drops them)."""
    top, bottom, left, right = frame_line_sides(np.moveaxis(image, -1, 0)[None], mask[None], span)[0]
    height, width = mask.shape
    first_row, stop_row = keep_range((top, bottom), height, span)
    first_col, stop_col = keep_range((left, right), width, span)
    rows, cols = np.arange(grid_h), np.arange(grid_w)
    keep_rows = (rows >= first_row) & ((rows < stop_row) | (rows >= height // span))
    keep_cols = (cols >= first_col) & ((cols < stop_col) | (cols >= width // span))
    return keep_rows[:, None] & keep_cols[None, :]
