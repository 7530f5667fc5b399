"""Operations per call of the LR network on its dense path (the one a captured CUDA graph and the exported
graph run), by style and by the function that issues them: each operation is about one GPU kernel, and
at LR sizes a kernel costs a few microseconds whatever its work, so their number bounds the LR stage's
latency on a GPU. Counted on the CPU (TorchDispatchMode), so it runs anywhere.

    python -m bench.op_count                          # the shipped styles at 512 x 512 LR
    python -m bench.op_count --styles realistic --size 384 512

Results: bench/results/op-count-cpu.json (run environment; per style: total, by function, and the
commit on every row; --append keeps earlier rows). Views (reshape,
slice, expand, ...) are not counted: they launch nothing.
"""
from __future__ import annotations

import argparse
import collections
import json
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .env import RESULTS, run_environment

VIEW_OPS = {"aten::view", "aten::reshape", "aten::_unsafe_view", "aten::expand", "aten::t", "aten::transpose",
            "aten::permute", "aten::unsqueeze", "aten::squeeze", "aten::slice", "aten::select", "aten::as_strided",
            "aten::alias", "aten::detach", "aten::split", "aten::unbind", "aten::chunk", "aten::flatten",
            "aten::narrow", "aten::lift_fresh", "aten::empty", "aten::empty_strided"}
PACKAGE = "rethined_engine"
DEFAULT_STYLES = ("realistic", "fast", "smooth")


class OpCounter(TorchDispatchMode):
    """Counts the non-view aten operations run inside it, by the innermost function of this package that
    issued each."""

    def __init__(self):
        super().__init__()
        self.by_function: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name not in VIEW_OPS:
            frames = [f for f in traceback.extract_stack() if f"/{PACKAGE}/" in f.filename.replace("\\", "/")
                      or "/kernels/" in f.filename.replace("\\", "/")]
            self.by_function[frames[-1].name if frames else "?"] += 1
        return func(*args, **(kwargs or {}))


def count_style(style: str, height: int, width: int) -> dict:
    """Operations of one `LRNetwork` call (dense, batch 1) at height x width LR px with `style`'s settings."""
    from rethined_engine.backends.torch_backend import TorchBackend
    from rethined_engine.config import STYLES
    from rethined_engine.deploy.onnx_export import LRNetwork, example_inputs

    backend = TorchBackend(None, device="cpu", dtype="float32", **STYLES[style])
    network = LRNetwork(backend.model, max(backend.config.hr_topk, 1))
    inputs = example_inputs(height, width, backend.model.cfg.patch_size, seed=0)
    counter = OpCounter()
    with torch.inference_mode():
        network(*inputs)                       # first call: anything cached per shape
        with counter:
            network(*inputs)
    return {"style": style, "lr_size": [height, width], "ops": sum(counter.by_function.values()),
            "by_function": dict(counter.by_function.most_common())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", default=list(DEFAULT_STYLES))
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("HEIGHT", "WIDTH"),
                        help="LR px, multiples of 32")
    parser.add_argument("--out", type=Path, default=RESULTS / "op-count-cpu.json")
    parser.add_argument("--append", action="store_true", help="keep the rows already in --out (other commits)")
    args = parser.parse_args(argv)
    env = run_environment("cpu")
    rows = json.loads(args.out.read_text())["rows"] if args.append and args.out.is_file() else []
    for style in args.styles:
        row = count_style(style, *args.size) | env
        rows.append(row)
        top = ", ".join(f"{name} {n}" for name, n in list(row["by_function"].items())[:6])
        print(f"{style:10s} {row['ops']:5d} ops per LR call ({top})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(env | {"rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
