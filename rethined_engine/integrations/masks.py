"""Masks as the integrations take them (VapourSynth's GRAY clips, ComfyUI's MASK): float masks fill where the value
reaches the engine's threshold, others where nonzero. Their float frames go through the uint8 `VideoInpainter` by
`io.to_uint8` and `video.known_pixels.put_back`, which keep the known pixels the input's bit for bit."""
from __future__ import annotations

import numpy as np

from ..config import ModelConfig

FLOAT_MASK_THRESHOLD = ModelConfig.float_mask_threshold  # a float mask fills where value >= this, as Engine.inpaint


def binary_mask(mask: np.ndarray) -> np.ndarray:
    """A mask (H, W) of any dtype -> bool, True = fill: float masks where >= FLOAT_MASK_THRESHOLD, others nonzero."""
    mask = np.asarray(mask)
    return mask >= FLOAT_MASK_THRESHOLD if np.issubdtype(mask.dtype, np.floating) else mask != 0
