"""Input checking and conversion for `Engine.inpaint`.

Accepted images: numpy HWC (or BHWC) uint8/float; torch CHW or BCHW uint8/float (any device);
PIL RGB. Float images must lie in [0, 1]. Masks: numpy, torch or PIL, shaped HW, HW1, 1HW, BHW, B1HW or
BHW1 (a single mask is shared by a batch); bool/integer masks fill where nonzero, float masks where
value >= the threshold (0.5 by default). The result has the input's type, dtype, layout and device;
known (unmasked) pixels are copied from the input bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from .validation import (channel_hint, check_float_values, check_numpy_image, check_pil_image, mask_batch_shape,
                         numpy_mask)

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
IMAGE_DTYPES = (torch.uint8, *FLOAT_DTYPES)


@dataclass
class Batch:
    """A checked input: image (B, 3, H, W) on its own device, mask (B, 1, H, W) bool on the same device."""

    image: torch.Tensor               # original dtype (uint8 or float), values untouched
    mask: torch.Tensor
    restore: Callable[[torch.Tensor], Any]  # (B, 3, H, W) tensor of the original dtype -> caller's type

    def to(self, device: torch.device) -> "Batch":
        """This batch with image and mask on `device` (the same objects where they are there already)."""
        return replace(self, image=self.image.to(device), mask=self.mask.to(device))

    def as_float(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1]."""
        if self.image.dtype == torch.uint8:
            return self.image.to(dtype) / 255.0
        return self.image.to(dtype)

    def filled(self, result: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in the image's dtype and device: holes from `result` ((B, 3, H, W) float in [0, 1]),
        known pixels the input's."""
        result = result.to(self.image.device)
        if self.image.dtype == torch.uint8:
            filled = (result.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        else:
            filled = result.to(self.image.dtype)
        return torch.where(self.mask, filled, self.image)

    def compose(self, result: torch.Tensor) -> Any:
        """`filled`, in the caller's type."""
        return self.restore(self.filled(result))

    def unchanged(self) -> Any:
        return self.restore(self.image.clone())


def _image_from_numpy(img: np.ndarray) -> tuple[torch.Tensor, Callable]:
    arr, batched = check_numpy_image(img)
    tensor = torch.from_numpy(arr).permute(0, 3, 1, 2)

    def restore(out: torch.Tensor) -> np.ndarray:
        arr = out.permute(0, 2, 3, 1).contiguous().numpy()
        return arr if batched else arr[0]

    return tensor, restore


def _image_from_torch(img: torch.Tensor) -> tuple[torch.Tensor, Callable]:
    if img.ndim not in (3, 4):
        raise ValueError(f"img: torch images must be CHW or BCHW (ndim 3 or 4), got shape {tuple(img.shape)}")
    channels = img.shape[-3]
    if channels != 3:
        if img.shape[-1] == 3:
            raise ValueError(f"img: torch images are CHW/BCHW; shape {tuple(img.shape)} looks channels-last, "
                             "use img.permute(2, 0, 1) (or (0, 3, 1, 2) for a batch)")
        raise ValueError(f"img: expected 3 channels (RGB) in dim -3, got shape {tuple(img.shape)}"
                         f"{channel_hint(channels)}")
    if img.dtype not in IMAGE_DTYPES:
        raise TypeError(f"img: unsupported torch dtype {img.dtype}; expected uint8 or a float dtype")
    batched = img.ndim == 4
    return (img if batched else img[None]), (lambda out: out if batched else out[0])


def _image_from_pil(img: Image.Image) -> tuple[torch.Tensor, Callable]:
    tensor, _ = _image_from_numpy(check_pil_image(img))
    return tensor, lambda out: Image.fromarray(out[0].permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def _check_values(image: torch.Tensor) -> None:
    if image.dtype != torch.uint8:
        finite = bool(torch.isfinite(image).all())
        check_float_values(float(image.min()) if finite else 0.0, float(image.max()) if finite else 0.0, finite)


def _mask_tensor(mask: Any) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        if mask.is_complex():
            raise TypeError(f"mask: unsupported torch dtype {mask.dtype}")
        return mask
    return torch.from_numpy(numpy_mask(mask))


def _binarise(mask: torch.Tensor, threshold: float) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point():
        if bool(torch.isnan(mask).any()):
            raise ValueError("mask: contains NaN")
        return mask >= threshold
    return mask != 0


def _mask_batch(mask: Any, batch: int, height: int, width: int, threshold: float,
                device: torch.device) -> torch.Tensor:
    m = _mask_tensor(mask)
    m = _binarise(m.reshape(mask_batch_shape(tuple(m.shape), batch, height, width)), threshold)
    return m.to(device).expand(batch, 1, height, width)


def prepare(img: Any, mask: Any, threshold: float = 0.5) -> Batch:
    """Check `img` and `mask` and bring them to a common (B, 3, H, W) / (B, 1, H, W) form."""
    if isinstance(img, np.ndarray):
        image, restore = _image_from_numpy(img)
    elif isinstance(img, torch.Tensor):
        image, restore = _image_from_torch(img)
    elif isinstance(img, Image.Image):
        image, restore = _image_from_pil(img)
    else:
        raise TypeError(f"img: expected a numpy array, torch tensor or PIL image, got {type(img).__name__}")
    batch, _, height, width = image.shape
    if batch == 0 or height == 0 or width == 0:
        raise ValueError(f"img: empty image (shape {tuple(img.shape) if hasattr(img, 'shape') else img.size})")
    _check_values(image)
    return Batch(image, _mask_batch(mask, batch, height, width, threshold, image.device), restore)
