"""Shapes for arbitrary images: integer HR scale, token grid, padding (brief section 3).

Importable without torch (the TensorRT runtime plans with it); the tensor helpers import torch lazily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import ModelConfig
from .frame_lines import keep_grid

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
    key_edge: int = 0
    frame_lines: bool = False   # `ModelConfig.key_frame_lines`: no sources along a side holding a frame line

    @property
    def lr_size(self) -> tuple[int, int]:
        return self.grid_h * self.patch, self.grid_w * self.patch

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.grid_h * self.patch * self.scale, self.grid_w * self.patch * self.scale

    def inside_grid(self) -> np.ndarray:
        """(gh, gw) bool: the tokens whose HR patch lies wholly inside the original image."""
        return self._token_grid(0)

    def key_inside_grid(self) -> np.ndarray:
        """(gh, gw) bool: the tokens that may be keys: inside the image, less `key_edge` at each of its edges
        (`key_tokens`)."""
        return self._token_grid(self.key_edge)

    def _token_grid(self, edge: int) -> np.ndarray:
        span = self.scale * self.patch
        first_row, stop_row = key_tokens(self.height, span, edge)
        first_col, stop_col = key_tokens(self.width, span, edge)
        rows, cols = np.arange(self.grid_h), np.arange(self.grid_w)
        return (((rows >= first_row) & (rows < stop_row))[:, None]
                & ((cols >= first_col) & (cols < stop_col))[None, :])

    def key_inside(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(gh*gw,) bool tensor of `key_inside_grid`, flattened row-major."""
        import torch

        return torch.from_numpy(self.key_inside_grid().reshape(-1)).to(device)

    def tokens_touching(self, pixels: np.ndarray) -> np.ndarray:
        """(gh, gw) bool: the tokens wholly inside the image (`inside_grid`) with a set pixel of `pixels` (H, W)
        bool in their span x span HR px; False for the others."""
        span = self.scale * self.patch
        rows, cols = tokens_inside(self.height, span), tokens_inside(self.width, span)
        touched = np.zeros((self.grid_h, self.grid_w), bool)
        inside = pixels[:rows * span, :cols * span].view(np.uint8)   # max over rows, then columns: ~10x faster than any
        per_row = inside.reshape(rows, span, cols * span).max(axis=1)
        touched[:rows, :cols] = per_row.reshape(rows, cols, span).max(axis=2) > 0
        return touched

    def source_grid(self, exclude: np.ndarray | None, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(gh, gw) bool: the tokens that may be sources of the fill: `key_inside_grid` less those touching the
        excluded pixels `exclude` (H, W) bool (`tokens_touching`; None: none excluded) and, with `frame_lines`,
        those along a side of `image` (H, W, 3) uint8 or float in [0, 1] that holds a frame line
        (`frame_lines.keep_grid`; mask (H, W) bool or {0, 1}, 1 = hole)."""
        keys = self.key_inside_grid()
        if self.frame_lines:
            keys = keys & keep_grid(image, mask, self.scale * self.patch, self.grid_h, self.grid_w)
        return keys if exclude is None else keys & ~self.tokens_touching(exclude)


def tokens_inside(extent: int, span: int) -> int:
    """How many leading tokens of `span` HR px lie wholly inside `extent` HR px (token i ends at (i + 1) span)."""
    return extent // span


def key_tokens(extent: int, span: int, edge: int) -> tuple[int, int]:
    """(first, stop): along one side of `extent` HR px, the tokens first .. stop - 1 of `span` HR px may be keys:
    those wholly inside the image (`tokens_inside`) less `edge` at each end, unless that would leave none (an
    image only a few tokens wide keeps them all). Integer arithmetic only: TorchScript compiles it."""
    inside = tokens_inside(extent, span)
    if inside > 2 * edge:
        return edge, inside - edge
    return 0, inside


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def grid_plan(height: int, width: int, lr_long_side: int, patch: int, grid_multiple: int) -> tuple[int, int, int]:
    """(scale s, grid_h, grid_w) for an H x W image: s = ceil(max(H, W) / L) and the smallest token grid
    covering the image whose LR size is a multiple of `grid_multiple` (the CNN's stride). Integer
    arithmetic only: TorchScript compiles it, so the exported module plans any size itself."""
    scale = max(1, _ceil_div(max(height, width), lr_long_side))
    tokens_per_multiple = grid_multiple // patch
    span = scale * patch * tokens_per_multiple
    return scale, _ceil_div(height, span) * tokens_per_multiple, _ceil_div(width, span) * tokens_per_multiple


def plan(height: int, width: int, cfg: ModelConfig) -> Geometry:
    """The `Geometry` of an H x W image (`grid_plan`)."""
    scale, grid_h, grid_w = grid_plan(height, width, cfg.lr_long_side, cfg.patch_size, cfg.grid_multiple)
    return Geometry(height, width, scale, cfg.patch_size, grid_h, grid_w, cfg.key_edge_tokens, cfg.key_frame_lines)


def pad_mode(height: int, width: int, size: tuple[int, int]) -> str:
    """"reflect" (edge not repeated) or, where the pad exceeds the image, "replicate"."""
    return "reflect" if size[0] - height < height and size[1] - width < width else "replicate"


def pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad (B, C, H, W) bottom/right to `size` by `pad_mode` (`model.upscale.pad_to`, which TorchScript
    compiles; this module imports without torch)."""
    from .model.upscale import pad_to as pad_tensor

    return pad_tensor(x, size)


FINE_TAPS = (0.25, 0.5, 0.25)   # separable 3x3 binomial blur B; y - B(y) is the finest band of an HR token


def gaussian_tap_list(scale: int) -> tuple[list[float], int]:
    """1-D anti-alias taps for an integer downsample by `scale` (> 1), centred on each s-pixel cell.

    sigma = (s - 1) / 2 (as scikit-image's anti-aliasing); returns (taps of length s + 2r summing to 1, r).
    Python floats (double precision), no numpy: TorchScript compiles it.
    """
    sigma = (scale - 1) / 2
    radius = math.ceil(3 * sigma)
    taps = [math.exp(-0.5 * ((i - radius - sigma) / sigma) ** 2) for i in range(scale + 2 * radius)]
    total = sum(taps)
    return [tap / total for tap in taps], radius


def gaussian_taps(scale: int) -> tuple[np.ndarray, int]:
    """`gaussian_tap_list` as a float64 array: (taps of length s + 2r, r)."""
    taps, radius = gaussian_tap_list(scale)
    return np.asarray(taps, dtype=np.float64), radius


def gaussian_kernel_list(sigma: float) -> list[float]:
    """1-D Gaussian taps of sigma px, centred, radius ceil(3 sigma) px, summing to 1 (length 2r + 1).
    Python floats (double precision), no numpy: TorchScript compiles it."""
    radius = math.ceil(3 * sigma)
    taps = [math.exp(-0.5 * (i * i) / (sigma * sigma)) for i in range(-radius, radius + 1)]
    total = sum(taps)
    return [tap / total for tap in taps]


def seam_taps(sigma: float) -> np.ndarray:
    """`gaussian_kernel_list(sigma)` as float32: the taps of the seam blend (`model.upscale.blend_seams`), and of
    the native extension's copy-step filters (`backends.native_backend.CopyKernels`)."""
    return np.asarray(gaussian_kernel_list(sigma), dtype=np.float32)
