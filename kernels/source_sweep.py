"""The copy styles' propagation sweeps (`model.patchmatch.propagate_sources`, the loop of `choose_sources`) with
each checkerboard update as one Triton kernel, and its torch reference of the same signature.

An update lets every hole token of one colour pick the best of its C candidates and of the four continuations of
its hole neighbours' copies (and, with border_continuity > 0, of its known neighbours' look-alikes,
`patchmatch.border_lookalikes`), scored with the continuity credits, the repeat penalty and the rule against a
neighbour's source; with support_margin > 0 a hole neighbour's copy is credited only while its score (tracked
across updates in a second buffer) is at least its best allowed candidate's less the margin. In torch that is ~80
small kernels per update (gathers, pairwise comparisons of the options, the continuations' scores, TopK), ~670 for
the default's 8 updates (`bench.op_count`); here one. Each program
takes BLOCK tokens of one image. A token that updates reads its candidates and their scores (`start_sources`,
torch, once per call), its neighbours' sources from the previous update, and scores the continuations itself:
a float32 dot product over the key dimension in DIM_CHUNK slices, summed in another order than the reference's
matmul. So the chosen sources equal the reference's except where two options' scores lie within float rounding
of each other (tests/test_kernel_source_sweep.py); of exactly equal scores the kernel takes the first option
(candidates in order, then the sides in `NEIGHBOURS` order).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.model import patchmatch

from .tuning import INTERPRET

BLOCK = 1024 if INTERPRET else 32     # tokens per program (the interpreter runs programs one by one: few, wide)
DIM_CHUNK = 32        # key dimensions read at once
NUM_WARPS = 8         # with BLOCK 32 and DIM_CHUNK 32: ~220 registers, no spills on sm_90 and sm_87 (compile_check)
NO_OPTION: tl.constexpr = tl.constexpr(patchmatch.NO_OPTION)
PADDING_SCORE: tl.constexpr = tl.constexpr(patchmatch.NO_OPTION - 1.0)   # candidate columns past C: never chosen


@triton.jit
def _inside(y, x, grid_h, grid_w):
    return (y >= 0) & (y < grid_h) & (x >= 0) & (x < grid_w)


@triton.jit
def _cell(y, x, grid_h, grid_w):
    """`patchmatch._grid_cell`'s index: (y, x) clamped into the grid, row-major."""
    return tl.minimum(tl.maximum(y, 0), grid_h - 1) * grid_w + tl.minimum(tl.maximum(x, 0), grid_w - 1)


@triton.jit
def _side(source_ptr, has_key_ptr, key_ok_ptr, score_ptr, floor_ptr, image, row, col, grid_h, grid_w, active,
          DY: tl.constexpr, DX: tl.constexpr, GUIDES: tl.constexpr, SUPPORT: tl.constexpr):
    """The neighbour (row + DY, col + DX) of each token -> (taken: its source if it is a hole that copies, else -1;
    continuation: its source shifted back by (DY, DX) (clamped into the grid); whether that continuation is an
    option: the neighbour copies (GUIDES: or is a known token whose source is not itself, its look-alike), and the
    shifted token is inside the grid and an allowed key; whether it earns the credit: an option and (SUPPORT) the
    neighbour's copy is supported, its score at least its floor; whether the neighbour is a hole that copies)."""
    ny = row + DY
    nx = col + DX
    cell = _cell(ny, nx, grid_h, grid_w)
    inside = _inside(ny, nx, grid_h, grid_w)
    copies = tl.load(has_key_ptr + image + cell, mask=active, other=0) != 0
    hole = inside & copies
    src = tl.load(source_ptr + image + cell, mask=active, other=0)
    offers = hole
    if GUIDES:
        offers = hole | (inside & ~copies & (src != cell))
    sy = src // grid_w
    cy = sy - DY
    cx = (src - sy * grid_w) - DX
    continuation = _cell(cy, cx, grid_h, grid_w)
    ok = offers & _inside(cy, cx, grid_h, grid_w) & \
        (tl.load(key_ok_ptr + image + continuation, mask=active, other=0) != 0)
    credited = ok
    if SUPPORT:
        supported = tl.load(score_ptr + image + cell, mask=active, other=0.0) >= \
            tl.load(floor_ptr + image + cell, mask=active, other=0.0)
        credited = ok & (~hole | supported)
    return tl.where(hole, src, -1), continuation, ok, credited, hole


@triton.jit
def _credit(option, cont, ok, hole, continuity, border_continuity, GUIDES: tl.constexpr):
    """One side's credit for option: (continuity; GUIDES: border_continuity where the neighbour is known) if option
    continues that neighbour, else 0 (float32)."""
    continued = (option == tl.where(ok, cont, -1)).to(tl.float32)
    if GUIDES:
        return continued * tl.where(hole, continuity, border_continuity)
    return continued


@triton.jit
def _neighbour_terms(option, taken0, taken1, taken2, taken3, cont0, cont1, cont2, cont3,
                     ok0, ok1, ok2, ok3, hole0, hole1, hole2, hole3, continuity, border_continuity,
                     GUIDES: tl.constexpr):
    """-> (the credit for the neighbours' copies option continues (float32): continuity times their count, or with
    GUIDES the sides' credits summed in NEIGHBOURS order; whether a hole neighbour copies option); option and the
    sides' values broadcast against each other."""
    agree = _credit(option, cont0, ok0, hole0, continuity, border_continuity, GUIDES)
    agree += _credit(option, cont1, ok1, hole1, continuity, border_continuity, GUIDES)
    agree += _credit(option, cont2, ok2, hole2, continuity, border_continuity, GUIDES)
    agree += _credit(option, cont3, ok3, hole3, continuity, border_continuity, GUIDES)
    if not GUIDES:
        agree = continuity * agree
    repeats = (option == taken0) | (option == taken1) | (option == taken2) | (option == taken3)
    return agree, repeats


@triton.jit
def _repeated(option, source_ptr, has_key_ptr, image, row, col, grid_h, grid_w, active,
              RADIUS: tl.constexpr, EXPAND: tl.constexpr):
    """How many hole tokens before each token in raster order within RADIUS (a square window) copy option
    (float32); EXPAND: option is (BLOCK, C), else (BLOCK,)."""
    count = tl.zeros(option.shape, tl.float32)
    for wy in tl.static_range(RADIUS + 1):
        for wx in tl.static_range(2 * RADIUS + 1):
            if wy < RADIUS or wx < RADIUS:                     # dy < 0, or dy == 0 and dx < 0
                y = row + (wy - RADIUS)
                x = col + (wx - RADIUS)
                cell = _cell(y, x, grid_h, grid_w)
                there = _inside(y, x, grid_h, grid_w) & \
                    (tl.load(has_key_ptr + image + cell, mask=active, other=0) != 0)
                src = tl.where(there, tl.load(source_ptr + image + cell, mask=active, other=0), -1)
                if EXPAND:
                    src = src[:, None]
                count += (option == src).to(tl.float32)
    return count


@triton.jit
def _continued_score(score, option, expected0, expected1, expected2, colours_ptr, image, colour_weight,
                     COLOUR: tl.constexpr):
    """A continuation's score: its similarity, less colour_weight times the L1 distance of the option's colour
    from the token's expected colour (COLOUR), as `patchmatch._option_scores`."""
    if COLOUR:
        at = colours_ptr + (image + option) * 3
        distance = tl.abs(tl.load(at).to(tl.float32) - expected0) + tl.abs(tl.load(at + 1).to(tl.float32) - expected1)
        distance += tl.abs(tl.load(at + 2).to(tl.float32) - expected2)
        score = score - colour_weight * distance
    return score


@triton.jit
def propagation_sweep_kernel(q_ptr, k_ptr, candidates_ptr, own_score_ptr, valid_ptr, has_key_ptr, key_ok_ptr,
                             colours_ptr, expected_ptr, source_ptr, out_ptr, score_ptr, score_out_ptr, floor_ptr, n,
                             grid_h, grid_w, dim, candidates, parity, continuity, repeat_penalty, colour_weight,
                             border_continuity, C_BLOCK: tl.constexpr, RADIUS: tl.constexpr, COLOUR: tl.constexpr,
                             GUIDES: tl.constexpr, SUPPORT: tl.constexpr, DIM_CHUNK: tl.constexpr,
                             BLOCK: tl.constexpr):
    """One update of the tokens of colour `parity` ((row + col) % 2) of image program_id(1): source (B, N) int64
    in, out (B, N) int64 (every token written); q, k (B, N, dim); candidates, own_score, valid (B, N, candidates);
    has_key, key_ok (B, N) bool; colours, expected (B, N, 3) float32; SUPPORT: score in, score_out (B, N) float32
    (every token written: the sources' scores without credits or penalties), floor (B, N) float32 (the score a
    copy needs to be supported); all contiguous."""
    tokens = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    image = tl.program_id(1).to(tl.int64) * n
    in_image = tokens < n
    row = tokens // grid_w
    col = tokens - row * grid_w
    own_source = tl.load(source_ptr + image + tokens, mask=in_image, other=0)
    has_key = tl.load(has_key_ptr + image + tokens, mask=in_image, other=0) != 0
    active = in_image & has_key & ((row + col) % 2 == parity)

    taken0, cont0, ok0, credited0, hole0 = _side(source_ptr, has_key_ptr, key_ok_ptr, score_ptr, floor_ptr,
                                                      image, row, col, grid_h, grid_w, active, -1, 0, GUIDES,
                                                      SUPPORT)
    taken1, cont1, ok1, credited1, hole1 = _side(source_ptr, has_key_ptr, key_ok_ptr, score_ptr, floor_ptr,
                                                      image, row, col, grid_h, grid_w, active, 1, 0, GUIDES,
                                                      SUPPORT)
    taken2, cont2, ok2, credited2, hole2 = _side(source_ptr, has_key_ptr, key_ok_ptr, score_ptr, floor_ptr,
                                                      image, row, col, grid_h, grid_w, active, 0, -1, GUIDES,
                                                      SUPPORT)
    taken3, cont3, ok3, credited3, hole3 = _side(source_ptr, has_key_ptr, key_ok_ptr, score_ptr, floor_ptr,
                                                      image, row, col, grid_h, grid_w, active, 0, 1, GUIDES,
                                                      SUPPORT)

    # the continuations' similarities: q . k over the key dimension
    score0 = tl.zeros((BLOCK,), tl.float32)
    score1 = tl.zeros((BLOCK,), tl.float32)
    score2 = tl.zeros((BLOCK,), tl.float32)
    score3 = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, dim, DIM_CHUNK):
        d = start + tl.arange(0, DIM_CHUNK)
        read = active[:, None] & (d < dim)[None, :]
        query = tl.load(q_ptr + (image + tokens)[:, None] * dim + d[None, :], mask=read, other=0.0).to(tl.float32)
        score0 += tl.sum(query * tl.load(k_ptr + (image + cont0)[:, None] * dim + d[None, :], mask=read,
                                         other=0.0).to(tl.float32), axis=1)
        score1 += tl.sum(query * tl.load(k_ptr + (image + cont1)[:, None] * dim + d[None, :], mask=read,
                                         other=0.0).to(tl.float32), axis=1)
        score2 += tl.sum(query * tl.load(k_ptr + (image + cont2)[:, None] * dim + d[None, :], mask=read,
                                         other=0.0).to(tl.float32), axis=1)
        score3 += tl.sum(query * tl.load(k_ptr + (image + cont3)[:, None] * dim + d[None, :], mask=read,
                                         other=0.0).to(tl.float32), axis=1)
    expected0 = 0.0
    expected1 = 0.0
    expected2 = 0.0
    if COLOUR:
        at = expected_ptr + (image + tokens) * 3
        expected0 = tl.load(at, mask=active, other=0.0).to(tl.float32)
        expected1 = tl.load(at + 1, mask=active, other=0.0).to(tl.float32)
        expected2 = tl.load(at + 2, mask=active, other=0.0).to(tl.float32)
    score0 = _continued_score(score0, cont0, expected0, expected1, expected2, colours_ptr, image, colour_weight, COLOUR)
    score1 = _continued_score(score1, cont1, expected0, expected1, expected2, colours_ptr, image, colour_weight, COLOUR)
    score2 = _continued_score(score2, cont2, expected0, expected1, expected2, colours_ptr, image, colour_weight, COLOUR)
    score3 = _continued_score(score3, cont3, expected0, expected1, expected2, colours_ptr, image, colour_weight, COLOUR)

    # the candidates: (BLOCK, C_BLOCK), columns past `candidates` padded out
    c = tl.arange(0, C_BLOCK)
    at = (image + tokens)[:, None] * candidates + c[None, :]
    read = active[:, None] & (c < candidates)[None, :]
    option = tl.load(candidates_ptr + at, mask=read, other=0)
    option_ok = tl.load(valid_ptr + at, mask=read, other=0) != 0
    base = tl.load(own_score_ptr + at, mask=read, other=0.0).to(tl.float32)
    agree, repeats = _neighbour_terms(option, taken0[:, None], taken1[:, None], taken2[:, None], taken3[:, None],
                                      cont0[:, None], cont1[:, None], cont2[:, None], cont3[:, None],
                                      credited0[:, None], credited1[:, None], credited2[:, None], credited3[:, None],
                                      hole0[:, None], hole1[:, None], hole2[:, None], hole3[:, None], continuity,
                                      border_continuity, GUIDES)
    score = base + agree
    if RADIUS > 0:
        score = score - repeat_penalty * _repeated(option, source_ptr, has_key_ptr, image, row, col, grid_h, grid_w,
                                                   active, RADIUS, True)
    score = tl.where(option_ok & ~repeats, score, NO_OPTION)
    score = tl.where((c < candidates)[None, :], score, PADDING_SCORE)
    top = tl.max(score, axis=1)
    first = tl.min(tl.where(score == top[:, None], c[None, :], C_BLOCK), axis=1)
    best = tl.sum(tl.where(c[None, :] == first[:, None], option, 0), axis=1)
    best_base = tl.sum(tl.where(c[None, :] == first[:, None], base, 0.0), axis=1)

    # the continuations, in NEIGHBOURS order: each replaces the best so far only with a higher score
    for side in tl.static_range(4):
        if side == 0:
            option, option_ok, side_score = cont0, ok0, score0
        elif side == 1:
            option, option_ok, side_score = cont1, ok1, score1
        elif side == 2:
            option, option_ok, side_score = cont2, ok2, score2
        else:
            option, option_ok, side_score = cont3, ok3, score3
        agree, repeats = _neighbour_terms(option, taken0, taken1, taken2, taken3, cont0, cont1, cont2, cont3,
                                          credited0, credited1, credited2, credited3, hole0, hole1, hole2, hole3,
                                          continuity, border_continuity, GUIDES)
        side_base = side_score
        side_score = side_score + agree
        if RADIUS > 0:
            side_score = side_score - repeat_penalty * _repeated(option, source_ptr, has_key_ptr, image, row, col,
                                                                 grid_h, grid_w, active, RADIUS, False)
        side_score = tl.where(option_ok & ~repeats, side_score, NO_OPTION)
        better = side_score > top
        top = tl.where(better, side_score, top)
        best = tl.where(better, option, best)
        best_base = tl.where(better, side_base, best_base)
    updated = active & (top > NO_OPTION)
    tl.store(out_ptr + image + tokens, tl.where(updated, best, own_source), mask=in_image)
    if SUPPORT:
        kept = tl.load(score_ptr + image + tokens, mask=in_image, other=0.0)      # the score of the source kept
        tl.store(score_out_ptr + image + tokens, tl.where(updated, best_base, kept), mask=in_image)


def propagate_sources(q: torch.Tensor, k: torch.Tensor, candidates: torch.Tensor, own_score: torch.Tensor,
                      valid: torch.Tensor, has_key: torch.Tensor, key_ok: torch.Tensor, source: torch.Tensor,
                      grid_w: int, colours: torch.Tensor, expected: torch.Tensor, colour_weight: float, sweeps: int,
                      continuity: float, repeat_radius: int = 0, repeat_penalty: float = 0.0,
                      border_continuity: float = 0.0, support_margin: float = 0.0) -> torch.Tensor:
    """`patchmatch.propagate_sources` (same arguments but compact, same result) with one launch per update, no
    host sync: q, k (B, N, d); candidates (B, N, C) int64; own_score (B, N, C) float32; valid (B, N, C) and
    has_key, key_ok (B, N) bool; source (B, N) int64 (not written); colours, expected (B, N, 3)."""
    batch, n = has_key.shape
    if q.dim() != 3 or q.shape[:2] != (batch, n) or k.shape != q.shape:
        raise ValueError(f"q, k: expected ({batch}, {n}, d) each, got {tuple(q.shape)} and {tuple(k.shape)}")
    if candidates.dim() != 3 or candidates.shape[:2] != (batch, n) or own_score.shape != candidates.shape \
            or valid.shape != candidates.shape:
        raise ValueError(f"candidates, own_score, valid: expected ({batch}, {n}, C) each, got "
                         f"{tuple(candidates.shape)}, {tuple(own_score.shape)} and {tuple(valid.shape)}")
    if source.shape != (batch, n) or source.dtype != torch.int64 or key_ok.shape != (batch, n):
        raise ValueError(f"source, key_ok: expected ({batch}, {n}) int64 and bool, got {tuple(source.shape)} "
                         f"{source.dtype} and {tuple(key_ok.shape)}")
    if grid_w < 1 or n % grid_w:
        raise ValueError(f"grid_w: expected >= 1 dividing the {n} tokens, got {grid_w}")
    if colours.shape != (batch, n, 3) or expected.shape != (batch, n, 3):
        raise ValueError(f"colours, expected: expected ({batch}, {n}, 3) each, got {tuple(colours.shape)} and "
                         f"{tuple(expected.shape)}")
    if not border_continuity >= 0.0:
        raise ValueError(f"border_continuity: expected >= 0 (0 = off), got {border_continuity}")
    if not support_margin >= 0.0:
        raise ValueError(f"support_margin: expected >= 0 (0 = off), got {support_margin}")
    radius = repeat_radius if repeat_penalty > 0.0 else 0
    q, k, candidates, own_score = q.contiguous(), k.contiguous(), candidates.contiguous(), own_score.float().contiguous()
    valid, has_key, key_ok = valid.contiguous(), has_key.contiguous(), key_ok.contiguous()
    colours, expected = colours.float().contiguous(), expected.float().contiguous()
    current, other = source.clone(memory_format=torch.contiguous_format), torch.empty_like(source)
    support = support_margin > 0.0
    if support:   # the start's sources' scores (dense: no host sync), and the floors
        score = patchmatch.source_scores(q, k, current, colours, expected, colour_weight)
        score, other_score = score.contiguous(), torch.empty_like(score)
        floor = patchmatch.support_floors(own_score, valid, support_margin).contiguous()
    else:         # not read
        score = other_score = floor = own_score
    grid = (triton.cdiv(n, BLOCK), batch)
    for sweep in range(sweeps):
        propagation_sweep_kernel[grid](q, k, candidates, own_score, valid, has_key, key_ok, colours, expected, current,
                                       other, score, other_score, floor, n, n // grid_w, grid_w, q.shape[-1],
                                       candidates.shape[-1], 1 - sweep % 2, continuity, repeat_penalty, colour_weight,
                                       border_continuity, C_BLOCK=triton.next_power_of_2(candidates.shape[-1]),
                                       RADIUS=radius, COLOUR=colour_weight > 0.0, GUIDES=border_continuity > 0.0,
                                       SUPPORT=support, DIM_CHUNK=DIM_CHUNK, BLOCK=BLOCK, num_warps=NUM_WARPS)
        current, other = other, current
        if support:
            score, other_score = other_score, score
    return current


def propagate_sources_reference(q: torch.Tensor, k: torch.Tensor, candidates: torch.Tensor, own_score: torch.Tensor,
                                valid: torch.Tensor, has_key: torch.Tensor, key_ok: torch.Tensor,
                                source: torch.Tensor, grid_w: int, colours: torch.Tensor, expected: torch.Tensor,
                                colour_weight: float, sweeps: int, continuity: float, repeat_radius: int = 0,
                                repeat_penalty: float = 0.0, border_continuity: float = 0.0,
                                support_margin: float = 0.0) -> torch.Tensor:
    """`propagate_sources` in torch: `patchmatch.propagate_sources`, dense."""
    return patchmatch.propagate_sources(q, k, candidates, own_score, valid, has_key, key_ok, source, grid_w, colours,
                                        expected, colour_weight, sweeps, continuity, repeat_radius, repeat_penalty,
                                        border_continuity=border_continuity, support_margin=support_margin)
