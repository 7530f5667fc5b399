"""Picture for the README: masked input | ours (default) | ours, fast | ours, smooth | original, on the shipped sample.

Top row: whole images; bottom row: the same crop at 2x nearest-neighbour zoom (the hole pixels that
the downscaled top row hides).

    python -m bench.sample_grid -o bench/results/sample_grid.jpg
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from rethined_engine import Engine
from rethined_engine.cli import SAMPLE_IMAGE, SAMPLE_MASK

from .grid import masked_input, picture_grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("bench/results/sample_grid.jpg"))
    parser.add_argument("--weights", type=Path, default=None, help="default: shipped weights")
    args = parser.parse_args(argv)
    image = np.array(Image.open(SAMPLE_IMAGE).convert("RGB"))
    mask = np.asarray(Image.open(SAMPLE_MASK)) > 0
    ours = Engine(weights=args.weights, device="cpu").inpaint(image, mask)
    fast = Engine(weights=args.weights, device="cpu", style="fast").inpaint(image, mask)
    smooth = Engine(weights=args.weights, device="cpu", style="smooth").inpaint(image, mask)
    panels = [("masked input", masked_input(image, mask)), ("RETHINED (ours, default)", ours),
              ("ours, style='fast'", fast), ("ours, style='smooth'", smooth), ("original", image)]
    grid = picture_grid(panels, mask)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.output, quality=90)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
