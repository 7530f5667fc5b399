"""How near the video path's flow estimators come to known flows, on synthetic motions over real photos.

    python -m bench.flow_accuracy --photos PHOTOS/train [--limit 8] [--noise 0 2] [--device cuda] [--out OUT.json]

Each photo (grey, long side `WIDTH` px, about the video path's working size) is moved by three known flows, each
seeded per photo: a camera `shift` (up to +-25 x +-15 px), a camera `zoom-rotate` (up to +-6 % and +-0.05 rad about
the centre, plus a shift of (6, -4) px), and an `object`: an ellipse of a sixth of the height moving up to +-20 x
+-12 px over a background moving (3, 1) px. The source is the photo warped by the flow (`video.flow.warp_back`,
so source(x) = photo(x + flow(x))), and both images get Gaussian sensor noise of each `--noise` sigma (intensity
levels, rounded to 8 bits). Each estimator's flow from source to photo is compared with the truth over the frame
less a `BORDER` px margin: mean and median end-point error (px) and the share of pixels more than
`OUTLIER_PX` off, averaged over the photos, per motion and noise level; each row names the commit it ran at
(`--merge` keeps the saved rows of other commits, so that one file holds an estimator before and after a change).

Estimators: OpenCV's DIS (`video.flow.dis`, the host path's, on the CPU) and `TorchDIS` (`video.dis_torch`, the
device path's, on `--device`: on CUDA with its Triton kernels), both at the `fast` preset. The JSON holds the run's
environment (`bench.env`) and the rows; the default file is named by the device.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from rethined_engine.video.dis_torch import TorchDIS
from rethined_engine.video.flow import dis, warp_back

from .env import run_environment

WIDTH = 480                 # px: the photos' long side, about the video path's flow working size
BORDER = 16                 # px left out at the frame's edges, which see past the frame
OUTLIER_PX = 3.0            # px: an end-point error above this counts as an outlier
MOTIONS = ("shift", "zoom-rotate", "object")
PRESET = "fast"


def known_flow(motion: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A flow (height, width, 2) float32 px of the named motion (see the module's docstring)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if motion == "shift":
        return np.stack([np.full_like(xs, rng.uniform(-25, 25)), np.full_like(ys, rng.uniform(-15, 15))], -1)
    if motion == "zoom-rotate":
        scale, angle = 1 + rng.uniform(-0.06, 0.06), rng.uniform(-0.05, 0.05)
        x, y = xs - width / 2, ys - height / 2
        return np.stack([scale * (np.cos(angle) * x - np.sin(angle) * y) - x + 6,
                         scale * (np.sin(angle) * x + np.cos(angle) * y) - y - 4], -1).astype(np.float32)
    if motion == "object":
        flow = np.zeros((height, width, 2), np.float32)
        flow[...] = (3.0, 1.0)
        cy, cx = rng.integers(height // 4, 3 * height // 4), rng.integers(width // 4, 3 * width // 4)
        inside = (ys - cy) ** 2 / (height / 6) ** 2 + (xs - cx) ** 2 / (width / 8) ** 2 < 1
        flow[inside] = (rng.uniform(-20, 20), rng.uniform(-12, 12))
        return flow
    raise ValueError(f"motion: expected one of {MOTIONS}, got {motion!r}")


def load_grey(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"photos: cannot read {path}")
    scale = WIDTH / max(image.shape)
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def errors(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Mean and median end-point error (px) and the outliers' share, inside the border."""
    epe = np.linalg.norm(estimate - truth, axis=-1)[BORDER:-BORDER, BORDER:-BORDER]
    return float(epe.mean()), float(np.median(epe)), float((epe > OUTLIER_PX).mean())


def measure(photos: list[Path], noises: list[float], device: str = "cpu") -> list[dict]:
    estimators = {"opencv_dis": dis(PRESET), "torch_dis": TorchDIS(PRESET, device)}
    scores: dict[tuple, list] = {}
    for index, path in enumerate(photos):
        photo = load_grey(path)
        for motion in MOTIONS:
            for noise in noises:
                rng = np.random.default_rng([index, MOTIONS.index(motion), int(noise * 10)])
                truth = known_flow(motion, *photo.shape, rng)

                def noisy(image: np.ndarray) -> np.ndarray:
                    return np.clip(image + rng.normal(0, noise, image.shape), 0, 255).round().astype(np.uint8)

                source, target = noisy(warp_back(photo, truth)), noisy(photo)
                for name, estimator in estimators.items():
                    estimator.calc(source, target, None)        # warm: CUDA's first call compiles the kernels
                    start = time.perf_counter()
                    flow = estimator.calc(source, target, None)
                    seconds = time.perf_counter() - start
                    scores.setdefault((motion, noise, name), []).append((*errors(flow, truth), seconds))
    rows = []
    for (motion, noise, name), values in scores.items():
        mean, median, outliers, seconds = np.mean(values, axis=0)
        rows.append({"motion": motion, "noise": noise, "estimator": name, "photos": len(values),
                     "mean_epe": round(float(mean), 4), "median_epe": round(float(median), 4),
                     "outliers": round(float(outliers), 4),
                     "seconds": round(float(np.median([v[3] for v in values])), 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=8, help="the first N photos, sorted by name")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 2.0], help="sensor noise sigmas (levels)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="TorchDIS's torch device (default: cpu)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/results/flow-accuracy-<cpu or GPU name>.json")
    parser.add_argument("--merge", action="store_true", help="keep the saved rows of other commits")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[:args.limit]
    if not photos:
        raise SystemExit(f"--photos: no .png or .jpg in {args.photos}")
    environment = run_environment(args.device)
    if args.out is None:
        name = "cpu" if args.device == "cpu" else environment["device"].replace(" ", "_")
        args.out = Path(f"bench/results/flow-accuracy-{name}.json")
    rows = [{**row, "commit": environment["commit"], "dirty": environment["dirty"]}
            for row in measure(photos, args.noise, args.device)]
    if args.merge and args.out.exists():
        ours = {row_key(row) for row in rows}
        rows = [row for row in json.loads(args.out.read_text())["rows"] if row_key(row) not in ours] + rows
    result = {**environment, "preset": PRESET, "width": WIDTH, "photos": [p.name for p in photos], "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for row in rows:
        print(f"{row['motion']:12s} noise {row['noise']:3.1f} {row['estimator']:10s} {row['commit'][:7]} "
              f"mean {row['mean_epe']:.3f} median {row['median_epe']:.3f} >{OUTLIER_PX:.0f} px {row['outliers']:.3f} "
              f"{row['seconds'] * 1e3:.0f} ms")


def row_key(row: dict) -> tuple:
    """Rows of one motion, noise, estimator and commit replace each other on --merge."""
    return row["motion"], row["noise"], row["estimator"], row["commit"]


if __name__ == "__main__":
    main()
