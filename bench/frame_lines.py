"""Which sides of which photos hold a frame line (`rethined_engine.frame_lines`), at the sizes `bench.quality`
scores them.

    python -m bench.frame_lines --images PHOTOS/train-select PHOTOS/heldout --resolutions 1024 2048 3840 \
        --out bench/results/frame-lines-cpu.json

    python -m bench.frame_lines --images PHOTOS/heldout --picture lxqt-themes__after-the-rain.jpg \
        --mask-dir bench/results/masks-heldout --resolutions 2048 --out bench/results/frame-lines-after-the-rain.jpg

Per photo, size and side: the mean of the token spans' median departures (levels, the channel farthest from 0),
the share of spans that agree with it, and whether the side holds a frame line. No hole: every position is judged.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from rethined_engine import Engine
from rethined_engine.config import ModelConfig
from rethined_engine.frame_lines import (
    FRAME_LINE_AGREEMENT,
    FRAME_LINE_BAND,
    FRAME_LINE_MIN_STEP,
    SIDES,
    frame_line_statistics,
    holds_line,
)
from rethined_engine.geometry import plan
from rethined_engine.train.data import list_images

from .env import run_environment
from .quality import fixed_mask, resized

LEVELS = 255.0
PICTURE_SIZE = (300, 600)   # px: the --picture crop, (height, width), shown without over with the setting


def side_scores(image: np.ndarray, span: int) -> list[dict]:
    """image (H, W, 3) uint8 -> per side: {"side", "departure" (levels: the mean of the spans' median departures, in
    the channel that departs most), "agreement" (that channel's share), "frame_line"} (`frame_lines`; no hole)."""
    mean, share = (x[0] for x in frame_line_statistics(np.moveaxis(image, -1, 0)[None],
                                                       np.zeros((1, *image.shape[:2]), bool), span))
    found = holds_line(mean, share)
    out = []
    for index, side in enumerate(SIDES):
        channel = int(np.argmax(np.abs(mean[index])))
        out.append({"side": side, "departure": round(float(mean[index, channel]) * LEVELS, 2),
                    "agreement": round(float(share[index, channel]), 3), "frame_line": bool(found[index])})
    return out


def before_and_after(photo: Path, mask_dir: Path, resolution: int, mask_family: str) -> np.ndarray:
    """The default's fill of `photo` (its saved `bench.quality` mask) without key_frame_lines over the same with
    it: (2 PICTURE_SIZE[0], PICTURE_SIZE[1], 3) uint8, cropped where the two differ most."""
    image, _ = resized(photo, resolution)
    mask = fixed_mask(mask_dir, photo, 0, image.shape[:2], 0, mask_family)
    without, with_lines = (Engine(key_frame_lines=on).inpaint(image, mask) for on in (False, True))
    difference = np.abs(without.astype(np.int16) - with_lines.astype(np.int16)).sum(-1).astype(np.float32)
    height, width = PICTURE_SIZE
    sums = difference.cumsum(0).cumsum(1)                   # the height x width window holding the most difference
    window = sums[height - 1:, width - 1:].copy()
    window[1:] -= sums[:-height, width - 1:]
    window[:, 1:] -= sums[height - 1:, :-width]
    window[1:, 1:] += sums[:-height, :-width]
    y, x = np.unravel_index(np.argmax(window), window.shape)
    return np.concatenate([without[y:y + height, x:x + width], with_lines[y:y + height, x:x + width]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, nargs="+", required=True, help="folders of photographs")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[1024, 2048, 3840], help="long sides, px")
    parser.add_argument("--out", type=Path, required=True, help="the scan's JSON, or with --picture its JPEG")
    parser.add_argument("--picture", default=None, metavar="PHOTO",
                        help="instead of the scan: the default without and with key_frame_lines on this photo of "
                             "--images (its saved masks in --mask-dir), at the first resolution")
    parser.add_argument("--mask-dir", type=Path, default=None, help="bench.quality's saved masks for --picture")
    parser.add_argument("--mask-family", default="strokes", help="the masks' family for --picture")
    args = parser.parse_args(argv)
    if args.picture is not None:
        if args.mask_dir is None:
            parser.error("--picture needs --mask-dir (bench.quality's saved masks, e.g. bench/results/masks-heldout)")
        picture = before_and_after(args.images[0] / args.picture, args.mask_dir, args.resolutions[0], args.mask_family)
        Image.fromarray(picture).save(args.out, quality=90)
        print(f"wrote {args.out}")
        return
    env = run_environment("cpu")        # before the scan: the commit of the code that runs
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
    result = env | {"thresholds": {"min_step_levels": FRAME_LINE_MIN_STEP * LEVELS,
                                   "agreement": FRAME_LINE_AGREEMENT, "band": FRAME_LINE_BAND},
                    "found": [list(f) for f in found], "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(found)} sides hold a frame line; wrote {args.out}")


if __name__ == "__main__":
    main()
