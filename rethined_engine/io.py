"""Input checking and conversion for `Engine.inpaint`.

Accepted images: numpy HWC (or BHWC) uint8/float; torch CHW or BCHW uint8/float (any device);
PIL RGB. Float images must lie in [0, 1]. Masks: numpy, torch or PIL, shaped HW, HW1, 1HW, BHW, B1HW or
BHW1 (a single mask is shared by a batch); bool/integer masks fill where nonzero, float masks where
value >= the threshold (0.5 by default). The result has the input's type, dtype, layout and device;
known (unmasked) pixels are copied from the input bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
IMAGE_DTYPES = (torch.uint8, *FLOAT_DTYPES)


def _channel_hint(channels: int) -> str:
    if channels == 4:
        return " (RGBA: drop or composite the alpha channel first, e.g. img[..., :3] / pil.convert('RGB'))"
    if channels == 1:
        return " (grayscale: repeat it to 3 channels, e.g. np.repeat(img, 3, axis=-1) / pil.convert('RGB'))"
    return ""


@dataclass
class Batch:
    """A checked input: image (B, 3, H, W) on its own device, mask (B, 1, H, W) bool on the same device."""

    image: torch.Tensor               # original dtype (uint8 or float), values untouched
    mask: torch.Tensor
    restore: Callable[[torch.Tensor], Any]  # (B, 3, H, W) tensor of the original dtype -> caller's type

    def as_float(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1]."""
        if self.image.dtype == torch.uint8:
            return self.image.to(dtype) / 255.0
        return self.image.to(dtype)

    def compose(self, result: torch.Tensor) -> Any:
        """Fill holes from `result` ((B, 3, H, W) float in [0, 1]); known pixels stay the input's."""
        result = result.to(self.image.device)
        if self.image.dtype == torch.uint8:
            filled = (result.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        else:
            filled = result.to(self.image.dtype)
        return self.restore(torch.where(self.mask, filled, self.image))

    def unchanged(self) -> Any:
        return self.restore(self.image.clone())


def _image_from_numpy(img: np.ndarray) -> tuple[torch.Tensor, Callable]:
    if img.ndim not in (3, 4):
        hint = _channel_hint(1) if img.ndim == 2 else ""
        raise ValueError(f"img: numpy images must be HWC or BHWC (ndim 3 or 4), got shape {img.shape}{hint}")
    if img.shape[-1] != 3:
        if img.ndim == 3 and img.shape[0] == 3:
            raise ValueError(f"img: numpy images are HWC; shape {img.shape} looks CHW, use img.transpose(1, 2, 0)")
        raise ValueError(f"img: expected 3 channels (RGB) in the last axis, got shape {img.shape}"
                         f"{_channel_hint(img.shape[-1])}")
    if img.dtype not in (np.uint8, np.float16, np.float32, np.float64):
        raise TypeError(f"img: unsupported numpy dtype {img.dtype}; expected uint8 or float16/32/64")
    batched = img.ndim == 4
    arr = np.ascontiguousarray(img if batched else img[None])
    if not arr.flags.writeable:  # torch cannot wrap read-only memory (e.g. np.asarray of a PIL image)
        arr = arr.copy()
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
                         f"{_channel_hint(channels)}")
    if img.dtype not in IMAGE_DTYPES:
        raise TypeError(f"img: unsupported torch dtype {img.dtype}; expected uint8 or a float dtype")
    batched = img.ndim == 4
    return (img if batched else img[None]), (lambda out: out if batched else out[0])


def _image_from_pil(img: Image.Image) -> tuple[torch.Tensor, Callable]:
    if img.mode != "RGB":
        hint = _channel_hint(4 if "A" in img.mode else 1)
        raise ValueError(f"img: PIL mode {img.mode!r} is not RGB; use img.convert('RGB'){hint}")
    tensor, _ = _image_from_numpy(np.asarray(img))
    return tensor, lambda out: Image.fromarray(out[0].permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def _check_values(image: torch.Tensor) -> None:
    if image.dtype == torch.uint8:
        return
    if not bool(torch.isfinite(image).all()):
        raise ValueError("img: contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"img: float images must lie in [0, 1], got values in [{lo:g}, {hi:g}]"
                         + (" (0..255 data? divide by 255)" if hi > 1.0 else ""))


def _mask_tensor(mask: Any) -> torch.Tensor:
    if isinstance(mask, Image.Image):
        if mask.mode not in ("1", "L", "I", "F", "P"):
            raise ValueError(f"mask: PIL mode {mask.mode!r} has several channels; use mask.convert('L')")
        if mask.mode == "P":
            mask = mask.convert("L")
        return torch.from_numpy(np.array(mask))
    if isinstance(mask, np.ndarray):
        if mask.dtype == object or not (np.issubdtype(mask.dtype, np.number) or mask.dtype == np.bool_):
            raise TypeError(f"mask: unsupported numpy dtype {mask.dtype}")
        if mask.dtype in (np.uint16, np.uint32, np.uint64):
            mask = mask.astype(np.int64)
        mask = np.ascontiguousarray(mask)
        return torch.from_numpy(mask if mask.flags.writeable else mask.copy())
    if isinstance(mask, torch.Tensor):
        if mask.is_complex():
            raise TypeError(f"mask: unsupported torch dtype {mask.dtype}")
        return mask
    raise TypeError(f"mask: expected a numpy array, torch tensor or PIL image, got {type(mask).__name__}")


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
    shape = tuple(m.shape)
    if m.ndim >= 3 and m.shape[-1] == 1 and m.shape[-3:-1] == (height, width):
        m = m[..., 0]                                            # HW1 / BHW1
    if m.ndim < 2 or m.shape[-2:] != (height, width):
        raise ValueError(f"mask: shape {shape} does not match the image size {height}x{width} "
                         "(expected HW, HW1, 1HW, BHW or B1HW)")
    lead = tuple(m.shape[:-2])
    if len(lead) == 2 and lead[1] == 1:
        lead = lead[:1]                                          # B1HW
    if len(lead) > 1 or (lead and lead[0] not in (1, batch)):
        raise ValueError(f"mask: shape {shape} does not fit a batch of {batch} images of {height}x{width}")
    m = _binarise(m.reshape(*(lead or (1,)), 1, height, width), threshold)
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
