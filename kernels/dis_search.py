"""DIS's patch search (`video.dis_torch.inverse_search`) as one Triton launch per pyramid scale, and its spatial
propagation (`video.dis_torch.propagate`) as one launch per round, with their torch references.

Each program takes BLOCK_P patches of one image, holds their n = size^2 template pixels and mean-normalised
gradients in registers, and runs every Gauss-Newton iteration in place: bilinear reads of the target at the
patch's pixels moved by its flow (edges replicated, as `grid_sample` with border padding), the residual's dot
products with the gradients and the 2 x 2 solve, and the patch's mean-normalised SSD, which stops it once it no
longer falls. The torch reference issues about eight small kernels per
iteration (on the video working size, 3 scales x 16 iterations: ~400 launches per flow, all launch-bound on a GPU);
this is one per scale. A propagation round's program reads each of its patches at its own flow and at its four
grid neighbours' and keeps the lowest SSD. Flows agree to float rounding, the discrete choices (the search's stop,
the propagation's pick) but for near ties (tests/test_kernel_dis_search.py).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.video import dis_torch

from .sampling import bilinear
from .tuning import INTERPRET

BLOCK_P = 64 if INTERPRET else 16          # patches per program (interpreted: few, wide programs)
inverse_search_reference = dis_torch.inverse_search
propagate_reference = dis_torch.propagate


@triton.jit
def _read(image, x, y, u, v, h, w, mask):
    """image (h, w) at every pixel x, y (BLOCK_P, N) of each patch moved by its flow u, v (BLOCK_P,): bilinear,
    edges replicated (as `grid_sample` with border padding) -> (BLOCK_P, N)."""
    return bilinear(image, x + u[:, None], y + v[:, None], h, w, mask)


@triton.jit
def _ssd(residual, N: tl.constexpr):
    """Mean-normalised SSD (BLOCK_P,) of residuals (BLOCK_P, N), as `video.dis_torch.patch_ssd`."""
    total = tl.sum(residual, 1)
    return tl.sum(residual * residual, 1) - total * total / N


@triton.jit
def inverse_search_kernel(target_ptr, template_ptr, gx_ptr, gy_ptr, x_ptr, y_ptr, start_ptr, out_ptr,
                          h, w, patches, iterations, limit2, eps, BLOCK_P: tl.constexpr, N: tl.constexpr):
    """Program (i, b): patches i * BLOCK_P ... of image b. target (B, h, w); template, gx, gy (B, P, N); x, y
    (P, N) px; start, out (B, 2, P); all float32, contiguous. limit2: the squared distance from the start past
    which a patch keeps its start; eps: added to the Hessian's diagonal."""
    b = tl.program_id(1).to(tl.int64)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    live = p < patches
    at = p[:, None] * N + tl.arange(0, N)[None, :]
    both = live[:, None]
    base = b * patches * N
    template = tl.load(template_ptr + base + at, mask=both, other=0.0)
    gx = tl.load(gx_ptr + base + at, mask=both, other=0.0)
    gy = tl.load(gy_ptr + base + at, mask=both, other=0.0)
    x = tl.load(x_ptr + at, mask=both, other=0.0)
    y = tl.load(y_ptr + at, mask=both, other=0.0)
    hxx = tl.sum(gx * gx, 1) + eps
    hxy = tl.sum(gx * gy, 1)
    hyy = tl.sum(gy * gy, 1) + eps
    det = hxx * hyy - hxy * hxy
    u0 = tl.load(start_ptr + b * 2 * patches + p, mask=live, other=0.0)
    v0 = tl.load(start_ptr + (b * 2 + 1) * patches + p, mask=live, other=0.0)
    u = u0
    v = v0
    moving = live
    previous = tl.full((BLOCK_P,), float("inf"), tl.float32)
    image = target_ptr + b * h * w
    for _ in range(iterations):
        residual = _read(image, x, y, u, v, h, w, both) - template
        bx = tl.sum(gx * residual, 1)
        by = tl.sum(gy * residual, 1)
        u = tl.where(moving, u - (hyy * bx - hxy * by) / det, u)
        v = tl.where(moving, v - (hxx * by - hxy * bx) / det, v)
        ssd = _ssd(residual, N)
        moving = moving & (ssd < previous)
        previous = ssd
    strayed = (u - u0) * (u - u0) + (v - v0) * (v - v0) > limit2
    tl.store(out_ptr + b * 2 * patches + p, tl.where(strayed, u0, u), mask=live)
    tl.store(out_ptr + (b * 2 + 1) * patches + p, tl.where(strayed, v0, v), mask=live)


def inverse_search(target: torch.Tensor, template: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor,
                   x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, iterations: int, size: int) -> torch.Tensor:
    """`video.dis_torch.inverse_search` in one launch: target (B, 1, h, w); template, gx, gy (B, P, n) with n = size^2
    a power of two; x, y (P, n) px; start (B, 2, P) -> (B, 2, P) float32."""
    b, p, n = template.shape
    if n & (n - 1) or n != size * size:
        raise ValueError(f"template: expected n = size^2 a power of two, got n {n} with size {size}")
    h, w = target.shape[-2:]
    out = torch.empty(b, 2, p, dtype=torch.float32, device=target.device)

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.float().contiguous()

    grid = (triton.cdiv(p, BLOCK_P), b)
    inverse_search_kernel[grid](flat(target), flat(template), flat(gx), flat(gy), flat(x), flat(y), flat(start), out,
                                h, w, p, iterations, float(size * size), dis_torch.HESSIAN_EPS,
                                BLOCK_P=BLOCK_P, N=n)
    return out


@triton.jit
def _try(image, flows, patches, q, x, y, template, h, w, live, best, best_u, best_v, N: tl.constexpr):
    """The flows of patches q (BLOCK_P,) tried on each patch: where one's SSD is strictly lower than best, it and its
    flow replace best, best_u, best_v."""
    u = tl.load(flows + q, mask=live, other=0.0)
    v = tl.load(flows + patches + q, mask=live, other=0.0)
    ssd = _ssd(_read(image, x, y, u, v, h, w, live[:, None]) - template, N)
    better = ssd < best
    return tl.where(better, ssd, best), tl.where(better, u, best_u), tl.where(better, v, best_v)


@triton.jit
def propagate_kernel(target_ptr, template_ptr, x_ptr, y_ptr, flow_ptr, out_ptr, h, w, patches, cols,
                     BLOCK_P: tl.constexpr, N: tl.constexpr):
    """Program (i, b): patches i * BLOCK_P ... of image b, on a grid of `cols` patches per row. target (B, h, w);
    template (B, P, N); x, y (P, N) px; flow, out (B, 2, P); all float32, contiguous. Each patch keeps its own
    flow unless one of its four neighbours' (a missing one is the patch itself) has a strictly lower SSD, the
    first such in the order left, right, up, down winning ties, as `torch.argmin` does in the reference."""
    b = tl.program_id(1).to(tl.int64)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    live = p < patches
    at = p[:, None] * N + tl.arange(0, N)[None, :]
    both = live[:, None]
    template = tl.load(template_ptr + b * patches * N + at, mask=both, other=0.0)
    x = tl.load(x_ptr + at, mask=both, other=0.0)
    y = tl.load(y_ptr + at, mask=both, other=0.0)
    image = target_ptr + b * h * w
    flows = flow_ptr + b * 2 * patches
    best_u = tl.load(flows + p, mask=live, other=0.0)
    best_v = tl.load(flows + patches + p, mask=live, other=0.0)
    best = _ssd(_read(image, x, y, best_u, best_v, h, w, both) - template, N)
    row = p // cols
    col = p % cols
    last_row = patches // cols - 1
    left = row * cols + tl.maximum(col - 1, 0)
    right = row * cols + tl.minimum(col + 1, cols - 1)
    up = tl.maximum(row - 1, 0) * cols + col
    down = tl.minimum(row + 1, last_row) * cols + col
    best, best_u, best_v = _try(image, flows, patches, left, x, y, template, h, w, live, best, best_u, best_v, N)
    best, best_u, best_v = _try(image, flows, patches, right, x, y, template, h, w, live, best, best_u, best_v, N)
    best, best_u, best_v = _try(image, flows, patches, up, x, y, template, h, w, live, best, best_u, best_v, N)
    best, best_u, best_v = _try(image, flows, patches, down, x, y, template, h, w, live, best, best_u, best_v, N)
    tl.store(out_ptr + b * 2 * patches + p, best_u, mask=live)
    tl.store(out_ptr + (b * 2 + 1) * patches + p, best_v, mask=live)


def propagate(target: torch.Tensor, template: torch.Tensor, x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor,
              grid: tuple[int, int]) -> torch.Tensor:
    """`video.dis_torch.propagate` in one launch: target (B, 1, h, w); template (B, P, n) with n a power of two;
    x, y (P, n) px; flow (B, 2, P), P = rows * cols of grid -> (B, 2, P) float32."""
    b, p, n = template.shape
    if n & (n - 1) or p != grid[0] * grid[1]:
        raise ValueError(f"template: expected (B, rows * cols, n) with n a power of two for grid {grid}, "
                         f"got {tuple(template.shape)}")
    h, w = target.shape[-2:]
    out = torch.empty(b, 2, p, dtype=torch.float32, device=target.device)

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.float().contiguous()

    propagate_kernel[(triton.cdiv(p, BLOCK_P), b)](flat(target), flat(template), flat(x), flat(y), flat(flow), out,
                                                   h, w, p, grid[1], BLOCK_P=BLOCK_P, N=n)
    return out
