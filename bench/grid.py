"""Picture grids for results: one column per method, whole images on top, a zoomed hole crop below."""
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


def _hole_centre(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    return (int(ys.mean()), int(xs.mean())) if len(ys) else (mask.shape[0] // 2, mask.shape[1] // 2)


def picture_grid(panels: list[tuple[str, np.ndarray]], mask: np.ndarray) -> Image.Image:
    """panels: (title, (H, W, 3) uint8) of one size; the crop row is centred on the hole of mask (H, W)."""
    h, w = panels[0][1].shape[:2]
    ph = round(h * PANEL_WIDTH / w)
    crop_w, crop_h = min(w, PANEL_WIDTH // ZOOM), min(h, ph // ZOOM)
    cy, cx = _hole_centre(mask)
    y0 = int(np.clip(cy - crop_h // 2, 0, h - crop_h))
    x0 = int(np.clip(cx - crop_w // 2, 0, w - crop_w))
    grid = Image.new("RGB", (PANEL_WIDTH * len(panels), 2 * ph + TITLE_HEIGHT), "white")
    draw = ImageDraw.Draw(grid)
    for i, (title, arr) in enumerate(panels):
        grid.paste(Image.fromarray(arr).resize((PANEL_WIDTH, ph), Image.LANCZOS), (i * PANEL_WIDTH, TITLE_HEIGHT))
        crop = Image.fromarray(arr[y0:y0 + crop_h, x0:x0 + crop_w]).resize((PANEL_WIDTH, ph), Image.NEAREST)
        grid.paste(crop, (i * PANEL_WIDTH, TITLE_HEIGHT + ph))
        draw.text((i * PANEL_WIDTH + 6, 4), title, fill="black")
    return grid
