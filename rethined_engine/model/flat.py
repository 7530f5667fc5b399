"""Flat surroundings: where the hole's known surroundings are flat, a membrane instead of the copies' colours.

In an out-of-focus background, a fog or a clear sky, a copy brings structure that is not there: a bright block of
cloud, a dark stroke of the branch beside the hole, each edge of the copied token showing. A membrane through the
known pixels (a smooth surface, harmonic in the hole) is the better guess there, but not where two regions meet:
a membrane spreads a sky's grey into a pyramid's hidden apex, where the copies continue the stone. `flat_fill`
(`ModelConfig.colour_anchor_flat`) moves the fill's low band towards the membrane by the product of two weights:
`flat_weight`, how flat the known surroundings are, and how alike the known colours are that the membrane mixes at
each hole pixel (their variance about it).

Shapes: LR images (B, C, h, w) with h and w multiples of 32; masks (B, 1, h, w) float {0, 1}, 1 = hole.
"""
import math
import sys

import torch
import torch.nn.functional as F

from . import patchmatch as _patchmatch   # TorchScript reads its numbers as the module's attributes
from .anchor import known_cell_means
from .patchmatch import _abs, blur_base, harmonic_fill

BAND_CELL = 2             # LR px: `flat_weight` works on the known means of cells of this side
FLAT_BAND_SIGMAS = (1.0, 6.0)  # LR px: the band (difference of two Gaussian blurs) whose size tells flat surroundings
FLAT_WINDOW_SIGMA = 4.0   # LR px: the Gaussian that averages the band's size over the known pixels around each pixel
FLAT_DETAIL_LOW = 0.008   # sum over RGB of the band's size ([0, 1] scale): at or below it the surroundings are flat
FLAT_DETAIL_HIGH = 0.025  # ... at or above it structured (weight 0); log-linear between. 10th-90th percentiles over
                          # a photo at 512 px: a bokeh 0.004-0.04, a leaf's veins 0.015-0.11, buildings 0.005-0.4
FLAT_DETAIL_FLOOR = 1e-5  # the band's smallest size (log of 0 is not a number)
FLAT_CELL = 8             # LR px: the band's size is carried into the hole by a membrane on cells of this side
FLAT_LEVELS = 2           # multigrid halvings of that cell grid
MEMBRANE_CELL = 4         # LR px: the known colours' membrane is solved on cells of this side, upsampled bilinearly
MEMBRANE_LEVELS = 3       # multigrid halvings of that cell grid
FLAT_LOW_SIGMA = 2.0      # LR px: the fill's low band (Gaussian) that the membrane replaces
SPREAD_LOW = 1e-3         # sum over RGB of the known colours' variance about the membrane: at or below, alike
SPREAD_HIGH = 1e-2        # ... at or above it two regions meet (weight 0); log-linear between. A fog 3e-5 to 4e-3, a
                          # pyramid's edge against the sky up to 5e-2 (10th-90th percentiles over a hole's flat pixels)
SPREAD_FLOOR = 1e-7       # a channel's smallest variance (rounding makes that of alike colours slightly negative)
_consts = sys.modules[__name__]  # TorchScript reads module-level numbers only as a module's attributes: _consts.NAME


def known_blur(image: torch.Tensor, known: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Gaussian mean (sigma px) of image (B, C, h, w) over the pixels where known (B, 1, h, w) float {0, 1} is
    1 (normalised convolution, the values and their weight blurred in one pass): a blur that no hole pixel leaks
    into; 0 where no known pixel is near (`model.patchmatch.MEAN_WEIGHT_FLOOR`)."""
    channels = image.shape[1]
    means = blur_base(torch.cat([image * known, known], dim=1), sigma)
    return means[:, :channels] / means[:, channels:].clamp(min=_patchmatch.MEAN_WEIGHT_FLOOR)


def known_membrane(image: torch.Tensor, mask: torch.Tensor, cell: int, levels: int) -> torch.Tensor:
    """A membrane through the known pixels, (B, C, h, w): the mean known value of every cell x cell cell that holds a
    known pixel is fixed, the other cells are harmonic (`harmonic_fill` with `levels` multigrid halvings), and the
    cell grid is upsampled bilinearly."""
    means, has_known = known_cell_means(image, mask, cell)
    membrane = harmonic_fill(means, has_known.to(image.dtype), levels)
    return F.interpolate(membrane, scale_factor=float(cell), mode="bilinear", align_corners=False)


def log_ramp(value: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """1 where value (> 0) is at most low, 0 from high, linear in log(value) between."""
    top = math.log(high)
    return ((top - torch.log(value)) * (1.0 / (top - math.log(low)))).clamp(0.0, 1.0)


def flat_weight(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """How flat each hole pixel's known surroundings are, (B, 1, h, w) in [0, 1]: 1 where the magnitude of the
    known pixels' band between Gaussian blurs of FLAT_BAND_SIGMAS (RGB-summed, averaged by a Gaussian of
    FLAT_WINDOW_SIGMA over known pixels, then carried into the hole by a membrane through the FLAT_CELL px cells
    that hold a known pixel) is at most FLAT_DETAIL_LOW, 0 from FLAT_DETAIL_HIGH, log-linear between. The band
    leaves out the finest detail (noise, grain: a sky has some) and measures the structure a copy brings
    (stripes, edges, clouds' outlines); a steep ramp (over 0.002 per LR px) reads as some structure beside the
    hole, where the blurs see one side of it. Known pixels get their own surroundings' value. Computed on the
    BAND_CELL grid (known cell means; sigmas in cells) and upsampled bilinearly."""
    cell: int = _consts.BAND_CELL
    means, has_known = known_cell_means(composite, mask, cell)
    known = has_known.to(composite.dtype)
    fine_sigma, coarse_sigma = _consts.FLAT_BAND_SIGMAS
    band = known_blur(means, known, fine_sigma / cell) - known_blur(means, known, coarse_sigma / cell)
    size = known_blur(_abs(band).sum(dim=1, keepdim=True), known, _consts.FLAT_WINDOW_SIGMA / cell)
    membrane = known_membrane(size, 1.0 - known, _consts.FLAT_CELL // cell, _consts.FLAT_LEVELS)
    return flatness(size, membrane, known)


def flatness(size: torch.Tensor, carried: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """`flat_weight`'s ramp on the BAND_CELL grid: the band's size (B, 1, gh, gw) where a cell holds a known pixel
    (known float {0, 1}), else the size carried into the hole -> 1 at most FLAT_DETAIL_LOW, 0 from FLAT_DETAIL_HIGH,
    log-linear between, upsampled bilinearly to (B, 1, h, w)."""
    level = torch.where(known > 0, size, carried).clamp(min=_consts.FLAT_DETAIL_FLOOR)
    weight = log_ramp(level, _consts.FLAT_DETAIL_LOW, _consts.FLAT_DETAIL_HIGH)
    return F.interpolate(weight, scale_factor=float(_consts.BAND_CELL), mode="bilinear", align_corners=False)


def agreement(colours: torch.Tensor, squares: torch.Tensor) -> torch.Tensor:
    """How alike the known colours are that a membrane mixes, (B, 1, h, w) in [0, 1]: colours, squares (B, C, h, w),
    the membranes of the known colours and of their squares -> 1 where their variance (summed over channels) is at
    most SPREAD_LOW, 0 from SPREAD_HIGH, log-linear between."""
    spread = (squares - colours * colours).clamp(min=_consts.SPREAD_FLOOR).sum(dim=1, keepdim=True)
    return log_ramp(spread, _consts.SPREAD_LOW, _consts.SPREAD_HIGH)


def flat_fill(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """composite (B, 3, h, w) with its known pixels real, mask, filled (B, 3, h, w): the fill (hole pixels used) ->
    (the fill with its low band below a Gaussian of FLAT_LOW_SIGMA replaced by the known colours' membrane
    (MEMBRANE_CELL px cells), (B, 3, h, w); the weight of that fill (B, 1, h, w) in [0, 1]: `flat_weight` times
    the uniform weight, 1 where the known colours' variance about the membrane (the membrane of their squares
    less the membrane's square, summed over RGB) is at most SPREAD_LOW, 0 from SPREAD_HIGH, log-linear between)."""
    channels = composite.shape[1]
    both = known_membrane(torch.cat([composite, composite * composite], dim=1), mask, _consts.MEMBRANE_CELL,
                          _consts.MEMBRANE_LEVELS)
    membrane, squares = both[:, :channels], both[:, channels:]
    weight = flat_weight(composite, mask) * agreement(membrane, squares)
    low = blur_base(torch.where(mask > 0, filled, composite), _consts.FLAT_LOW_SIGMA)
    return filled - low + membrane, weight
