"""Is a fill's fine detail the truth's detail? Fine-band correlation with the ground truth by distance
from the hole's border.

    python -m bench.detail_correlation --images PHOTOS/heldout --resolution 2048 [--methods ours opencv_ns_r3 ...]

`bench.quality`'s sharpness counts high-frequency energy whether or not it matches the truth: texture
copied from elsewhere, streaks, seams and noise all score. Here, for each method and each band of
distance d (px, Euclidean) from the nearest known pixel, over the hole pixels of every photo pooled:
rho, the correlation of the fill's finest band (luma minus its 3x3 binomial blur, `geometry.FINE_TAPS`)
with the truth's, and energy, the fill's fine-band energy over the truth's (the band's sharpness). Detail
with rho ~ 0 is invented: it costs SSIM in proportion to its energy (SSIM's structure term gains only
from covariance), so a fill can trade sharpness for SSIM but not win both unless rho > 0.

Same photos, Lanczos resizing, saved masks (OUT/masks-<dataset>/, drawn on first use) and method names
as `bench.quality`. Writes OUT/detail-correlation-<dataset>-<resolution>.json (with where it ran: device,
commit, `dirty`, versions, threads; `bench.env.run_environment`) and prints a table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from rethined_engine.geometry import FINE_TAPS
from rethined_engine.train.data import list_images

from .env import RESULTS, run_environment
from .quality import build_methods, fixed_mask, resized

DISTANCE_BINS = ((1, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, None))   # px from the nearest known pixel
DEFAULT_METHODS = ("ours", "ours_no_hf", "opencv_telea_r3", "opencv_ns_r3")


def fine_band(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> luma minus its 3x3 binomial blur (reflected at the edges), (H, W) float64 in [0, 1] units."""
    luma = image.astype(np.float64).mean(axis=-1) / 255.0
    taps = np.asarray(FINE_TAPS, dtype=np.float64)
    return luma - cv2.sepFilter2D(luma, -1, taps, taps, borderType=cv2.BORDER_REFLECT_101)


def border_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool hole mask -> each hole pixel's Euclidean distance (px) to the nearest known pixel; 0 on known."""
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def band_sums(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per distance bin, the sums (fine_pred . fine_target, fine_pred^2, fine_target^2, pixels), (bins, 4)."""
    fp, ft, dist = fine_band(pred), fine_band(target), border_distance(mask)
    sums = np.zeros((len(DISTANCE_BINS), 4))
    for i, (lo, hi) in enumerate(DISTANCE_BINS):
        sel = mask & (dist > lo - 0.5) & ((dist < hi + 0.5) if hi is not None else True)
        a, b = fp[sel], ft[sel]
        sums[i] = (a @ b, a @ a, b @ b, sel.sum())
    return sums


def correlation_rows(sums: np.ndarray) -> list[dict]:
    """Pooled sums (bins, 4) -> one row per bin: {"distance", "pixels", "rho", "energy"} (None without pixels)."""
    rows = []
    for (lo, hi), (cross, pred, target, pixels) in zip(DISTANCE_BINS, sums):
        ok = pred > 0 and target > 0
        rows.append({"distance": f"{lo}-{hi}" if hi is not None else f">={lo}", "pixels": int(pixels),
                     "rho": float(cross / np.sqrt(pred * target)) if ok else None,
                     "energy": float(pred / target) if target > 0 else None})
    return rows


def run(images: Path, resolution: int, seed: int, out: Path, methods: dict, limit: int | None = None,
        device: str = "cpu") -> dict:
    env = run_environment(device)     # before any measuring: exits if the commit is unknown
    dataset = images.name
    photos = list_images(images)[:limit]
    sums = {name: np.zeros((len(DISTANCE_BINS), 4)) for name in methods}
    for index, photo in enumerate(photos):
        image, _ = resized(photo, resolution)
        mask = fixed_mask(out / f"masks-{dataset}", photo, index, image.shape[:2], seed)
        for name, method in methods.items():
            sums[name] += band_sums(method(image, mask, resolution), image, mask)
        print(f"{photo.name[:40]:40s} {resolution:5d} done", flush=True)
    result = env | {"dataset": dataset, "seed": seed, "resolution": resolution, "images": [p.name for p in photos],
                    "methods": {name: correlation_rows(s) for name, s in sums.items()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"detail-correlation-{dataset}-{resolution}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def markdown_table(result: dict) -> str:
    """One row per method: rho / energy in each distance bin."""
    bins = [row["distance"] for row in next(iter(result["methods"].values()))]
    lines = [f"| method (rho / energy), d in px | {' | '.join(bins)} |", "|---|" + "---:|" * len(bins)]
    for name, rows in result["methods"].items():
        cells = ["-" if r["rho"] is None else f"{r['rho']:+.3f} / {r['energy']:.2f}" for r in rows]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of photographs (the ground truth)")
    parser.add_argument("--resolution", type=int, default=2048, help="long side, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help="bench.quality method names")
    parser.add_argument("--ours", nargs="+", default=[], metavar="NAME=key:value,...",
                        help="also ours with these inference settings, as method ours_NAME (as in bench.quality)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N photos only")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.resolution < 64:
        parser.error(f"--resolution must be >= 64 px, got {args.resolution}")
    with torch.inference_mode():
        result = run(args.images, args.resolution, args.seed, args.out,
                     build_methods(args.methods, args.device, args.ours), args.limit, args.device)
    print("\n" + markdown_table(result))


if __name__ == "__main__":
    main()
