"""The colour anchor: a copied fill's low band pulled towards the colours of the nearest known pixels.

A copy brings its source's colour along; a source from a region of another shade leaves a blotch that the
hole's fidelity (PSNR) and the realism metric's coarsest level (colour) pay for. The known pixels nearest to a
hole pixel predict its colour better than a source chosen for its texture, so `colour_anchor` replaces part of
the fill's low band (its Gaussian blur) by the blurred image of the nearest known colours (a Voronoi fill,
found by jump flooding on a grid of ANCHOR_CELL x ANCHOR_CELL px cells). The copies' texture, above the low
band, is kept.

Shapes: LR images (B, C, h, w) with h and w multiples of ANCHOR_CELL; masks (B, 1, h, w) float {0, 1},
1 = hole.
"""
import sys

import torch
import torch.nn.functional as F

from .patchmatch import blur_base

ANCHOR_CELL = 2           # LR px: side of the cells the nearest known colours are found on
FAR = 16384.0             # a cell coordinate no seed has, beyond any grid (exported graphs: fp16 holds it)
JUMP_DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))   # the 8 cells a jump looks at
TIE_BREAK = 1.0 / 16      # added per place in the looks' order: below the 1 that separates integer squared distances
_consts = sys.modules[__name__]  # TorchScript reads module-level numbers only as a module's attributes: _consts.NAME


def cell_sums(image: torch.Tensor, cell: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, h / cell, w / cell): the sum of each cell x cell block (rows first, then columns:
    on the CPU faster than one sum over both)."""
    b, c, h, w = image.shape
    return image.reshape(b, c, h, w // cell, cell).sum(dim=4).reshape(b, c, h // cell, cell, w // cell).sum(dim=3)


def jump_steps(side: int) -> list[int]:
    """Jump flooding's step lengths for a grid whose longer side is `side` cells: the largest power of two
    below `side`, halved down to 1, then 2 and 1 again (JFA+2: plain jump flooding leaves about one cell in a
    thousand with a seed up to a cell farther than its nearest; the two extra steps correct those)."""
    steps = []
    step = 1
    while step * 2 < side:
        step *= 2
    while step >= 1:
        steps.append(step)
        step //= 2
    return steps + [step for step in (2, 1) if step < side]


def _pad_far(grid: torch.Tensor, width: int) -> torch.Tensor:
    """(B, C, gh, gw) -> (B, C, gh + 2 width, gw + 2 width) with FAR around it, by concatenation (no Pad op
    in the exported graph: TensorRT's list lacks it)."""
    b, c, gh, gw = grid.shape
    column = torch.full((b, c, gh, width), _consts.FAR, dtype=grid.dtype, device=grid.device)
    grid = torch.cat([column, grid, column], dim=3)
    row = torch.full((b, c, width, gw + 2 * width), _consts.FAR, dtype=grid.dtype, device=grid.device)
    return torch.cat([row, grid, row], dim=2)


def nearest_seeds(is_seed: torch.Tensor, steps: list[int]) -> torch.Tensor:
    """Jump flooding (Rong and Tan, 2006): is_seed (B, 1, gh, gw) bool -> (B, 2, gh, gw) float32 (row, col) of
    each cell's nearest seed (Euclidean distance in cells); FAR on grids without a seed. Each step looks at the
    eight cells `step` away and keeps the nearest of their seeds and its own, all nine compared at once (one
    TopK: on the CPU a tenth of the time of eight compare-and-select passes); of seeds equally near, its own,
    then the first in JUMP_DIRECTIONS' order, wins (TIE_BREAK), so every backend picks the same one."""
    gh, gw = is_seed.shape[-2], is_seed.shape[-1]
    rows = torch.arange(gh, device=is_seed.device, dtype=torch.float32)[:, None].expand(gh, gw)
    cols = torch.arange(gw, device=is_seed.device, dtype=torch.float32)[None, :].expand(gh, gw)
    here = torch.stack([rows, cols])[None]                                    # (1, 2, gh, gw)
    seeds = torch.where(is_seed, here, torch.full_like(here, _consts.FAR))
    order = torch.arange(len(_consts.JUMP_DIRECTIONS) + 1, device=is_seed.device, dtype=torch.float32)
    tie_break = (order * _consts.TIE_BREAK)[None, :, None, None]
    for step in steps:
        padded = _pad_far(seeds, step)
        looks = [seeds]
        for dy, dx in _consts.JUMP_DIRECTIONS:
            top, left = (dy + 1) * step, (dx + 1) * step
            looks.append(padded[:, :, top:top + gh, left:left + gw])
        options = torch.stack(looks, dim=1)                                   # (B, 9, 2, gh, gw)
        offset = options - here[:, None]
        offset = offset * offset
        distance = offset[:, :, 0] + offset[:, :, 1] + tie_break              # (B, 9, gh, gw)
        _, pick = torch.topk(distance, 1, dim=1, largest=False)
        seeds = torch.gather(options, 1, pick[:, :, None].expand(-1, -1, 2, -1, -1)).squeeze(1)
    return seeds


def known_cell_means(image: torch.Tensor, mask: torch.Tensor, cell: int) -> tuple[torch.Tensor, torch.Tensor]:
    """image (B, C, h, w), mask (B, 1, h, w) float {0, 1} -> (the mean of each cell's known pixels (B, C, h / cell,
    w / cell), 0 in a cell without one; which cells hold a known pixel (B, 1, h / cell, w / cell) bool)."""
    known = 1.0 - mask
    weight = cell_sums(known, cell)
    return cell_sums(image * known, cell) / weight.clamp(min=1.0), weight > 0.0


def nearest_known_colours(composite: torch.Tensor, mask: torch.Tensor, cell: int,
                          steps: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(the mean known colour of the nearest cell that holds a known pixel, per cell (B, 3, h / cell, w / cell);
    whether the image holds a known pixel at all (B, 1, 1, 1) float {0, 1})."""
    colours, is_seed = known_cell_means(composite, mask, cell)
    seeds = nearest_seeds(is_seed, steps)
    gw = colours.shape[-1]
    has_seed = is_seed.flatten(1).any(dim=1).reshape(-1, 1, 1, 1)
    index = (seeds[:, 0:1] * gw + seeds[:, 1:2]).to(torch.int64)
    index = torch.where(has_seed, index, torch.zeros_like(index)).flatten(1)
    flat = colours.flatten(2)
    picked = torch.gather(flat, 2, index[:, None, :].expand(-1, flat.shape[1], -1))
    return picked.reshape(colours.shape), has_seed.to(composite.dtype)


def colour_anchor(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, strength: float,
                  sigma: float, steps: list[int]) -> torch.Tensor:
    """The fill with `strength` of its low band replaced by the nearest known colours' (`ModelConfig.colour_anchor`).

    composite (B, 3, h, w): the image with its known pixels real; mask (B, 1, h, w) float {0, 1}, 1 = hole;
    filled (B, 3, h, w) in [0, 1]: the fill (hole pixels used). Both low bands are Gaussian blurs of sigma LR
    px, taken on the ANCHOR_CELL grid (cell means, sigma / ANCHOR_CELL cells) and bilinearly upsampled;
    `steps`: `jump_steps` of that grid. Returns `filled` with strength * (anchor - the fill's low band) added
    to its hole pixels, clamped to [0, 1] (its known pixels, and every pixel of an image without a known one,
    get 0 added)."""
    cell = _consts.ANCHOR_CELL
    nearest, has_seed = nearest_known_colours(composite, mask, cell, steps)
    fill_cells = cell_sums(filled, cell) / float(cell * cell)
    cell_sigma = sigma / cell
    shift = blur_base(nearest - fill_cells, cell_sigma) * (strength * has_seed)   # the two low bands' difference
    shift = F.interpolate(shift.to(filled.dtype), scale_factor=float(cell), mode="bilinear", align_corners=False)
    return (filled + shift * mask).clamp(0.0, 1.0)
