"""The deployed pipeline's numpy HR stage (`deploy.host.upscale_hr`, the Triton-server stage and the fallback
where no CUDA kernel runs) with each copy's texture pasted whole (hr_feather 0) and cross-faded (hr_feather 1).

    OMP_NUM_THREADS=1 python -m bench.host_hr --sizes 2048 --repeats 5

Inputs: the sample photo at size x size, the fixed 40 % mask of bench.latency, the shipped weights' real LR
outputs (the exported `LRNetwork`). Median ms per setting, with the load average before and after (numpy is
single-threaded here; other jobs on the machine slow it), written to bench/results/host-hr-cpu.json with
where it ran (`bench.env.run_environment`).
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from .env import RESULTS, run_environment
from .latency import MASK_COVERAGE, MASK_SEED
from .native_stages import median_ms

FEATHERS = (0, 1)   # LR px: pasted whole, and the setting the docs' rule picked


def measure(size: int, repeats: int) -> list[dict]:
    from PIL import Image

    from rethined_engine.cli import SAMPLE_IMAGE
    from rethined_engine.deploy.host import prepare_lr, upscale_hr
    from rethined_engine.deploy.onnx_export import LRNetwork
    from rethined_engine.geometry import plan
    from rethined_engine.train.masks import random_mask
    from rethined_engine.weights import load_model

    model = load_model(None, "cpu", torch.float32).eval()
    cfg = model.cfg
    image = np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB").resize((size, size), Image.BICUBIC)).copy()
    mask = random_mask(size, size, np.random.default_rng(MASK_SEED), MASK_COVERAGE).astype(bool)
    geom = plan(size, size, cfg)
    with torch.inference_mode():
        lr, weight, fine_weight, index = (t.numpy() for t in LRNetwork(model, cfg.hr_topk)(
            *(torch.from_numpy(a) for a in prepare_lr(image, mask, geom))))
    rows = []
    for feather in FEATHERS:
        load_before = os.getloadavg()[0]
        ms = median_ms(lambda f=feather: upscale_hr(image, mask, lr, weight[0], fine_weight[0], index[0], geom, f),
                       repeats)
        rows.append({"stage": "host_upscale_hr", "size": size, "hr_feather": feather, "median_ms": ms,
                     "load_before": load_before, "load_after": os.getloadavg()[0]})
        print(f"upscale_hr {size}^2 hr_feather={feather}: {ms:8.1f} ms (load {load_before:.2f} -> "
              f"{rows[-1]['load_after']:.2f})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    env = run_environment("cpu")
    rows = [row for size in args.sizes for row in measure(size, args.repeats)]
    out = RESULTS / "host-hr-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(env | {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows},
                              indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
