"""The copy styles' candidate search (`model.patchmatch.copy_candidates`) as two Triton kernels, and its torch
reference of the same signature.

For every hole token i the search keeps the `pool` allowed keys j of highest similarity q_i . k_j (less the
locality penalty), re-ranks them by similarity - colour_weight * |expected_i - colour_j|_1 and returns the
COPY_CANDIDATES best. In torch, without host syncs, that is a dense N x N float32 similarity (cuBLAS; 64 MiB at
the 4096 tokens of a 512 px LR image), a `where` over it and two TopK with their gathers: ~0.5 ms of a 2.9 ms
call at 2048 px on an H200 at 7bd4503 (bench/results/profile-NVIDIA_H200.json's history). Here:

- `pool_search_kernel`: each program takes BLOCK_M rows of one image and one of `key_splits` key ranges, streams
  the range in BLOCK_N blocks (the similarities as a `tl.dot` over the key dimension in DIM_CHUNK slices: float16
  q, k multiply exactly and sum in float32, float32 ones in IEEE float32) and keeps each row's pool best in
  registers: while a block holds a similarity above a row's lowest kept one, that one is replaced. A program
  without a hole row only writes empty pools. The key ranges give a GPU enough programs (one range per row
  block left 128 programs for 132 multiprocessors at 4096 tokens: 0.33 ms at d684f35).
- `pool_merge_kernel`: joins a row's pools, keeps the `pool` most similar, re-ranks them by colour and writes
  the COPY_CANDIDATES best.

The sums run in another order than the reference's matmul, so the candidates equal the reference's except where
two keys' similarities or scores lie within float rounding of each other (tests/test_kernel_copy_candidates.py).
The rows are the compact reference's: entries past a row's allowed keys, and every entry of a known row, hold
the row's own index (not an allowed key, so `choose_sources` ignores them).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.model import patchmatch

from .tuning import INTERPRET

POOL_MAX = 64          # the largest pool kept in registers (BLOCK_M x pool); a larger one runs the torch path
MAX_SPLITS = 8         # key ranges searched by separate programs (the merge holds MAX_SPLITS x pool per row)
KEYS_PER_SPLIT = 512   # keys per range at least: 4096 keys, 128 row blocks x 8 ranges = 1024 programs
MERGE_ROWS = 32        # rows per merge program
WIDTH: tl.constexpr = tl.constexpr(patchmatch.COPY_CANDIDATES)
# the interpreter runs programs one by one: few, wide ones; on a GPU 32 rows x 64 keys per step, 4 warps
BLOCK_M = 64 if INTERPRET else 32
BLOCK_N = 256 if INTERPRET else 64
DIM_CHUNK = 32         # key dimensions multiplied at once
NUM_WARPS = 4


@triton.jit
def _lowest_kept(best_value, slots, pool, POOL_BLOCK: tl.constexpr):
    """Each row's lowest kept similarity among its first `pool` slots, and that slot (the first if tied)."""
    kept = slots[None, :] < pool
    lowest = tl.min(tl.where(kept, best_value, float("inf")), axis=1)
    slot = tl.min(tl.where(kept & (best_value == lowest[:, None]), slots[None, :], POOL_BLOCK), axis=1)
    return lowest, slot


@triton.jit
def pool_search_kernel(q_ptr, k_ptr, query_masked_ptr, key_ok_ptr, value_ptr, key_ptr, n, dim, grid_w, pool,
                       split_keys, locality, inv_side, POOL_BLOCK: tl.constexpr, LOCALITY: tl.constexpr,
                       IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DIM_CHUNK: tl.constexpr):
    """Each hole row's `pool` most similar allowed keys among keys [split * split_keys, (split + 1) * split_keys):
    q, k (B, n, dim); query_masked, key_ok (B, n) bool -> value (B, splits, n, POOL_BLOCK) float32 (-inf: none),
    key (same shape) int32, unordered. Grid (cdiv(n, BLOCK_M), splits, B)."""
    split, batch = tl.program_id(1), tl.program_id(2)
    image = batch * n
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    in_image = rows < n
    hole = tl.load(query_masked_ptr + image + rows, mask=in_image, other=0) != 0
    slots = tl.arange(0, POOL_BLOCK)
    best_value = tl.full((BLOCK_M, POOL_BLOCK), float("-inf"), tl.float32)
    best_key = tl.zeros((BLOCK_M, POOL_BLOCK), tl.int32)
    if tl.max(hole.to(tl.int32), axis=0) > 0:
        row_y = rows // grid_w
        row_x = rows - row_y * grid_w
        first_key = split * split_keys
        for start in range(first_key, tl.minimum(first_key + split_keys, n), BLOCK_N):
            keys = start + tl.arange(0, BLOCK_N)
            key_in = keys < n
            ok = tl.load(key_ok_ptr + image + keys, mask=key_in, other=0) != 0
            similarity = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
            for first in range(0, dim, DIM_CHUNK):
                dims = first + tl.arange(0, DIM_CHUNK)
                in_dim = dims < dim
                q = tl.load(q_ptr + (image + rows)[:, None] * dim + dims[None, :],
                            mask=in_image[:, None] & in_dim[None, :], other=0.0)
                k = tl.load(k_ptr + (image + keys)[None, :] * dim + dims[:, None],
                            mask=in_dim[:, None] & key_in[None, :], other=0.0)
                if IEEE:
                    similarity = tl.dot(q, k, similarity, input_precision="ieee")
                else:
                    similarity = tl.dot(q, k, similarity)
            if LOCALITY:
                key_y = keys // grid_w
                dy = (row_y[:, None] - key_y[None, :]).to(tl.float32)
                dx = (row_x[:, None] - (keys - key_y * grid_w)[None, :]).to(tl.float32)
                similarity = similarity - locality * (tl.sqrt(dy * dy + dx * dx) * inv_side)
            similarity = tl.where(hole[:, None] & ok[None, :], similarity, float("-inf"))
            # while a row's best remaining similarity of the block beats its lowest kept one, replace that one
            top = tl.max(similarity, axis=1)
            lowest, slot = _lowest_kept(best_value, slots, pool, POOL_BLOCK)
            enters = top > lowest
            while tl.max(enters.to(tl.int32), axis=0) > 0:
                key = tl.min(tl.where(similarity == top[:, None], keys[None, :], n), axis=1)
                put = enters[:, None] & (slots[None, :] == slot[:, None])
                best_value = tl.where(put, top[:, None], best_value)
                best_key = tl.where(put, key[:, None], best_key)
                similarity = tl.where(enters[:, None] & (keys[None, :] == key[:, None]), float("-inf"), similarity)
                top = tl.max(similarity, axis=1)
                lowest, slot = _lowest_kept(best_value, slots, pool, POOL_BLOCK)
                enters = top > lowest
    out = ((batch * tl.num_programs(1) + split) * n + rows)[:, None] * POOL_BLOCK + slots[None, :]
    tl.store(value_ptr + out, best_value, mask=in_image[:, None])
    tl.store(key_ptr + out, best_key, mask=in_image[:, None])


@triton.jit
def pool_merge_kernel(value_ptr, key_ptr, colours_ptr, expected_ptr, out_ptr, n, pool, colour_weight,
                      SPLITS: tl.constexpr, POOL_BLOCK: tl.constexpr, COLOUR: tl.constexpr, BLOCK_M: tl.constexpr):
    """The splits' pools (`pool_search_kernel`) -> each row's `pool` most similar keys of all, re-ranked by
    similarity - colour_weight * L1 colour distance: out (B, n, WIDTH) int64, best first, the row's own index
    past its allowed keys. colours, expected (B, n, 3) float32. Grid (cdiv(n, BLOCK_M), B)."""
    batch = tl.program_id(1)
    image = batch * n
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    in_image = rows < n
    entries = tl.arange(0, SPLITS * POOL_BLOCK)              # split-major: entry e is split e // POOL_BLOCK
    split_of = entries // POOL_BLOCK
    at = ((batch * SPLITS + split_of)[None, :] * n + rows[:, None]) * POOL_BLOCK + (entries % POOL_BLOCK)[None, :]
    value = tl.load(value_ptr + at, mask=in_image[:, None], other=float("-inf"))
    key = tl.load(key_ptr + at, mask=in_image[:, None], other=0)
    slots = tl.arange(0, POOL_BLOCK)
    best_value = tl.full((BLOCK_M, POOL_BLOCK), float("-inf"), tl.float32)
    best_key = tl.zeros((BLOCK_M, POOL_BLOCK), tl.int32)
    for slot in range(0, pool):                              # the pool most similar, in order
        top = tl.max(value, axis=1)
        entry = tl.min(tl.where(value == top[:, None], entries[None, :], SPLITS * POOL_BLOCK), axis=1)
        taken = entries[None, :] == entry[:, None]
        picked = tl.sum(tl.where(taken, key, 0), axis=1)
        here = slots[None, :] == slot
        best_value = tl.where(here, top[:, None], best_value)
        best_key = tl.where(here, picked[:, None], best_key)
        value = tl.where(taken, float("-inf"), value)
    kept = best_value > float("-inf")
    score = best_value
    if COLOUR:
        distance = tl.zeros((BLOCK_M, POOL_BLOCK), tl.float32)
        for channel in tl.static_range(3):
            picked = tl.load(colours_ptr + (image + best_key) * 3 + channel, mask=kept, other=0.0)
            wanted = tl.load(expected_ptr + (image + rows) * 3 + channel, mask=in_image, other=0.0)
            distance += tl.abs(picked - wanted[:, None])
        score = best_value - colour_weight * distance
    score = tl.where(kept, score, float("-inf"))
    columns = tl.arange(0, WIDTH)
    out = tl.zeros((BLOCK_M, WIDTH), tl.int64) + rows[:, None].to(tl.int64)
    for column in tl.static_range(WIDTH):
        top = tl.max(score, axis=1)
        slot = tl.min(tl.where(score == top[:, None], slots[None, :], POOL_BLOCK), axis=1)
        taken = slots[None, :] == slot[:, None]
        key = tl.sum(tl.where(taken, best_key, 0), axis=1)
        out = tl.where((columns[None, :] == column) & (top > float("-inf"))[:, None], key[:, None].to(tl.int64), out)
        score = tl.where(taken, float("-inf"), score)
    tl.store(out_ptr + (image + rows)[:, None] * WIDTH + columns[None, :], out, mask=in_image[:, None])


def key_splits(n: int) -> int:
    """How many key ranges the search splits n keys into: enough programs to fill a GPU (KEYS_PER_SPLIT keys or
    more each), a power of 2 (the merge's entries, splits x pool block, are a Triton block) up to MAX_SPLITS."""
    return 1 << (max(1, min(MAX_SPLITS, n // KEYS_PER_SPLIT)).bit_length() - 1)


def copy_candidates(q: torch.Tensor, k: torch.Tensor, colours: torch.Tensor, expected: torch.Tensor,
                    query_masked: torch.Tensor, key_ok: torch.Tensor, pool: int, colour_weight: float,
                    grid_w: int = 1, locality: float = 0.0) -> torch.Tensor:
    """`patchmatch.copy_candidates` (compact) in two launches, no host sync: q, k (B, N, d) float16, bfloat16 or
    float32; colours, expected (B, N, 3); query_masked, key_ok (B, N) bool; 1 <= pool <= POOL_MAX; grid_w divides
    N -> (B, N, COPY_CANDIDATES) int64."""
    batch, n = query_masked.shape
    if q.dim() != 3 or q.shape[:2] != (batch, n) or k.shape != q.shape:
        raise ValueError(f"q, k: expected ({batch}, {n}, d) each, got {tuple(q.shape)} and {tuple(k.shape)}")
    if key_ok.shape != (batch, n):
        raise ValueError(f"key_ok: expected ({batch}, {n}), got {tuple(key_ok.shape)}")
    if colours.shape != (batch, n, 3) or expected.shape != (batch, n, 3):
        raise ValueError(f"colours, expected: expected ({batch}, {n}, 3) each, got {tuple(colours.shape)} and "
                         f"{tuple(expected.shape)}")
    if not 1 <= pool <= POOL_MAX:
        raise ValueError(f"pool: expected 1..{POOL_MAX} (the kernel keeps the pool in registers), got {pool}")
    if grid_w < 1 or n % grid_w:
        raise ValueError(f"grid_w: expected >= 1 dividing the {n} tokens, got {grid_w}")
    q, k = q.contiguous(), k.contiguous()
    colours, expected = colours.float().contiguous(), expected.float().contiguous()
    splits = key_splits(n)
    split_keys = triton.cdiv(triton.cdiv(n, splits), BLOCK_N) * BLOCK_N
    pool_block = max(triton.next_power_of_2(pool), 2)
    values = torch.empty(batch, splits, n, pool_block, dtype=torch.float32, device=q.device)
    keys = torch.empty(batch, splits, n, pool_block, dtype=torch.int32, device=q.device)
    pool_search_kernel[(triton.cdiv(n, BLOCK_M), splits, batch)](
        q, k, query_masked.contiguous(), key_ok.contiguous(), values, keys, n, q.shape[-1], grid_w, pool, split_keys,
        locality, 1.0 / max(n // grid_w, grid_w), POOL_BLOCK=pool_block, LOCALITY=locality > 0.0,
        IEEE=q.dtype == torch.float32, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, DIM_CHUNK=DIM_CHUNK, num_warps=NUM_WARPS)
    out = torch.empty(batch, n, patchmatch.COPY_CANDIDATES, dtype=torch.int64, device=q.device)
    pool_merge_kernel[(triton.cdiv(n, MERGE_ROWS), batch)](values, keys, colours, expected, out, n, pool,
                                                           colour_weight, SPLITS=splits, POOL_BLOCK=pool_block,
                                                           COLOUR=colour_weight > 0.0, BLOCK_M=MERGE_ROWS)
    return out


def copy_candidates_reference(q: torch.Tensor, k: torch.Tensor, colours: torch.Tensor, expected: torch.Tensor,
                              query_masked: torch.Tensor, key_ok: torch.Tensor, pool: int, colour_weight: float,
                              grid_w: int = 1, locality: float = 0.0) -> torch.Tensor:
    """`copy_candidates` in torch: `patchmatch.copy_candidates`, compact."""
    return patchmatch.copy_candidates(q, k, colours, expected, query_masked, key_ok, pool, colour_weight, True,
                                      grid_w, locality)
