"""The plain-PyTorch backend: `Rethined.forward` on any torch device."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..cpu_memory import retain_freed_memory
from ..geometry import seam_taps
from ..io import Batch, prepare, warn_fully_masked
from ..model.upscale import blend_seams
from ..weights import DEFAULT_WEIGHTS, load_model

DTYPE_NAMES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
               "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype: expected one of {sorted(DTYPE_NAMES)}, got {dtype!r}")
        dtype = DTYPE_NAMES[dtype]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype: expected torch.float32, float16 or bfloat16, got {dtype}")
    return dtype


def join_channels_last(images: list[torch.Tensor]) -> torch.Tensor:
    """Results (3, H, W), one per image -> (B, 3, H, W) with channels-last memory, on their device, so that the
    host's (B, H, W, 3) view of it (`io.prepare`'s restore, after any device copy, which keeps the strides) needs
    no transpose: torch.cat or stack write channels-first memory, and the view back transposed it again, two
    copies of every pixel on the host (about 20 ms per 3840 x 2160 image on 2 cores). One image already backed by
    (H, W, 3) memory is not copied at all."""
    if len(images) == 1:
        return images[0].permute(1, 2, 0).contiguous().permute(2, 0, 1)[None]
    return torch.stack([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)


class TorchBackend:
    """weights: .safetensors (default shipped); device: torch device (default CUDA when available);
    dtype: compute dtype (default float16 on CUDA, float32 on CPU); overrides: inference settings."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device | None = None,
                 dtype: torch.dtype | str | None = None, **overrides):
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: CUDA was requested but torch.cuda.is_available() is False")
        self.dtype = resolve_dtype(dtype, self.device)
        self.weights_path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.model = load_model(self.weights_path, self.device, self.dtype, **overrides)
        self.config = self.model.cfg
        self._seam_taps = (torch.from_numpy(seam_taps(self.config.seam_sigma)).to(self.device)
                           if self.config.seam_sigma > 0 else None)    # None: no seam blend
        if self.device.type == "cpu":
            retain_freed_memory()      # no page faults for each call's large temporaries (cpu_memory.py)

    @torch.inference_mode()
    def inpaint(self, img: Any, mask: Any, exclude: Any = None) -> Any:
        batch = prepare(img, mask, self.config.float_mask_threshold, exclude)
        if self._fully_masked(batch) is None:
            return batch.unchanged()
        return self._torch_result(batch)

    def _fully_masked(self, batch: Batch) -> list[bool] | None:
        """None when no mask has a hole (nothing to fill), else per image whether its mask covers all of it
        (its result is the coarse network's guess; warns once, pointing at the caller of `Engine.inpaint`)."""
        if not bool(batch.mask.any()):
            return None
        full = batch.fully_masked()
        if any(full):
            warn_fully_masked(stacklevel=5)   # here <- inpaint <- inference_mode <- Engine.inpaint <- caller
        return full

    def _torch_result(self, batch: Batch) -> Any:
        """The torch path for a whole batch, in the caller's type."""
        work = batch.to(self.device)     # one upload of the uint8 (or float) input, one download at the end
        return batch.restore(self._fill(work).to(batch.image.device))

    def _fill(self, work: Batch) -> torch.Tensor:
        """The torch path on a batch on this backend's device: (B, 3, H, W) of the image's dtype there,
        holes filled by the model (never copying `work.exclude`'s pixels), known pixels the input's, seams
        blended."""
        result = self.model(work.as_float(self.dtype), work.mask, work.exclude)
        return self.blend_seams(work.image, work.mask, work.filled(result))

    def blend_seams(self, image: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """`model.upscale.blend_seams` when `seam_sigma` > 0, else `filled`; (B, 3, H, W) tensors of the
        image's dtype on this backend's device."""
        if self._seam_taps is None:
            return filled
        return blend_seams(image, mask, filled, self._seam_taps, self.config.seam_gain)
