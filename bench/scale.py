"""Images per second of `rethined_engine.distributed.inpaint_dataset`: the local loop against Ray Data with 1 and 2
engine actors (--workers), on the same files, at each --sizes.

    python -m bench.scale [--sizes 1024x1024 2048x2048] [--images 10] [--workers 1 2] [--device cpu]
    python -m bench.scale --device cuda --gpus-per-worker 1 --workers 1      # on a GPU machine

Input: the first --images photos of --photos (default photos/heldout) resized to each size, saved as JPEG
(quality 90), each with its own fixed-seed random mask (train.masks.random_mask, 30-50 % coverage); outputs PNG. Each run writes
into a fresh folder (nothing skipped). Local: wall time of the whole loop, Engine loading included. Ray:
`ray.init(num_cpus=os.cpu_count())` once, timed apart (`ray_init_seconds`), then per run the wall time with
actor start and Engine loading included. Every run also gives the time to the first result and the rate
after it (start-up left out). Ray's engine actors reserve --cpus-per-worker CPUs (and --gpus-per-worker GPUs)
each, its decode/encode tasks --cpus-per-io-task. Ray sets OMP_NUM_THREADS to an actor's whole CPUs (at
least 1) unless it is set; the local loop uses torch's default threads unless OMP_NUM_THREADS is set
(`threads` and `omp_num_threads_env` in the file). Writes bench/results/scale-<device>.json (--out:
elsewhere) with bench.env.run_environment and the load average before each run (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .env import RESULTS, run_environment

INPUT_JPEG_QUALITY = 90
MASK_SEED = 0
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def write_inputs(photos: Path, folder: Path, count: int, height: int, width: int) -> tuple[Path, Path]:
    """The first count photos of the folder photos (sorted by name) resized to height x width, saved as JPEG
    in folder/images; a fixed-seed random mask each in folder/masks."""
    from PIL import Image

    from rethined_engine.train.masks import random_mask

    files = sorted(f for f in photos.iterdir() if f.suffix.lower() in PHOTO_SUFFIXES)[:count]
    if len(files) < count:
        raise ValueError(f"--photos must hold at least --images={count} photos, {photos} has {len(files)}")
    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(MASK_SEED)
    for index, file in enumerate(files):
        photo = Image.open(file).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        photo.save(images / f"photo{index:03d}.jpg", quality=INPUT_JPEG_QUALITY)
        hole = random_mask(height, width, rng).astype(np.uint8) * 255
        Image.fromarray(hole).save(masks / f"photo{index:03d}.png")
    return images, masks


def timed_run(images: Path, masks: Path, out: Path, config, use_ray: bool) -> dict:
    from rethined_engine.distributed import build_manifest, inpaint_dataset

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    statuses, finished = [], []
    for row in inpaint_dataset(build_manifest(images, masks, out), config, use_ray):
        statuses.append(row["status"])
        finished.append(time.perf_counter() - t0)
    done = statuses.count("ok")
    return {"images": len(statuses), "done": done, "seconds": round(finished[-1], 3),
            "images_per_s": round(done / finished[-1], 3), "first_result_s": round(finished[0], 3),
            "after_first_images_per_s": round((len(finished) - 1) / (finished[-1] - finished[0]), 3),
            "load_average_1min_before": round(load, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["1024x1024", "2048x2048"], help="HxW of the images, per run")
    parser.add_argument("--photos", type=Path, default=Path("photos/heldout"), help="folder of input photos")
    parser.add_argument("--images", type=int, default=10, help="images per size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray engine actors, one run each")
    parser.add_argument("--cpus-per-worker", type=float, default=0.75)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--cpus-per-io-task", type=float, default=0.25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    env = run_environment(args.device)
    import ray

    from rethined_engine.distributed import BatchConfig

    engine = {"device": args.device}
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False)
    ray_start = time.perf_counter() - t0
    ray.data.DataContext.get_current().enable_progress_bars = False
    runs = []
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            images, masks = write_inputs(args.photos, folder, args.images, height, width)
            local = timed_run(images, masks, folder / "local", BatchConfig(engine=engine), use_ray=False)
            runs.append({"size": [height, width], "run": "local loop", "workers": 0} | local)
            print(runs[-1], flush=True)
            for workers in args.workers:
                config = BatchConfig(engine=engine, workers=workers, cpus_per_worker=args.cpus_per_worker,
                                     gpus_per_worker=args.gpus_per_worker, cpus_per_io_task=args.cpus_per_io_task)
                runs.append({"size": [height, width], "run": "ray data", "workers": workers}
                            | timed_run(images, masks, folder / f"ray{workers}", config, use_ray=True))
                print(runs[-1], flush=True)
    ray.shutdown()
    result = env | {"ray": ray.__version__, "cpu_count": os.cpu_count(), "ray_init_seconds": round(ray_start, 3),
                    "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
                    "cpus_per_worker": args.cpus_per_worker, "gpus_per_worker": args.gpus_per_worker,
                    "cpus_per_io_task": args.cpus_per_io_task,
                    "input": f"first {args.images} photos of {args.photos} resized, JPEG q{INPUT_JPEG_QUALITY}, "
                             "random masks 30-50 % (train.masks.random_mask, seed 0), PNG out",
                    "runs": runs}
    out = args.out or RESULTS / f"scale-{args.device}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
