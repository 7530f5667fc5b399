"""`rethined batch IMAGES MASKS -o OUT [--exclude EXCLUDES] [--ray [ADDRESS]] [--workers N] [--gpus-per-worker G]`:
inpaint a folder of images, with a progress line on stderr and a summary (done / skipped / failed, images per
second)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..image_files import JPEG_QUALITY
from .dataset import inpaint_dataset
from .manifest import OUTPUT_SUFFIXES, build_manifest
from .stages import ERROR, OK, SKIPPED, BatchConfig

LOCAL_RAY = ""   # --ray given without an address: connect to RAY_ADDRESS's cluster, or start a local Ray
FAILURES_LISTED = 20   # failed rows named in the summary; the rest are counted


def add_batch_parser(sub) -> None:
    batch = sub.add_parser("batch", help="inpaint a folder of images (masks paired by file stem, or one mask "
                           "for all), locally or on a Ray cluster (docs/scale-out.md)")
    batch.add_argument("images", type=Path, help="folder of images")
    batch.add_argument("masks", type=Path, help="folder of masks named like the images (any image suffix), "
                       "or one mask file for every image; nonzero pixels are filled")
    batch.add_argument("-o", "--output", type=Path, required=True, help="output folder (file names: image stems)")
    batch.add_argument("--exclude", type=Path, default=None, metavar="EXCLUDES",
                       help="folder of masks named like the images, or one mask file for every image: nonzero pixels "
                       "are never copied into the hole (images without one exclude nothing)")
    batch.add_argument("--format", choices=[s.lstrip(".") for s in OUTPUT_SUFFIXES], default="png",
                       help="output format (default png, lossless)")
    batch.add_argument("--jpeg-quality", type=int, default=JPEG_QUALITY, help="quality of jpg outputs (default %(default)s)")
    batch.add_argument("--overwrite", action="store_true", help="redo images whose output exists (default: skip them)")
    batch.add_argument("--dilate", type=int, default=0, metavar="PX", help="grow every mask by this many pixels in "
                       "every direction (default 0); not the exclusions")
    batch.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                       help="run on Ray Data: the cluster at ADDRESS (e.g. ray://head:10001 or auto), or without "
                       "ADDRESS the one of RAY_ADDRESS, else a local Ray")
    batch.add_argument("--workers", type=int, default=1, help="--ray: engine actors (default 1)")
    batch.add_argument("--gpus-per-worker", type=float, default=None,
                       help="--ray: GPUs per engine actor (default 1 where the cluster has GPUs, else 0)")
    batch.add_argument("--cpus-per-worker", type=float, default=None, help="--ray: CPUs per engine actor (default 1)")
    batch.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda where available)")
    batch.add_argument("--weights", type=Path, default=None, help="a .safetensors file (default: shipped weights)")


def connect_ray(address: str):
    """The `ray` module, this process connected to the cluster at address (LOCAL_RAY: RAY_ADDRESS's, or a
    local Ray) unless it already is; SystemExit with the install command where Ray is missing."""
    try:
        import ray
    except ImportError:
        raise SystemExit("error: --ray needs Ray Data: pip install 'rethined_engine[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address or None)
    return ray


def _config(args: argparse.Namespace):
    from ..engine_options import engine_kwargs

    options = {"skip_existing": not args.overwrite, "engine": engine_kwargs(args), "jpeg_quality": args.jpeg_quality,
               "dilate": args.dilate}
    if args.ray is None:
        if args.workers != 1 or args.gpus_per_worker is not None or args.cpus_per_worker is not None:
            raise SystemExit("error: --workers, --gpus-per-worker and --cpus-per-worker apply with --ray only")
        return BatchConfig(**options)
    ray = connect_ray(args.ray)
    gpus = args.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    if args.cpus_per_worker is not None:
        options["cpus_per_worker"] = args.cpus_per_worker
    return BatchConfig(**options, workers=args.workers, gpus_per_worker=gpus)


def _counts(counts: dict[str, int], seconds: float) -> str:
    """counts: status -> rows; seconds: wall time since the command started (Ray start, engine loads included)."""
    return (f"done {counts[OK]}, skipped {counts[SKIPPED]}, failed {counts[ERROR]}, "
            f"{counts[OK] / max(seconds, 1e-9):.2f} images/s")


def run_batch_command(args: argparse.Namespace) -> int:
    """Exit status 0 when no row failed, 1 otherwise."""
    t0 = time.perf_counter()
    try:
        manifest = build_manifest(args.images, args.masks, args.output, "." + args.format, args.exclude)
        config = _config(args)
    except ValueError as exc:   # a folder that is not one, shared stems, a setting out of range
        raise SystemExit(f"error: {exc}")
    for mask in manifest.unmatched_masks:
        print(f"warning: mask without an image of its stem: {mask}", file=sys.stderr)
    for exclude in manifest.unmatched_excludes:
        print(f"warning: exclusion without an image of its stem: {exclude}", file=sys.stderr)
    counts = {OK: 0, SKIPPED: 0, ERROR: 0}
    failures = []
    total = len(manifest.rows)
    for result in inpaint_dataset(manifest, config, use_ray=args.ray is not None):
        counts[result["status"]] += 1
        if result["status"] == ERROR:
            failures.append(f"{result['image']}: {result['error']}")
        print(f"\r[{sum(counts.values())}/{total}] {_counts(counts, time.perf_counter() - t0)}", end="",
              file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for line in failures[:FAILURES_LISTED]:
        print(f"failed: {line}")
    if len(failures) > FAILURES_LISTED:
        print(f"failed: ... and {len(failures) - FAILURES_LISTED} more")
    seconds = time.perf_counter() - t0
    print(f"{total} images in {seconds:.1f}s: {_counts(counts, seconds)}; "
          f"{len(manifest.unmatched_masks)} masks without an image")
    return 1 if failures else 0
