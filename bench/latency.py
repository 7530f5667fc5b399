"""End-to-end `Engine.inpaint` latency and peak memory per image size.

    python -m bench.latency --sizes 2048 4096 --repeats 3 [--device cpu] [--backends native torch opencv_telea]
    python -m bench.latency --device cuda --repeats 20 --warmup 3       # torch, torch_compile, triton
    python -m bench.latency --sizes 1920x1080 --batch 8 --backends native  # frames/s of 8-frame batches

Backends: any `Engine` backend (native, torch, triton, ...), `torch_compile` (the torch backend with its
model wrapped in `torch.compile`, default mode; compilation happens in the warm-up calls), `triton_eager`
(the triton backend without CUDA graphs: what the graph saves), any of these with `+noseam` (the seam blend,
on in the shipped weights file, turned off: what it costs) and then `+exclude` (every call also passes
`Engine.inpaint` an exclusion, the known pixels of the image's left third: what it costs) and, as a peer
on the same input, OpenCV's `cv2.inpaint` Telea with radius 3 (`opencv_telea`). On CUDA the image and
mask are GPU-resident uint8 (3, H, W) / (H, W) tensors before the clock starts, and the result stays
on the GPU. Input: the shipped sample photo resized to
size x size (or WIDTHxHEIGHT), uint8 HWC, a fixed free-form mask of 40 % coverage; --batch B stacks
B copies into one (B, H, W, 3) call (CUDA: (B, 3, H, W)) sharing the mask, and the row adds frames_per_s. Each size runs in a fresh subprocess so that peak memory is its own: on CPU, the rise of
peak resident memory (ru_maxrss) over the resident size before the first call (engine, weights and
input already loaded: `rss_before_mb`); on CUDA,
torch.cuda.max_memory_allocated. Results go to bench/results/latency-<device>.json, one row per backend
and size; each row and the file carry the device, the versions (python, torch, triton, numpy), the commit
(HEAD of the checkout the code runs from) and `dirty` (tracked files changed since it). --append adds rows
to the file's rows, never replacing one. --interleave times the backends of one size in one process, a call
of each in turn (the order reversed every round), so that a drift of the machine's speed reaches them all alike:
the way to compare settings whose difference is a few per cent (rows carry `interleaved` and the ratio of their
median to the first backend's, `ratio_to_first`; peak memory is not measured then). A backend that cannot be loaded (say native without the built
extension) is an error: its traceback is printed, the other rows are still measured and written, and the
run exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .env import RESULTS, run_environment

MASK_COVERAGE = (0.39, 0.41)
MASK_SEED = 0
OPENCV_TELEA = "opencv_telea"
OPENCV_RADIUS = 3
TORCH_COMPILE = "torch_compile"
TRITON_EAGER = "triton_eager"   # the triton backend launching kernel by kernel (no CUDA graph)
NO_SEAM_SUFFIX = "+noseam"        # rows named "+seam" in older results: the blend on when the file had it off
NO_SEAM_SETTINGS = {"seam_sigma": 0.0}
EXCLUDE_SUFFIX = "+exclude"       # each call also passes an exclusion: the known pixels of the image's left third
EXCLUDED_SHARE = 1 / 3            # of the width


class _Excluding:
    """An engine whose every call passes `Engine.inpaint` an exclusion: the known pixels of the image's left
    EXCLUDED_SHARE (what the exclusion costs)."""

    def __init__(self, engine):
        self.engine = engine

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def inpaint(self, img, mask):
        exclude = mask.clone() if hasattr(mask, "clone") else mask.copy()
        width = mask.shape[-1]
        exclude[..., : round(width * EXCLUDED_SHARE)] = True
        exclude[..., round(width * EXCLUDED_SHARE):] = False
        return self.engine.inpaint(img, mask, exclude & ~mask)


class _OpenCVTelea:
    """The peer: cv2.inpaint Telea, radius 3, on the same uint8 image and mask."""

    def __init__(self, cv2):
        self.cv2 = cv2

    def inpaint(self, img, mask):
        return self.cv2.inpaint(img, mask.astype(np.uint8) * 255, OPENCV_RADIUS, self.cv2.INPAINT_TELEA)


def bench_input(size: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark's input: the shipped sample photo resized to size x size (or size high, width wide),
    (H, W, 3) uint8, and a fixed free-form mask of 40 % coverage, (H, W) bool."""
    from PIL import Image

    from rethined_engine.cli import SAMPLE_IMAGE
    from rethined_engine.train.masks import random_mask

    height, width = size, width or size
    img = np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((width, height), Image.BICUBIC))
    return img, random_mask(height, width, np.random.default_rng(MASK_SEED), MASK_COVERAGE)


def frame_size(text: str) -> tuple[int, int]:
    """"2048" -> (2048, 2048); "1920x1080" (WIDTHxHEIGHT) -> (1080, 1920): (height, width) in px."""
    width, _, height = text.partition("x")
    try:
        size = (int(height or width), int(width))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a side or WIDTHxHEIGHT in px, got {text!r}") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return size


STYLE_SEPARATOR = "@"   # BACKEND@STYLE: Engine(style=STYLE), e.g. native@smooth against the default;
                        # BACKEND@KEY=VALUE,...: Engine(KEY=VALUE, ...), e.g. native@copy_repeat_radius=0


def make_engine(backend: str, device: str):
    """An `Engine` for a benchmark backend name: any Engine backend, TORCH_COMPILE or TRITON_EAGER, each
    optionally with NO_SEAM_SUFFIX, then EXCLUDE_SUFFIX (calls that pass an exclusion, `_Excluding`), and then
    STYLE_SEPARATOR + a style name (e.g. native@smooth) or comma-separated KEY=VALUE inference settings (e.g.
    native@copy_repeat_radius=0)."""
    import torch

    from rethined_engine import Engine

    backend, _, style = backend.partition(STYLE_SEPARATOR)
    if backend.endswith(EXCLUDE_SUFFIX):
        return _Excluding(make_engine(backend.removesuffix(EXCLUDE_SUFFIX) + STYLE_SEPARATOR * bool(style) + style,
                                      device))
    settings = dict(NO_SEAM_SETTINGS) if backend.endswith(NO_SEAM_SUFFIX) else {}
    if "=" in style:
        from .quality import setting_value

        for item in style.split(","):
            key, equals, value = item.partition("=")
            if not (key and equals):
                raise ValueError(f"backend: expected NAME@KEY=VALUE,..., got {item!r} in {style!r}")
            settings[key] = setting_value(value)
    elif style:
        settings["style"] = style
    backend = backend.removesuffix(NO_SEAM_SUFFIX)
    if backend == TORCH_COMPILE:
        engine = Engine(device=device, backend="torch", **settings)
        engine._impl.model = torch.compile(engine._impl.model)
        return engine
    if backend == TRITON_EAGER:
        return Engine(device=device, backend="triton", cuda_graphs=False, **settings)
    return Engine(device=device, backend=backend, **settings)


ENV_KEYS = ("device", "commit", "dirty", "python", "torch", "triton", "numpy", "rethined_engine", "threads")


def earlier_rows(out: Path) -> list[dict]:
    """The rows already in `out` (none if it does not exist), each with the file's device, versions and
    commit where the row has none of its own (files written before rows carried them)."""
    if not out.is_file():
        return []
    try:
        saved = json.loads(out.read_text())
        rows = saved["rows"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: --append: {out} is not a latency result file (a JSON object with 'rows'): "
                         f"{exc!r}; pass another --out, or run without --append to start a new file") from exc
    file_env = {key: saved[key] for key in ENV_KEYS if key in saved}
    return [file_env | row for row in rows]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def timed_call(engine, img, mask, cuda: bool) -> float:
    """ms of one engine.inpaint(img, mask); on CUDA from a synchronised start to a synchronised end."""
    import torch

    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    engine.inpaint(img, mask)
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def measure_one(size: int, backend: str, device: str, repeats: int, warmup: int, width: int | None = None,
                batch: int = 1) -> dict:
    """Runs in the child process: time `repeats` calls after `warmup` calls on `batch` frames of size x size
    (or size high, width wide) per call."""
    import torch

    if backend == OPENCV_TELEA:
        import cv2
        engine = _OpenCVTelea(cv2)
    else:
        engine = make_engine(backend, device)
    if batch > 1 and backend == OPENCV_TELEA:
        raise ValueError(f"batch: {OPENCV_TELEA} takes one image per call, got batch {batch}")
    img, mask = bench_input(size, width)
    if batch > 1:
        img = np.ascontiguousarray(np.broadcast_to(img, (batch, *img.shape)))
    cuda = backend != OPENCV_TELEA and engine.device.type == "cuda"
    if cuda:
        img_t = torch.from_numpy(img).to(device).movedim(-1, -3).contiguous()
        img, mask = img_t, torch.from_numpy(mask).to(device)
        torch.cuda.reset_peak_memory_stats()
    base_rss = _rss_mb()
    times = []
    for i in range(warmup + repeats):
        elapsed = timed_call(engine, img, mask, cuda)
        if i >= warmup:
            times.append(elapsed)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss)
    return {"backend": backend, "engine_backend": getattr(engine, "backend", backend),   # the one that ran
            "size": size if width in (None, size) else f"{width}x{size}", "batch": batch,
            "frames_per_s": batch * 1e3 / float(np.median(times)), "mask_frac": float(mask.float().mean() if cuda else mask.mean()),
            "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "peak_mem_mb": float(peak), "rss_before_mb": None if cuda else base_rss, "repeats": repeats, "times_ms": times}


def measure_interleaved(size: int, backends: list[str], device: str, repeats: int, warmup: int,
                        width: int | None = None, batch: int = 1) -> list[dict]:
    """Runs in the child process: `warmup` calls of each backend, then `repeats` rounds of one call of each,
    in the listed order on even rounds and reversed on odd ones. One row per backend, without peak memory."""
    import torch

    engines = [_OpenCVTelea(__import__("cv2")) if name == OPENCV_TELEA else make_engine(name, device) for name in backends]
    img, mask = bench_input(size, width)
    if batch > 1:
        img = np.ascontiguousarray(np.broadcast_to(img, (batch, *img.shape)))
    cuda = any(getattr(e, "device", None) is not None and e.device.type == "cuda" for e in engines)
    if cuda:
        img, mask = torch.from_numpy(img).to(device).movedim(-1, -3).contiguous(), torch.from_numpy(mask).to(device)
    times = [[] for _ in engines]
    for engine in engines:
        for _ in range(warmup):
            timed_call(engine, img, mask, cuda)
    for round_ in range(repeats):
        order = range(len(engines)) if round_ % 2 == 0 else reversed(range(len(engines)))
        for i in order:
            times[i].append(timed_call(engines[i], img, mask, cuda))
    first = float(np.median(times[0]))
    return [{"backend": name, "engine_backend": getattr(engine, "backend", name),
             "size": size if width in (None, size) else f"{width}x{size}", "batch": batch,
             "frames_per_s": batch * 1e3 / float(np.median(t)), "mask_frac": float(mask.float().mean() if cuda else mask.mean()),
             "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "peak_mem_mb": None,
             "rss_before_mb": None, "repeats": repeats, "times_ms": t, "interleaved": True,
             "ratio_to_first": float(np.median(t)) / first}
            for name, engine, t in zip(backends, engines, times)]


def print_row(row: dict, size, batch: int) -> None:
    peak = "" if row["peak_mem_mb"] is None else f"  peak +{row['peak_mem_mb']:.0f} MiB"
    ratio = f"  {row['ratio_to_first']:.3f} x first" if row.get("interleaved") else ""
    print(f"{row['backend']:13s} {size!s:>9s} x{batch}  median {row['median_ms']:9.2f} ms  "
          f"p90 {row['p90_ms']:9.2f} ms  {row['frames_per_s']:8.1f} frames/s{peak}{ratio}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=frame_size, nargs="+", default=[(s, s) for s in (1024, 2048, 4096, 8192)],
                        help="sides (square) or WIDTHxHEIGHT, px")
    parser.add_argument("--batch", type=int, default=1, help="frames per call (one (B, H, W, 3) batch)")
    parser.add_argument("--backends", nargs="+", default=None,
                        help=f"Engine backends, {TORCH_COMPILE} and/or {OPENCV_TELEA} (default: native torch {OPENCV_TELEA} "
                             f"on the CPU; torch {TORCH_COMPILE} triton on CUDA); NAME{STYLE_SEPARATOR}STYLE runs "
                             f"Engine(style=STYLE), e.g. native{STYLE_SEPARATOR}smooth; NAME{STYLE_SEPARATOR}KEY=VALUE,... "
                             f"runs Engine(KEY=VALUE, ...), e.g. native{STYLE_SEPARATOR}copy_repeat_radius=0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/latency-<cpu or GPU name>.json")
    parser.add_argument("--append", action="store_true",
                        help="add this run's rows to those already in the output file (none is replaced)")
    parser.add_argument("--interleave", action="store_true",
                        help="time the backends of a size in one process, alternating calls (ratios to the first)")
    parser.add_argument("--child", type=frame_size, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backends is None:
        args.backends = ["native", "torch", OPENCV_TELEA] if args.device == "cpu" else ["torch", TORCH_COMPILE, "triton"]
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise SystemExit(f"error: --device {args.device}: no CUDA device here")
    if args.child is not None:
        height, width = args.child
        if args.interleave:
            print(json.dumps(measure_interleaved(height, args.backends, args.device, args.repeats, args.warmup, width,
                                                 args.batch)))
        else:
            print(json.dumps(measure_one(height, args.backends[0], args.device, args.repeats, args.warmup, width,
                                         args.batch)))
        return
    env = run_environment(args.device)     # before any measuring: exits if the commit is unknown
    tag = "cpu" if args.device == "cpu" else env["device"].replace(" ", "_")
    out = args.out or RESULTS / f"latency-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = earlier_rows(out) if args.append else []
    failed = []
    for height, width in args.sizes:
        size = height if height == width else f"{width}x{height}"
        groups = [args.backends] if args.interleave else [[backend] for backend in args.backends]
        for group in groups:
            cmd = [sys.executable, "-m", __spec__.name, "--child", f"{width}x{height}", "--backends", *group,
                   "--device", args.device, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                   "--batch", str(args.batch)] + (["--interleave"] if args.interleave else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{' '.join(group)} {size}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                failed.extend(f"{backend} at {size}" for backend in group)
                continue
            measured_rows = json.loads(proc.stdout.strip().splitlines()[-1])
            for row in measured_rows if args.interleave else [measured_rows]:
                row = row | env   # rows of --append runs differ
                rows.append(row)
                print_row(row, size, args.batch)
            out.write_text(json.dumps(env | {"rows": rows}, indent=1) + "\n")   # after every row: a run cut short keeps its rows
    measured = len(args.sizes) * len(args.backends) - len(failed)
    if measured:
        print(f"wrote {out}")
    if failed:
        kept = f"; the {measured} measured rows are in {out}" if measured else f"; {out} was not written"
        raise SystemExit(f"error: {len(failed)} of {len(failed) + measured} measurements failed "
                         f"({', '.join(failed)}): see the errors above{kept}")


if __name__ == "__main__":
    main()
