"""The LR network on the CPU in three runtimes, on the same real inputs: torch with the compact attention
over hole rows x allowed keys (what the native backend runs, channels-last), torch with the dense
attention of the exported graph, and ONNX Runtime running that exported graph.

    python -m bench.lr_runtimes --size 2048 --repeats 10

Inputs: the sample photo at size x size with the latency benchmark's 40 % mask, brought to the LR size as
the engine does. Median ms per call, and how far each runtime's outputs are from the compact torch ones
(largest |difference| of the LR result, share of differing top-K source indices). Written to
bench/results/lr-runtimes-cpu.json with where it ran (`bench.env.run_environment`).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .env import RESULTS, run_environment
from .latency import MASK_COVERAGE, MASK_SEED
from .native_stages import median_ms

OUTPUTS = ("lr_result", "topk_weight", "topk_fine_weight", "topk_index")


def lr_inputs(size: int, model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(LR image, LR mask, key_inside) of the sample photo at size x size with the 40 % mask."""
    from PIL import Image

    from rethined_engine.cli import SAMPLE_IMAGE
    from rethined_engine.train.masks import random_mask

    img = np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((size, size), Image.BICUBIC))
    mask = random_mask(size, size, np.random.default_rng(MASK_SEED), MASK_COVERAGE)
    image = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    from rethined_engine.geometry import plan

    geom = plan(size, size, model.cfg)
    _, _, lr_image, lr_mask = model.prepare(image, torch.from_numpy(mask)[None, None].float(), geom.scale,
                                            geom.grid_h, geom.grid_w)
    key_inside = torch.from_numpy(geom.key_inside_grid().astype(np.float32))[None, None]
    return lr_image, lr_mask, key_inside


def measure(size: int, repeats: int, threads: int) -> list[dict]:
    """One row per runtime (torch's thread count is restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(size, repeats, threads)
    finally:
        torch.set_num_threads(previous)


def _measure(size: int, repeats: int, threads: int) -> list[dict]:
    import onnxruntime as ort

    from rethined_engine.deploy.onnx_export import LRNetwork, export_onnx
    from rethined_engine.weights import load_model

    model = load_model().eval()
    inputs = lr_inputs(size, model)
    model.to(memory_format=torch.channels_last)   # as the native backend: oneDNN's convs are faster on NHWC
    compact = LRNetwork(model, model.cfg.hr_topk, compact=True).eval()
    dense = LRNetwork(model, model.cfg.hr_topk).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = export_onnx(Path(tmp) / "lr.onnx", size, size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {name: t.numpy() for name, t in zip(("image", "mask", "key_inside"), inputs)}
    channels_last = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
    with torch.inference_mode():
        reference = [t.numpy() for t in compact(*channels_last)]
        runtimes = {
            "torch compact (native backend)": lambda: [t.numpy() for t in compact(*channels_last)],
            "torch dense (exported graph's form)": lambda: [t.numpy() for t in dense(*inputs)],
            "onnxruntime (exported graph)": lambda: session.run(None, feed),
        }
        rows = []
        for name, run in runtimes.items():
            got = run()
            rows.append({"runtime": name, "size": size, "lr_size": list(inputs[0].shape[-2:]), "threads": threads,
                         "median_ms": median_ms(run, repeats),
                         "lr_result_max_abs_diff": float(np.abs(got[0] - reference[0]).max()),
                         "topk_index_differ_share": float((got[3] != reference[3]).mean())})
            print(f"{name:38s} {rows[-1]['median_ms']:8.2f} ms  max|Δ result| {rows[-1]['lr_result_max_abs_diff']:.2e}"
                  f"  index differs {rows[-1]['topk_index_differ_share']:.4f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="image side, px (the LR side is at most 512)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULTS / "lr-runtimes-cpu.json")
    args = parser.parse_args(argv)
    env = run_environment("cpu")
    rows = measure(args.size, args.repeats, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(env | {"rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
