"""Shapes for arbitrary images: integer HR scale, token grid, padding (brief section 3)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import ModelConfig


@dataclass(frozen=True)
class Geometry:
    """How an H x W image maps onto the LR token grid.

    scale s: HR pixels per LR pixel; grid (gh, gw): tokens; each token is P x P LR pixels and
    (sP) x (sP) HR pixels. The HR image is padded (bottom/right) to (gh*s*P, gw*s*P).
    """

    height: int
    width: int
    scale: int
    patch: int
    grid_h: int
    grid_w: int

    @property
    def lr_size(self) -> tuple[int, int]:
        return self.grid_h * self.patch, self.grid_w * self.patch

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.grid_h * self.patch * self.scale, self.grid_w * self.patch * self.scale

    def key_inside(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(gh*gw,) bool: tokens whose HR patch lies wholly inside the original image (may be keys)."""
        span = self.scale * self.patch
        rows = (torch.arange(self.grid_h, device=device) + 1) * span <= self.height
        cols = (torch.arange(self.grid_w, device=device) + 1) * span <= self.width
        return (rows[:, None] & cols[None, :]).flatten()


def plan(height: int, width: int, cfg: ModelConfig) -> Geometry:
    """Pick s = ceil(max(H, W) / L) and the smallest token grid covering the image whose LR size is a
    multiple of the CNN's stride."""
    scale = max(1, math.ceil(max(height, width) / cfg.lr_long_side))
    tokens_per_multiple = cfg.grid_multiple // cfg.patch_size
    span = scale * cfg.patch_size * tokens_per_multiple
    grid_h = math.ceil(height / span) * tokens_per_multiple
    grid_w = math.ceil(width / span) * tokens_per_multiple
    return Geometry(height, width, scale, cfg.patch_size, grid_h, grid_w)


def pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad (B, C, H, W) bottom/right to `size` by reflection (replication where the pad exceeds the
    image, which reflection cannot do)."""
    pad_h, pad_w = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
