"""The copy styles' membrane (`model.patchmatch.harmonic_fill`, inside `border_match`) and its Poisson form
(`poisson_fill`, the continued flat fill's) as Triton kernels, and their torch references of the same signatures.

`harmonic_fill` solves Laplace's equation through a grid's fixed cells by a coarse-to-fine multigrid: a pyramid
of `levels` halvings, JACOBI_COARSEST_SWEEPS neighbour-mean sweeps on the coarsest grid from its fixed cells'
mean, then JACOBI_SWEEPS at each finer grid from the coarser solution. In torch each sweep is ten small kernels
and the pyramid, the starts and the neighbour counts ~100 more (~210 in all for the 56 sweeps at a 512^2 LR
grid with BORDER_MATCH_LEVELS halvings). Here:

- `membrane_pyramid_kernel` builds every level at once: each program reduces one 2^levels-cell square tile of
  the full grid to all coarser levels in registers;
- `membrane_coarse_kernel` runs the levels of at most SMALL_GRID cells (the two coarsest at 512^2 LR: 32 of the
  56 sweeps), coarsest first, in one program per plane, with a barrier between sweeps (a coarsest level larger
  than that, from a grid over 1024 cells a side at 4 halvings, runs the torch reference);
- each finer level takes one `jacobi_sweep_kernel` launch per sweep, the first reading the coarser solution
  where a cell is free.

`border_match` runs around it in three more launches (the stack of known and hole pixels, the colour mismatch at the
hole's border from their Gaussian sums, the shifted fill) and `kernels.blur.gaussian_sums`' two: 10 operations per call
besides the membrane's 26 at 512^2 LR (5 of them allocations), where torch operations around the same kernels took 24
(`bench.op_count`).

`poisson_fill` takes the same launches with a right-hand side: the pyramid launch sums it over each level's four
cells, and every sweep subtracts its ratio to the cell's neighbour count from the neighbours' mean.

Neighbour counts come from the cells' positions. A sweep's sum is taken in torch's order
((up + down) + left) + right and divided with IEEE rounding, so it matches torch's bit for bit; the pyramid's
sums of four cells and the coarsest mean may be summed in another order (float rounding); float16 grids are
summed in float32 and rounded once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.model import patchmatch

from . import blur
from .sampling import program_places
from .tuning import INTERPRET

BLOCK = 4096 if INTERPRET else 512     # grid cells per program of a single sweep (interpreted: few, wide)
SMALL_GRID = 4096       # cells: a level this small runs in `membrane_coarse_kernel`'s one program per plane
SMALL_GRID_WARPS = 8
PYRAMID_MAX_TILE = 64   # cells per side of a pyramid program's tile (2 ** levels): levels <= 6
# a coarse cell is fixed where its 4 cells' weights sum above this (>= COARSE_FIXED_SHARE of them, as torch)
FIXED_SUM: tl.constexpr = tl.constexpr(4 * patchmatch.COARSE_FIXED_SHARE - 0.5)
MEAN_WEIGHT_FLOOR: tl.constexpr = tl.constexpr(patchmatch.MEAN_WEIGHT_FLOOR)   # `border_match`'s smallest mean weight


@triton.jit
def _level_start(level, height, width, planes):
    """(first element of `level`'s block in the level buffers, each `planes` grids per level, finest first;
    the level's height; its width)."""
    start = 0
    for finer in range(0, level):
        start += planes * ((height >> finer) * (width >> finer))
    return start, height >> level, width >> level


@triton.jit
def _neighbour_count(y, x, height, width):
    """`patchmatch.neighbour_count` of the cells (y, x): how many of their 4 grid neighbours exist (float32)."""
    return ((y > 0).to(tl.float32) + (y < height - 1).to(tl.float32)) + \
        ((x > 0).to(tl.float32) + (x < width - 1).to(tl.float32))


@triton.jit
def _sweep(src_ptr, offs, inside, y, x, height, width, fixed, value, shift):
    """One Jacobi update of the cells offs (row y, column x) of the plane at src_ptr -> float32 values: a free
    cell's neighbours' mean less shift (`poisson_fill`'s rhs / count; 0.0 for Laplace's equation)."""
    up = tl.load(src_ptr + offs - width, mask=inside & (y > 0), other=0.0).to(tl.float32)
    down = tl.load(src_ptr + offs + width, mask=inside & (y < height - 1), other=0.0).to(tl.float32)
    left = tl.load(src_ptr + offs - 1, mask=inside & (x > 0), other=0.0).to(tl.float32)
    right = tl.load(src_ptr + offs + 1, mask=inside & (x < width - 1), other=0.0).to(tl.float32)
    mean = tl.math.div_rn(((up + down) + left) + right, _neighbour_count(y, x, height, width))
    return tl.where(fixed, value, mean - shift)


@triton.jit
def _shift(rhs_ptr, offs, inside, y, x, height, width, HAS_RHS: tl.constexpr):
    """`poisson_fill`'s rhs / neighbour count at the cells offs of the plane at rhs_ptr (float32), or 0."""
    shift = tl.zeros_like(offs).to(tl.float32)
    if HAS_RHS:
        rhs = tl.load(rhs_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        shift = tl.math.div_rn(rhs, _neighbour_count(y, x, height, width))
    return shift


@triton.jit
def _start(coarse_ptr, value_ptr, fixed_ptr, y, x, width, ok):
    """A finer level's start at cells (y, x) where ok: the cell's value where fixed, else its coarser cell's
    solution (float32; 0 where not ok)."""
    cell = y * width + x
    fixed = tl.load(fixed_ptr + cell, mask=ok, other=0) != 0
    value = tl.load(value_ptr + cell, mask=ok & fixed, other=0.0).to(tl.float32)
    coarse = tl.load(coarse_ptr + (y // 2) * (width // 2) + x // 2, mask=ok & ~fixed, other=0.0).to(tl.float32)
    return tl.where(fixed, value, coarse)


@triton.jit
def _halve(grid, SIDE: tl.constexpr):
    """(SIDE, SIDE) -> (SIDE / 2, SIDE / 2): sums of 2 x 2 cells."""
    pairs = tl.sum(tl.reshape(grid, (SIDE // 2, 2, SIDE // 2, 2)), axis=3)
    return tl.sum(pairs, axis=1)


@triton.jit
def membrane_pyramid_kernel(values_ptr, fixed_ptr, value_levels_ptr, fixed_levels_ptr, rhs_ptr, rhs_levels_ptr,
                            height, width, channels, planes, LEVELS: tl.constexpr, TILE: tl.constexpr,
                            HAS_RHS: tl.constexpr):
    """`patchmatch.membrane_pyramid`'s grids of tile program_id(0) (TILE = 2 ** LEVELS cells a side) of image
    program_id(1): values (B, C, h, w) and fixed (B, 1, h, w) {0, 1} -> every level's values * fixed (the fine
    level) or weighted means (coarser) into value_levels, and its fixed cells (uint8) into fixed_levels
    (`_level_start` layout; planes = B * C grids of values per level, B of fixed cells); with HAS_RHS also
    `poisson_fill`'s rhs (B, C, h, w) and its sums of four cells per level into rhs_levels (value_levels'
    layout)."""
    image = tl.program_id(1)
    tiles_x = width // TILE
    tile_y = tl.program_id(0) // tiles_x
    tile_x = tl.program_id(0) - tile_y * tiles_x
    y = tile_y * TILE + tl.arange(0, TILE)
    x = tile_x * TILE + tl.arange(0, TILE)
    cell = y[:, None] * width + x[None, :]
    weight = tl.load(fixed_ptr + image * (height * width) + cell).to(tl.float32)
    images = planes // channels
    tl.store(fixed_levels_ptr + image * (height * width) + cell, (weight > 0).to(tl.uint8))
    for channel in range(channels):
        plane = image * channels + channel
        value = tl.load(values_ptr + plane * (height * width) + cell).to(tl.float32) * weight
        tl.store(value_levels_ptr + plane * (height * width) + cell, value.to(value_levels_ptr.dtype.element_ty))
        level_value = value
        level_weight = weight
        if HAS_RHS:
            level_rhs = tl.load(rhs_ptr + plane * (height * width) + cell).to(tl.float32)
            tl.store(rhs_levels_ptr + plane * (height * width) + cell, level_rhs.to(value_levels_ptr.dtype.element_ty))
        for level in tl.static_range(1, LEVELS + 1):
            weight_sum = _halve(level_weight, TILE >> (level - 1))
            level_value = tl.math.div_rn(_halve(level_value * level_weight, TILE >> (level - 1)),
                                         tl.maximum(weight_sum, 1.0))
            level_value = level_value.to(value_levels_ptr.dtype.element_ty).to(tl.float32)   # the grid's dtype
            level_weight = (weight_sum > FIXED_SUM).to(tl.float32)
            start, level_h, level_w = _level_start(level, height, width, planes)
            fixed_start, _, _ = _level_start(level, height, width, images)
            ly = tile_y * (TILE >> level) + tl.arange(0, TILE >> level)
            lx = tile_x * (TILE >> level) + tl.arange(0, TILE >> level)
            level_cell = ly[:, None] * level_w + lx[None, :]
            tl.store(value_levels_ptr + start + plane * (level_h * level_w) + level_cell,
                     level_value.to(value_levels_ptr.dtype.element_ty))
            if HAS_RHS:
                level_rhs = _halve(level_rhs, TILE >> (level - 1))
                level_rhs = level_rhs.to(value_levels_ptr.dtype.element_ty).to(tl.float32)   # the grid's dtype
                tl.store(rhs_levels_ptr + start + plane * (level_h * level_w) + level_cell,
                         level_rhs.to(value_levels_ptr.dtype.element_ty))
            if channel == 0:
                tl.store(fixed_levels_ptr + fixed_start + image * (level_h * level_w) + level_cell,
                         level_weight.to(tl.uint8))


@triton.jit
def jacobi_sweep_kernel(src_ptr, value_ptr, fixed_ptr, rhs_ptr, out_ptr, height, width, channels,
                        FROM_COARSE: tl.constexpr, HAS_RHS: tl.constexpr, BLOCK: tl.constexpr):
    """One sweep over plane program_id(1) (of B * C) of a level: value, out (B, C, h, w) and fixed (B, 1, h, w)
    uint8, contiguous; src the previous sweep's (B, C, h, w), or with FROM_COARSE the coarser level's solution
    (B, C, h / 2, w / 2), from which the level starts where a cell is free; with HAS_RHS the level's rhs
    (B, C, h, w) of `poisson_fill`."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    cells = height * width
    inside = offs < cells
    y = offs // width
    x = offs - y * width
    plane = tl.program_id(1).to(tl.int64)
    grid = plane * cells
    per_image = (plane // channels) * cells
    fixed = tl.load(fixed_ptr + per_image + offs, mask=inside, other=0) != 0
    value = tl.load(value_ptr + grid + offs, mask=inside, other=0.0).to(tl.float32)
    shift = _shift(rhs_ptr + grid, offs, inside, y, x, height, width, HAS_RHS)
    if FROM_COARSE:
        coarse = src_ptr + plane * (cells // 4)
        up = _start(coarse, value_ptr + grid, fixed_ptr + per_image, y - 1, x, width, inside & (y > 0))
        down = _start(coarse, value_ptr + grid, fixed_ptr + per_image, y + 1, x, width, inside & (y < height - 1))
        left = _start(coarse, value_ptr + grid, fixed_ptr + per_image, y, x - 1, width, inside & (x > 0))
        right = _start(coarse, value_ptr + grid, fixed_ptr + per_image, y, x + 1, width, inside & (x < width - 1))
        out = tl.where(fixed, value, tl.math.div_rn(((up + down) + left) + right,
                                                    _neighbour_count(y, x, height, width)) - shift)
    else:
        out = _sweep(src_ptr + grid, offs, inside, y, x, height, width, fixed, value, shift)
    tl.store(out_ptr + grid + offs, out.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def membrane_coarse_kernel(value_levels_ptr, fixed_levels_ptr, rhs_levels_ptr, buffers_ptr, height, width, channels,
                           planes, levels, last, coarsest_sweeps, sweeps, HAS_RHS: tl.constexpr, BLOCK: tl.constexpr):
    """Levels `levels` (the coarsest) down to `last` of plane program_id(0) (of planes = B * C), each of at most
    BLOCK cells, in one program: the coarsest from its fixed cells' mean and coarsest_sweeps sweeps, each finer
    one from the coarser solution and `sweeps` sweeps. buffers (2, planes, cells of level `last`): each level's
    grid lies at the start of its plane's region; the start goes to buffers[0], every sweep writes the other
    buffer; the last one written holds the result."""
    plane = tl.program_id(0)
    image = plane // channels
    offs = tl.arange(0, BLOCK)
    region = (height >> last) * (width >> last)                 # cells of each plane's region in a buffer
    buffer = planes * region                                   # one buffer's size
    dtype = buffers_ptr.dtype.element_ty
    current = 0
    for level in range(levels, last - 1, -1):
        start, level_h, level_w = _level_start(level, height, width, planes)
        fixed_start, _, _ = _level_start(level, height, width, planes // channels)
        cells = level_h * level_w
        inside = offs < cells
        y = offs // level_w
        x = offs - y * level_w
        fixed = tl.load(fixed_levels_ptr + fixed_start + image * cells + offs, mask=inside, other=0) != 0
        value = tl.load(value_levels_ptr + start + plane * cells + offs, mask=inside, other=0.0).to(tl.float32)
        shift = _shift(rhs_levels_ptr + start + plane * cells, offs, inside, y, x, level_h, level_w, HAS_RHS)
        grid = plane * region                   # every level's grid at the start of the plane's region
        if level == levels:                     # the coarsest: its fixed cells' mean everywhere free
            total = tl.sum(tl.where(fixed, value, 0.0), axis=0).to(dtype).to(tl.float32)
            count = tl.sum(fixed.to(tl.float32), axis=0)
            mean = tl.math.div_rn(total, tl.maximum(count, 1.0)).to(dtype).to(tl.float32)
            first = tl.where(fixed, value, mean)
            level_sweeps = coarsest_sweeps
        else:                                   # from the coarser solution, in buffers[current]
            coarse = tl.load(buffers_ptr + current * buffer + grid + (y // 2) * (level_w // 2) + x // 2,
                             mask=inside, other=0.0).to(tl.float32)
            first = tl.where(fixed, value, coarse)
            level_sweeps = sweeps
            current = 1 - current
        tl.store(buffers_ptr + current * buffer + grid + offs, first.to(dtype), mask=inside)
        tl.debug_barrier()
        for _ in range(level_sweeps):
            out = _sweep(buffers_ptr + current * buffer + grid, offs, inside, y, x, level_h, level_w, fixed, value,
                         shift)
            current = 1 - current
            tl.store(buffers_ptr + current * buffer + grid + offs, out.to(dtype), mask=inside)
            tl.debug_barrier()                  # the next sweep reads other threads' cells


def pyramid_warps(tile: int) -> int:
    """Warps of a pyramid program over a tile x tile square: ~64 cells a warp, 1 to 4."""
    return max(1, min(4, tile * tile // 64))


def harmonic_fill(values: torch.Tensor, fixed: torch.Tensor, levels: int) -> torch.Tensor:
    """`patchmatch.harmonic_fill` (same arguments and result, within float rounding): values (B, C, h, w),
    fixed (B, 1, h, w) {0, 1} of values' dtype, h and w divisible by 2 ** levels (levels <= 6) -> (B, C, h, w).
    One pyramid launch, one for the levels of at most SMALL_GRID cells, one per sweep of each finer level."""
    return _solve(values, fixed, None, levels)


def poisson_fill(values: torch.Tensor, fixed: torch.Tensor, rhs: torch.Tensor, levels: int) -> torch.Tensor:
    """`patchmatch.poisson_fill` (same arguments and result, within float rounding): `harmonic_fill`'s launches
    with rhs (B, C, h, w) summed over each level by the pyramid launch and taken by every sweep."""
    if rhs.shape != values.shape:
        raise ValueError(f"rhs: expected values' shape {tuple(values.shape)}, got {tuple(rhs.shape)}")
    return _solve(values, fixed, rhs, levels)


def _solve(values: torch.Tensor, fixed: torch.Tensor, rhs: torch.Tensor | None, levels: int) -> torch.Tensor:
    """`harmonic_fill` (rhs None) or `poisson_fill`."""
    if values.dim() != 4 or fixed.dim() != 4 or fixed.shape[1] != 1 or fixed.shape[0] != values.shape[0] \
            or fixed.shape[2:] != values.shape[2:]:
        raise ValueError(f"values, fixed: expected (B, C, h, w) and (B, 1, h, w) of one grid, got "
                         f"{tuple(values.shape)} and {tuple(fixed.shape)}")
    batch, channels, height, width = values.shape
    tile = 2 ** levels
    if not (0 <= levels and tile <= PYRAMID_MAX_TILE) or height % tile or width % tile:
        raise ValueError(f"levels: expected 0..{PYRAMID_MAX_TILE.bit_length() - 1} halvings that divide the "
                         f"{height} x {width} grid, got {levels}")
    planes = batch * channels
    sizes = [(height >> level, width >> level) for level in range(levels + 1)]
    if sizes[-1][0] * sizes[-1][1] > SMALL_GRID:     # a coarsest grid this large: one program per plane is too few
        if rhs is None:
            return patchmatch.harmonic_fill(values, fixed, levels)
        return patchmatch.poisson_fill(values, fixed, rhs, levels)
    cells = sum(h * w for h, w in sizes)
    value_levels = torch.empty(planes * cells, dtype=values.dtype, device=values.device)
    fixed_levels = torch.empty(batch * cells, dtype=torch.uint8, device=values.device)
    has_rhs = rhs is not None
    rhs = rhs.contiguous() if has_rhs else value_levels         # not read without HAS_RHS
    rhs_levels = torch.empty_like(value_levels) if has_rhs else value_levels
    membrane_pyramid_kernel[((height // tile) * (width // tile), batch)](
        values.contiguous(), fixed.contiguous(), value_levels, fixed_levels, rhs, rhs_levels, height, width, channels,
        planes, LEVELS=levels, TILE=tile, HAS_RHS=has_rhs, num_warps=pyramid_warps(tile))
    last = levels                        # the finest level the one-program kernel takes: at least the coarsest
    while last > 0 and sizes[last - 1][0] * sizes[last - 1][1] <= SMALL_GRID:
        last -= 1
    last_h, last_w = sizes[last]
    buffers = torch.empty(2, planes, last_h, last_w, dtype=values.dtype, device=values.device)
    membrane_coarse_kernel[(planes,)](value_levels, fixed_levels, rhs_levels, buffers, height, width, channels, planes,
                                      levels, last, patchmatch.JACOBI_COARSEST_SWEEPS, patchmatch.JACOBI_SWEEPS,
                                      HAS_RHS=has_rhs, BLOCK=SMALL_GRID, num_warps=SMALL_GRID_WARPS)
    writes = 1 + patchmatch.membrane_sweeps(levels, levels) + sum(1 + patchmatch.membrane_sweeps(level, levels)
                                                                  for level in range(last, levels))
    current = buffers[(writes - 1) % 2]
    for level in range(last - 1, -1, -1):
        level_h, level_w = sizes[level]
        start = planes * sum(h * w for h, w in sizes[:level])
        fixed_start = batch * sum(h * w for h, w in sizes[:level])
        value = value_levels[start:start + planes * level_h * level_w]
        level_rhs = rhs_levels[start:start + planes * level_h * level_w]
        level_fixed = fixed_levels[fixed_start:fixed_start + batch * level_h * level_w]
        grid = (triton.cdiv(level_h * level_w, BLOCK), planes)
        out, other = (torch.empty(batch, channels, level_h, level_w, dtype=values.dtype, device=values.device)
                      for _ in range(2))
        jacobi_sweep_kernel[grid](current, value, level_fixed, level_rhs, out, level_h, level_w, channels,
                                  FROM_COARSE=True, HAS_RHS=has_rhs, BLOCK=BLOCK)
        for _ in range(patchmatch.membrane_sweeps(level, levels) - 1):
            out, other = other, out
            jacobi_sweep_kernel[grid](other, value, level_fixed, level_rhs, out, level_h, level_w, channels,
                                      FROM_COARSE=False, HAS_RHS=has_rhs, BLOCK=BLOCK)
        current = out
    return current.reshape(batch, channels, height, width)


def harmonic_fill_reference(values: torch.Tensor, fixed: torch.Tensor, levels: int) -> torch.Tensor:
    """`harmonic_fill` in torch: `patchmatch.harmonic_fill`."""
    return patchmatch.harmonic_fill(values, fixed, levels)


def poisson_fill_reference(values: torch.Tensor, fixed: torch.Tensor, rhs: torch.Tensor, levels: int) -> torch.Tensor:
    """`poisson_fill` in torch: `patchmatch.poisson_fill`."""
    return patchmatch.poisson_fill(values, fixed, rhs, levels)


@triton.jit
def border_stack_kernel(composite_ptr, mask_ptr, filled_ptr, stack_ptr, pixels, total, BLOCK: tl.constexpr):
    """`patchmatch.border_stack` in float32: stack (B, 8, h, w) = (the known pixels x known, known, the fill's hole
    pixels x mask, mask), from composite, filled (B, 3, h, w) and mask (B, 1, h, w) {0, 1} (pixels = h * w)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < total
    b = offs // pixels
    pixel = offs % pixels
    hole = tl.load(mask_ptr + offs, mask=live, other=0.0).to(tl.float32)
    known = 1.0 - hole
    for ch in tl.static_range(3):
        at = (b * 3 + ch) * pixels + pixel
        tl.store(stack_ptr + (b * 8 + ch) * pixels + pixel,
                 tl.load(composite_ptr + at, mask=live, other=0.0).to(tl.float32) * known, mask=live)
        tl.store(stack_ptr + (b * 8 + 4 + ch) * pixels + pixel,
                 tl.load(filled_ptr + at, mask=live, other=0.0).to(tl.float32) * hole, mask=live)
    tl.store(stack_ptr + (b * 8 + 3) * pixels + pixel, known, mask=live)
    tl.store(stack_ptr + (b * 8 + 7) * pixels + pixel, hole, mask=live)


@triton.jit
def border_mismatch_kernel(means_ptr, mask_ptr, mismatch_ptr, at_border_ptr, h, w, total, BLOCK: tl.constexpr):
    """`patchmatch.mismatch_from_means` from the stack's unnormalised Gaussian sums (B, 8, h, w) (the normalisation by
    the taps inside the image cancels in each mean's ratio): at_border (B, 1, h, w) = a hole pixel with a known one
    among its 8 neighbours; mismatch (B, 3, h, w) = there, the known pixels' Gaussian mean less the fill's (each
    weight at least MEAN_WEIGHT_FLOOR), 0 elsewhere."""
    offs, live, b, pixel, y, x = program_places(h, w, total, BLOCK)
    pixels = h * w
    hole = tl.load(mask_ptr + offs, mask=live, other=0.0).to(tl.float32)
    near_known = tl.zeros((BLOCK,), tl.float32)
    for dy in tl.static_range(-1, 2):
        for dx in tl.static_range(-1, 2):
            inside = live & (y + dy >= 0) & (y + dy < h) & (x + dx >= 0) & (x + dx < w)
            neighbour = tl.load(mask_ptr + offs + dy * w + dx, mask=inside, other=1.0).to(tl.float32)
            near_known = tl.maximum(near_known, 1.0 - neighbour)
    at_border = near_known * hole
    known_weight = tl.maximum(tl.load(means_ptr + (b * 8 + 3) * pixels + pixel, mask=live, other=1.0),
                              MEAN_WEIGHT_FLOOR)
    fill_weight = tl.maximum(tl.load(means_ptr + (b * 8 + 7) * pixels + pixel, mask=live, other=1.0),
                             MEAN_WEIGHT_FLOOR)
    for ch in tl.static_range(3):
        known_mean = tl.load(means_ptr + (b * 8 + ch) * pixels + pixel, mask=live, other=0.0) / known_weight
        fill_mean = tl.load(means_ptr + (b * 8 + 4 + ch) * pixels + pixel, mask=live, other=0.0) / fill_weight
        tl.store(mismatch_ptr + (b * 3 + ch) * pixels + pixel,
                 ((known_mean - fill_mean) * at_border).to(mismatch_ptr.dtype.element_ty), mask=live)
    tl.store(at_border_ptr + offs, at_border.to(at_border_ptr.dtype.element_ty), mask=live)


@triton.jit
def border_apply_kernel(filled_ptr, mask_ptr, membrane_ptr, out_ptr, pixels, total, BLOCK: tl.constexpr):
    """out (B, 3, h, w) = the fill plus the membrane, clamped to [0, 1], at hole pixels; the fill elsewhere."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < total
    b = offs // (3 * pixels)
    pixel = offs % pixels
    hole = tl.load(mask_ptr + b * pixels + pixel, mask=live, other=0.0)
    fill = tl.load(filled_ptr + offs, mask=live, other=0.0)
    shifted = tl.minimum(tl.maximum(fill + tl.load(membrane_ptr + offs, mask=live, other=0.0), 0.0), 1.0)
    tl.store(out_ptr + offs, tl.where(hole > 0, shifted, fill), mask=live)


def border_match(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, sigma: float) -> torch.Tensor:
    """`patchmatch.border_match` (same arguments and result, within float rounding; (B, 3, h, w) images, mask
    (B, 1, h, w) {0, 1} of their dtype) in Triton: the stack, the mismatch and the last step one launch each, the
    Gaussian sums `kernels.blur.gaussian_sums` (one launch per axis), the membrane `harmonic_fill`."""
    b, channels, h, w = filled.shape
    if channels != 3 or composite.shape != filled.shape or mask.shape != (b, 1, h, w):
        raise ValueError(f"composite, mask, filled: expected (B, 3, h, w), (B, 1, h, w), (B, 3, h, w), got "
                         f"{tuple(composite.shape)}, {tuple(mask.shape)}, {tuple(filled.shape)}")
    if not sigma > 0.0:
        raise ValueError(f"sigma: expected > 0 px, got {sigma}")
    composite, mask, filled = composite.contiguous(), mask.contiguous(), filled.contiguous()
    pixels = h * w
    grid = (triton.cdiv(b * pixels, BLOCK),)
    stack = torch.empty((b, 8, h, w), dtype=torch.float32, device=filled.device)
    border_stack_kernel[grid](composite, mask, filled, stack, pixels, b * pixels, BLOCK=BLOCK)
    sums = blur.gaussian_sums(stack, sigma)
    mismatch = torch.empty_like(filled)
    at_border = torch.empty_like(mask)
    border_mismatch_kernel[grid](sums, mask, mismatch, at_border, h, w, b * pixels, BLOCK=BLOCK)
    membrane = harmonic_fill(mismatch, at_border, patchmatch.BORDER_MATCH_LEVELS)
    out = torch.empty_like(filled)
    border_apply_kernel[(triton.cdiv(out.numel(), BLOCK),)](filled, mask, membrane, out, pixels, out.numel(),
                                                            BLOCK=BLOCK)
    return out


def border_match_reference(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor,
                           sigma: float) -> torch.Tensor:
    """`border_match` in torch: `patchmatch.border_match`."""
    return patchmatch.border_match(composite, mask, filled, sigma)
