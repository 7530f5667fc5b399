"""`Engine(backend="tensorrt", engine_path=...)`: TensorRT runs the LR network, the CUDA C kernel
(compiled at start-up by pycuda) runs the HR stage; needs numpy, tensorrt and pycuda, never torch.

Per image: numpy LR preparation on the host -> pinned buffers -> async copies on one stream ->
TensorRT `execute_async_v3` -> the HR kernel reads the uint8 image and writes the uint8 result on the
device -> one copy back -> the seam blend on the host (`seam_sigma`, `seam_gain`, as every backend).
Buffers are kept for the last image size (video frames reuse them). The CUDA context is current only
during a call, in the calling thread, so that an Engine may be shared by threads.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import INFERENCE_FIELDS, ModelConfig
from ..geometry import Geometry, plan
from .cuda_kernels import BLOCK, KERNEL_NAME, cuda_source, kernel_scalars, launch_grid
from .graph_spec import INPUT_NAMES, OUTPUT_NAMES
from .host import LRInputs, check_feather, known_tokens, prepare_lr
from .pipeline import DeployedPipeline, LRSizeRange
from .tensorrt_build import sidecar_path


def load_plan_info(engine_path: str | Path) -> dict:
    """The sidecar `<plan>.json` that `tensorrt_build` writes next to a plan."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise FileNotFoundError(f"engine_path: TensorRT plan not found: {engine_path}")
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise FileNotFoundError(f"engine_path: {side} is missing; build the plan with "
                                "python -m rethined_engine.deploy.tensorrt_build (it writes both files)")
    return json.loads(side.read_text())


def buffer_plan(geom: Geometry, topk: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Device buffers for one image: the LR graph's inputs/outputs and the HR stage's uint8 images."""
    h, w = geom.lr_size
    tokens = geom.grid_h * geom.grid_w
    return {"image": ((1, 3, h, w), np.float32), "mask": ((1, 1, h, w), np.float32),
            "key_inside": ((1, 1, geom.grid_h, geom.grid_w), np.float32),
            "lr_result": ((1, 3, h, w), np.float32), "topk_weight": ((1, tokens, topk), np.float32),
            "topk_fine_weight": ((1, tokens, topk), np.float32), "topk_index": ((1, tokens, topk), np.int32),
            "hr_image": ((geom.height, geom.width, 3), np.uint8), "hr_mask": ((geom.height, geom.width), np.uint8),
            "hr_known": ((tokens,), np.uint8), "hr_out": ((geom.height, geom.width, 3), np.uint8)}


def parse_device(device: Any) -> int:
    """None, "cuda", "cuda:N" or N -> CUDA device index."""
    if device is None or device == "cuda":
        return 0
    if isinstance(device, int) and device >= 0:
        return device
    if isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise ValueError(f"device: the tensorrt backend runs on a CUDA GPU: expected 'cuda', 'cuda:N' or N, got {device!r}")


class _Buffers:
    """Device + pinned host memory of `buffer_plan`, reused while the image size stays the same."""

    def __init__(self, cuda, geom: Geometry, topk: int, names: tuple[str, ...] | None = None):
        self.geom = geom
        self.device, self.host = {}, {}
        for name, (shape, dtype) in buffer_plan(geom, topk).items():
            if names is not None and name not in names:
                continue
            self.host[name] = cuda.pagelocked_empty(shape, dtype)
            self.device[name] = cuda.mem_alloc(self.host[name].nbytes)


HOST_SETTINGS = ("float_mask_threshold", "seam_sigma", "seam_gain", "hr_feather", "hr_fade_reflect")   # applied after the LR graph: not baked into the plan


class TensorRTBackend(DeployedPipeline):
    def __init__(self, engine_path: str | Path, device: Any = None, **overrides):
        bad = sorted(set(overrides) - set(HOST_SETTINGS))
        if bad:
            fixed = [b for b in bad if b in INFERENCE_FIELDS]
            raise TypeError(f"{', '.join(bad)}: " + ("fixed when the TensorRT plan is built (export/build again)"
                                                     if fixed else "not an Engine argument"))
        info = load_plan_info(engine_path)
        try:
            import pycuda.driver as cuda
            import tensorrt as trt
            from pycuda.compiler import SourceModule
        except ImportError as exc:
            raise ImportError(f"backend 'tensorrt' needs the tensorrt and pycuda packages ({exc}); on Jetson "
                              "tensorrt comes with JetPack, then: pip install pycuda") from exc
        self.cuda = cuda
        cuda.init()
        self.device = f"cuda:{parse_device(device)}"
        self._context = cuda.Device(parse_device(device)).retain_primary_context()
        self._context.push()
        try:
            self._load(engine_path, info, trt, SourceModule)
        finally:
            self._context.pop()
        cfg = dataclasses.replace(ModelConfig.from_json(json.dumps(info["model_config"])),
                                  **{k: v for k, v in overrides.items() if k != "float_mask_threshold"})
        sizes = LRSizeRange(tuple(info["lr_min"]), tuple(info["lr_max"]))
        super().__init__(cfg, self._run_lr, sizes, float_mask_threshold=overrides.get("float_mask_threshold"))
        check_feather(cfg.hr_feather, cfg.patch_size, self.topk, two_bands=cfg.hf_fine_decay is not None)

    def _load(self, engine_path: str | Path, info: dict, trt, source_module) -> None:
        """Plan, execution context, stream and HR kernel (with the context current)."""
        cuda = self.cuda
        self.engine_path = Path(engine_path)
        self.dtype = "float16" if info["build"]["fp16"] else "float32"
        self.topk = info["topk"]
        logger = trt.Logger(trt.Logger.WARNING)
        self._trt_engine = trt.Runtime(logger).deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._trt_engine is None:
            raise RuntimeError(f"engine_path: TensorRT could not load {engine_path} (built by another TensorRT "
                               "version or GPU? rebuild it on this device)")
        tensors = {self._trt_engine.get_tensor_name(i) for i in range(self._trt_engine.num_io_tensors)}
        missing = [name for name in INPUT_NAMES + OUTPUT_NAMES if name not in tensors]
        if missing:
            raise ValueError(f"engine_path: {engine_path} lacks {', '.join(missing)} (built from an older ONNX export?); "
                             "export and build it again")
        self._exec = self._trt_engine.create_execution_context()
        self._stream = cuda.Stream()
        self._kernel = source_module(cuda_source(), no_extern_c=True).get_function(KERNEL_NAME)
        self._buffers: _Buffers | None = None      # uint8 images: LR graph and HR kernel
        self._lr_buffers: _Buffers | None = None   # float images: LR graph only (the HR stage runs on the host)

    def _buffers_for(self, geom: Geometry) -> _Buffers:
        if self._buffers is None or self._buffers.geom != geom:
            self._buffers = None  # free the previous size before allocating the next
            self._buffers = _Buffers(self.cuda, geom, self.topk)
        return self._buffers

    def _lr_buffers_for(self, geom: Geometry) -> _Buffers:
        if self._lr_buffers is None or self._lr_buffers.geom != geom:
            self._lr_buffers = None
            self._lr_buffers = _Buffers(self.cuda, geom, self.topk, INPUT_NAMES + OUTPUT_NAMES)
        return self._lr_buffers

    def _profile_text(self, name: str) -> str:
        """The shapes the plan's optimisation profile accepts for input `name`, for error messages."""
        try:
            low, _, high = self._trt_engine.get_tensor_profile_shape(name, 0)
            return f"shapes from {tuple(low)} to {tuple(high)}"
        except Exception:  # TensorRT without this query
            return "the shapes of its optimisation profile"

    def _enqueue_lr(self, buf: _Buffers, inputs: LRInputs) -> None:
        """Copy the LR inputs in and run the network; outputs stay in buf.device."""
        cuda, stream = self.cuda, self._stream
        for name, value in zip(INPUT_NAMES, inputs):
            np.copyto(buf.host[name], value)
            cuda.memcpy_htod_async(buf.device[name], buf.host[name], stream)
            if not self._exec.set_input_shape(name, value.shape):
                raise ValueError(f"engine_path: {self.engine_path} rejects input {name!r} of shape "
                                 f"{tuple(value.shape)}: expected {self._profile_text(name)} (the plan and its "
                                 f"sidecar {sidecar_path(self.engine_path).name} disagree?); build both again with "
                                 "python -m rethined_engine.deploy.tensorrt_build")
        for name in INPUT_NAMES + OUTPUT_NAMES:
            self._exec.set_tensor_address(name, int(buf.device[name]))
        if not self._exec.execute_async_v3(stream.handle):
            raise RuntimeError("TensorRT execution failed")
        if not self.config.hf_transfer:
            for name in ("topk_weight", "topk_fine_weight"):
                cuda.memset_d32_async(buf.device[name], 0, buf.host[name].size, stream)

    def _run_lr(self, inputs: LRInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LR runner with host outputs (the float-image path)."""
        h, w = inputs.image.shape[-2:]
        patch = self.config.patch_size
        buf = self._lr_buffers_for(Geometry(h, w, 1, patch, h // patch, w // patch))
        self._enqueue_lr(buf, inputs)
        for name in OUTPUT_NAMES:
            self.cuda.memcpy_dtoh_async(buf.host[name], buf.device[name], self._stream)
        self._stream.synchronize()
        return tuple(buf.host[name].copy() for name in OUTPUT_NAMES)

    def inpaint_one(self, image: np.ndarray, mask: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """One image with this backend's CUDA context current in the calling thread, popped however the
        call ends (the Engine's lock lets one thread at a time in)."""
        self._context.push()
        try:
            return self._inpaint_one(image, mask, exclude)
        finally:
            self._context.pop()

    def _inpaint_one(self, image: np.ndarray, mask: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
        if image.dtype != np.uint8 or not mask.any():
            return super().inpaint_one(image, mask, exclude)   # float images: HR stage in numpy, fp32
        geom = plan(image.shape[0], image.shape[1], self.config)
        self.sizes.check(geom)
        buf = self._buffers_for(geom)
        cuda, stream = self.cuda, self._stream
        self._enqueue_lr(buf, prepare_lr(image, mask, geom, exclude))
        np.copyto(buf.host["hr_image"], image)
        np.copyto(buf.host["hr_mask"], mask)
        uploads = ("hr_image", "hr_mask")
        if self.config.hr_feather > 0:     # the kernel reads which tokens are known only to cross-fade
            np.copyto(buf.host["hr_known"], known_tokens(mask, geom))
            uploads += ("hr_known",)
        for name in uploads:
            cuda.memcpy_htod_async(buf.device[name], buf.host[name], stream)
        scalars = [np.int32(v) for v in kernel_scalars(geom, self.topk, self.config.hr_feather,
                                                       self.config.hr_fade_reflect)]
        self._kernel(buf.device["hr_image"], buf.device["hr_mask"], buf.device["lr_result"], buf.device["topk_weight"],
                     buf.device["topk_fine_weight"], buf.device["topk_index"], buf.device["hr_known"],
                     buf.device["hr_out"], *scalars, block=BLOCK, grid=launch_grid(geom), stream=stream)
        cuda.memcpy_dtoh_async(buf.host["hr_out"], buf.device["hr_out"], stream)
        stream.synchronize()
        out = self.blend_seams(image, mask, buf.host["hr_out"])
        return out.copy() if out is buf.host["hr_out"] else out   # the buffer is the next image's
