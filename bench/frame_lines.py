"""Which sides of which photos hold a frame line (`rethined_engine.frame_lines`), at the sizes `bench.quality`
scores them.

    python -m bench.frame_lines --images PHOTOS/train-select PHOTOS/heldout --resolutions 1024 2048 3840 \
        --out bench/results/frame-lines-cpu.json

Per photo, size and side: the mean of the token spans' median departures (levels, the channel farthest from 0),
the share of spans that agree with it, and whether the side holds a frame line. No hole: every position is judged.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rethined_engine.config import ModelConfig
from rethined_engine.frame_lines import (
    FRAME_LINE_AGREEMENT,
    FRAME_LINE_BAND,
    FRAME_LINE_MIN_STEP,
    SIDES,
    frame_line_sides,
    side_statistics,
    side_strips,
    whole_spans,
)
from rethined_engine.geometry import plan
from rethined_engine.train.data import list_images

from .env import run_environment
from .quality import resized

LEVELS = 255.0


def side_scores(image: np.ndarray, span: int) -> list[dict]:
    """image (H, W, 3) uint8 -> per side: {"side", "departure" (levels: the mean of the spans' median departures, in
    the channel that departs most), "agreement" (that channel's share), "frame_line"} (`frame_lines`; no hole)."""
    chw = np.moveaxis(image, -1, 0)[None]
    height, width = image.shape[:2]
    strips = side_strips(chw, 0).astype(np.float32) / np.float32(LEVELS)
    known = (np.arange(strips.shape[-1]) < whole_spans(height, width, span)[:, None])[None]     # (1, 4, n)
    mean, share = (x[0] for x in side_statistics(strips, known, span))
    found = frame_line_sides(chw, np.zeros((1, height, width), bool), span)[0]
    out = []
    for index, side in enumerate(SIDES):
        channel = int(np.argmax(np.abs(mean[index])))
        out.append({"side": side, "departure": round(float(mean[index, channel]) * LEVELS, 2),
                    "agreement": round(float(share[index, channel]), 3), "frame_line": bool(found[index])})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, nargs="+", required=True, help="folders of photographs")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[1024, 2048, 3840], help="long sides, px")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    cfg, rows = ModelConfig(), []
    for folder in args.images:
        for photo in list_images(folder):
            for res in args.resolutions:
                image, _ = resized(photo, res)
                geom = plan(*image.shape[:2], cfg)
                for score in side_scores(image, geom.scale * geom.patch):
                    rows.append({"folder": folder.name, "image": photo.name, "resolution": res, **score})
                    if score["frame_line"]:
                        print(f"{photo.name} {res} {score}", flush=True)
    found = sorted({(r["folder"], r["image"], r["side"]) for r in rows if r["frame_line"]})
    result = run_environment("cpu") | {"thresholds": {"min_step_levels": FRAME_LINE_MIN_STEP * LEVELS,
                                                      "agreement": FRAME_LINE_AGREEMENT, "band": FRAME_LINE_BAND},
                                       "found": [list(f) for f in found], "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(found)} sides hold a frame line; wrote {args.out}")


if __name__ == "__main__":
    main()
