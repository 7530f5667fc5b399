"""Frame lines: a thin line along an image's edge (a scan edge, a drawn border, a resize's dark last row) that
differs from the image just inside it. A copy of an edge token carries the line into the hole, as a line one token
long across the fill (dark dashes in water), so with `ModelConfig.key_frame_lines` the edge tokens along a side
that holds one are no sources (`keep_grid`).

A side holds a frame line when its outermost line departs from the image just inside, consistently along the edge:
each position's departure is the outermost line's value minus the value the least-squares line through the
FRAME_LINE_BAND lines (4-7 px from the edge) predicts there, so a vignette or a sky's gradient departs by little.
Per token span along the edge the departure's median is taken (over the positions known on every line of the
strip); the side holds a frame line when, in some colour channel, the median of those is at least
FRAME_LINE_MIN_STEP from 0 and at least FRAME_LINE_AGREEMENT of the spans depart the same way by at least half as
much. A line up to 3 px thick counts; a wide border (one that reaches the band) does not.

The numpy form here serves the hosts (the native backend, the deployed pipelines: no torch); the tensor form
is `model.rethined.frame_line_keys`, which the torch and Triton backends use. Layout: strips (B, C, L, n) with
line 0 the outermost, n positions along the edge (left to right, top to bottom); values in [0, 1].
"""
from __future__ import annotations

import numpy as np

FRAME_LINE_BAND = (4, 8)        # px from the edge: the lines the outermost one is compared with (a line through them)
STRIP_LINES = FRAME_LINE_BAND[1]   # lines read per side
FRAME_LINE_MIN_STEP = 12.0 / 255.0  # the least departure (median over the side) of a frame line, in [0, 1] units
FRAME_LINE_AGREEMENT = 0.8      # share of the side's token spans that must depart the same way, by half as much
SIDES = ("top", "bottom", "left", "right")


def band_weights() -> np.ndarray:
    """(len(band),) float32: w . values over the FRAME_LINE_BAND lines = the value at line 0 of the least-squares
    line through them."""
    depth = np.arange(*FRAME_LINE_BAND, dtype=np.float64)
    centred = depth - depth.mean()
    return (1.0 / depth.size - depth.mean() * centred / (centred ** 2).sum()).astype(np.float32)


def edge_strips(image: np.ndarray) -> list[np.ndarray]:
    """image (..., H, W) -> the STRIP_LINES outermost lines of each side in SIDES' order, each (..., STRIP_LINES, n),
    line 0 the outermost."""
    lines = STRIP_LINES
    return [image[..., :lines, :], np.flip(image[..., -lines:, :], -2),
            np.swapaxes(image[..., :, :lines], -1, -2), np.swapaxes(np.flip(image[..., :, -lines:], -1), -1, -2)]


def lower_median(values: np.ndarray) -> np.ndarray:
    """(..., n) with NaN for missing -> (...,): the lower middle of the present values (NaN where none), as
    `model.rethined._lower_median` takes it."""
    ordered = np.sort(values, axis=-1)                     # NaN last
    present = (~np.isnan(values)).sum(-1)
    index = np.maximum(present - 1, 0) // 2
    middle = np.take_along_axis(ordered, index[..., None], -1)[..., 0]
    return np.where(present > 0, middle, np.nan)


def side_statistics(strip: np.ndarray, known: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """strip (B, C, STRIP_LINES, n) float32 in [0, 1], known (B, STRIP_LINES, n) bool, span: HR px per token ->
    per channel (B, C): the departure's median over the side's token spans (NaN where none is judged) and the
    share of the judged spans that depart the same way by at least half as much (module docstring)."""
    b, c, _, n = strip.shape
    spans = n // span
    if spans == 0:
        return np.full((b, c), np.nan, np.float32), np.zeros((b, c))
    band = strip[:, :, FRAME_LINE_BAND[0]:FRAME_LINE_BAND[1]]
    departure = strip[:, :, 0] - np.tensordot(band, band_weights(), axes=([2], [0]))          # (B, C, n)
    departure = np.where(known.all(1)[:, None], departure, np.nan)[..., :spans * span]
    per_span = lower_median(departure.reshape(b, c, spans, span))                              # (B, C, spans)
    median = lower_median(per_span)                                                           # (B, C)
    with np.errstate(invalid="ignore"):
        agree = (np.sign(per_span) == np.sign(median)[..., None]) & (np.abs(per_span) >= np.abs(median)[..., None] / 2)
    return median, agree.sum(-1) / np.maximum((~np.isnan(per_span)).sum(-1), 1)


def side_holds_line(strip: np.ndarray, known: np.ndarray, span: int) -> np.ndarray:
    """(B,) bool: whether the side holds a frame line (`side_statistics`' arguments)."""
    median, share = side_statistics(strip, known, span)
    with np.errstate(invalid="ignore"):
        return ((np.abs(median) >= FRAME_LINE_MIN_STEP) & (share >= FRAME_LINE_AGREEMENT)).any(1)


def frame_line_sides(image: np.ndarray, mask: np.ndarray, span: int) -> np.ndarray:
    """image (B, 3, H, W) uint8 or float in [0, 1], mask (B, H, W) bool or {0, 1} (1 = hole), span: HR px per token ->
    (B, 4) bool: per side (SIDES' order) whether it holds a frame line; none in an image under 2 * STRIP_LINES px
    on a side."""
    if min(image.shape[-2:]) < 2 * STRIP_LINES:
        return np.zeros((image.shape[0], len(SIDES)), bool)
    scale = np.float32(255.0) if image.dtype == np.uint8 else np.float32(1.0)
    strips = [strip.astype(np.float32) / scale for strip in edge_strips(image)]
    known = [strip == 0 for strip in edge_strips(mask)]      # the strips only: no pass over the whole mask
    return np.stack([side_holds_line(s, k, span) for s, k in zip(strips, known)], axis=1)


def keep_range(sides_first_last: tuple[bool, bool], extent: int, span: int) -> tuple[int, int]:
    """(first, stop): the tokens along one axis of `extent` HR px that stay sources when the side at its start
    (first element) or end (second) holds a frame line: the token touching that side's outermost line leaves,
    unless that would leave none. The end's token touches it only when the tokens fill the extent exactly."""
    inside = extent // span
    first = 1 if sides_first_last[0] else 0
    stop = inside - 1 if sides_first_last[1] and extent % span == 0 else inside
    return (first, stop) if stop > first else (0, inside)


def keep_grid(image: np.ndarray, mask: np.ndarray, span: int, grid_h: int, grid_w: int) -> np.ndarray:
    """image (H, W, 3) uint8 or float in [0, 1], mask (H, W) bool or {0, 1} -> (grid_h, grid_w) bool: the tokens that stay
    sources, all but those along a side holding a frame line (`frame_line_sides`). Tokens outside the image are
    kept here (`Geometry.key_inside_grid` drops them)."""
    top, bottom, left, right = frame_line_sides(np.moveaxis(image, -1, 0)[None], mask[None], span)[0]
    height, width = mask.shape
    first_row, stop_row = keep_range((top, bottom), height, span)
    first_col, stop_col = keep_range((left, right), width, span)
    rows, cols = np.arange(grid_h), np.arange(grid_w)
    keep_rows = (rows >= first_row) & ((rows < stop_row) | (rows >= height // span))
    keep_cols = (cols >= first_col) & ((cols < stop_col) | (cols >= width // span))
    return keep_rows[:, None] & keep_cols[None, :]
