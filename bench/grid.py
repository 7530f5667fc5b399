"""Picture grids for results: one column per method, whole images on top, a zoomed crop of the hole's border below."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

PANEL_WIDTH = 640
ZOOM = 2                  # bottom row: a crop of PANEL_WIDTH / ZOOM pixels shown at ZOOM x (nearest)
TITLE_HEIGHT = 20
HOLE_COLOUR = np.array([255, 0, 255], np.uint8)


def masked_input(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 with the hole (mask (H, W) bool) painted magenta."""
    out = image.copy()
    out[mask] = HOLE_COLOUR
    return out


CROP_STRIDE = 8            # px between the crop positions tried


def crop_origin(mask: np.ndarray, crop_h: int, crop_w: int) -> tuple[int, int]:
    """(y0, x0) of the crop_h x crop_w window holding the most hole-border pixels (hole pixels with a known
    4-neighbour): where fill meets photo, so seams and texture show. The image centre if there is no border."""
    h, w = mask.shape
    border = np.zeros_like(mask)
    border[1:] |= mask[1:] & ~mask[:-1]
    border[:-1] |= mask[:-1] & ~mask[1:]
    border[:, 1:] |= mask[:, 1:] & ~mask[:, :-1]
    border[:, :-1] |= mask[:, :-1] & ~mask[:, 1:]
    if not border.any():
        return (h - crop_h) // 2, (w - crop_w) // 2
    table = np.pad(border.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))     # summed-area table
    ys = np.arange(0, h - crop_h + 1, CROP_STRIDE)[:, None]
    xs = np.arange(0, w - crop_w + 1, CROP_STRIDE)[None, :]
    counts = table[ys + crop_h, xs + crop_w] - table[ys, xs + crop_w] - table[ys + crop_h, xs] + table[ys, xs]
    iy, ix = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return int(ys[iy, 0]), int(xs[0, ix])


def picture_grid(panels: list[tuple[str, np.ndarray]], mask: np.ndarray) -> Image.Image:
    """panels: (title, (H, W, 3) uint8) of one size; the crop row shows the stretch of the hole's border
    (mask (H, W)) where most of it lies (`crop_origin`)."""
    h, w = panels[0][1].shape[:2]
    ph = round(h * PANEL_WIDTH / w)
    crop_w, crop_h = min(w, PANEL_WIDTH // ZOOM), min(h, ph // ZOOM)
    y0, x0 = crop_origin(mask, crop_h, crop_w)
    grid = Image.new("RGB", (PANEL_WIDTH * len(panels), 2 * ph + TITLE_HEIGHT), "white")
    draw = ImageDraw.Draw(grid)
    for i, (title, arr) in enumerate(panels):
        grid.paste(Image.fromarray(arr).resize((PANEL_WIDTH, ph), Image.LANCZOS), (i * PANEL_WIDTH, TITLE_HEIGHT))
        crop = Image.fromarray(arr[y0:y0 + crop_h, x0:x0 + crop_w]).resize((PANEL_WIDTH, ph), Image.NEAREST)
        grid.paste(crop, (i * PANEL_WIDTH, TITLE_HEIGHT + ph))
        draw.text((i * PANEL_WIDTH + 6, 4), title, fill="black")
    return grid
