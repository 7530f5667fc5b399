"""Operations per call of the LR network on its dense path, by style and by the function that issues them:
each operation is about one GPU kernel, and at LR sizes a kernel costs a few microseconds whatever its work,
so their number bounds the LR stage's latency on a GPU. Counted on the CPU (TorchDispatchMode), so it runs
anywhere. --network exported: the exported graph's torch form (`LRNetwork`); triton: the triton backend's
(`TritonLRNetwork` with its copy kernels, as a captured CUDA graph runs it), under the Triton interpreter,
where each Triton launch counts as one operation named after its kernel and the interpreter's own torch
calls are not counted.

    python -m bench.op_count                          # the shipped styles at 512 x 512 LR, both networks
    python -m bench.op_count --styles realistic --size 384 512 --networks triton

Results: bench/results/op-count-cpu.json (run environment; per style: total, by function, and the
commit on every row; --append keeps earlier rows). Views (reshape,
slice, expand, ...) are not counted: they launch nothing.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .env import RESULTS, run_environment

VIEW_OPS = {"aten::view", "aten::reshape", "aten::_unsafe_view", "aten::expand", "aten::t", "aten::transpose",
            "aten::permute", "aten::unsqueeze", "aten::squeeze", "aten::slice", "aten::select", "aten::as_strided",
            "aten::alias", "aten::detach", "aten::split", "aten::unbind", "aten::chunk", "aten::flatten",
            "aten::narrow", "aten::lift_fresh", "aten::empty", "aten::empty_strided"}
SYNC_OPS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::equal", "aten::is_nonzero", "aten::masked_select",
            "aten::_unique2", "aten::unique_consecutive"}   # on a GPU: wait for it and copy to the host
HOST_READS = ("tolist", "cpu")   # Tensor methods that on a GPU copy to the host and wait; on a CPU run they reach no
                                 # dispatch (`count_host_reads` counts them)
PACKAGE = "rethined_engine"
DEFAULT_STYLES = ("realistic", "fast", "smooth")
NETWORKS = ("exported", "triton")
INTERPRETER_FRAMES = "triton/runtime/interpreter"   # the interpreter's own torch calls: no GPU kernel


def innermost_function(stack: list[tuple[str, str]]) -> str | None:
    """The innermost function of this package (kernels/ included) in stack ((file, function) pairs, outermost
    first), "?" for none; None (not counted) inside the Triton interpreter's own torch calls."""
    if any(INTERPRETER_FRAMES in path for path, _ in stack):
        return None
    ours = [name for path, name in stack if f"/{PACKAGE}/" in path or "/kernels/" in path]
    return ours[-1] if ours else "?"


class OpCounter(TorchDispatchMode):
    """Counts the non-view aten operations run inside it, by the label `issuer` gives each one's call stack
    ((file, function) pairs, outermost first; None: not counted), by default `innermost_function`; syncs counts,
    by the same labels, those of them that on a GPU make the host wait for the device (SYNC_OPS: a tensor read
    as a Python number or bool, a data-dependent shape, `torch.equal`), each of which also stands in the way of
    capturing the work in a CUDA graph. Copies to the host (`.tolist()`, `.cpu()`) reach no dispatch on a CPU
    run: `count_host_reads` counts them."""

    def __init__(self, issuer=innermost_function):
        super().__init__()
        self.by_function: collections.Counter = collections.Counter()
        self.syncs: collections.Counter = collections.Counter()
        self.issuer = issuer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name not in VIEW_OPS:
            if (label := self._label()) is not None:
                self.by_function[label] += 1
                if name in SYNC_OPS:
                    self.syncs[label] += 1
        return func(*args, **(kwargs or {}))

    def _label(self) -> str | None:
        return self.issuer([(f.filename.replace("\\", "/"), f.name) for f in traceback.extract_stack()])

    @contextlib.contextmanager
    def count_host_reads(self):
        """Count each call of a HOST_READS method (a copy to the host, which on a GPU waits for the device) as a
        sync, by the issuer's label, while inside."""
        originals = {name: torch.Tensor.__dict__.get(name) for name in HOST_READS}

        def counted(name):
            method = getattr(torch.Tensor, name)

            def read(tensor, *args, **kwargs):
                if (label := self._label()) is not None:
                    self.syncs[label] += 1
                return method(tensor, *args, **kwargs)
            return read

        for name in HOST_READS:
            setattr(torch.Tensor, name, counted(name))
        try:
            yield
        finally:
            for name, original in originals.items():
                if original is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, original)

    @contextlib.contextmanager
    def count_triton_launches(self):
        """Count each interpreted Triton kernel launch as one operation, named triton:KERNEL, while inside."""
        from triton.runtime.interpreter import InterpretedFunction

        run = InterpretedFunction.run

        def counted(fn, *args, **kwargs):
            self.by_function[f"triton:{fn.fn.__name__}"] += 1
            return run(fn, *args, **kwargs)

        InterpretedFunction.run = counted
        try:
            yield
        finally:
            InterpretedFunction.run = run


def count_style(style: str, height: int, width: int, network: str = "exported") -> dict:
    """Operations of one LR network call (dense, batch 1) at height x width LR px with `style`'s settings;
    network: one of NETWORKS (triton: needs TRITON_INTERPRET=1 set before triton is imported)."""
    from rethined_engine.config import STYLES
    from rethined_engine.deploy.onnx_export import LRNetwork, example_inputs

    if network not in NETWORKS:
        raise ValueError(f"network: expected one of {NETWORKS}, got {network!r}")
    if network == "triton":
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("network: 'triton' is counted under the Triton interpreter: set TRITON_INTERPRET=1")
        from rethined_engine.backends.triton_backend import TritonBackend, TritonLRNetwork

        backend = TritonBackend(None, device="cpu", dtype="float32", **STYLES[style])
        call = TritonLRNetwork(backend.model, backend.config.hr_topk, compact=False)   # as on CUDA
    else:
        from rethined_engine.backends.torch_backend import TorchBackend

        backend = TorchBackend(None, device="cpu", dtype="float32", **STYLES[style])
        call = LRNetwork(backend.model, max(backend.config.hr_topk, 1))
    inputs = example_inputs(height, width, backend.model.cfg.patch_size, seed=0)
    counter = OpCounter()
    with torch.inference_mode():
        call(*inputs)                          # first call: anything cached per shape
        with counter, counter.count_triton_launches() if network == "triton" else contextlib.nullcontext():
            call(*inputs)
    return {"style": style, "network": network, "lr_size": [height, width], "ops": sum(counter.by_function.values()),
            "by_function": dict(counter.by_function.most_common())}


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TRITON_INTERPRET", "1")     # before triton is imported: the triton network's count
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", default=list(DEFAULT_STYLES))
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("HEIGHT", "WIDTH"),
                        help="LR px, multiples of 32")
    parser.add_argument("--out", type=Path, default=RESULTS / "op-count-cpu.json")
    parser.add_argument("--append", action="store_true", help="keep the rows already in --out (other commits)")
    args = parser.parse_args(argv)
    env = run_environment("cpu")
    rows = json.loads(args.out.read_text())["rows"] if args.append and args.out.is_file() else []
    for network in args.networks:
        for style in args.styles:
            row = count_style(style, *args.size, network=network) | env
            rows.append(row)
            top = ", ".join(f"{name} {n}" for name, n in list(row["by_function"].items())[:6])
            print(f"{network:8s} {style:10s} {row['ops']:5d} ops per LR call ({top})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(env | {"rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
