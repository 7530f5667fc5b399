"""Picture for the README: masked input | ours | coarse fill, bicubic | original, on the shipped sample.

Top row: whole images; bottom row: the same crop at 2x nearest-neighbour zoom (the hole pixels that
the downscaled top row hides).

    python -m bench.sample_grid -o bench/results/sample_grid.jpg
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from rethined_engine import Engine
from rethined_engine.cli import SAMPLE_IMAGE, SAMPLE_MASK
from rethined_engine.train.evaluate import coarse_bicubic

PANEL_WIDTH = 640
ZOOM = 2                 # bottom row: crop of PANEL_WIDTH / ZOOM pixels shown at ZOOM x
TITLE_HEIGHT = 20
HOLE_COLOUR = np.array([255, 0, 255], np.uint8)


def _hole_centre(mask: np.ndarray) -> tuple[int, int]:
    """(y, x) of the hole's centre of mass."""
    ys, xs = np.nonzero(mask)
    return int(ys.mean()), int(xs.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("bench/results/sample_grid.jpg"))
    parser.add_argument("--weights", type=Path, default=None, help="default: shipped weights")
    args = parser.parse_args(argv)
    image = np.array(Image.open(SAMPLE_IMAGE).convert("RGB"))
    mask = np.asarray(Image.open(SAMPLE_MASK)) > 0
    engine = Engine(weights=args.weights, device="cpu")
    ours = engine.inpaint(image, mask)
    with torch.inference_mode():
        t = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        coarse = coarse_bicubic(engine.model, t, torch.from_numpy(mask)[None, None].float())
    coarse = (coarse[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    masked = image.copy()
    masked[mask] = HOLE_COLOUR
    panels = [("masked input", masked), ("RETHINED (ours)", ours), ("coarse fill, bicubic", coarse),
              ("original", image)]
    h, w = image.shape[:2]
    ph = round(h * PANEL_WIDTH / w)
    crop_w, crop_h = PANEL_WIDTH // ZOOM, ph // ZOOM
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
    args.output.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.output, quality=90)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
