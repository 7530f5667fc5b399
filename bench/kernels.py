"""Kernel microbenchmarks on CUDA (`triton.testing.do_bench`, median ms): each Triton kernel vs its torch
reference at equal shapes, as GB/s and as a fraction of the device's measured copy bandwidth.

    python -m bench.kernels [--sizes 2048 4096 8192]

Appends to bench/results/kernels-<gpu>.json. Kernels so far: HR upscale (kernels/hr_upscale.py).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from .env import RESULTS, device_name, git_commit

MASK_COVERAGE = 0.4
TOPK = 4


def measured_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB: bytes read + written over the median time."""
    from triton.testing import do_bench

    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * src.numel() / ms / 1e6


def hr_upscale_case(size: int, rng: np.random.Generator):
    from rethined_engine.config import ModelConfig
    from rethined_engine.geometry import plan
    from rethined_engine.train.masks import random_mask

    geom = plan(size, size, ModelConfig())
    image = torch.from_numpy(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).cuda()
    mask = torch.from_numpy(random_mask(size, size, rng, (MASK_COVERAGE - 0.01, MASK_COVERAGE + 0.01))).cuda()
    tokens = geom.grid_h * geom.grid_w
    keys = torch.from_numpy(np.flatnonzero(geom.key_inside_grid().reshape(-1))).cuda()
    index = keys[torch.randint(0, keys.numel(), (tokens, TOPK), device="cuda")].int()
    weight = torch.rand(tokens, TOPK, device="cuda")
    weight /= weight.sum(-1, keepdim=True)
    lr = torch.rand(1, 3, *geom.lr_size, device="cuda")
    return geom, image, mask, lr, weight, index


def bench_hr_upscale(size: int, bandwidth: float, rng) -> list[dict]:
    from triton.testing import do_bench

    from rethined_engine.kernels.hr_upscale import hr_upscale, hr_upscale_reference

    geom, image, mask, lr, weight, index = hr_upscale_case(size, rng)
    hole = float(mask.float().mean())
    # uint8 image read + mask read + uint8 write, plus K source pixels per hole pixel (LR reads are cached)
    moved = size * size * (3 + 1 + 3) + hole * size * size * 3 * TOPK
    rows = []
    for name, fn in (("triton", hr_upscale), ("torch_reference", hr_upscale_reference)):
        q = do_bench(lambda: fn(image, mask, lr, weight, index, geom), quantiles=[0.5, 0.2, 0.8])
        rows.append({"kernel": "hr_upscale", "impl": name, "size": size, "median_ms": q[0], "p20_ms": q[1],
                     "p80_ms": q[2], "gb_s": moved / q[0] / 1e6, "fraction_of_copy_bw": moved / q[0] / 1e6 / bandwidth})
        print(f"hr_upscale {name:16s} {size:5d}^2  {q[0]:8.3f} ms  {rows[-1]['gb_s']:7.1f} GB/s "
              f"({100 * rows[-1]['fraction_of_copy_bw']:.0f} % of copy)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("error: bench.kernels measures CUDA kernels; no CUDA device here")
    import triton

    rng = np.random.default_rng(0)
    bandwidth = measured_bandwidth_gbs()
    print(f"measured copy bandwidth {bandwidth:.0f} GB/s")
    rows = [row for size in args.sizes for row in bench_hr_upscale(size, bandwidth, rng)]
    gpu = device_name("cuda")
    out = RESULTS / f"kernels-{gpu.replace(' ', '_')}.json"
    runs = json.loads(out.read_text())["runs"] if out.is_file() else []
    runs.append({"commit": git_commit(), "device": gpu, "torch": torch.__version__, "triton": triton.__version__,
                 "copy_bandwidth_gb_s": bandwidth, "rows": rows})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
