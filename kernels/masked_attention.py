"""Masked patch attention + token mixing (Triton, flash-style), with its torch reference of the same
signature.

Only hole tokens query (a compacted row list), only allowed keys (known tokens inside the image, a
compacted key list) are visited, and every logit is seen once: an online softmax accumulates
    mixed_i = sum_j softmax_j(scale * q_i . k_j) * v_j
with v_j token j's P x P x 3 pixels gathered straight from the LR image, and the result is written
straight into the LR image layout at token i's pixels (pixel-shuffle fused). Alongside, the K largest
logits per row are tracked, giving what the HR stage consumes: top-K weights renormalised over the K
(softmax restricted to them, so no second pass is needed) and their key indices. A is never stored.

Rows that are not holes are not touched (A_ii = 1: their tokens are already in `out`); their weights
are 0. A hole row with no allowed key anywhere keeps its own token and gets weights 0. Values are only
read from known tokens and only hole tokens are written, so `out` may be the image itself (in place).

Per row: FLOPs 2 * n_keys * (d + 3P^2); bytes: q row, K and V tiles (re-read per BLOCK_M rows), out.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .patch_projection import dot_precision, token_pixel_offsets
from .tuning import autotune

LOG2E = math.log2(math.e)
# BLOCK_M: hole tokens per program (three (BLOCK_M, P*P) fp32 accumulators in registers); BLOCK_N: keys
# per online-softmax step. Chosen so that the fp16 kernel does not spill on sm_90 (ptxas -v via
# `python -m rethined_engine.kernels.compile_check`: 179-255 registers, 0 spill bytes); 4-warp tiles
# of 64 x 32 or 32 x 64 spilled 100-600 bytes.
CONFIGS = {
    "m64_n32_w8": triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=8, num_stages=2),
    "m32_n64_w8": triton.Config({"BLOCK_M": 32, "BLOCK_N": 64}, num_warps=8, num_stages=2),
    "m32_n32_w8": triton.Config({"BLOCK_M": 32, "BLOCK_N": 32}, num_warps=8, num_stages=3),
    "m16_n32_w4": triton.Config({"BLOCK_M": 16, "BLOCK_N": 32}, num_warps=4, num_stages=3),
}


@triton.jit
def _token_pixels(image_ptr, token, token_ok, c, h, w, grid_w, P: tl.constexpr):
    """(len(token), P*P) pixels of channel c of each token, (dy, dx) row-major, read from (3, h, w)."""
    off = token_pixel_offsets(c * h * w, token, tl.arange(0, P * P), w, grid_w, P)
    return tl.load(image_ptr + off, mask=token_ok[:, None], other=0.0), off


@triton.jit
def _store_mixed(out_ptr, image_ptr, acc, inv_l, has_keys, row, row_ok, c, h, w, grid_w, P: tl.constexpr):
    """Channel c of the mixed hole tokens into out's (3, h, w) layout; rows without keys keep their token."""
    own, off = _token_pixels(image_ptr, row, row_ok, c, h, w, grid_w, P)
    mixed = tl.where(has_keys[:, None], acc * inv_l[:, None], own.to(tl.float32))
    tl.store(out_ptr + off, mixed.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


@autotune(CONFIGS, key=["D", "P", "K"])
@triton.jit
def masked_attention_kernel(q_ptr, k_ptr, image_ptr, out_ptr, rows_ptr, n_rows_ptr, keys_ptr, n_keys_ptr,
                            weight_ptr, index_ptr, h, w, grid_w, scale_log2,
                            D: tl.constexpr, P: tl.constexpr, K: tl.constexpr, KP: tl.constexpr,
                            PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    n_rows = tl.load(n_rows_ptr)
    start = tl.program_id(0) * BLOCK_M
    if start < n_rows:
        n_keys = tl.load(n_keys_ptr)
        slot = start + tl.arange(0, BLOCK_M)
        row_ok = slot < n_rows
        row = tl.load(rows_ptr + slot, mask=row_ok, other=0)
        d = tl.arange(0, D)
        q = tl.load(q_ptr + row[:, None] * D + d[None, :], mask=row_ok[:, None], other=0.0)
        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_M], tl.float32)
        acc0 = tl.zeros([BLOCK_M, P * P], tl.float32)
        acc1 = tl.zeros([BLOCK_M, P * P], tl.float32)
        acc2 = tl.zeros([BLOCK_M, P * P], tl.float32)
        # running top-K of the logits; columns >= K are padding that must never be the minimum
        col = tl.arange(0, KP)
        top = tl.where(col[None, :] < K, float("-inf"), float("inf")) + tl.zeros([BLOCK_M, KP], tl.float32)
        top_idx = tl.zeros([BLOCK_M, KP], tl.int32)
        for key_start in range(0, n_keys, BLOCK_N):
            kslot = key_start + tl.arange(0, BLOCK_N)
            key_ok = kslot < n_keys
            key = tl.load(keys_ptr + kslot, mask=key_ok, other=0)
            k_t = tl.load(k_ptr + key[None, :] * D + d[:, None], mask=key_ok[None, :], other=0.0)   # (D, BLOCK_N)
            s = tl.dot(q, k_t, input_precision=PRECISION) * scale_log2                           # log2 units
            s = tl.where(key_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, axis=1))
            alpha = tl.exp2(m - m_new)
            p = tl.exp2(s - m_new[:, None])
            l = l * alpha + tl.sum(p, axis=1)
            v0, _ = _token_pixels(image_ptr, key, key_ok, 0, h, w, grid_w, P)
            v1, _ = _token_pixels(image_ptr, key, key_ok, 1, h, w, grid_w, P)
            v2, _ = _token_pixels(image_ptr, key, key_ok, 2, h, w, grid_w, P)
            pv = p.to(v0.dtype)
            acc0 = tl.dot(pv, v0, acc0 * alpha[:, None], input_precision=PRECISION)
            acc1 = tl.dot(pv, v1, acc1 * alpha[:, None], input_precision=PRECISION)
            acc2 = tl.dot(pv, v2, acc2 * alpha[:, None], input_precision=PRECISION)
            m = m_new
            # merge this tile into the running top-K: K rounds of (tile max -> replace running min)
            cand = s
            for _ in tl.static_range(K):
                best = tl.max(cand, axis=1)
                best_key = tl.max(tl.where(cand == best[:, None], key[None, :], -1), axis=1)
                low = tl.min(top, axis=1)
                low_col = tl.min(tl.where(top == low[:, None], col[None, :], KP), axis=1)
                take = (best > low)[:, None] & (col[None, :] == low_col[:, None])
                top = tl.where(take, best[:, None], top)
                top_idx = tl.where(take, best_key[:, None], top_idx)
                cand = tl.where((cand == best[:, None]) & (key[None, :] == best_key[:, None]), float("-inf"), cand)
        has_keys = l > 0
        inv_l = tl.where(has_keys, 1.0 / tl.where(has_keys, l, 1.0), 0.0)
        _store_mixed(out_ptr, image_ptr, acc0, inv_l, has_keys, row, row_ok, 0, h, w, grid_w, P)
        _store_mixed(out_ptr, image_ptr, acc1, inv_l, has_keys, row, row_ok, 1, h, w, grid_w, P)
        _store_mixed(out_ptr, image_ptr, acc2, inv_l, has_keys, row, row_ok, 2, h, w, grid_w, P)
        # top-K weights: softmax over the K kept logits, written in descending order
        shift = tl.where(has_keys, m, 0.0)                    # m = -inf when a row saw no key at all
        expo = tl.where(col[None, :] < K, tl.exp2(top - shift[:, None]), 0.0)
        norm = tl.sum(expo, axis=1)
        norm = tl.where(norm > 0, norm, 1.0)
        for j in tl.static_range(K):
            best = tl.max(tl.where(col[None, :] < K, top, float("-inf")), axis=1)
            best_col = tl.min(tl.where(top == best[:, None], col[None, :], KP), axis=1)
            pick = col[None, :] == best_col[:, None]
            wgt = tl.sum(tl.where(pick, expo, 0.0), axis=1) / norm
            idx = tl.sum(tl.where(pick, top_idx, 0), axis=1)
            tl.store(weight_ptr + row * K + j, wgt, mask=row_ok)
            tl.store(index_ptr + row * K + j, tl.where(wgt > 0, idx, row), mask=row_ok)
            top = tl.where(pick, float("-inf"), top)
            expo = tl.where(pick, 0.0, expo)


def compact(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) bool -> (indices (N,) int32: the True positions first, in order, rest unspecified; count (1,)
    int32). No host synchronisation (cumsum + scatter), so it can be captured in a CUDA graph."""
    n = flags.numel()
    position = torch.cumsum(flags, 0, dtype=torch.int32) - 1
    target = torch.where(flags, position, torch.full_like(position, n))              # non-flagged -> spare slot n
    out = torch.zeros(n + 1, dtype=torch.int32, device=flags.device)
    out.scatter_(0, target.long(), torch.arange(n, dtype=torch.int32, device=flags.device))
    return out[:n], flags.sum(dtype=torch.int32).reshape(1)


def masked_attention_topk(q: torch.Tensor, k: torch.Tensor, image: torch.Tensor, query_masked: torch.Tensor,
                          key_ok: torch.Tensor, logit_scale: float, topk: int, patch: int,
                          out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (N, d) unit vectors (fp16 or fp32); image (3, gh*P, gw*P) LR composite (values); query_masked,
    key_ok (N,) bool. Returns (mixed (3, gh*P, gw*P): hole tokens replaced by their attention-mixed
    tokens, written into `out` (default a copy of image; may be image itself), weight (N, topk) float32,
    index (N, topk) int32)."""
    n, d = q.shape
    grid_h, grid_w = image.shape[1] // patch, image.shape[2] // patch
    if grid_h * grid_w != n or image.shape[0] != 3:
        raise ValueError(f"image: expected (3, h, w) with (h/{patch})*(w/{patch}) = {n} tokens, got {tuple(image.shape)}")
    if k.shape != q.shape or query_masked.shape != (n,) or key_ok.shape != (n,):
        raise ValueError(f"k, query_masked, key_ok: expected ({n}, {d}), ({n},), ({n},); got {tuple(k.shape)}, "
                         f"{tuple(query_masked.shape)}, {tuple(key_ok.shape)}")
    if topk < 1:
        raise ValueError(f"topk: expected >= 1, got {topk}")
    image = image.contiguous()
    if out is not None and (out.shape != image.shape or out.dtype != image.dtype or not out.is_contiguous()):
        raise ValueError(f"out: expected a contiguous {tuple(image.shape)} {image.dtype} tensor, got "
                         f"{tuple(out.shape)} {out.dtype} (contiguous: {out.is_contiguous()})")
    out = image.clone() if out is None else out
    rows, n_rows = compact(query_masked)
    keys, n_keys = compact(key_ok & ~query_masked)
    weight = torch.zeros(n, topk, dtype=torch.float32, device=q.device)
    index = torch.zeros(n, topk, dtype=torch.int32, device=q.device)
    kp = triton.next_power_of_2(topk)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_M"]),)  # noqa: E731  (programs past the hole count exit)
    masked_attention_kernel[grid](
        q.contiguous(), k.to(q.dtype).contiguous(), image, out, rows, n_rows, keys, n_keys, weight, index,
        image.shape[1], image.shape[2], grid_w, float(logit_scale) * LOG2E,
        D=d, P=patch, K=topk, KP=kp, PRECISION=dot_precision(q.dtype))
    return out, weight, index


def masked_attention_topk_reference(q: torch.Tensor, k: torch.Tensor, image: torch.Tensor, query_masked: torch.Tensor,
                                    key_ok: torch.Tensor, logit_scale: float, topk: int, patch: int,
                                    out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain torch, same signature and math: `masked_attention` + token mixing of `NeuralPatchMatch` and
    the top-K selection of the exported LR network, on one image (computed in fp32)."""
    from rethined_engine.model.patchmatch import masked_attention, patchify, unpatchify

    grid_h, grid_w = image.shape[1] // patch, image.shape[2] // patch
    allowed = key_ok & ~query_masked
    attn = masked_attention(q[None], k[None], query_masked[None], allowed[None],
                            torch.tensor(float(logit_scale)))[0]
    tokens = patchify(image[None].float(), patch)[0]
    mixed = unpatchify((attn @ tokens)[None], patch, grid_h, grid_w)[0].to(image.dtype)
    weight, index = attn.topk(topk, dim=-1)
    weight = weight / weight.sum(dim=-1, keepdim=True)
    weight = weight * allowed[index] * query_masked[:, None]
    result = out.copy_(mixed) if out is not None else mixed
    return result, weight, index.to(torch.int32)
