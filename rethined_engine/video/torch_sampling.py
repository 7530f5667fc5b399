"""Small torch helpers shared by the flow and the temporal steps on a torch device: cached constants, pixel
grids and reads of images at px positions."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=256)
def constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """A small float32 tensor of values on device, made once: no host-to-device copy per call."""
    return torch.tensor(values, dtype=torch.float32, device=device)


def sample_at(images: torch.Tensor, positions: torch.Tensor, nearest: bool = False) -> torch.Tensor:
    """images (N, C, h, w), each read at its own positions (N, a, b, 2) (x, y) px, edges replicated ->
    (N, C, a, b) float (bilinear, or the nearest pixel)."""
    h, w = images.shape[-2:]
    scale = constant((2 / max(w - 1, 1), 2 / max(h - 1, 1)), positions.device)
    grid = torch.addcmul(constant((-1.0, -1.0), positions.device), positions, scale)   # to [-1, 1]: one operation
    return F.grid_sample(images, grid, mode="nearest" if nearest else "bilinear", padding_mode="border",
                         align_corners=True)


@lru_cache(maxsize=16)
def pixel_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(height, width, 2) float32 (x, y) coordinates of every pixel on device; shared, not to be written."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                            torch.arange(width, dtype=torch.float32, device=device), indexing="ij")
    return torch.stack((xs, ys), -1)
