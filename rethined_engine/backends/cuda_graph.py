"""Replay a fixed-shape GPU function as a captured CUDA graph: one launch instead of hundreds.

The Triton path of one 4096² image is ~200 small kernels (CNN convs, glue, five Triton kernels) with
~2 ms of GPU work; launched one by one from Python the call takes ~6 ms. Captured once per input
signature and replayed, the host cost is one graph launch.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Callable

import torch

MAX_GRAPHS = 4      # signatures kept (LRU); each graph holds its own memory pool (~650 MiB at 8192²)
WARMUP_CALLS = 2    # eager calls on a side stream before capture: Triton autotuning and cuDNN's algorithm
                    # choice happen there, never inside the graph


class GraphedFunction:
    """fn(*tensors) -> tensor on CUDA, captured once per input signature (shape, strides, dtype, device).

    A call copies its inputs into the signature's static buffers, replays the graph and returns a clone
    of the static output (the next replay overwrites it). fn must not synchronise with the host or copy
    from host memory (cache such constants before), and its output must depend only on its inputs.
    Right after capture the graph is replayed once on the last warm-up's inputs and its output checked
    with `agree(eager, replayed)` (default: equal): a signature whose capture fails or disagrees runs
    eagerly from then on, with one warning.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], max_graphs: int = MAX_GRAPHS,
                 agree: Callable[[torch.Tensor, torch.Tensor], bool] = torch.equal):
        if max_graphs < 1:
            raise ValueError(f"max_graphs: expected >= 1, got {max_graphs}")
        self.fn, self.max_graphs, self.agree = fn, max_graphs, agree
        self.graphs: OrderedDict[tuple, tuple | None] = OrderedDict()   # None: capture failed, run eagerly

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        key = tuple((tuple(a.shape), a.stride(), a.dtype, a.device) for a in args)
        if key not in self.graphs:
            self.graphs[key] = self._capture(args)
            if len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        entry = self.graphs[key]
        if entry is None:
            return self.fn(*args)
        static_in, graph, static_out = entry
        with torch.cuda.device(args[0].device):    # the graph's device, whatever the caller's current one
            for buffer, arg in zip(static_in, args):
                buffer.copy_(arg)
            graph.replay()
            return static_out.clone()

    def _capture(self, args: tuple[torch.Tensor, ...]) -> tuple | None:
        with torch.cuda.device(args[0].device):    # capture on the inputs' device (cuda:1 ...), not the current one
            return self._capture_on_device(args)

    def _capture_on_device(self, args: tuple[torch.Tensor, ...]) -> tuple | None:
        static_in = [torch.empty_like(a) for a in args]      # dense inputs keep their strides
        for buffer, arg in zip(static_in, args):
            buffer.copy_(arg)
        device = args[0].device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                eager = self.fn(*static_in)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                static_out = self.fn(*static_in)
        except RuntimeError as exc:
            return self._eager_from_now(args, f"capture failed: {exc}")
        graph.replay()
        if not self.agree(eager, static_out):
            return self._eager_from_now(args, "the replayed graph disagrees with the eager call")
        return static_in, graph, static_out

    @staticmethod
    def _eager_from_now(args: tuple[torch.Tensor, ...], why: str) -> None:
        warnings.warn(f"CUDA graph for inputs {[tuple(a.shape) for a in args]} not used, running eagerly ({why})",
                      RuntimeWarning, stacklevel=5)
        return None
