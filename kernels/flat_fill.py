"""The flat fill (`model.flat.flat_fill`: where the hole's known surroundings are flat and their colours agree, the
fill's low band moved towards a membrane through the known pixels) as a few Triton launches, and its torch
reference of the same signature.

In torch the fill is 961 small operations per call at 512^2 LR (Gaussian blurs as a multiply-add per tap and axis,
Jacobi sweeps, cell sums, ramps, upsamplings; counted as `bench.op_count` does), 111 with only its blurs and membranes
as kernels; here 41: 26 launches, 10 allocations (`empty_like`, nothing launched on a GPU) and the low band's
hole select and normalisation:

- `cell_means_kernel` takes the known pixels' mean (and, for the colours' membrane, their squares' mean) per cell
  and whether the cell holds one, in one launch per grid: the membrane's MEMBRANE_CELL cells, the band's BAND_CELL;
- each known-pixel blur of `flat_weight` is `kernels.blur.gaussian_sums` of the stack (values x known, known), one
  launch per axis, its ratio taken by the next kernel: `band_size_kernel` (the band's size between the two blurs,
  RGB-summed, as the next stack), `carry_cells_kernel` (the size's mean over each FLAT_CELL cell of known band
  cells) and `flatness_kernel` (the flatness ramp on the band grid, the carried size upsampled inside it);
- each membrane is `kernels.membrane.harmonic_fill`, the fill's low band `kernels.blur.blur_base`;
- `flat_epilogue_kernel`, one launch over the LR pixels, upsamples the membranes and the flatness ramp bilinearly,
  takes the agreement ramp and writes the fill and its weight.

The continued forms (`ModelConfig.flat_fill_form`) replace the colours' membrane and both ramps: `continued_cells`
takes the cell means (`cell_means_kernel`), their steps (`steps_kernel`), the steps' membrane, their divergence
(`divergence_kernel`) and the Poisson solve (`kernels.membrane.poisson_fill`); `holdout_cells` grows the hole (one
max pool), runs `continued_cells` on it, takes the guess's squared error on the ring per cell (`ring_error_kernel`)
and carries it into the hole by a membrane; `continued_epilogue_kernel` upsamples both and writes the fill and its
weight (times the flatness ramp for "continued_flat").

Sums run in the reference's order where it fixes one (a cell's rows, then the rows); a known-pixel blur's ratio
skips the reference's normalisation by the taps inside the image, which cancels in it (both blurs are normalised
alike), so results agree to float rounding (tests/test_kernel_flat_fill.py).

Shapes: LR images (B, 3, h, w) with h and w multiples of 32; masks (B, 1, h, w) float {0, 1}, 1 = hole.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from rethined_engine.config import FLAT_FILL_FORMS
from rethined_engine.model import flat, patchmatch

from . import blur, membrane
from .sampling import known_count, program_places, upsample_taps, upsampled
from .tuning import INTERPRET

BLOCK = 2048 if INTERPRET else 256   # cells or LR pixels per program (interpreted: few, wide)
FLOOR: tl.constexpr = tl.constexpr(patchmatch.MEAN_WEIGHT_FLOOR)   # a known-pixel blur's smallest weight
CARRY_CELL: tl.constexpr = tl.constexpr(flat.FLAT_CELL // flat.BAND_CELL)   # band cells per flat cell (a side)
BAND_CELL: tl.constexpr = tl.constexpr(flat.BAND_CELL)
MEMBRANE_CELL: tl.constexpr = tl.constexpr(flat.MEMBRANE_CELL)
DETAIL_FLOOR: tl.constexpr = tl.constexpr(flat.FLAT_DETAIL_FLOOR)
SPREAD_FLOOR: tl.constexpr = tl.constexpr(flat.SPREAD_FLOOR)
HOLDOUT_FLOOR: tl.constexpr = tl.constexpr(flat.HOLDOUT_ERROR_FLOOR)


def _ramp_numbers(low: float, high: float) -> tuple[float, float]:
    """`flat.log_ramp`'s two numbers: (log(high), 1 / (log(high) - log(low)))."""
    return math.log(high), 1.0 / (math.log(high) - math.log(low))


DETAIL_TOP, DETAIL_FACTOR = (tl.constexpr(v) for v in _ramp_numbers(flat.FLAT_DETAIL_LOW, flat.FLAT_DETAIL_HIGH))
SPREAD_TOP, SPREAD_FACTOR = (tl.constexpr(v) for v in _ramp_numbers(flat.SPREAD_LOW, flat.SPREAD_HIGH))
HOLDOUT_TOP, HOLDOUT_FACTOR = (tl.constexpr(v) for v in _ramp_numbers(flat.HOLDOUT_ERROR_LOW,
                                                                       flat.HOLDOUT_ERROR_HIGH))


@triton.jit
def _log_ramp(value, TOP: tl.constexpr, FACTOR: tl.constexpr):
    """`flat.log_ramp`: 1 at or below its low end, 0 from its high end (TOP = log(high)), linear in log between."""
    return tl.minimum(tl.maximum((TOP - tl.log(value)) * FACTOR, 0.0), 1.0)


@triton.jit
def cell_means_kernel(x_ptr, hole_ptr, out_ptr, h, w, gh, gw, total, C: tl.constexpr, CELL: tl.constexpr,
                      SQUARES: tl.constexpr, BLOCK: tl.constexpr):
    """Per cell of the (B, gh, gw) grid of CELL x CELL px cells over x (B, C, h, w) with hole (B, 1, h, w) {0, 1}:
    out (B, C * (1 + SQUARES) + 1, gh, gw) = the mean of the cell's known values (`anchor.known_cell_means`: sums
    of rows, then of the rows; 0 without a known pixel), with SQUARES then that of their squares, then whether the
    cell holds a known pixel (1.0 or 0.0)."""
    _, live, b, cell, cy, cx = program_places(gh, gw, total, BLOCK)
    cells = gh * gw
    out_channels = C * (1 + SQUARES) + 1
    weight = known_count(hole_ptr, b, h, w, cy, cx, live, CELL, BLOCK)
    count = tl.maximum(weight, 1.0)
    for ch in tl.static_range(C):
        value_sum = tl.zeros((BLOCK,), tl.float32)
        square_sum = tl.zeros((BLOCK,), tl.float32)
        for r in tl.static_range(CELL):
            value_row = tl.zeros((BLOCK,), tl.float32)
            square_row = tl.zeros((BLOCK,), tl.float32)
            for c in tl.static_range(CELL):
                known = 1.0 - tl.load(hole_ptr + (b * h + cy * CELL + r) * w + cx * CELL + c, mask=live,
                                      other=1.0).to(tl.float32)
                value = tl.load(x_ptr + ((b * C + ch) * h + cy * CELL + r) * w + cx * CELL + c, mask=live,
                                other=0.0).to(tl.float32)
                value_row += value * known
                square_row += value * value * known
            value_sum += value_row
            square_sum += square_row
        tl.store(out_ptr + (b * out_channels + ch) * cells + cell, value_sum / count, mask=live)
        if SQUARES:
            tl.store(out_ptr + (b * out_channels + C + ch) * cells + cell, square_sum / count, mask=live)
    tl.store(out_ptr + (b * out_channels + out_channels - 1) * cells + cell, tl.where(weight > 0.0, 1.0, 0.0),
             mask=live)


@triton.jit
def band_size_kernel(stack_ptr, fine_ptr, coarse_ptr, out_ptr, cells_per_image, total, BLOCK: tl.constexpr):
    """Per band cell: the band (the fine known-pixel blur less the coarse one, each the ratio of its blurred stack's
    three value channels to its weight channel, at least FLOOR) summed |.| over RGB, as the next known-pixel blur's
    stack: out (B, 2, gh, gw) = (size x known, known), known the stack (B, 4, gh, gw)'s last channel."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < total
    b = offs // cells_per_image
    cell = offs % cells_per_image
    fine_weight = tl.maximum(tl.load(fine_ptr + (b * 4 + 3) * cells_per_image + cell, mask=live, other=1.0), FLOOR)
    coarse_weight = tl.maximum(tl.load(coarse_ptr + (b * 4 + 3) * cells_per_image + cell, mask=live, other=1.0),
                               FLOOR)
    size = tl.zeros((BLOCK,), tl.float32)
    for ch in tl.static_range(3):
        at = (b * 4 + ch) * cells_per_image + cell
        fine = tl.load(fine_ptr + at, mask=live, other=0.0) / fine_weight
        coarse = tl.load(coarse_ptr + at, mask=live, other=0.0) / coarse_weight
        size += tl.abs(fine - coarse)
    known = tl.load(stack_ptr + (b * 4 + 3) * cells_per_image + cell, mask=live, other=0.0)
    tl.store(out_ptr + (b * 2) * cells_per_image + cell, size * known, mask=live)
    tl.store(out_ptr + (b * 2 + 1) * cells_per_image + cell, known, mask=live)


@triton.jit
def carry_cells_kernel(stack_ptr, blurred_ptr, out_ptr, bh, bw, gh, gw, total, BLOCK: tl.constexpr):
    """Per CARRY_CELL x CARRY_CELL block of band cells: out (B, 2, gh, gw) = (the mean over its known band cells of
    the band's size (the blurred stack (B, 2, bh, bw)'s ratio, its weight at least FLOOR), 0 without one; whether
    it holds one), known being the stack (B, 2, bh, bw)'s second channel: the carrying membrane's values and fixed
    cells."""
    _, live, b, cell, cy, cx = program_places(gh, gw, total, BLOCK)
    band_cells = bh * bw
    weight = tl.zeros((BLOCK,), tl.float32)
    size_sum = tl.zeros((BLOCK,), tl.float32)
    for r in tl.static_range(CARRY_CELL):
        weight_row = tl.zeros((BLOCK,), tl.float32)
        size_row = tl.zeros((BLOCK,), tl.float32)
        for c in tl.static_range(CARRY_CELL):
            at = (cy * CARRY_CELL + r) * bw + cx * CARRY_CELL + c
            known = tl.load(stack_ptr + (b * 2 + 1) * band_cells + at, mask=live, other=0.0)
            size = tl.load(blurred_ptr + (b * 2) * band_cells + at, mask=live, other=0.0) / tl.maximum(
                tl.load(blurred_ptr + (b * 2 + 1) * band_cells + at, mask=live, other=1.0), FLOOR)
            weight_row += known
            size_row += size * known
        weight += weight_row
        size_sum += size_row
    tl.store(out_ptr + (b * 2) * gh * gw + cell, size_sum / tl.maximum(weight, 1.0), mask=live)
    tl.store(out_ptr + (b * 2 + 1) * gh * gw + cell, tl.where(weight > 0.0, 1.0, 0.0), mask=live)


@triton.jit
def flatness_kernel(stack_ptr, blurred_ptr, carried_ptr, out_ptr, bh, bw, gh, gw, total, BLOCK: tl.constexpr):
    """`flat.flatness` on the band grid, before its upsampling: out (B, 1, bh, bw) = the ramp of the band's size
    (the blurred stack's ratio) where the band cell is known, else of the carried size (carried (B, 1, gh, gw)
    upsampled CARRY_CELL times), at least DETAIL_FLOOR."""
    _, live, b, cell, y, x = program_places(bh, bw, total, BLOCK)
    band_cells = bh * bw
    known = tl.load(stack_ptr + (b * 2 + 1) * band_cells + cell, mask=live, other=0.0)
    size = tl.load(blurred_ptr + (b * 2) * band_cells + cell, mask=live, other=0.0) / tl.maximum(
        tl.load(blurred_ptr + (b * 2 + 1) * band_cells + cell, mask=live, other=1.0), FLOOR)
    y0, y1, x0, x1, ly, lx = upsample_taps(y, x, gh, gw, CARRY_CELL)
    carried = upsampled(carried_ptr, b * gh * gw, gw, y0, y1, x0, x1, ly, lx, live)
    level = tl.maximum(tl.where(known > 0.0, size, carried), DETAIL_FLOOR)
    tl.store(out_ptr + b * band_cells + cell, _log_ramp(level, DETAIL_TOP, DETAIL_FACTOR), mask=live)


@triton.jit
def flat_epilogue_kernel(filled_ptr, low_ptr, membranes_ptr, flatness_ptr, fill_out_ptr, weight_out_ptr, h, w,
                         mh, mw, bh, bw, total, BLOCK: tl.constexpr):
    """Per LR pixel: the colours' membrane and that of their squares (membranes (B, 6, mh, mw), upsampled
    MEMBRANE_CELL times) give the fill, filled - low + colours (B, 3, h, w), and the agreement ramp of the
    colours' variance (squares - colours^2, each at least SPREAD_FLOOR, summed over RGB); weight (B, 1, h, w) =
    that ramp times the flatness ramp (B, 1, bh, bw) upsampled BAND_CELL times."""
    offs, live, b, pixel, y, x = program_places(h, w, total, BLOCK)
    pixels = h * w
    my0, my1, mx0, mx1, mly, mlx = upsample_taps(y, x, mh, mw, MEMBRANE_CELL)
    spread = tl.zeros((BLOCK,), tl.float32)
    for ch in tl.static_range(3):
        colour = upsampled(membranes_ptr, (b * 6 + ch) * mh * mw, mw, my0, my1, mx0, mx1, mly, mlx, live)
        square = upsampled(membranes_ptr, (b * 6 + 3 + ch) * mh * mw, mw, my0, my1, mx0, mx1, mly, mlx, live)
        spread += tl.maximum(square - colour * colour, SPREAD_FLOOR)
        at = (b * 3 + ch) * pixels + pixel
        fill = tl.load(filled_ptr + at, mask=live, other=0.0).to(tl.float32) - tl.load(
            low_ptr + at, mask=live, other=0.0).to(tl.float32) + colour
        tl.store(fill_out_ptr + at, fill.to(fill_out_ptr.dtype.element_ty), mask=live)
    by0, by1, bx0, bx1, bly, blx = upsample_taps(y, x, bh, bw, BAND_CELL)
    flatness = upsampled(flatness_ptr, b * bh * bw, bw, by0, by1, bx0, bx1, bly, blx, live)
    weight = flatness * _log_ramp(spread, SPREAD_TOP, SPREAD_FACTOR)
    tl.store(weight_out_ptr + offs, weight.to(weight_out_ptr.dtype.element_ty), mask=live)


@triton.jit
def steps_kernel(means_ptr, steps_ptr, known_ptr, gh, gw, total, BLOCK: tl.constexpr):
    """`flat.grid_steps` of the known cell means: means (B, 4, gh, gw) (three means, then has-known) -> steps
    (2B, 3, gh, gw) (images 0..B-1 the steps to the right, B..2B-1 those down; 0 past the last column / row) and
    known (2B, 1, gh, gw) (both cells known)."""
    _, live, b, cell, y, x = program_places(gh, gw, total, BLOCK)
    cells = gh * gw
    images = total // cells
    right = live & (x < gw - 1)
    below = live & (y < gh - 1)
    has = tl.load(means_ptr + (b * 4 + 3) * cells + cell, mask=live, other=0.0)
    has_right = tl.load(means_ptr + (b * 4 + 3) * cells + cell + 1, mask=right, other=0.0)
    has_below = tl.load(means_ptr + (b * 4 + 3) * cells + cell + gw, mask=below, other=0.0)
    tl.store(known_ptr + b * cells + cell, has_right * has, mask=live)
    tl.store(known_ptr + (images + b) * cells + cell, has_below * has, mask=live)
    for ch in tl.static_range(3):
        at = (b * 4 + ch) * cells + cell
        mean = tl.load(means_ptr + at, mask=live, other=0.0)
        step_x = tl.where(right, tl.load(means_ptr + at + 1, mask=right, other=0.0) - mean, 0.0)
        step_y = tl.where(below, tl.load(means_ptr + at + gw, mask=below, other=0.0) - mean, 0.0)
        tl.store(steps_ptr + (b * 3 + ch) * cells + cell, step_x, mask=live)
        tl.store(steps_ptr + ((images + b) * 3 + ch) * cells + cell, step_y, mask=live)


@triton.jit
def divergence_kernel(along_ptr, out_ptr, gh, gw, total, BLOCK: tl.constexpr):
    """`flat.divergence` of the carried steps along (2B, 3, gh, gw) (`steps_kernel`'s layout) -> out (B, 3, gh, gw):
    ((right - left) + down) - up, a step past the grid's edge 0."""
    _, live, b, cell, y, x = program_places(gh, gw, total, BLOCK)
    cells = gh * gw
    images = total // cells
    for ch in tl.static_range(3):
        along_x = along_ptr + (b * 3 + ch) * cells + cell
        along_y = along_ptr + ((images + b) * 3 + ch) * cells + cell
        right = tl.load(along_x, mask=live & (x < gw - 1), other=0.0)
        left = tl.load(along_x - 1, mask=live & (x > 0), other=0.0)
        down = tl.load(along_y, mask=live & (y < gh - 1), other=0.0)
        up = tl.load(along_y - gw, mask=live & (y > 0), other=0.0)
        tl.store(out_ptr + (b * 3 + ch) * cells + cell, ((right - left) + down) - up, mask=live)


@triton.jit
def ring_error_kernel(composite_ptr, hole_ptr, grown_ptr, guess_ptr, out_ptr, h, w, gh, gw, total,
                      BLOCK: tl.constexpr):
    """Per MEMBRANE_CELL cell: out (B, 2, gh, gw) = (the mean over the cell's ring pixels (grown less hole, both
    (B, 1, h, w)) of the continued guess's squared error (guess (B, 3, gh, gw) upsampled bilinearly, less composite
    (B, 3, h, w), squared and summed over RGB), 0 without one; whether the cell holds a ring pixel): the carrying
    membrane's values and fixed cells (`flat.holdout_weight`)."""
    _, live, b, cell, cy, cx = program_places(gh, gw, total, BLOCK)
    pixels = h * w
    weight = tl.zeros((BLOCK,), tl.float32)
    error_sum = tl.zeros((BLOCK,), tl.float32)
    for r in range(MEMBRANE_CELL):                       # a loop, not unrolled: the rows' reads stay in registers
        weight_row = tl.zeros((BLOCK,), tl.float32)
        error_row = tl.zeros((BLOCK,), tl.float32)
        y = cy * MEMBRANE_CELL + r
        for c in tl.static_range(MEMBRANE_CELL):
            x = cx * MEMBRANE_CELL + c
            at = b * pixels + y * w + x
            ring = tl.load(grown_ptr + at, mask=live, other=0.0).to(tl.float32) - tl.load(
                hole_ptr + at, mask=live, other=0.0).to(tl.float32)
            y0, y1, x0, x1, ly, lx = upsample_taps(y, x, gh, gw, MEMBRANE_CELL)
            error = tl.zeros((BLOCK,), tl.float32)
            for ch in tl.static_range(3):
                guess = upsampled(guess_ptr, (b * 3 + ch) * gh * gw, gw, y0, y1, x0, x1, ly, lx, live)
                miss = guess - tl.load(composite_ptr + (b * 3 + ch) * pixels + y * w + x, mask=live,
                                       other=0.0).to(tl.float32)
                error += miss * miss
            weight_row += ring
            error_row += error * ring * ring
        weight += weight_row
        error_sum += error_row
    tl.store(out_ptr + (b * 2) * gh * gw + cell, error_sum / tl.maximum(weight, 1.0), mask=live)
    tl.store(out_ptr + (b * 2 + 1) * gh * gw + cell, tl.where(weight > 0.0, 1.0, 0.0), mask=live)


@triton.jit
def continued_epilogue_kernel(filled_ptr, low_ptr, continued_ptr, carried_ptr, any_ring_ptr, flatness_ptr,
                              fill_out_ptr, weight_out_ptr, h, w, mh, mw, bh, bw, total, FLAT: tl.constexpr,
                              BLOCK: tl.constexpr):
    """Per LR pixel: the fill, filled - low + the continued cells (B, 3, mh, mw) upsampled MEMBRANE_CELL times, and
    its weight (B, 1, h, w): the holdout ramp of the carried error (B, 1, mh, mw, upsampled, at least
    HOLDOUT_FLOOR) times any_ring (B,) {0, 1}, with FLAT times the flatness ramp (B, 1, bh, bw) upsampled
    BAND_CELL times."""
    offs, live, b, pixel, y, x = program_places(h, w, total, BLOCK)
    pixels = h * w
    my0, my1, mx0, mx1, mly, mlx = upsample_taps(y, x, mh, mw, MEMBRANE_CELL)
    for ch in tl.static_range(3):
        smooth = upsampled(continued_ptr, (b * 3 + ch) * mh * mw, mw, my0, my1, mx0, mx1, mly, mlx, live)
        at = (b * 3 + ch) * pixels + pixel
        fill = tl.load(filled_ptr + at, mask=live, other=0.0).to(tl.float32) - tl.load(
            low_ptr + at, mask=live, other=0.0).to(tl.float32) + smooth
        tl.store(fill_out_ptr + at, fill.to(fill_out_ptr.dtype.element_ty), mask=live)
    carried = upsampled(carried_ptr, b * mh * mw, mw, my0, my1, mx0, mx1, mly, mlx, live)
    any_ring = tl.load(any_ring_ptr + b, mask=live, other=0.0)
    weight = _log_ramp(tl.maximum(carried, HOLDOUT_FLOOR), HOLDOUT_TOP, HOLDOUT_FACTOR) * any_ring
    if FLAT:
        by0, by1, bx0, bx1, bly, blx = upsample_taps(y, x, bh, bw, BAND_CELL)
        weight = weight * upsampled(flatness_ptr, b * bh * bw, bw, by0, by1, bx0, bx1, bly, blx, live)
    tl.store(weight_out_ptr + offs, weight.to(weight_out_ptr.dtype.element_ty), mask=live)


def _cell_means(x: torch.Tensor, hole: torch.Tensor, cell: int, squares: bool) -> torch.Tensor:
    """`cell_means_kernel`: (B, C * (1 + squares) + 1, h / cell, w / cell) float32, the last channel the has-known
    flags."""
    b, channels, h, w = x.shape
    gh, gw = h // cell, w // cell
    out = torch.empty((b, channels * (1 + squares) + 1, gh, gw), dtype=torch.float32, device=x.device)
    total = b * gh * gw
    cell_means_kernel[(triton.cdiv(total, BLOCK),)](x, hole, out, h, w, gh, gw, total, C=channels, CELL=cell,
                                                    SQUARES=squares, BLOCK=BLOCK)
    return out


def flat_weight_grid(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`flat.flat_weight` before its upsampling: the flatness ramp on the BAND_CELL grid, (B, 1, h / BAND_CELL,
    w / BAND_CELL) float32."""
    cell = flat.BAND_CELL
    stack = _cell_means(composite, mask, cell, squares=False)          # (B, 4, bh, bw): means, known
    b, _, bh, bw = stack.shape
    fine_sigma, coarse_sigma = flat.FLAT_BAND_SIGMAS
    fine, coarse = blur.gaussian_sums(stack, fine_sigma / cell), blur.gaussian_sums(stack, coarse_sigma / cell)
    band_cells = b * bh * bw
    size_stack = torch.empty((b, 2, bh, bw), dtype=torch.float32, device=composite.device)
    band_size_kernel[(triton.cdiv(band_cells, BLOCK),)](stack, fine, coarse, size_stack, bh * bw, band_cells,
                                                        BLOCK=BLOCK)
    blurred = blur.gaussian_sums(size_stack, flat.FLAT_WINDOW_SIGMA / cell)
    gh, gw = bh // CARRY_CELL, bw // CARRY_CELL
    carry = torch.empty((b, 2, gh, gw), dtype=torch.float32, device=composite.device)
    carry_cells = b * gh * gw
    carry_cells_kernel[(triton.cdiv(carry_cells, BLOCK),)](size_stack, blurred, carry, bh, bw, gh, gw, carry_cells,
                                                           BLOCK=BLOCK)
    carried = membrane.harmonic_fill(carry[:, :1], carry[:, 1:], flat.FLAT_LEVELS).contiguous()
    ramp = torch.empty((b, 1, bh, bw), dtype=torch.float32, device=composite.device)
    flatness_kernel[(triton.cdiv(band_cells, BLOCK),)](size_stack, blurred, carried, ramp, bh, bw, gh, gw,
                                                       band_cells, BLOCK=BLOCK)
    return ramp


def continued_cells(composite: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """`flat.continued_fill` before its upsampling: composite (B, 3, h, w), hole (B, 1, h, w) {0, 1} -> the
    MEMBRANE_CELL cells of the continued fill, (B, 3, h / MEMBRANE_CELL, w / MEMBRANE_CELL) float32."""
    means = _cell_means(composite, hole, flat.MEMBRANE_CELL, squares=False)        # (B, 4, mh, mw)
    b, _, mh, mw = means.shape
    steps = torch.empty((2 * b, 3, mh, mw), dtype=torch.float32, device=composite.device)
    known = torch.empty((2 * b, 1, mh, mw), dtype=torch.float32, device=composite.device)
    cells = b * mh * mw
    grid = (triton.cdiv(cells, BLOCK),)
    steps_kernel[grid](means, steps, known, mh, mw, cells, BLOCK=BLOCK)
    along = membrane.harmonic_fill(steps, known, flat.MEMBRANE_LEVELS).contiguous()
    divergence = torch.empty((b, 3, mh, mw), dtype=torch.float32, device=composite.device)
    divergence_kernel[grid](along, divergence, mh, mw, cells, BLOCK=BLOCK)
    return membrane.poisson_fill(means[:, :3], means[:, 3:], divergence, flat.MEMBRANE_LEVELS).contiguous()


def holdout_cells(composite: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`flat.holdout_weight` before its ramp and upsampling: (the continued fill's squared error on the ring of
    HOLDOUT_RING px left out, carried into the hole by a membrane through the ring's MEMBRANE_CELL cells,
    (B, 1, mh, mw) float32; whether each image holds a ring pixel, (B,) float32 {0, 1})."""
    ring_width = flat.HOLDOUT_RING
    grown = F.max_pool2d(mask, 2 * ring_width + 1, stride=1, padding=ring_width).contiguous()
    guess = continued_cells(composite, grown)
    b, _, mh, mw = guess.shape
    h, w = mask.shape[2:]
    errors = torch.empty((b, 2, mh, mw), dtype=torch.float32, device=composite.device)
    cells = b * mh * mw
    ring_error_kernel[(triton.cdiv(cells, BLOCK),)](composite, mask, grown, guess, errors, h, w, mh, mw, cells,
                                                    BLOCK=BLOCK)
    carried = membrane.harmonic_fill(errors[:, :1], errors[:, 1:], flat.MEMBRANE_LEVELS).contiguous()
    return carried, errors[:, 1].flatten(1).amax(dim=1)


def flat_fill(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, form: str = "membrane"
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """`flat.flat_fill`: composite (B, 3, h, w), mask (B, 1, h, w), filled (B, 3, h, w), form
    (`config.FLAT_FILL_FORMS`) -> (the fill with its low band the smooth fill of that form (B, 3, h, w), that fill's
    weight (B, 1, h, w) in [0, 1]), of filled's dtype. No host sync, so a CUDA graph can hold it."""
    b, channels, h, w = filled.shape
    span = flat.BAND_CELL * flat.FLAT_CELL
    if channels != 3 or composite.shape != filled.shape or mask.shape != (b, 1, h, w):
        raise ValueError(f"composite, mask, filled: expected (B, 3, h, w), (B, 1, h, w), (B, 3, h, w), got "
                         f"{tuple(composite.shape)}, {tuple(mask.shape)}, {tuple(filled.shape)}")
    if h % span or w % span or h % flat.MEMBRANE_CELL or w % flat.MEMBRANE_CELL:
        raise ValueError(f"filled: h and w must be multiples of BAND_CELL * FLAT_CELL ({span}) and MEMBRANE_CELL "
                         f"({flat.MEMBRANE_CELL}), got {h}x{w}")
    if form not in FLAT_FILL_FORMS:
        raise ValueError(f"form: expected one of {FLAT_FILL_FORMS}, got {form!r}")
    composite, mask, filled = composite.contiguous(), mask.contiguous(), filled.contiguous()
    low = blur.blur_base(torch.where(mask > 0, filled, composite), flat.FLAT_LOW_SIGMA).contiguous()
    fill = torch.empty_like(filled)
    weight = torch.empty_like(mask, dtype=filled.dtype)
    pixels = b * h * w
    grid = (triton.cdiv(pixels, BLOCK),)
    if form == "membrane":
        means = _cell_means(composite, mask, flat.MEMBRANE_CELL, squares=True)      # (B, 7, mh, mw)
        membranes = membrane.harmonic_fill(means[:, :6], means[:, 6:], flat.MEMBRANE_LEVELS).contiguous()
        ramp = flat_weight_grid(composite, mask)
        flat_epilogue_kernel[grid](filled, low, membranes, ramp, fill, weight, h, w, membranes.shape[2],
                                   membranes.shape[3], ramp.shape[2], ramp.shape[3], pixels, BLOCK=BLOCK)
        return fill, weight
    continued = continued_cells(composite, mask)
    carried, any_ring = holdout_cells(composite, mask)
    with_flatness = form == "continued_flat"
    ramp = flat_weight_grid(composite, mask) if with_flatness else carried      # not read without FLAT
    continued_epilogue_kernel[grid](filled, low, continued, carried, any_ring, ramp, fill, weight, h, w,
                                    continued.shape[2], continued.shape[3], ramp.shape[2], ramp.shape[3], pixels,
                                    FLAT=with_flatness, BLOCK=BLOCK)
    return fill, weight


def flat_fill_reference(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, form: str = "membrane"
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """`flat_fill` in torch: `model.flat.flat_fill`."""
    return flat.flat_fill(composite, mask, filled, form)
