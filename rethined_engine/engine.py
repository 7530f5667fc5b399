"""`Engine`: the user-facing inpainting entry point. Importing it does not import torch, so the
TensorRT backend runs where only numpy, tensorrt and pycuda are installed."""
from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .backends import AVAILABLE
from .io import as_float32

FRAME_BATCH = 8      # frames per batch of `Engine.inpaint_frames`: one LR network call (one CUDA graph) each


def _default_backend(device: Any) -> str:
    """native on the CPU when the extension is built; on CUDA triton when Triton is installed (H100: 2.6 ms
    vs torch's 10.1 ms at 4096², bench/results). Without them torch, with a one-line warning saying how to
    get the faster one; only this default choice falls back (an explicit backend raises instead)."""
    import importlib.util

    import torch

    from .backends.native_backend import native_module

    on_cpu = torch.device(device).type == "cpu" if device is not None else not torch.cuda.is_available()
    if not on_cpu:
        if importlib.util.find_spec("triton") is not None:
            return "triton"
        warnings.warn("triton is not installed: using the torch backend on CUDA (slower); "
                      "pip install 'rethined_engine[triton]' for the triton backend", RuntimeWarning, stacklevel=3)
        return "torch"
    if native_module() is None:
        warnings.warn("rethined_engine._native is not built: using the torch backend on the CPU (slower); "
                      "pip install -e . from the repository root builds it (C++17 compiler with OpenMP)",
                      RuntimeWarning, stacklevel=3)
        return "torch"
    return "native"


class Engine:
    """Inpaint images with RETHINED.

    >>> engine = Engine()                       # shipped weights, fastest backend for the device
    >>> out = engine.inpaint(img, mask)         # same type/size/layout as img; mask nonzero = fill

    backend: "native" (default on the CPU when the C++ extension is built), "torch" (the reference;
    default where neither the extension nor, on CUDA, Triton is installed), "triton" (CUDA; Triton
    kernels replayed as a CUDA graph per image shape; default on CUDA) or
    "tensorrt" (a TensorRT plan built by
    `rethined export onnx` + `rethined_engine.deploy.tensorrt_build`, given as `engine_path`; numpy/PIL
    inputs; no torch import). weights: .safetensors file for the torch backend (default: shipped).
    device: "cpu", "cuda", "cuda:1", ... (default: CUDA when available). dtype: torch compute dtype
    (default float16 on CUDA, float32 on CPU). cuda_graphs (triton backend only, default True): replay each
    image shape's pipeline as a captured CUDA graph. Other keyword arguments override inference settings
    (`config.INFERENCE_FIELDS`; the tensorrt backend takes the host-side ones only, `float_mask_threshold`,
    `seam_sigma` and `seam_gain`: the rest is fixed when its plan is built).

    Read-only properties: backend, device, dtype, config (the settings in use), weights_path, engine_path.

    One Engine may be shared by threads: its calls run one at a time (the triton backend's CUDA graphs and
    the TensorRT runtime reuse per-shape buffers). Each call is already parallel inside (GPU, OpenMP);
    Engines of their own let threads' calls overlap.
    """

    def __init__(self, weights: str | Path | None = None, device: Any = None, backend: str | None = None,
                 dtype: Any = None, engine_path: str | Path | None = None, **overrides):
        backend = backend or _default_backend(device)
        if backend not in AVAILABLE:
            raise ValueError(f"backend: unknown backend {backend!r}; expected one of {AVAILABLE}")
        if backend == "tensorrt":
            if engine_path is None:
                raise ValueError("engine_path: backend='tensorrt' needs a TensorRT plan file "
                                 "(docs/jetson.md: rethined export onnx, then python -m rethined_engine.deploy.tensorrt_build)")
            if weights is not None or dtype is not None:
                raise ValueError("weights, dtype: fixed when the TensorRT plan is built; pass engine_path only")
            from .deploy.tensorrt_runtime import TensorRTBackend
            self._impl = TensorRTBackend(engine_path, device, **overrides)
        else:
            if engine_path is not None:
                raise ValueError(f"engine_path: only used by backend='tensorrt', got backend={backend!r}")
            if backend == "native":
                from .backends.native_backend import NativeBackend
                self._impl = NativeBackend(weights, device, dtype, **overrides)
            elif backend == "triton":
                from .backends.triton_backend import TritonBackend
                self._impl = TritonBackend(weights, device, dtype, **overrides)
            else:
                from .backends.torch_backend import TorchBackend
                self._impl = TorchBackend(weights, device, dtype, **overrides)
        self._backend = backend
        self._lock = threading.Lock()

    def inpaint(self, img: Any, mask: Any, exclude: Any = None) -> Any:
        """Fill the pixels where `mask` is set. See `rethined_engine.io` for the accepted inputs.

        exclude: known pixels the fill must not copy (the sampling area's exclusions: a second object still to
        remove, a person moving beside the hole), a mask accepted as `mask` is, nonzero = excluded; None copies
        from anywhere. No token holding an excluded pixel (a square of `patch_size` LR px, `scale` x that at full
        resolution) is a source; the excluded pixels themselves are kept, and the coarse network and the colour
        steps still see them. Where every source is excluded nothing is copied: the fill is the coarse network's,
        colour-matched to the hole's border as usual.
        """
        deep = as_float32(img)
        with self._lock:
            if deep is None:
                return self._impl.inpaint(img, mask, exclude)
            image, as_uint16 = deep
            return as_uint16(self._impl.inpaint(image, mask, exclude))

    def inpaint_frames(self, frames: Iterable[Any], masks: Any, batch_size: int = FRAME_BATCH,
                       excludes: Any = None) -> Iterator[Any]:
        """Inpaint a sequence of frames of one size, `batch_size` at a time (one `inpaint` call per batch, so
        one LR network run per batch), yielding each frame's result in order as `inpaint(frame, mask, exclude)`
        would return it.

        frames: iterable of single images of one size (numpy HWC or torch CHW, as `inpaint` takes them);
        returns numpy HWC / torch CHW results of the frames' type and dtype;
        masks: one mask for every frame (numpy array, torch tensor or PIL image) or an iterable of masks,
        one per frame; excludes: None (copy from anywhere), or known pixels no frame may copy, given as masks
        are (one for every frame or one per frame; see `inpaint`). Raises ValueError naming `frames` for a
        frame of another size than the first and naming `masks` or `excludes` when they run out before the
        frames.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        per_frame = [_FrameMasks(masks, "masks")] + ([] if excludes is None else [_FrameMasks(excludes, "excludes")])
        first_shape, pending = None, []
        for index, frame in enumerate(frames):
            if not hasattr(frame, "shape"):
                raise TypeError(f"frames: frame {index} is a {type(frame).__name__}; expected a numpy HWC array "
                                "or a torch CHW tensor")
            shape = tuple(frame.shape)
            if first_shape is None:
                first_shape = shape
            elif shape != first_shape:
                raise ValueError(f"frames: frame {index} has shape {shape}, expected {first_shape} (the first "
                                 "frame's); start another sequence for another size")
            pending.append(frame)
            for source in per_frame:
                source.take(index)
            if len(pending) == batch_size:
                yield from self._inpaint_stacked(pending, per_frame)
                pending = []
        if pending:
            yield from self._inpaint_stacked(pending, per_frame)

    def _inpaint_stacked(self, frames: list[Any], per_frame: list[_FrameMasks]) -> list[Any]:
        """Frames of one size and the masks (and excludes) taken for them -> the results, one per frame."""
        return list(self.inpaint(_stack(frames), *(source.release() for source in per_frame)))

    @property
    def backend(self) -> str:
        """The backend's name: "torch", "native", "triton" or "tensorrt"."""
        return self._backend

    @property
    def device(self) -> Any:
        """Where the backend computes: a torch.device ("tensorrt": the CUDA device's name, e.g. "cuda:0")."""
        return self._impl.device

    @property
    def dtype(self) -> Any:
        """The compute dtype: a torch.dtype ("tensorrt": "float16" or "float32", as the plan was built)."""
        return self._impl.dtype

    @property
    def config(self):
        """The `ModelConfig` in use: the weights' (or plan's) settings with this Engine's overrides applied."""
        return self._impl.config

    @property
    def weights_path(self) -> Path | None:
        """The .safetensors file the model was loaded from (None for "tensorrt": see `engine_path`)."""
        return None if self._backend == "tensorrt" else self._impl.weights_path

    @property
    def engine_path(self) -> Path | None:
        """The TensorRT plan file ("tensorrt" only, else None)."""
        return self._impl.engine_path if self._backend == "tensorrt" else None


class _FrameMasks:
    """The masks (or excludes) of `Engine.inpaint_frames`: one for every frame, or an iterable of one per frame,
    taken frame by frame and handed over a batch at a time. name: the argument, for errors."""

    def __init__(self, masks: Any, name: str):
        # one mask: a numpy array, torch tensor or PIL image rather than an iterable of per-frame masks
        self.shared = isinstance(masks, np.ndarray) or type(masks).__module__.startswith(("torch", "PIL"))
        self.masks, self.name = masks, name
        self.source = None if self.shared else iter(masks)
        self.taken: list[Any] = []

    def take(self, index: int) -> None:
        """Take frame index's mask (a shared one is handed over as it is)."""
        if self.shared:
            return
        try:
            self.taken.append(next(self.source))
        except StopIteration:
            raise ValueError(f"{self.name}: ran out at frame {index} (after {index} {self.name}); expected one per "
                             "frame or one for all") from None

    def release(self) -> Any:
        """The shared mask, or the masks taken since the last release stacked along a new first axis."""
        if self.shared:
            return self.masks
        taken, self.taken = self.taken, []
        return _stack(taken)


def _stack(items: list[Any]) -> Any:
    """numpy arrays, torch tensors or PIL images (as arrays) of one shape -> one stack along a new first axis."""
    if type(items[0]).__module__.startswith("torch"):
        import torch

        return torch.stack(items)
    return np.stack([np.asarray(item) for item in items])
