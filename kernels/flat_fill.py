"""The flat fill (`model.flat.flat_fill`: where the hole's known surroundings are flat and their colours agree, the
fill's low band moved towards a membrane through the known pixels) with its blurs and membranes as Triton kernels,
and its torch reference of the same signature.

In torch the fill's four Gaussian blurs are a multiply-add per tap and axis and its two membranes ten small
operations per Jacobi sweep: ~960 operations per call at 512^2 LR (`bench.op_count`). Here each blur is
`kernels.blur.blur_base` (one launch per axis) and each membrane `kernels.membrane.harmonic_fill` (a pyramid launch,
one for the levels of at most its SMALL_GRID cells, one per sweep of each finer level); the cell means, the ramps and
the bilinear upsamplings stay torch operations (the ramps are `flat.flatness` and `flat.agreement`, shared with
the reference). Same arguments and results as the reference, within float rounding
(tests/test_kernel_flat_fill.py).

Shapes: LR images (B, C, h, w) with h and w multiples of 32; masks (B, 1, h, w) float {0, 1}, 1 = hole.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rethined_engine.model import flat, patchmatch
from rethined_engine.model.anchor import known_cell_means

from . import blur, membrane


def known_blur(image: torch.Tensor, known: torch.Tensor, sigma: float) -> torch.Tensor:
    """`flat.known_blur` (the Gaussian mean of image (B, C, h, w) over its known pixels) by `blur.blur_base`."""
    channels = image.shape[1]
    means = blur.blur_base(torch.cat([image * known, known], dim=1), sigma)
    return means[:, :channels] / means[:, channels:].clamp(min=patchmatch.MEAN_WEIGHT_FLOOR)


def known_membrane(image: torch.Tensor, mask: torch.Tensor, cell: int, levels: int) -> torch.Tensor:
    """`flat.known_membrane` (a membrane through the known pixels' cell means, (B, C, h, w)) by
    `membrane.harmonic_fill`."""
    means, has_known = known_cell_means(image, mask, cell)
    fill = membrane.harmonic_fill(means, has_known.to(image.dtype), levels)
    return F.interpolate(fill, scale_factor=float(cell), mode="bilinear", align_corners=False)


def flat_weight(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`flat.flat_weight` (how flat each pixel's known surroundings are, (B, 1, h, w) in [0, 1]) with its blurs and
    membrane as Triton kernels."""
    cell = flat.BAND_CELL
    means, has_known = known_cell_means(composite, mask, cell)
    known = has_known.to(composite.dtype)
    fine_sigma, coarse_sigma = flat.FLAT_BAND_SIGMAS
    band = known_blur(means, known, fine_sigma / cell) - known_blur(means, known, coarse_sigma / cell)
    size = known_blur(band.abs().sum(dim=1, keepdim=True), known, flat.FLAT_WINDOW_SIGMA / cell)
    carried = known_membrane(size, 1.0 - known, flat.FLAT_CELL // cell, flat.FLAT_LEVELS)
    return flat.flatness(size, carried, known)


def flat_fill(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """`flat.flat_fill`: composite (B, 3, h, w), mask (B, 1, h, w), filled (B, 3, h, w) -> (the fill with its low
    band the known colours' membrane (B, 3, h, w), that fill's weight (B, 1, h, w) in [0, 1])."""
    channels = composite.shape[1]
    both = known_membrane(torch.cat([composite, composite * composite], dim=1), mask, flat.MEMBRANE_CELL,
                          flat.MEMBRANE_LEVELS)
    colours, squares = both[:, :channels], both[:, channels:]
    weight = flat_weight(composite, mask) * flat.agreement(colours, squares)
    low = blur.blur_base(torch.where(mask > 0, filled, composite), flat.FLAT_LOW_SIGMA)
    return filled - low + colours, weight


def flat_fill_reference(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """`flat_fill` in torch: `model.flat.flat_fill`."""
    return flat.flat_fill(composite, mask, filled)
