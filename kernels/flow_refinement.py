"""The variational refinement of a flow (`video.flow_refinement.refine`) in Triton, with its torch reference: one
launch per image for the video working size's scales instead of ~1,300 torch operations, its image derivatives
included.

Per fixed-point iteration: `smoothness_kernel` takes the Psi' weights of every pixel's edges to its right and lower
neighbours from the current flow; `system_kernel` builds each pixel's 2 x 2 system (the constancy terms at the
current increment, linearised as the reference does, plus the smoothness terms); `sor_kernel` runs one red or one
black half-pass of SOR in place (a pixel of one colour reads only neighbours of the other, so a launch has no
races). An image of at most FUSED_MAX_PIXELS (the fast preset's scales at the video working size: 120 x 68 px
and smaller) runs all of them in one program, `fused_refine_kernel`, which walks the image in chunks and puts a
barrier between the passes; a larger one takes 2 + 2 x sor_iterations launches per fixed-point iteration. The
image derivatives (`video.flow_refinement.image_terms`, once per scale) are `terms_kernel`, or the fused kernel's
first pass: each pixel reads the warped target at the 13 positions around it that its second differences need
(17 reads: the second differences' clamped positions are read apart), nothing shared between pixels. Flows agree
with the reference to float rounding (tests/test_kernel_flow_refinement.py; the fused kernel's barriers are checked only
on a GPU, the interpreter runs a program's passes in order anyway).

Layouts: every tensor contiguous float32, (B, C, h, w) flattened per channel; pixel i of an image is row i // w,
column i % w.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from rethined_engine.video import flow_refinement
from rethined_engine.video.flow_refinement import RefinementParams

from .sampling import bilinear
from .tuning import INTERPRET

BLOCK = 4096 if INTERPRET else 512          # pixels per program (interpreted: few, wide programs)
FUSED_MAX_PIXELS = 16384     # images up to this many pixels run every iteration in one launch (fused_refine_kernel)
FUSED_BLOCK = 1024           # ... in chunks of this many pixels
FUSED_WARPS = 8
refine_reference = flow_refinement.refine


@triton.jit
def _flow_at(flow_ptr, increment_ptr, at, mask):
    """The current flow (the start + the increment) of one channel at flat positions at."""
    return tl.load(flow_ptr + at, mask=mask, other=0.0) + tl.load(increment_ptr + at, mask=mask, other=0.0)


@triton.jit
def _block(h, w, BLOCK: tl.constexpr):
    """Program (i, b)'s image b (int64), pixels per image n, its flat pixels i * BLOCK ..., which of them lie in
    the image, and their rows and columns."""
    b = tl.program_id(1).to(tl.int64)
    n = h * w
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    return b, n, i, i < n, i // w, i % w


@triton.jit
def smoothness_kernel(flow_ptr, increment_ptr, weights_ptr, h, w, half_alpha, eps2, BLOCK: tl.constexpr):
    """Program (i, b): weights (B, 2, h, w) of the right and lower edges of pixels i * BLOCK ... of image b, from the
    forward differences of flow + increment (B, 2, h, w); 0 where the neighbour lies outside the image."""
    b, n, i, live, row, col = _block(h, w, BLOCK)
    _smoothness(flow_ptr, increment_ptr, weights_ptr, b, n, i, live, row, col, h, w, half_alpha, eps2)


@triton.jit
def _smoothness(flow_ptr, increment_ptr, weights_ptr, b, n, i, live, row, col, h, w, half_alpha, eps2):
    """`smoothness_kernel` at the flat pixels i of image b (live: those in the image)."""
    right = live & (col < w - 1)
    down = live & (row < h - 1)
    u_ptr = flow_ptr + b * 2 * n
    v_ptr = u_ptr + n
    du_ptr = increment_ptr + b * 2 * n
    dv_ptr = du_ptr + n
    u = _flow_at(u_ptr, du_ptr, i, live)
    v = _flow_at(v_ptr, dv_ptr, i, live)
    ux = tl.where(right, _flow_at(u_ptr, du_ptr, i + 1, right) - u, 0.0)
    vx = tl.where(right, _flow_at(v_ptr, dv_ptr, i + 1, right) - v, 0.0)
    uy = tl.where(down, _flow_at(u_ptr, du_ptr, i + w, down) - u, 0.0)
    vy = tl.where(down, _flow_at(v_ptr, dv_ptr, i + w, down) - v, 0.0)
    weight = half_alpha / tl.sqrt(ux * ux + vx * vx + uy * uy + vy * vy + eps2)
    tl.store(weights_ptr + b * 2 * n + i, tl.where(right, weight, 0.0), mask=live)
    tl.store(weights_ptr + b * 2 * n + n + i, tl.where(down, weight, 0.0), mask=live)


@triton.jit
def _neighbour_sum(values_ptr, right_ptr, down_ptr, i, w, live, col, row, own_right, own_down):
    """Sum over a pixel's edges of the edge's weight times values at its other end (left, right, up, down)."""
    has_left = live & (col > 0)
    has_up = live & (row > 0)
    left_weight = tl.load(right_ptr + i - 1, mask=has_left, other=0.0)
    up_weight = tl.load(down_ptr + i - w, mask=has_up, other=0.0)
    return (left_weight * tl.load(values_ptr + i - 1, mask=has_left, other=0.0)
            + own_right * tl.load(values_ptr + i + 1, mask=live & (own_right != 0.0), other=0.0)
            + up_weight * tl.load(values_ptr + i - w, mask=has_up, other=0.0)
            + own_down * tl.load(values_ptr + i + w, mask=live & (own_down != 0.0), other=0.0)), left_weight + up_weight


@triton.jit
def system_kernel(terms_ptr, flow_ptr, increment_ptr, weights_ptr, system_ptr, h, w, half_delta, half_gamma,
                  zeta2, eps2, BLOCK: tl.constexpr):
    """Program (i, b): system (B, 5, h, w) a11, a12, a22, b1, b2 of pixels i * BLOCK ... of image b from terms
    (B, 8, h, w) (`flow_refinement.image_terms`), the start flow and the increment (B, 2, h, w) and the edge
    weights (B, 2, h, w), as `flow_refinement.refine` builds it."""
    b, n, i, live, row, col = _block(h, w, BLOCK)
    _system(terms_ptr, flow_ptr, increment_ptr, weights_ptr, system_ptr, b, n, i, live, row, col, w, half_delta,
            half_gamma, zeta2, eps2)


@triton.jit
def _system(terms_ptr, flow_ptr, increment_ptr, weights_ptr, system_ptr, b, n, i, live, row, col, w, half_delta,
            half_gamma, zeta2, eps2):
    """`system_kernel` at the flat pixels i of image b (live: those in the image)."""
    t = terms_ptr + b * 8 * n + i
    ix = tl.load(t, mask=live, other=0.0)
    iy = tl.load(t + n, mask=live, other=0.0)
    iz = tl.load(t + 2 * n, mask=live, other=0.0)
    ixx = tl.load(t + 3 * n, mask=live, other=0.0)
    ixy = tl.load(t + 4 * n, mask=live, other=0.0)
    iyy = tl.load(t + 5 * n, mask=live, other=0.0)
    ixz = tl.load(t + 6 * n, mask=live, other=0.0)
    iyz = tl.load(t + 7 * n, mask=live, other=0.0)
    du = tl.load(increment_ptr + b * 2 * n + i, mask=live, other=0.0)
    dv = tl.load(increment_ptr + b * 2 * n + n + i, mask=live, other=0.0)
    norm = ix * ix + iy * iy + zeta2
    residual = iz + ix * du + iy * dv
    colour = half_delta / tl.sqrt(residual * residual / norm + eps2) / norm
    norm_x = ixx * ixx + ixy * ixy + zeta2
    norm_y = iyy * iyy + ixy * ixy + zeta2
    rx = ixz + ixx * du + ixy * dv
    ry = iyz + ixy * du + iyy * dv
    grad = half_gamma / tl.sqrt(rx * rx / norm_x + ry * ry / norm_y + eps2)
    gx = grad / norm_x
    gy = grad / norm_y
    right_ptr = weights_ptr + b * 2 * n
    down_ptr = right_ptr + n
    own_right = tl.load(right_ptr + i, mask=live, other=0.0)
    own_down = tl.load(down_ptr + i, mask=live, other=0.0)
    u_ptr = flow_ptr + b * 2 * n
    near_u, incoming = _neighbour_sum(u_ptr, right_ptr, down_ptr, i, w, live, col, row, own_right, own_down)
    near_v, incoming = _neighbour_sum(u_ptr + n, right_ptr, down_ptr, i, w, live, col, row, own_right, own_down)
    spread = own_right + own_down + incoming
    u = tl.load(u_ptr + i, mask=live, other=0.0)
    v = tl.load(u_ptr + n + i, mask=live, other=0.0)
    out = system_ptr + b * 5 * n + i
    tl.store(out, colour * ix * ix + gx * ixx * ixx + gy * ixy * ixy + zeta2 + spread, mask=live)
    tl.store(out + n, colour * ix * iy + gx * ixx * ixy + gy * ixy * iyy, mask=live)
    tl.store(out + 2 * n, colour * iy * iy + gx * ixy * ixy + gy * iyy * iyy + zeta2 + spread, mask=live)
    tl.store(out + 3 * n, near_u - u * spread - (colour * iz * ix + gx * ixx * ixz + gy * ixy * iyz), mask=live)
    tl.store(out + 4 * n, near_v - v * spread - (colour * iz * iy + gx * ixy * ixz + gy * iyy * iyz), mask=live)


@triton.jit
def sor_kernel(system_ptr, weights_ptr, increment_ptr, h, w, parity, omega, BLOCK: tl.constexpr):
    """Program (i, b): one SOR update of the increment (B, 2, h, w), in place, at the pixels i * BLOCK ... of image
    b whose row + column has the given parity (0: red, 1: black)."""
    b, n, i, inside, row, col = _block(h, w, BLOCK)
    _sor(system_ptr, weights_ptr, increment_ptr, b, n, i, inside, row, col, w, parity, omega)


@triton.jit
def _sor(system_ptr, weights_ptr, increment_ptr, b, n, i, inside, row, col, w, parity, omega):
    """`sor_kernel` at the flat pixels i of image b (inside: those in the image)."""
    live = inside & ((row + col) % 2 == parity)
    s = system_ptr + b * 5 * n + i
    a11 = tl.load(s, mask=live, other=1.0)
    a12 = tl.load(s + n, mask=live, other=0.0)
    a22 = tl.load(s + 2 * n, mask=live, other=1.0)
    b1 = tl.load(s + 3 * n, mask=live, other=0.0)
    b2 = tl.load(s + 4 * n, mask=live, other=0.0)
    right_ptr = weights_ptr + b * 2 * n
    down_ptr = right_ptr + n
    own_right = tl.load(right_ptr + i, mask=live, other=0.0)
    own_down = tl.load(down_ptr + i, mask=live, other=0.0)
    du_ptr = increment_ptr + b * 2 * n
    dv_ptr = du_ptr + n
    du = tl.load(du_ptr + i, mask=live, other=0.0)
    dv = tl.load(dv_ptr + i, mask=live, other=0.0)
    near_u, _ = _neighbour_sum(du_ptr, right_ptr, down_ptr, i, w, live, col, row, own_right, own_down)
    near_v, _ = _neighbour_sum(dv_ptr, right_ptr, down_ptr, i, w, live, col, row, own_right, own_down)
    du = du + omega * ((near_u + b1 - a12 * dv) / a11 - du)
    dv = dv + omega * ((near_v + b2 - a12 * du) / a22 - dv)
    tl.store(du_ptr + i, du, mask=live)
    tl.store(dv_ptr + i, dv, mask=live)


@triton.jit
def _warped(source_ptr, target_ptr, flow_ptr, b, n, row, col, h, w, live):
    """At pixels (row, col) of image b: the source, and the target read at the pixel moved by its flow (bilinear,
    edges replicated, as `video.flow_refinement.warp`)."""
    at = row * w + col
    px = col + tl.load(flow_ptr + 2 * b * n + at, mask=live, other=0.0)
    py = row + tl.load(flow_ptr + (2 * b + 1) * n + at, mask=live, other=0.0)
    return tl.load(source_ptr + b * n + at, mask=live, other=0.0), bilinear(target_ptr + b * n, px, py, h, w, live)


@triton.jit
def _mean(source_ptr, target_ptr, flow_ptr, b, n, row, col, h, w, live):
    """The mean of the source and the warped target at (row, col)."""
    source, warped = _warped(source_ptr, target_ptr, flow_ptr, b, n, row, col, h, w, live)
    return (source + warped) / 2


@triton.jit
def _ix(source_ptr, target_ptr, flow_ptr, b, n, row, col, h, w, live):
    """Ix at (row, col): the mean's central difference along x, edges replicated."""
    return (_mean(source_ptr, target_ptr, flow_ptr, b, n, row, tl.minimum(col + 1, w - 1), h, w, live)
            - _mean(source_ptr, target_ptr, flow_ptr, b, n, row, tl.maximum(col - 1, 0), h, w, live))


@triton.jit
def _iy(source_ptr, target_ptr, flow_ptr, b, n, row, col, h, w, live):
    """Iy at (row, col): the mean's central difference along y, edges replicated."""
    return (_mean(source_ptr, target_ptr, flow_ptr, b, n, tl.minimum(row + 1, h - 1), col, h, w, live)
            - _mean(source_ptr, target_ptr, flow_ptr, b, n, tl.maximum(row - 1, 0), col, h, w, live))


@triton.jit
def _terms(source_ptr, target_ptr, flow_ptr, terms_ptr, b, n, i, live, row, col, h, w):
    """`terms_kernel` at the flat pixels i of image b (live: those in the image). Each derivative is a central
    difference of one at the clamped neighbours, as the reference's replicate padding of each in turn."""
    left, right = tl.maximum(col - 1, 0), tl.minimum(col + 1, w - 1)
    up, down = tl.maximum(row - 1, 0), tl.minimum(row + 1, h - 1)
    source, warped = _warped(source_ptr, target_ptr, flow_ptr, b, n, row, col, h, w, live)
    source_l, warped_l = _warped(source_ptr, target_ptr, flow_ptr, b, n, row, left, h, w, live)
    source_r, warped_r = _warped(source_ptr, target_ptr, flow_ptr, b, n, row, right, h, w, live)
    source_u, warped_u = _warped(source_ptr, target_ptr, flow_ptr, b, n, up, col, h, w, live)
    source_d, warped_d = _warped(source_ptr, target_ptr, flow_ptr, b, n, down, col, h, w, live)
    iz = warped - source
    ix = (source_r + warped_r) / 2 - (source_l + warped_l) / 2        # the four neighbours give Ix, Iy, Ixz, Iyz
    iy = (source_d + warped_d) / 2 - (source_u + warped_u) / 2
    ixx = (_ix(source_ptr, target_ptr, flow_ptr, b, n, row, right, h, w, live)
           - _ix(source_ptr, target_ptr, flow_ptr, b, n, row, left, h, w, live))
    ixy = (_ix(source_ptr, target_ptr, flow_ptr, b, n, down, col, h, w, live)
           - _ix(source_ptr, target_ptr, flow_ptr, b, n, up, col, h, w, live))
    iyy = (_iy(source_ptr, target_ptr, flow_ptr, b, n, down, col, h, w, live)
           - _iy(source_ptr, target_ptr, flow_ptr, b, n, up, col, h, w, live))
    out = terms_ptr + 8 * b * n + i
    tl.store(out, ix, mask=live)
    tl.store(out + n, iy, mask=live)
    tl.store(out + 2 * n, iz, mask=live)
    tl.store(out + 3 * n, ixx, mask=live)
    tl.store(out + 4 * n, ixy, mask=live)
    tl.store(out + 5 * n, iyy, mask=live)
    tl.store(out + 6 * n, (warped_r - source_r) - (warped_l - source_l), mask=live)
    tl.store(out + 7 * n, (warped_d - source_d) - (warped_u - source_u), mask=live)


@triton.jit
def terms_kernel(source_ptr, target_ptr, flow_ptr, terms_ptr, h, w, BLOCK: tl.constexpr):
    """Program (i, b): terms (B, 8, h, w) Ix, Iy, Iz, Ixx, Ixy, Iyy, Ixz, Iyz (`video.flow_refinement.image_terms`)
    of pixels i * BLOCK ... of image b, from source, target (B, 1, h, w) and flow (B, 2, h, w)."""
    b, n, i, live, row, col = _block(h, w, BLOCK)
    _terms(source_ptr, target_ptr, flow_ptr, terms_ptr, b, n, i, live, row, col, h, w)


@triton.jit
def fused_refine_kernel(source_ptr, target_ptr, terms_ptr, flow_ptr, increment_ptr, weights_ptr, system_ptr, h, w,
                        fixed_point_iterations, sor_iterations, half_alpha, half_delta, half_gamma, zeta2, eps2, omega,
                        BLOCK: tl.constexpr):
    """Program b: the image terms and every fixed-point iteration of image b in one launch, as `refine`'s launches
    run them, over the image in chunks of BLOCK pixels, with a barrier between the passes (the program's threads
    then see each other's stores): for images of a few thousand pixels, where one program per image is enough."""
    b = tl.program_id(0).to(tl.int64)
    n = h * w
    for start in range(0, n, BLOCK):
        i = start + tl.arange(0, BLOCK)
        _terms(source_ptr, target_ptr, flow_ptr, terms_ptr, b, n, i, i < n, i // w, i % w, h, w)
    tl.debug_barrier()
    for _ in range(fixed_point_iterations):
        for start in range(0, n, BLOCK):
            i = start + tl.arange(0, BLOCK)
            _smoothness(flow_ptr, increment_ptr, weights_ptr, b, n, i, i < n, i // w, i % w, h, w, half_alpha, eps2)
        tl.debug_barrier()
        for start in range(0, n, BLOCK):
            i = start + tl.arange(0, BLOCK)
            _system(terms_ptr, flow_ptr, increment_ptr, weights_ptr, system_ptr, b, n, i, i < n, i // w, i % w, w,
                    half_delta, half_gamma, zeta2, eps2)
        tl.debug_barrier()
        for _sweep in range(sor_iterations):
            for parity in range(2):
                for start in range(0, n, BLOCK):
                    i = start + tl.arange(0, BLOCK)
                    _sor(system_ptr, weights_ptr, increment_ptr, b, n, i, i < n, i // w, i % w, w, parity, omega)
                tl.debug_barrier()


def launches(h: int, w: int, params: RefinementParams = RefinementParams()) -> int:
    """Triton launches `refine` makes for a batch of (h, w) flows."""
    if h * w <= FUSED_MAX_PIXELS:
        return 1
    return 1 + params.fixed_point_iterations * (2 + 2 * params.sor_iterations)


def refine(source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor,
           params: RefinementParams = RefinementParams()) -> torch.Tensor:
    """`video.flow_refinement.refine` with the fixed-point iterations in Triton: flow (B, 2, h, w) px from source
    to target (B, 1, h, w) float 0..255 -> the refined flow (B, 2, h, w) float32."""
    if flow.shape[0] != source.shape[0] or flow.shape[-2:] != source.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"flow: expected (B, 2, h, w) matching source {tuple(source.shape)}, got {tuple(flow.shape)}")
    b, _, h, w = flow.shape
    flow = flow.float().contiguous()
    source, target = source.float().contiguous(), target.float().contiguous()
    terms = torch.empty(b, 8, h, w, dtype=torch.float32, device=flow.device)
    increment = torch.zeros_like(flow)
    weights = torch.empty_like(flow)
    system = torch.empty(b, 5, h, w, dtype=torch.float32, device=flow.device)
    zeta2, eps2 = params.zeta ** 2, params.epsilon ** 2
    if h * w <= FUSED_MAX_PIXELS:
        fused_refine_kernel[(b,)](source, target, terms, flow, increment, weights, system, h, w,
                                  params.fixed_point_iterations, params.sor_iterations, params.alpha / 2,
                                  params.delta / 2, params.gamma / 2, zeta2, eps2, params.omega, BLOCK=FUSED_BLOCK,
                                  num_warps=FUSED_WARPS)
        return flow + increment
    grid = (triton.cdiv(h * w, BLOCK), b)
    terms_kernel[grid](source, target, flow, terms, h, w, BLOCK=BLOCK)
    for _ in range(params.fixed_point_iterations):
        smoothness_kernel[grid](flow, increment, weights, h, w, params.alpha / 2, eps2, BLOCK=BLOCK)
        system_kernel[grid](terms, flow, increment, weights, system, h, w, params.delta / 2, params.gamma / 2,
                            zeta2, eps2, BLOCK=BLOCK)
        for _ in range(params.sor_iterations):
            for parity in (0, 1):
                sor_kernel[grid](system, weights, increment, h, w, parity, params.omega, BLOCK=BLOCK)
    return flow + increment
