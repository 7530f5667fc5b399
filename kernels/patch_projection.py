"""Patch projection: LR composite image + CNN features -> unit-norm Q and K per token (Triton), with its
torch reference of the same signature.

Token t = (gy, gx) of the (gh, gw) grid has the input vector
    x_t = [image[c, gy*P + dy, gx*P + dx] - 0.5  for (c, dy, dx) channel-major,  features[f, gy, gx]]
of 3*P*P + Cf values (what `NeuralPatchMatch.project` builds with pixel_unshuffle + cat). The kernel
reads x_t straight from the image and feature layouts (img2col on the fly, no (N, 3P^2 + Cf) tensor),
multiplies by W^T (in_dim, d) in BLOCK_IN chunks on the tensor cores, adds the bias and divides by
max(|.|, NORM_EPS). Program (i, j): BLOCK_M tokens, j = 0 writes q, j = 1 writes k (W, b, out stacked [q, k]).

FLOPs: 2 * N * in_dim * d * 2 (q and k); bytes: the image and features once, W twice, q and k written.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.model.patchmatch import NORM_EPS, PIXEL_CENTER

from .tuning import autotune

# BLOCK_M: tokens per program (the (BLOCK_M, d) fp32 accumulator lives in registers); BLOCK_IN: input
# values per tensor-core step. None spills in fp16 on sm_90 (kernels/compile_check.py; a 4-warp 32 x 64
# tile did).
CONFIGS = {
    "m32_k32_w8": triton.Config({"BLOCK_M": 32, "BLOCK_IN": 32}, num_warps=8, num_stages=2),
    "m64_k32_w8": triton.Config({"BLOCK_M": 64, "BLOCK_IN": 32}, num_warps=8, num_stages=2),
    "m32_k64_w8": triton.Config({"BLOCK_M": 32, "BLOCK_IN": 64}, num_warps=8, num_stages=3),
    "m16_k64_w4": triton.Config({"BLOCK_M": 16, "BLOCK_IN": 64}, num_warps=4, num_stages=3),
}


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs: exact fp32 products ("ieee"), not TF32, so that fp32 matches the reference to ~1e-6
    (a TF32 logit error of ~1e-3 x logit scale would reorder near-tied top-K keys); fp16 uses fp16 MMA."""
    return "ieee" if dtype == torch.float32 else "tf32"


@triton.jit
def token_pixel_offsets(plane_offset, token, within, w, grid_w, P: tl.constexpr):
    """plane_offset + the offset in an (h, w) plane of pixel `within` = dy * P + dx of each token,
    (len(token), len(within)). A token's 3*P*P values are channel-major (c, dy, dx), the order
    `pixel_unshuffle` (hence `patchify`) gives them: value e lives in plane e // (P*P) at pixel e % (P*P).
    (plane_offset is added first: the association the register budgets in CONFIGS were measured with.)"""
    ty = token // grid_w
    tx = token % grid_w
    return plane_offset + (ty[:, None] * P + (within // P)[None, :]) * w + tx[:, None] * P + (within % P)[None, :]


@triton.jit
def _token_inputs(image_ptr, feat_ptr, token, token_ok, e, h, w, grid_w, n_tokens,
                  P: tl.constexpr, IN_DIM: tl.constexpr, CENTER: tl.constexpr):
    """(BLOCK_M, BLOCK_IN) tile of x: tokens along rows, input index e along columns."""
    pix = 3 * P * P
    in_image = token_ok[:, None] & (e < pix)[None, :]
    in_feat = token_ok[:, None] & ((e >= pix) & (e < IN_DIM))[None, :]
    img_off = token_pixel_offsets((e // (P * P))[None, :] * h * w, token, e % (P * P), w, grid_w, P)
    feat_off = (e - pix)[None, :] * n_tokens + token[:, None]
    pixel = tl.load(image_ptr + img_off, mask=in_image, other=CENTER).to(tl.float32) - CENTER
    feature = tl.load(feat_ptr + feat_off, mask=in_feat, other=0.0).to(tl.float32)
    return pixel + feature


@autotune(CONFIGS, key=["P", "IN_DIM", "D"])
@triton.jit
def patch_projection_kernel(image_ptr, feat_ptr, weight_ptr, bias_ptr, out_ptr, h, w, grid_w, n_tokens, eps,
                            P: tl.constexpr, IN_DIM: tl.constexpr, D: tl.constexpr, CENTER: tl.constexpr,
                            PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_IN: tl.constexpr):
    token = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    token_ok = token < n_tokens
    which = tl.program_id(1)                                   # 0: q, 1: k
    w_ptr = weight_ptr + which * D * IN_DIM
    b_ptr = bias_ptr + which * D
    out_ptr += which * n_tokens * D
    d = tl.arange(0, D)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    for start in range(0, IN_DIM, BLOCK_IN):
        e = start + tl.arange(0, BLOCK_IN)
        x = _token_inputs(image_ptr, feat_ptr, token, token_ok, e, h, w, grid_w, n_tokens, P, IN_DIM, CENTER)
        w_t = tl.load(w_ptr + d[None, :] * IN_DIM + e[:, None], mask=(e < IN_DIM)[:, None], other=0.0)  # (BLOCK_IN, D)
        acc = tl.dot(x.to(w_t.dtype), w_t, acc, input_precision=PRECISION)
    acc += tl.load(b_ptr + d).to(tl.float32)[None, :]
    norm = tl.sqrt(tl.sum(acc * acc, axis=1))
    acc = acc / tl.maximum(norm, eps)[:, None]
    tl.store(out_ptr + token[:, None] * D + d[None, :], acc.to(out_ptr.dtype.element_ty), mask=token_ok[:, None])


def patch_projection(image: torch.Tensor, features: torch.Tensor, wq: torch.Tensor, bq: torch.Tensor,
                     wk: torch.Tensor, bk: torch.Tensor, patch: int,
                     out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """image (3, gh*P, gw*P) LR composite in [0, 1]; features (Cf, gh, gw); wq, wk (d, 3P^2 + Cf); bq, bk
    (d,). Returns unit-norm q, k (N, d), N = gh*gw row-major, in image.dtype (fp16 or fp32): views of
    `out` (2, N, d) (default: new)."""
    cf, grid_h, grid_w = features.shape
    d, in_dim = wq.shape
    if image.shape != (3, grid_h * patch, grid_w * patch):
        raise ValueError(f"image: expected (3, {grid_h * patch}, {grid_w * patch}) for features {tuple(features.shape)} "
                         f"and patch {patch}, got {tuple(image.shape)}")
    if in_dim != 3 * patch * patch + cf or wk.shape != wq.shape:
        raise ValueError(f"wq, wk: expected ({d}, {3 * patch * patch + cf}), got {tuple(wq.shape)}, {tuple(wk.shape)}")
    if d & (d - 1):
        raise ValueError(f"wq: the projection width d must be a power of two, got {d}")
    n_tokens = grid_h * grid_w
    qk = torch.empty(2, n_tokens, d, dtype=image.dtype, device=image.device) if out is None else out
    if qk.shape != (2, n_tokens, d) or qk.dtype != image.dtype or not qk.is_contiguous():
        raise ValueError(f"out: expected a contiguous ({2}, {n_tokens}, {d}) {image.dtype} tensor, got "
                         f"{tuple(qk.shape)} {qk.dtype}")
    weight = torch.stack([wq, wk]).to(image.dtype).contiguous()
    bias = torch.stack([bq, bk]).to(image.dtype).contiguous()
    grid = lambda meta: (triton.cdiv(n_tokens, meta["BLOCK_M"]), 2)  # noqa: E731
    patch_projection_kernel[grid](image.contiguous(), features.to(image.dtype).contiguous(), weight, bias, qk,
                                  image.shape[1], image.shape[2], grid_w, n_tokens, NORM_EPS,
                                  P=patch, IN_DIM=in_dim, D=d, CENTER=PIXEL_CENTER, PRECISION=dot_precision(image.dtype))
    return qk[0], qk[1]


def patch_projection_reference(image: torch.Tensor, features: torch.Tensor, wq: torch.Tensor, bq: torch.Tensor,
                               wk: torch.Tensor, bk: torch.Tensor, patch: int,
                               out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch, same signature and math: `NeuralPatchMatch.project` on one image."""
    import torch.nn.functional as F

    from rethined_engine.model.patchmatch import patchify

    tokens = patchify(image[None], patch)[0]
    x = torch.cat([tokens - PIXEL_CENTER, features.flatten(1).t()], dim=-1)
    q = F.normalize(F.linear(x, wq.to(x.dtype), bq.to(x.dtype)), dim=-1, eps=NORM_EPS)
    k = F.normalize(F.linear(x, wk.to(x.dtype), bk.to(x.dtype)), dim=-1, eps=NORM_EPS)
    if out is not None:
        out[0].copy_(q)
        out[1].copy_(k)
        return out[0], out[1]
    return q, k
