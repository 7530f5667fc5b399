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
from PIL import Image

from rethined_engine import Engine
from rethined_engine.cli import SAMPLE_IMAGE, SAMPLE_MASK
from rethined_engine.train.evaluate import coarse_bicubic

from .grid import masked_input, picture_grid


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
    panels = [("masked input", masked_input(image, mask)), ("RETHINED (ours)", ours),
              ("coarse fill, bicubic", coarse), ("original", image)]
    grid = picture_grid(panels, mask)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.output, quality=90)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
