"""The copy styles' membrane (`model.patchmatch.harmonic_fill`, inside `border_match`) with each Jacobi sweep
as one Triton kernel, and its torch reference of the same signature.

A sweep sets every free cell of a (B, C, h, w) grid to the mean of its four grid neighbours (zero outside the
grid) and every fixed cell to its value: in torch that is ten small kernels (the zero border concatenated,
three adds, a divide, a select), here one. `harmonic_fill` at the LR size with BORDER_MATCH_LEVELS halvings
runs 56 sweeps, so the membrane goes from ~420 kernels to ~60 (`bench.op_count` counts the torch side).
A grid of at most SMALL_GRID cells (the two coarsest levels at 512^2 LR: 32 of the 56 sweeps) runs all its
sweeps in one launch, one program per plane with a barrier between sweeps, so ~30 launches remain.
The sum is taken in torch's order ((up + down) + left) + right and divided with IEEE rounding, so float32
results are bit-equal to the reference; float16 grids are summed in float32 and rounded once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.model import patchmatch

from . import blur

BLOCK = 512           # grid cells per program
SMALL_GRID = 4096     # cells: a grid this small runs all its sweeps in one program per plane
SMALL_GRID_WARPS = 8


@triton.jit
def _sweep(src_ptr, offs, inside, y, x, height, width, count, fixed, value):
    """One Jacobi update of the cells offs (row y, column x) of the plane at src_ptr -> float32 values."""
    up = tl.load(src_ptr + offs - width, mask=inside & (y > 0), other=0.0).to(tl.float32)
    down = tl.load(src_ptr + offs + width, mask=inside & (y < height - 1), other=0.0).to(tl.float32)
    left = tl.load(src_ptr + offs - 1, mask=inside & (x > 0), other=0.0).to(tl.float32)
    right = tl.load(src_ptr + offs + 1, mask=inside & (x < width - 1), other=0.0).to(tl.float32)
    return tl.where(fixed, value, tl.math.div_rn(((up + down) + left) + right, count))


@triton.jit
def _plane(plane, offs, value_ptr, fixed_ptr, count_ptr, height, width, channels):
    """The cells offs of plane (of B * C) -> (inside the grid, row, column, the plane's first cell, the cells'
    neighbour count, whether fixed, value (float32)): what every sweep of the plane reads."""
    cells = height * width
    inside = offs < cells
    y = offs // width
    x = offs - y * width
    grid = plane.to(tl.int64) * cells
    per_image = (plane // channels).to(tl.int64) * cells
    count = tl.load(count_ptr + per_image + offs, mask=inside, other=1.0).to(tl.float32)
    fixed = tl.load(fixed_ptr + per_image + offs, mask=inside, other=0) != 0
    value = tl.load(value_ptr + grid + offs, mask=inside, other=0.0).to(tl.float32)
    return inside, y, x, grid, count, fixed, value


@triton.jit
def jacobi_sweep_kernel(x_ptr, value_ptr, fixed_ptr, count_ptr, out_ptr, height, width, channels,
                        BLOCK: tl.constexpr):
    """One sweep over plane program_id(1) (of B * C) of contiguous (B, C, h, w) x, value, out and (B, 1, h, w)
    fixed (bool), count."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside, y, x, grid, count, fixed, value = _plane(tl.program_id(1), offs, value_ptr, fixed_ptr, count_ptr, height,
                                                     width, channels)
    out = _sweep(x_ptr + grid, offs, inside, y, x, height, width, count, fixed, value)
    tl.store(out_ptr + grid + offs, out.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def jacobi_small_grid_kernel(buffers_ptr, value_ptr, fixed_ptr, count_ptr, height, width, channels, planes, sweeps,
                             BLOCK: tl.constexpr):
    """`sweeps` sweeps of plane program_id(0) (of B * C) of a grid of at most BLOCK cells: buffers (2, B, C, h, w),
    the start in buffers[0], sweep s reads buffers[s % 2] and writes the other (the result: buffers[sweeps % 2]);
    value (B, C, h, w), fixed (bool) and count (B, 1, h, w), all contiguous."""
    offs = tl.arange(0, BLOCK)
    inside, y, x, grid, count, fixed, value = _plane(tl.program_id(0), offs, value_ptr, fixed_ptr, count_ptr, height,
                                                     width, channels)
    buffer = planes.to(tl.int64) * (height * width)            # one buffer's size
    for sweep in range(sweeps):
        src = (sweep % 2) * buffer
        out = _sweep(buffers_ptr + src + grid, offs, inside, y, x, height, width, count, fixed, value)
        tl.store(buffers_ptr + (buffer - src) + grid + offs, out.to(buffers_ptr.dtype.element_ty), mask=inside)
        tl.debug_barrier()                                     # the next sweep reads other threads' cells


def jacobi_sweeps(x: torch.Tensor, value: torch.Tensor, is_fixed: torch.Tensor, count: torch.Tensor,
                  sweeps: int) -> torch.Tensor:
    """`sweeps` Jacobi sweeps from x: x, value (B, C, h, w), is_fixed (B, 1, h, w) bool, count (B, 1, h, w)
    (each cell's number of grid neighbours) -> (B, C, h, w), fixed cells equal to value. One launch per
    sweep, two buffers; a grid of at most SMALL_GRID cells, one launch in all."""
    if x.dim() != 4 or value.shape != x.shape or is_fixed.shape != count.shape or is_fixed.shape[1] != 1 \
            or is_fixed.shape[0] != x.shape[0] or is_fixed.shape[2:] != x.shape[2:] or is_fixed.dtype != torch.bool:
        raise ValueError(f"x, value: expected (B, C, h, w), is_fixed (B, 1, h, w) bool and count (B, 1, h, w) of "
                         f"one grid, got {tuple(x.shape)}, {tuple(value.shape)}, {tuple(is_fixed.shape)} "
                         f"{is_fixed.dtype}, {tuple(count.shape)}")
    batch, channels, height, width = x.shape
    value, is_fixed, count = value.contiguous(), is_fixed.contiguous(), count.contiguous()
    if height * width <= SMALL_GRID:
        buffers = torch.empty((2, *value.shape), dtype=value.dtype, device=value.device)
        buffers[0] = x                                                                        # x is not written
        jacobi_small_grid_kernel[(batch * channels,)](buffers, value, is_fixed, count, height, width, channels,
                                                      batch * channels, sweeps, BLOCK=SMALL_GRID,
                                                      num_warps=SMALL_GRID_WARPS)
        return buffers[sweeps % 2]
    current, other = x.clone(memory_format=torch.contiguous_format), torch.empty_like(value)   # x is not written
    grid = (triton.cdiv(height * width, BLOCK), batch * channels)
    for _ in range(sweeps):
        jacobi_sweep_kernel[grid](current, value, is_fixed, count, other, height, width, channels, BLOCK=BLOCK)
        current, other = other, current
    return current


def jacobi_sweeps_reference(x: torch.Tensor, value: torch.Tensor, is_fixed: torch.Tensor, count: torch.Tensor,
                            sweeps: int) -> torch.Tensor:
    """`jacobi_sweeps` in torch: `patchmatch.jacobi_sweeps`, the sweeps of `patchmatch.harmonic_fill`."""
    return patchmatch.jacobi_sweeps(x, value, is_fixed, count, sweeps)


def harmonic_fill(values: torch.Tensor, fixed: torch.Tensor, levels: int) -> torch.Tensor:
    """`patchmatch.harmonic_fill` (same arguments and result) with its sweeps as `jacobi_sweeps`."""
    value_levels, fixed_levels, x = patchmatch.membrane_pyramid(values, fixed, levels)
    for level in range(levels, -1, -1):
        value, weight = value_levels[level], fixed_levels[level]
        if level < levels:
            x = patchmatch._per_pixel(x, 2)
        is_fixed = weight > 0
        x = jacobi_sweeps(torch.where(is_fixed, value, x), value, is_fixed, patchmatch.neighbour_count(weight),
                          patchmatch.membrane_sweeps(level, levels))
    return x


def border_match(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, sigma: float) -> torch.Tensor:
    """`patchmatch.border_match` (same arguments and result) with the Gaussian means (`kernels.blur`) and the
    membrane's sweeps as Triton kernels."""
    means = blur.blur_base(patchmatch.border_stack(composite, mask, filled), sigma)
    mismatch, at_border = patchmatch.mismatch_from_means(means, mask)
    membrane = harmonic_fill(mismatch, at_border, patchmatch.BORDER_MATCH_LEVELS)
    return torch.where(mask > 0, (filled + membrane).clamp(0.0, 1.0), filled)
