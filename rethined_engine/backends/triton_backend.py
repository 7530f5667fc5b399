"""The Triton backend: the Triton preparation kernel (`kernels/prep.py`) makes the LR input straight
from the caller's uint8 image, torch runs the LR network, and the Triton HR-upscale kernel
(`kernels/hr_upscale.py`) carries the result to full resolution, reading and writing uint8 in the
caller's layout (no HR float copies). Float images and hr_topk=0 run the torch path."""
from __future__ import annotations

import os
from typing import Any

import torch

from ..deploy.onnx_export import LRNetwork
from ..geometry import plan
from ..io import prepare
from .torch_backend import TorchBackend


class TritonBackend(TorchBackend):
    def __init__(self, weights=None, device=None, dtype=None, **overrides):
        interpret = os.environ.get("TRITON_INTERPRET") == "1"
        target = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if target.type != "cuda" and not interpret:
            raise ValueError(f"device: the triton backend needs a CUDA device (or TRITON_INTERPRET=1 for testing on "
                             f"the CPU), got {target}")
        try:
            from ..kernels.hr_upscale import hr_upscale
            from ..kernels.prep import prepare_lr
        except ImportError as exc:
            raise ImportError(f"backend 'triton' needs triton: pip install 'rethined_engine[triton]' ({exc})") from exc
        super().__init__(weights, target, dtype, **overrides)
        self.hr_upscale, self.prepare_lr = hr_upscale, prepare_lr
        self.lr_network = LRNetwork(self.model, self.config.hr_topk) if self.config.hr_topk > 0 else None

    @torch.inference_mode()
    def inpaint(self, img: Any, mask: Any) -> Any:
        batch = prepare(img, mask, self.config.float_mask_threshold)
        if (self.lr_network is None or batch.image.dtype != torch.uint8 or not bool(batch.mask.any())
                or bool(batch.mask.flatten(1).all(dim=1).any())):
            return super().inpaint(img, mask)
        images = batch.image.to(self.device)
        masks = batch.mask.to(self.device)
        out = []
        for image, hole in zip(images, masks):                        # image (3, H, W) uint8, any strides
            geom = plan(image.shape[-2], image.shape[-1], self.config)
            lr_image, lr_mask = self.prepare_lr(image, hole[0], geom, channels_last=False)
            lr_image, lr_mask = lr_image.to(self.dtype), lr_mask.to(self.dtype)
            key_inside = geom.key_inside(self.device).to(self.dtype).reshape(1, 1, geom.grid_h, geom.grid_w)
            lr_result, weight, index = self.lr_network(lr_image, lr_mask, key_inside)
            if not self.config.hf_transfer:
                weight = torch.zeros_like(weight)
            out.append(self.hr_upscale(image, hole[0], lr_result, weight[0], index[0], geom, channels_last=False))
        return batch.restore(torch.stack(out).to(batch.image.device))
