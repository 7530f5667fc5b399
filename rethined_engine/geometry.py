"""Shapes for arbitrary images: integer HR scale, token grid, padding (brief section 3).

Importable without torch (the TensorRT runtime plans with it); the tensor helpers import torch lazily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import ModelConfig

if TYPE_CHECKING:
    import torch


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

    def key_inside_grid(self) -> np.ndarray:
        """(gh, gw) bool: tokens whose HR patch lies wholly inside the original image (may be keys)."""
        span = self.scale * self.patch
        rows = (np.arange(self.grid_h) + 1) * span <= self.height
        cols = (np.arange(self.grid_w) + 1) * span <= self.width
        return rows[:, None] & cols[None, :]

    def key_inside(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(gh*gw,) bool tensor of `key_inside_grid`, flattened row-major."""
        import torch

        return torch.from_numpy(self.key_inside_grid().reshape(-1)).to(device)


def plan(height: int, width: int, cfg: ModelConfig) -> Geometry:
    """Pick s = ceil(max(H, W) / L) and the smallest token grid covering the image whose LR size is a
    multiple of the CNN's stride."""
    scale = max(1, math.ceil(max(height, width) / cfg.lr_long_side))
    tokens_per_multiple = cfg.grid_multiple // cfg.patch_size
    span = scale * cfg.patch_size * tokens_per_multiple
    grid_h = math.ceil(height / span) * tokens_per_multiple
    grid_w = math.ceil(width / span) * tokens_per_multiple
    return Geometry(height, width, scale, cfg.patch_size, grid_h, grid_w)


def pad_mode(height: int, width: int, size: tuple[int, int]) -> str:
    """"reflect" (edge not repeated) or, where the pad exceeds the image, "replicate"."""
    return "reflect" if size[0] - height < height and size[1] - width < width else "replicate"


def pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad (B, C, H, W) bottom/right to `size` by `pad_mode`."""
    import torch.nn.functional as F

    pad_h, pad_w = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode=pad_mode(x.shape[-2], x.shape[-1], size))


FINE_TAPS = (0.25, 0.5, 0.25)   # separable 3x3 binomial blur B; y - B(y) is the finest band of an HR token


def gaussian_taps(scale: int) -> tuple[np.ndarray, int]:
    """1-D anti-alias taps (float64) for an integer downsample by `scale`, centred on each s-pixel cell.

    sigma = (s - 1) / 2 (as scikit-image's anti-aliasing); returns (taps of length s + 2r, r).
    """
    sigma = (scale - 1) / 2
    radius = math.ceil(3 * sigma)
    offsets = np.arange(-radius, scale + radius, dtype=np.float64) - (scale - 1) / 2
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum(), radius


def seam_taps(sigma: float) -> np.ndarray:
    """1-D Gaussian taps (float32, radius ceil(3 sigma) px, summing to 1) of the seam blend
    (`model.upscale.blend_seams`)."""
    radius = math.ceil(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1, dtype=np.float64) / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)
