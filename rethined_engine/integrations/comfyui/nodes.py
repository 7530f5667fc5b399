"""The node classes: ComfyUI's IMAGE is a (B, H, W, 3) float32 tensor in [0, 1], its MASK (B, H, W) or (H, W)
float32, 1 = the area to inpaint (a mask fills where >= 0.5, as `Engine.inpaint` reads float masks).

- `RethinedInpaint`: each image of the batch on its own, `Engine.inpaint` on the float images (the
  result equals `Engine().inpaint(image.numpy(), mask.numpy())`); an optional second MASK, `exclude`, marks
  known pixels the fill must not copy (`Engine.inpaint`'s exclude).
- `RethinedVideoInpaint`: the batch as the frames of one clip, in order, through a `VideoInpainter`
  (temporal "on" or "off"); frames are quantised to uint8 for it, the known pixels are returned unchanged; the
  optional `exclude` MASK as for images (`VideoInpainter.push`'s exclude: no frame gives those pixels either).

Masks: one per image, or one for the whole batch. Absolute imports only: ComfyUI loads this folder as a
top-level package.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from rethined_engine.integrations.masks import binary_mask
from rethined_engine.video.known_pixels import put_back, to_uint8
from rethined_engine.video.stream import TEMPORAL_MODES

CATEGORY = "inpaint/rethined"


@lru_cache(maxsize=1)
def default_engine() -> Any:
    """One `Engine()` (shipped weights, CUDA when available) shared by every node, loaded on first use."""
    from rethined_engine import Engine

    return Engine()


def batch_masks(mask: Any, images: np.ndarray, name: str = "mask") -> np.ndarray:
    """MASK (B, H, W), (1, H, W) or (H, W) -> (B, H, W) float32 for `images` (B, H, W, 3); ValueError naming the
    input `name` otherwise."""
    mask = np.asarray(mask.cpu().numpy() if hasattr(mask, "cpu") else mask, np.float32)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.shape[1:] != images.shape[1:3] or mask.shape[0] not in (1, images.shape[0]):
        raise ValueError(f"{name}: expected (B, H, W) with B = 1 or {images.shape[0]} and H, W = "
                         f"{images.shape[1]}, {images.shape[2]} (the image's), got {tuple(mask.shape)}")
    return np.broadcast_to(mask, images.shape[:3])


def as_images(image: Any) -> np.ndarray:
    """IMAGE tensor -> (B, H, W, 3) float32 numpy; ValueError naming `image` otherwise."""
    images = np.asarray(image.cpu().numpy() if hasattr(image, "cpu") else image, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"image: expected IMAGE (B, H, W, 3), got {tuple(images.shape)}")
    return images


def as_tensor(images: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(images, np.float32))


class RethinedInpaint:
    """Fill each image where its mask is set (RETHINED, one image at a time)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "inpaint"

    def __init__(self, engine: Any = None):
        self.engine = engine

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), "mask": ("MASK",)}, "optional": {"exclude": ("MASK",)}}

    def inpaint(self, image: Any, mask: Any, exclude: Any = None) -> tuple[Any]:
        images = as_images(image)
        masks = batch_masks(mask, images)
        excludes = [None] * len(images) if exclude is None else batch_masks(exclude, images, "exclude")
        engine = self.engine or default_engine()
        return (as_tensor(np.stack([engine.inpaint(img, m, e) for img, m, e in zip(images, masks, excludes)])),)


class RethinedVideoInpaint:
    """Fill the frames of a clip (the IMAGE batch, in order) with temporal consistency."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "inpaint"

    def __init__(self, engine: Any = None):
        self.engine = engine

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"frames": ("IMAGE",), "mask": ("MASK",),
                             "temporal": (list(TEMPORAL_MODES), {"default": "on"})},
                "optional": {"exclude": ("MASK",)}}

    def inpaint(self, frames: Any, mask: Any, temporal: str = "on", exclude: Any = None) -> tuple[Any]:
        from rethined_engine.video import VideoInpainter

        images = as_images(frames)
        masks = binary_mask(batch_masks(mask, images))
        excludes = [None] * len(images) if exclude is None else binary_mask(batch_masks(exclude, images, "exclude"))
        inpainter = VideoInpainter(self.engine or default_engine(), temporal)
        out = [put_back(img, inpainter.process(to_uint8(img), m, e), m) for img, m, e in zip(images, masks, excludes)]
        return (as_tensor(np.stack(out)),)


NODE_CLASS_MAPPINGS = {"RethinedInpaint": RethinedInpaint, "RethinedVideoInpaint": RethinedVideoInpaint}
NODE_DISPLAY_NAME_MAPPINGS = {"RethinedInpaint": "Inpaint (RETHINED)",
                              "RethinedVideoInpaint": "Inpaint video frames (RETHINED)"}
