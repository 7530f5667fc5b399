"""Float RGB frames (values in [0, 1], as VapourSynth's RGBS/RGBH and ComfyUI's IMAGE hold them) through the
uint8 `VideoInpainter`: quantised in, and the inpainted pixels put back into a float copy of the input, so
the known pixels stay the input's bit for bit."""
from __future__ import annotations

import numpy as np

from ..config import ModelConfig

UINT8_LEVELS = 255
FLOAT_MASK_THRESHOLD = ModelConfig.float_mask_threshold  # a float mask fills where value >= this, as Engine.inpaint


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """(..., 3) float in [0, 1] -> uint8, rounded to the nearest level (values outside are clipped)."""
    return np.clip(np.rint(np.asarray(frame, np.float32) * UINT8_LEVELS), 0, UINT8_LEVELS).astype(np.uint8)


def binary_mask(mask: np.ndarray) -> np.ndarray:
    """A mask (H, W) of any dtype -> bool, True = fill: float masks where >= FLOAT_MASK_THRESHOLD, others nonzero."""
    mask = np.asarray(mask)
    return mask >= FLOAT_MASK_THRESHOLD if np.issubdtype(mask.dtype, np.floating) else mask != 0


def fill_float(frame: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of `frame` (H, W, 3) float whose pixels where `mask` (H, W) bool is set are `filled` (H, W, 3)
    uint8 divided by 255, in the frame's dtype."""
    out = np.array(frame, copy=True)
    out[mask] = (filled[mask].astype(np.float32) / UINT8_LEVELS).astype(out.dtype)
    return out
