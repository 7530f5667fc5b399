"""Input checks shared by every backend, in numpy only (the TensorRT runtime runs without torch).

Error messages name the argument (`img`, `mask`) and say what to do."""
from __future__ import annotations

from typing import Any

import numpy as np

NUMPY_IMAGE_DTYPES = (np.uint8, np.float16, np.float32, np.float64)
PIL_MASK_MODES = ("1", "L", "I", "F", "P")


def channel_hint(channels: int) -> str:
    if channels == 4:
        return " (RGBA: drop or composite the alpha channel first, e.g. img[..., :3] / pil.convert('RGB'))"
    if channels == 1:
        return " (grayscale: repeat it to 3 channels, e.g. np.repeat(img, 3, axis=-1) / pil.convert('RGB'))"
    return ""


def check_numpy_image(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """HWC or BHWC RGB uint8/float -> (contiguous, writeable BHWC array, was it batched)."""
    if img.ndim not in (3, 4):
        hint = channel_hint(1) if img.ndim == 2 else ""
        raise ValueError(f"img: numpy images must be HWC or BHWC (ndim 3 or 4), got shape {img.shape}{hint}")
    if img.shape[-1] != 3:
        if img.ndim == 3 and img.shape[0] == 3:
            raise ValueError(f"img: numpy images are HWC; shape {img.shape} looks CHW, use img.transpose(1, 2, 0)")
        raise ValueError(f"img: expected 3 channels (RGB) in the last axis, got shape {img.shape}"
                         f"{channel_hint(img.shape[-1])}")
    if img.dtype not in NUMPY_IMAGE_DTYPES:
        raise TypeError(f"img: unsupported numpy dtype {img.dtype}; expected uint8 or float16/32/64")
    batched = img.ndim == 4
    arr = np.ascontiguousarray(img if batched else img[None])
    if not arr.flags.writeable:  # e.g. np.asarray of a PIL image; torch cannot wrap read-only memory
        arr = arr.copy()
    if 0 in arr.shape:
        raise ValueError(f"img: empty image (shape {img.shape})")
    return arr, batched


def check_pil_image(img) -> np.ndarray:
    """PIL RGB image -> (H, W, 3) uint8."""
    if img.mode != "RGB":
        hint = channel_hint(4 if "A" in img.mode else 1)
        raise ValueError(f"img: PIL mode {img.mode!r} is not RGB; use img.convert('RGB'){hint}")
    return np.asarray(img)


def check_float_values(lo: float, hi: float, finite: bool) -> None:
    """Float images must be finite and lie in [0, 1]."""
    if not finite:
        raise ValueError("img: contains NaN or infinite values")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"img: float images must lie in [0, 1], got values in [{lo:g}, {hi:g}]"
                         + (" (0..255 data? divide by 255)" if hi > 1.0 else ""))


def numpy_mask(mask: Any) -> np.ndarray:
    """A numpy or PIL mask -> a writeable numpy array (values untouched; integers widened to int64)."""
    from PIL import Image

    if isinstance(mask, Image.Image):
        if mask.mode not in PIL_MASK_MODES:
            raise ValueError(f"mask: PIL mode {mask.mode!r} has several channels; use mask.convert('L')")
        return np.array(mask.convert("L") if mask.mode == "P" else mask)
    if isinstance(mask, np.ndarray):
        if mask.dtype == object or not (np.issubdtype(mask.dtype, np.number) or mask.dtype == np.bool_):
            raise TypeError(f"mask: unsupported numpy dtype {mask.dtype}")
        if mask.dtype in (np.uint16, np.uint32, np.uint64):
            mask = mask.astype(np.int64)
        mask = np.ascontiguousarray(mask)
        return mask if mask.flags.writeable else mask.copy()
    raise TypeError(f"mask: expected a numpy array, torch tensor or PIL image, got {type(mask).__name__}")


def mask_batch_shape(shape: tuple[int, ...], batch: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Accepted mask layouts (HW, HW1, 1HW, BHW, B1HW, BHW1) -> the (B', 1, H, W) shape to reshape the
    mask to (B' = 1 or batch); raises ValueError naming `mask` otherwise."""
    core = shape
    if len(core) >= 3 and core[-1] == 1 and core[-3:-1] == (height, width):
        core = core[:-1]                                           # HW1 / BHW1
    if len(core) < 2 or core[-2:] != (height, width):
        raise ValueError(f"mask: shape {shape} does not match the image size {height}x{width} "
                         "(expected HW, HW1, 1HW, BHW or B1HW)")
    lead = tuple(core[:-2])
    if len(lead) == 2 and lead[1] == 1:
        lead = lead[:1]                                            # B1HW
    if len(lead) > 1 or (lead and lead[0] not in (1, batch)):
        raise ValueError(f"mask: shape {shape} does not fit a batch of {batch} images of {height}x{width}")
    return (lead[0] if lead else 1, 1, height, width)
