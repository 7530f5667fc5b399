"""Flat surroundings: where the hole's known surroundings are flat, a membrane instead of the copies' colours.

In an out-of-focus background, a fog or a clear sky, a copy brings structure that is not there: a bright block of
cloud, a dark stroke of the branch beside the hole, each edge of the copied token showing. A membrane through the
known pixels (a smooth surface, harmonic in the hole) is the better guess there, but not where two regions meet:
a membrane spreads a sky's grey into a pyramid's hidden apex, where the copies continue the stone. `flat_fill`
(`ModelConfig.colour_anchor_flat`) moves the fill's low band towards the membrane by the product of two weights:
`flat_weight`, how flat the known surroundings are, and how alike the known colours are that the membrane mixes at
each hole pixel (their variance about it).

A membrane levels every slope off: across an object removed from a sky's gradient, a lit wall or a blurred
background it leaves a flat patch. The continued forms (`ModelConfig.flat_fill_form`) take `continued_fill`
instead, which carries the known pixels' slopes into the hole (close to the biharmonic fill, at the cost of two
membranes), and weigh it by how well it predicts the known ring beside the hole when that ring is left out
(`holdout_weight`): the smooth guess is trusted where it has just shown that it works.

Shapes: LR images (B, C, h, w) with h and w multiples of 32; masks (B, 1, h, w) float {0, 1}, 1 = hole.
"""
import math
import sys

import torch
import torch.nn.functional as F

from . import patchmatch as _patchmatch   # TorchScript reads its numbers as the module's attributes
from .anchor import known_cell_means
from .patchmatch import _abs, blur_base, harmonic_fill, poisson_fill

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
HOLDOUT_RING = 4          # LR px: the known ring beside the hole that the continued fill is scored on, left out
HOLDOUT_ERROR_LOW = 3e-4  # the continued fill's squared error on that ring (summed over RGB, [0, 1] scale, a cell's
HOLDOUT_ERROR_HIGH = 3e-3  # mean): weight 1 at or below LOW, 0 from HIGH, log-linear between
HOLDOUT_ERROR_FLOOR = 1e-7  # the error's smallest value (log of 0 is not a number; float16 holds it)
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


def flat_fill(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, form: str = "membrane"
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """composite (B, 3, h, w) with its known pixels real, mask, filled (B, 3, h, w): the fill (hole pixels used),
    form (`ModelConfig.flat_fill_form`) -> (the fill with its low band below a Gaussian of FLAT_LOW_SIGMA replaced
    by a smooth fill through the known pixels (MEMBRANE_CELL px cells), (B, 3, h, w); the weight of that fill
    (B, 1, h, w) in [0, 1]).

    "membrane": the smooth fill the known colours' membrane; its weight `flat_weight` times the uniform weight, 1
    where the known colours' variance about the membrane (the membrane of their squares less the membrane's square,
    summed over RGB) is at most SPREAD_LOW, 0 from SPREAD_HIGH, log-linear between. "continued": the smooth fill
    `continued_fill`, its weight `holdout_weight`; "continued_flat": that weight times `flat_weight`."""
    channels = composite.shape[1]
    if form == "membrane":
        both = known_membrane(torch.cat([composite, composite * composite], dim=1), mask, _consts.MEMBRANE_CELL,
                              _consts.MEMBRANE_LEVELS)
        smooth, squares = both[:, :channels], both[:, channels:]
        weight = flat_weight(composite, mask) * agreement(smooth, squares)
    else:
        smooth = continued_fill(composite, mask, _consts.MEMBRANE_CELL, _consts.MEMBRANE_LEVELS)
        weight = holdout_weight(composite, mask)
        if form == "continued_flat":
            weight = weight * flat_weight(composite, mask)
    low = blur_base(torch.where(mask > 0, filled, composite), _consts.FLAT_LOW_SIGMA)
    return filled - low + smooth, weight


def continued_fill(image: torch.Tensor, mask: torch.Tensor, cell: int, levels: int) -> torch.Tensor:
    """A smooth fill that continues the known pixels' gradients into the hole, (B, C, h, w): on the grid of the
    known pixels' cell x cell means (cells without one free), the differences between neighbouring known cells are
    carried into the hole by a membrane (`harmonic_fill`, `levels` halvings), and the fill is the Poisson solution
    (`poisson_fill`) whose Laplacian is their divergence, through the known cells; upsampled bilinearly. Where a
    membrane levels a ramp off, this continues it: close to the biharmonic fill (smooth in value and slope) at the
    cost of two membranes, exact for a quadratic."""
    means, has_known = known_cell_means(image, mask, cell)
    known = has_known.to(image.dtype)
    steps = torch.cat(grid_steps(means), dim=0)            # (2B, C, gh, gw): along rows, then along columns
    step_known = torch.cat(grid_steps(known, product=True), dim=0)
    along_x, along_y = harmonic_fill(steps, step_known, levels).chunk(2, dim=0)
    cells = poisson_fill(means, known, divergence(along_x, along_y), levels)
    return F.interpolate(cells, scale_factor=float(cell), mode="bilinear", align_corners=False)


def grid_steps(grid: torch.Tensor, product: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """grid (B, C, gh, gw) -> its forward differences (each cell's right neighbour less it; each cell's lower
    neighbour less it), each (B, C, gh, gw), 0 past the last column / row; with product, the products of the two
    cells instead (of a {0, 1} grid: both set), 0 past the last column / row."""
    b, c, gh, gw = grid.shape
    column, row = grid.new_zeros(b, c, gh, 1), grid.new_zeros(b, c, 1, gw)
    right, below = grid[:, :, :, 1:], grid[:, :, 1:, :]
    if product:
        x_step, y_step = right * grid[:, :, :, :-1], below * grid[:, :, :-1, :]
    else:
        x_step, y_step = right - grid[:, :, :, :-1], below - grid[:, :, :-1, :]
    return torch.cat([x_step, column], dim=3), torch.cat([y_step, row], dim=2)


def divergence(along_x: torch.Tensor, along_y: torch.Tensor) -> torch.Tensor:
    """The divergence of a field of forward differences (`grid_steps`' layout, (B, C, gh, gw) each; the values past
    the last column / row are not read): at each cell, its step to the right less the step into it from the left,
    plus the same down the columns. Of a grid's own steps, its grid Laplacian (`poisson_fill`'s)."""
    b, c, gh, gw = along_x.shape
    column, row = along_x.new_zeros(b, c, gh, 1), along_x.new_zeros(b, c, 1, gw)
    x_step, y_step = along_x[:, :, :, :-1], along_y[:, :, :-1, :]
    return (torch.cat([x_step, column], dim=3) - torch.cat([column, x_step], dim=3)
            + torch.cat([y_step, row], dim=2) - torch.cat([row, y_step], dim=2))


def holdout_weight(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """How well `continued_fill` predicts the known pixels next to the hole, (B, 1, h, w) in [0, 1]: the hole is
    grown by HOLDOUT_RING px and filled from the rest; that fill's squared error on the ring (summed over RGB) is
    averaged over each MEMBRANE_CELL cell's ring pixels and carried into the hole by a membrane through those cells;
    1 where it is at most HOLDOUT_ERROR_LOW, 0 from HOLDOUT_ERROR_HIGH, log-linear between; 0 in an image without a
    ring pixel (nothing to judge by)."""
    ring_width: int = _consts.HOLDOUT_RING
    grown = F.max_pool2d(mask, 2 * ring_width + 1, stride=1, padding=ring_width)
    ring = grown - mask
    guess = continued_fill(composite, grown, _consts.MEMBRANE_CELL, _consts.MEMBRANE_LEVELS)
    miss = guess - composite
    error = (miss * miss).sum(dim=1, keepdim=True) * ring
    carried = known_membrane(error, 1.0 - ring, _consts.MEMBRANE_CELL, _consts.MEMBRANE_LEVELS)
    weight = log_ramp(carried.clamp(min=_consts.HOLDOUT_ERROR_FLOOR), _consts.HOLDOUT_ERROR_LOW,
                      _consts.HOLDOUT_ERROR_HIGH)
    return weight * (ring.sum(dim=(2, 3), keepdim=True) > 0).to(weight.dtype)
