"""`VideoInpainter`: frames of one size in, in order, one inpainted frame out per frame in."""
from __future__ import annotations

from typing import Any

import numpy as np

TEMPORAL_MODES = ("off", "on")


class VideoInpainter:
    """Stream frames through an `Engine`.

    frame: (H, W, 3) uint8 RGB; mask: (H, W) bool or uint8 (nonzero = fill). temporal="off": each frame is
    `engine.inpaint(frame, mask)`; "on": temporal consistency (not yet implemented here).
    """

    def __init__(self, engine: Any = None, temporal: str = "on"):
        if temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal: expected one of {TEMPORAL_MODES}, got {temporal!r}")
        if temporal == "on":
            raise NotImplementedError("temporal='on' is not implemented yet")
        if engine is None:
            from ..engine import Engine
            engine = Engine()
        self.engine = engine
        self.temporal = temporal
        self.frame_size: tuple[int, int] | None = None

    def reset(self) -> None:
        """Forget every past frame (the next frame may have another size)."""
        self.frame_size = None

    def process(self, frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One frame (H, W, 3) uint8 and its mask (H, W) -> the inpainted frame (H, W, 3) uint8."""
        size = frame.shape[:2]
        if self.frame_size is not None and size != self.frame_size:
            raise ValueError(f"frame: size {size[1]}x{size[0]} differs from the stream's "
                             f"{self.frame_size[1]}x{self.frame_size[0]}; call reset() before a new size")
        self.frame_size = size
        return self.engine.inpaint(frame, mask)
