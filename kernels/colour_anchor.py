"""The colour anchor (`model.anchor.colour_anchor`) as a few Triton launches, with its torch reference.

On the ANCHOR_CELL x ANCHOR_CELL px cell grid: one launch takes every cell's known colour, whether it holds a known
pixel (a seed) and the fill's mean; jump flooding takes one launch per step (each cell keeps the nearest of its own
seed and those of the eight cells `step` away, ties broken in the reference's order); one launch gathers the
nearest seed's colour minus the fill's mean; `kernels.blur.blur_base` blurs that difference; one launch over the
LR pixels upsamples it bilinearly and adds `strength` of it to the hole: 24 operations per call at 512^2 LR, where
torch issues 226 (`bench.op_count`, docs/performance.md), on the GPU as many small kernels inside the CUDA graph.

Distances are integers here (squared cell offsets times ORDER_SCALE, plus the look's place in the reference's
order); the reference's float32 distances plus TIE_BREAK are exact while squared offsets stay below 2^19 (grids up
to 512 cells a side: LR long sides up to 1024), so there both pick the same seeds; colours and blurs agree to float
rounding (tests/test_kernel_colour_anchor.py).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.model import anchor

from . import blur
from .sampling import known_count, program_places, upsample_taps, upsampled
from .tuning import INTERPRET

BLOCK = 2048 if INTERPRET else 256   # cells or LR pixels per program (interpreted: few, wide)
NO_SEED: tl.constexpr = tl.constexpr(-1)          # a cell that knows no seed yet
ORDER_SCALE: tl.constexpr = tl.constexpr(round(1 / anchor.TIE_BREAK))   # squared distance * this + the look's place
CELL: tl.constexpr = tl.constexpr(anchor.ANCHOR_CELL)


@triton.jit
def anchor_cells_kernel(composite_ptr, mask_ptr, filled_ptr, seed_ptr, colour_ptr, fill_ptr, h, w, gh, gw, total,
                        BLOCK: tl.constexpr):
    """Per cell (b, cy, cx) of the (B, gh, gw) grid: seed = its flat index cy * gw + cx if it holds a known pixel,
    else NO_SEED; colour (B, 3, gh, gw) = the mean of its known pixels (0 without one); fill = the fill's mean
    (`anchor.cell_sums`' order: each row's sum, then the rows'). composite, filled (B, 3, h, w), mask (B, 1, h, w)
    contiguous, 1 = hole."""
    offs, live, b, cell, cy, cx = program_places(gh, gw, total, BLOCK)
    cells = gh * gw
    weight = known_count(mask_ptr, b, h, w, cy, cx, live, CELL, BLOCK)   # row by row: the reference's sums
    tl.store(seed_ptr + offs, tl.where(weight > 0.0, cell, NO_SEED).to(tl.int32), mask=live)
    for ch in tl.static_range(3):
        known_sum = tl.zeros((BLOCK,), tl.float32)
        fill_sum = tl.zeros((BLOCK,), tl.float32)
        for r in tl.static_range(CELL):
            known_row = tl.zeros((BLOCK,), tl.float32)
            fill_row = tl.zeros((BLOCK,), tl.float32)
            for c in tl.static_range(CELL):
                pixel = ((b * 3 + ch) * h + cy * CELL + r) * w + cx * CELL + c
                known = 1.0 - tl.load(mask_ptr + (b * h + cy * CELL + r) * w + cx * CELL + c, mask=live,
                                      other=1.0).to(tl.float32)
                known_row += tl.load(composite_ptr + pixel, mask=live, other=0.0).to(tl.float32) * known
                fill_row += tl.load(filled_ptr + pixel, mask=live, other=0.0).to(tl.float32)
            known_sum += known_row
            fill_sum += fill_row
        at = (b * 3 + ch) * cells + cell
        tl.store(colour_ptr + at, known_sum / tl.maximum(weight, 1.0), mask=live)
        tl.store(fill_ptr + at, fill_sum / (CELL * CELL), mask=live)


@triton.jit
def _look(seed_ptr, b, cy, cx, dy, dx, step, gh, gw, place, best, best_key, live):
    """The seed of the cell (dy, dx) * step away, if it is nearer than best (ties: the earlier place)."""
    ny = cy + dy * step
    nx = cx + dx * step
    inside = live & (ny >= 0) & (ny < gh) & (nx >= 0) & (nx < gw)
    seed = tl.load(seed_ptr + (b * gh + ny) * gw + nx, mask=inside, other=NO_SEED)
    sy = seed // gw - cy
    sx = seed % gw - cx
    key = (sy * sy + sx * sx) * ORDER_SCALE + place
    better = (seed != NO_SEED) & ((best == NO_SEED) | (key < best_key))
    return tl.where(better, seed, best), tl.where(better, key, best_key)


@triton.jit
def jump_flood_kernel(seed_in_ptr, seed_out_ptr, gh, gw, total, step, BLOCK: tl.constexpr):
    """One jump flooding step on the (B, gh, gw) seeds: each cell keeps the nearest of its own seed and those of
    the eight cells `step` away, looked at in `anchor.JUMP_DIRECTIONS`' order."""
    offs, live, b, cell, cy, cx = program_places(gh, gw, total, BLOCK)
    best = tl.load(seed_in_ptr + offs, mask=live, other=NO_SEED)
    sy = best // gw - cy
    sx = best % gw - cx
    best_key = (sy * sy + sx * sx) * ORDER_SCALE
    best, best_key = _look(seed_in_ptr, b, cy, cx, -1, -1, step, gh, gw, 1, best, best_key, live)
    best, best_key = _look(seed_in_ptr, b, cy, cx, -1, 0, step, gh, gw, 2, best, best_key, live)
    best, best_key = _look(seed_in_ptr, b, cy, cx, -1, 1, step, gh, gw, 3, best, best_key, live)
    best, best_key = _look(seed_in_ptr, b, cy, cx, 0, -1, step, gh, gw, 4, best, best_key, live)
    best, best_key = _look(seed_in_ptr, b, cy, cx, 0, 1, step, gh, gw, 5, best, best_key, live)
    best, best_key = _look(seed_in_ptr, b, cy, cx, 1, -1, step, gh, gw, 6, best, best_key, live)
    best, best_key = _look(seed_in_ptr, b, cy, cx, 1, 0, step, gh, gw, 7, best, best_key, live)
    best, best_key = _look(seed_in_ptr, b, cy, cx, 1, 1, step, gh, gw, 8, best, best_key, live)
    tl.store(seed_out_ptr + offs, best, mask=live)


@triton.jit
def anchor_difference_kernel(seed_ptr, colour_ptr, fill_ptr, diff_ptr, gh, gw, total, BLOCK: tl.constexpr):
    """diff (B, 3, gh, gw) = the colour of each cell's nearest seed minus the fill's mean there (0 where the image
    has no seed: the reference multiplies its blur by has_seed = 0 there)."""
    offs, live, b, cell, _, _ = program_places(gh, gw, total, BLOCK)
    cells = gh * gw
    seed = tl.load(seed_ptr + offs, mask=live, other=NO_SEED)
    has = live & (seed != NO_SEED)
    for ch in tl.static_range(3):
        plane = (b * 3 + ch) * cells
        colour = tl.load(colour_ptr + plane + seed, mask=has, other=0.0)
        fill = tl.load(fill_ptr + plane + cell, mask=live, other=0.0)
        tl.store(diff_ptr + plane + cell, tl.where(has, colour - fill, 0.0), mask=live)


@triton.jit
def anchor_apply_kernel(filled_ptr, mask_ptr, shift_ptr, out_ptr, h, w, gh, gw, total, strength,
                        BLOCK: tl.constexpr):
    """out (B, 3, h, w) = clamp(filled + mask * strength * shift, 0, 1), the shift (B, 3, gh, gw) upsampled
    bilinearly by CELL (torch's `interpolate(scale_factor=CELL, mode="bilinear", align_corners=False)`)."""
    offs, live, b, pixel, y, x = program_places(h, w, total, BLOCK)
    pixels = h * w
    y0, y1, x0, x1, ly, lx = upsample_taps(y, x, gh, gw, CELL)
    hole = tl.load(mask_ptr + offs, mask=live, other=0.0).to(tl.float32)
    for ch in tl.static_range(3):
        shift = upsampled(shift_ptr, (b * 3 + ch) * gh * gw, gw, y0, y1, x0, x1, ly, lx, live) * strength
        at = (b * 3 + ch) * pixels + pixel
        value = tl.load(filled_ptr + at, mask=live, other=0.0).to(tl.float32) + shift * hole
        value = tl.minimum(tl.maximum(value, 0.0), 1.0)
        tl.store(out_ptr + at, value.to(out_ptr.dtype.element_ty), mask=live)


def jump_flood(seeds: torch.Tensor, steps: list[int], gw: int) -> torch.Tensor:
    """Jump flooding from seeds (B, gh, gw) int32 contiguous (a seed cell's own flat index, NO_SEED elsewhere) ->
    each cell's nearest seed's flat index (B, gh, gw) int32 (`anchor.nearest_seeds`' choice): one launch per step."""
    spare = torch.empty_like(seeds)
    gh, total = seeds.shape[1], seeds.numel()
    for step in steps:
        jump_flood_kernel[(triton.cdiv(total, BLOCK),)](seeds, spare, gh, gw, total, step, BLOCK=BLOCK)
        seeds, spare = spare, seeds
    return seeds


def colour_anchor(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, strength: float,
                  sigma: float, steps: list[int]) -> torch.Tensor:
    """`model.anchor.colour_anchor` (same arguments and result; float32 or float16 images (B, 3, h, w), mask
    (B, 1, h, w) {0, 1}, h and w multiples of ANCHOR_CELL) in Triton: no host sync, so a CUDA graph can hold it."""
    cell = anchor.ANCHOR_CELL
    b, channels, h, w = filled.shape
    if channels != 3 or composite.shape != filled.shape or mask.shape != (b, 1, h, w):
        raise ValueError(f"composite, mask, filled: expected (B, 3, h, w), (B, 1, h, w), (B, 3, h, w), got "
                         f"{tuple(composite.shape)}, {tuple(mask.shape)}, {tuple(filled.shape)}")
    if h % cell or w % cell:
        raise ValueError(f"filled: h and w must be multiples of ANCHOR_CELL ({cell}), got {h}x{w}")
    composite, mask, filled = composite.contiguous(), mask.contiguous(), filled.contiguous()
    gh, gw = h // cell, w // cell
    cells = b * gh * gw
    grid = (triton.cdiv(cells, BLOCK),)
    seeds = torch.empty((b, gh, gw), dtype=torch.int32, device=filled.device)
    colours = torch.empty((b, 3, gh, gw), dtype=torch.float32, device=filled.device)
    fill_means = torch.empty_like(colours)
    anchor_cells_kernel[grid](composite, mask, filled, seeds, colours, fill_means, h, w, gh, gw, cells, BLOCK=BLOCK)
    seeds = jump_flood(seeds, steps, gw)
    diff = torch.empty_like(colours)
    anchor_difference_kernel[grid](seeds, colours, fill_means, diff, gh, gw, cells, BLOCK=BLOCK)
    shift = blur.blur_base(diff, sigma / cell).contiguous()
    out = torch.empty_like(filled)
    pixels = b * h * w
    anchor_apply_kernel[(triton.cdiv(pixels, BLOCK),)](filled, mask, shift, out, h, w, gh, gw, pixels,
                                                       float(strength), BLOCK=BLOCK)
    return out


def colour_anchor_reference(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, strength: float,
                            sigma: float, steps: list[int]) -> torch.Tensor:
    """`colour_anchor` in torch: `model.anchor.colour_anchor`."""
    return anchor.colour_anchor(composite, mask, filled, strength, sigma, steps)
