"""The deployed pipeline without torch: input contract -> LR preparation -> LR network (any runner)
-> HR stage (any runner) -> output of the caller's type. `tensorrt_runtime` plugs in TensorRT and the
CUDA C kernel; tests plug in onnxruntime and the numpy HR stage, which checks this orchestration on
machines without a GPU."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..config import ModelConfig
from ..geometry import Geometry, plan, seam_taps
from ..io import host_inputs, warn_fully_masked
from .host import LRInputs, blend_seams, prepare_lr, upscale_hr

LRRunner = Callable[[LRInputs], tuple[np.ndarray, ...]]  # -> lr_result, topk_weight, topk_fine_weight, topk_index
HRRunner = Callable[..., np.ndarray]  # upscale_hr's signature (feather: hr_feather, LR px; reflect: hr_fade_reflect)


def _seam_blender(dtype: np.dtype) -> Callable[..., np.ndarray]:
    """The native extension's `blend_seams` when it was built and takes this dtype (uint8, float32; no
    full-size temporaries), else numpy's."""
    try:
        from .._native import blend_seams as native_blend
    except ImportError:
        return blend_seams
    if dtype not in (np.uint8, np.float32):
        return blend_seams

    def blend(image, mask, filled, taps, gain):
        return native_blend(np.ascontiguousarray(image), np.ascontiguousarray(mask, dtype=np.uint8),
                            np.ascontiguousarray(filled, dtype=image.dtype), taps, gain)
    return blend


class LRSizeRange(NamedTuple):
    """LR sizes a runner accepts: [low, high] per side (equal for a static graph) and the batch limit."""

    low: tuple[int, int]
    high: tuple[int, int]

    def check(self, geom: Geometry) -> None:
        h, w = geom.lr_size
        if not (self.low[0] <= h <= self.high[0] and self.low[1] <= w <= self.high[1]):
            raise ValueError(f"img: a {geom.height}x{geom.width} image needs LR size {h}x{w}, but this plan accepts "
                             f"{self.low[0]}x{self.low[1]} to {self.high[0]}x{self.high[1]}; export and build "
                             "with --dynamic, or for this size (rethined export onnx --size HxW)")


class DeployedPipeline:
    """inpaint(img, mask, exclude) over an LR runner and an HR runner (numpy in, numpy out, per image)."""

    def __init__(self, cfg: ModelConfig, lr_runner: LRRunner, sizes: LRSizeRange,
                 hr_runner: HRRunner = upscale_hr, float_mask_threshold: float | None = None):
        self.config = cfg
        self.lr_runner, self.hr_runner, self.sizes = lr_runner, hr_runner, sizes
        self.threshold = cfg.float_mask_threshold if float_mask_threshold is None else float_mask_threshold
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"float_mask_threshold: expected a value in (0, 1], got {self.threshold}")

    def inpaint_one(self, image: np.ndarray, mask: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """image (H, W, 3), mask (H, W) bool, exclude (H, W) bool (known pixels never copied) or None ->
        (H, W, 3) of image's dtype."""
        if not mask.any():
            return image.copy()
        geom = plan(image.shape[0], image.shape[1], self.config)
        self.sizes.check(geom)
        lr_result, weight, fine_weight, index = self.lr_runner(prepare_lr(image, mask, geom, exclude))
        if not self.config.hf_transfer:
            weight, fine_weight = np.zeros_like(weight), np.zeros_like(fine_weight)
        runner = self.hr_runner if image.dtype == np.uint8 else upscale_hr  # the CUDA kernel is uint8 only
        filled = runner(image, mask, lr_result, weight[0], fine_weight[0], index[0], geom, self.config.hr_feather,
                        self.config.hr_fade_reflect)
        return self.blend_seams(image, mask, filled)

    def blend_seams(self, image: np.ndarray, mask: np.ndarray, filled: np.ndarray) -> np.ndarray:
        """The seam blend every backend applies after its HR stage (`seam_sigma`, `seam_gain`; none when
        seam_sigma is 0: then `filled` itself is returned, else a new array)."""
        if self.config.seam_sigma <= 0:
            return filled
        return _seam_blender(image.dtype)(image, mask, filled, seam_taps(self.config.seam_sigma), self.config.seam_gain)

    def inpaint(self, img: Any, mask: Any, exclude: Any = None) -> Any:
        batch = host_inputs(img, mask, self.threshold, exclude)
        if batch.masks.reshape(len(batch.masks), -1).all(axis=1).any():
            warn_fully_masked(stacklevel=3)
        excludes = [None] * len(batch.images) if batch.excludes is None else batch.excludes
        return batch.restore(np.stack([self.inpaint_one(i, m, e)
                                       for i, m, e in zip(batch.images, batch.masks, excludes)]))
