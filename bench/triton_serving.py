"""Latency of `Engine.inpaint` served by Triton Inference Server (the model `rethined export triton-repo`
writes, on the nvidia-pytriton wheel's `tritonserver` at 127.0.0.1, HTTP with binary tensors) against the
same call in-process, on the same inputs; and of the ensemble (`--ensemble`, its LR step on onnxruntime in
the Python backend: the wheel has no onnxruntime backend).

    .venv-triton/bin/python -m bench.triton_serving [--sizes 384x512,1080x1920] [--warmup 3] [--repeats 10]

Runs in an environment with nvidia-pytriton and tritonclient[http] (docs/scale-out.md: .venv-triton).
Inputs: the shipped sample photo and its mask resized to each size. Each size: --warmup untimed calls, then
--repeats timed calls, in-process first, then through the server (the two never run at once); the median
and minimum of each and their difference (request encoding, localhost HTTP, Triton and the Python
backend's shared-memory hand-over); Triton's own statistics per stage over the timed served calls: queue,
compute_input, compute_infer (model.py's execute: the Engine), compute_output; the ensemble's median,
each step's compute_infer, and the fraction of its output values more than one level off the Engine's
(top-K near-ties of the ONNX graph). Also: the server's start-up to ready (process start, every model.py
import, Engine load, ONNX session). Both Engines run on the CPU with torch's default threads. Writes
bench/results/triton-serving-cpu.json (--out: elsewhere) with bench.env.run_environment and the load
average before each size (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .env import RESULTS, run_environment

DEVICE = "cpu"
SERVER_STAGES = ("queue", "compute_input", "compute_infer", "compute_output")  # compute_infer: model.py's execute


def sample_at(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The shipped photo (RGB uint8) and its mask (luma uint8, nonzero = fill) resized to height x width."""
    from PIL import Image

    from rethined_engine.cli import SAMPLE_IMAGE, SAMPLE_MASK

    with Image.open(SAMPLE_IMAGE) as image, Image.open(SAMPLE_MASK) as mask:
        return (np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR)),
                np.asarray(mask.convert("L").resize((width, height), Image.NEAREST)))


def timed_ms(call, warmup: int, repeats: int, after_warmup=lambda: None) -> list[float]:
    """`warmup` untimed calls, `after_warmup()`, then `repeats` timed calls; wall milliseconds of each."""
    for _ in range(warmup):
        call()
    after_warmup()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return times


def server_stats(client, model_name: str) -> dict[str, tuple[int, int]]:
    """Triton's cumulative inference statistics of `model_name`: {stage: (count, nanoseconds)}."""
    stats = client.get_inference_statistics(model_name)["model_stats"][0]["inference_stats"]
    return {stage: (int(value["count"]), int(value["ns"])) for stage, value in stats.items()}


def stage_means_ms(before: dict, after: dict) -> dict[str, float]:
    """Mean milliseconds per request of each server stage between two `server_stats` readings."""
    return {stage: (after[stage][1] - before[stage][1]) / 1e6 / (after[stage][0] - before[stage][0])
            for stage in SERVER_STAGES}


def main(argv: list[str] | None = None) -> None:
    import tritonclient.http as triton_http

    from rethined_engine import Engine
    from rethined_engine.deploy.tensorrt_build import parse_size
    from rethined_engine.deploy.triton_client import inpaint_remote
    from rethined_engine.deploy.triton_local import LocalTritonServer
    from rethined_engine.deploy.triton_ensemble import STAGES, stage_names
    from rethined_engine.deploy.triton_repo import TritonRepoConfig, write_triton_repo

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="384x512,1080x1920", help="HxW image sizes, comma-separated")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per size and path first (default 3)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per size and path (default 10)")
    parser.add_argument("--out", type=Path, default=None, help="result file (default bench/results/"
                        "triton-serving-cpu.json)")
    args = parser.parse_args(argv)
    sizes = [parse_size(size) for size in args.sizes.split(",")]
    env = run_environment(DEVICE)
    engine = Engine(device=DEVICE)
    rows = []
    with tempfile.TemporaryDirectory() as repository:
        model_name = write_triton_repo(repository, TritonRepoConfig(ensemble=True, lr_platform="python")).name
        ensemble = stage_names(model_name)
        start = time.perf_counter()
        with LocalTritonServer(repository) as server:
            startup_s = time.perf_counter() - start
            client = triton_http.InferenceServerClient(server.http_url)
            try:
                server_version = client.get_server_metadata()["version"]
                for height, width in sizes:
                    image, mask = sample_at(height, width)
                    load = os.getloadavg()[0]
                    local = timed_ms(lambda: engine.inpaint(image, mask), args.warmup, args.repeats)
                    before = {}
                    served = timed_ms(lambda: inpaint_remote(client, image, mask), args.warmup, args.repeats,
                                      lambda: before.update(server_stats(client, model_name)))
                    stages = stage_means_ms(before, server_stats(client, model_name))
                    expected = engine.inpaint(image, mask)
                    same = bool(np.array_equal(inpaint_remote(client, image, mask), expected))
                    before = {}
                    chained = timed_ms(lambda: inpaint_remote(client, image, mask, ensemble["ensemble"]), args.warmup,
                                       args.repeats, lambda: before.update({stage: server_stats(client, ensemble[stage])
                                                                           for stage in STAGES}))
                    steps = {stage: stage_means_ms(before[stage], server_stats(client, ensemble[stage]))
                             ["compute_infer"] for stage in STAGES}
                    off = np.abs(inpaint_remote(client, image, mask, ensemble["ensemble"]).astype(np.int16) - expected)
                    rows.append({"height": height, "width": width, "load_average_1min": load,
                                 "in_process_ms": local, "served_ms": served,
                                 "in_process_median_ms": statistics.median(local),
                                 "served_median_ms": statistics.median(served),
                                 "overhead_median_ms": statistics.median(served) - statistics.median(local),
                                 "overhead_min_ms": min(served) - min(local),
                                 "server_stage_mean_ms": stages, "same_bytes": same,
                                 "ensemble_ms": chained, "ensemble_median_ms": statistics.median(chained),
                                 "ensemble_step_compute_infer_mean_ms": steps,
                                 "ensemble_fraction_off_by_more_than_1": float((off > 1).mean())})
                    print(f"{height}x{width}: in-process {statistics.median(local):.1f} ms, served "
                          f"{statistics.median(served):.1f} ms, ensemble {statistics.median(chained):.1f} ms "
                          f"(medians of {args.repeats}), same bytes: {same}")
            finally:
                client.close()
    from importlib.metadata import version

    result = {"benchmark": "triton_serving", "env": env, "engine_backend": engine.backend,
              "tritonserver": server_version, "nvidia_pytriton": version("nvidia-pytriton"),
              "tritonclient": version("tritonclient"),
              "protocol": "HTTP, binary tensors, 127.0.0.1", "warmup": args.warmup, "repeats": args.repeats,
              "server_startup_to_ready_s": startup_s, "rows": rows}
    out = args.out or RESULTS / f"triton-serving-{DEVICE}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"server ready in {startup_s:.1f}s; wrote {out}")


if __name__ == "__main__":
    main()
