"""Variational refinement of a dense flow in plain torch: the energy of Brox et al. (ECCV 2004, "High Accuracy
Optical Flow Estimation Based on a Theory for Warping") minimised around a given flow, as OpenCV's
`VariationalRefinement` does after every scale of its DIS flow.

The energy of an increment dW to the flow W is the sum over pixels of
    delta Psi(colour constancy) + gamma Psi(gradient constancy) + alpha Psi(|grad (W + dW)|^2),
Psi(s^2) = sqrt(s^2 + eps^2), each constancy term linearised around W and normalised by its image gradient's
squared norm + zeta^2. Each fixed-point iteration freezes the Psi' weights at the current increment and solves the
resulting linear system by red-black SOR (red: pixels whose row + column is even, updated first), as OpenCV.
Derivatives are OpenCV's unscaled central differences (I(x+1) - I(x-1)), edges replicated, taken on the mean of
the source and the target warped by W; the smoothness term joins 4-neighbours inside the image (no edge leaves it).

Tensors: source, target (B, 1, h, w) float intensities 0..255; flows (B, 2, h, w) px (dx, dy), source(x) ~
target(x + flow(x)), as `video.dis_torch`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .torch_sampling import pixel_grid, sample_at


@dataclass(frozen=True)
class RefinementParams:
    """OpenCV's `DISOpticalFlow` settings of its refinement (alpha, delta, gamma, epsilon as DIS sets them; zeta,
    omega and the SOR iterations `VariationalRefinement`'s own)."""
    fixed_point_iterations: int = 5
    sor_iterations: int = 5
    alpha: float = 20.0       # smoothness weight
    delta: float = 5.0        # colour constancy weight
    gamma: float = 10.0       # gradient constancy weight
    epsilon: float = 0.01     # Psi's regulariser
    zeta: float = 0.1         # added to the constancy terms' normalisation (squared) and the system's diagonal
    omega: float = 1.6        # SOR over-relaxation


def central_dx(image: torch.Tensor) -> torch.Tensor:
    """I(x + 1) - I(x - 1) of (B, C, h, w), edges replicated (OpenCV's Sobel with ksize 1: not halved)."""
    padded = F.pad(image, (1, 1, 0, 0), mode="replicate")
    return padded[..., 2:] - padded[..., :-2]


def central_dy(image: torch.Tensor) -> torch.Tensor:
    """I(y + 1) - I(y - 1) of (B, C, h, w), edges replicated."""
    padded = F.pad(image, (0, 0, 1, 1), mode="replicate")
    return padded[..., 2:, :] - padded[..., :-2, :]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image (B, 1, h, w) read at x + flow(x), bilinear, edges replicated -> (B, 1, h, w)."""
    return sample_at(image, pixel_grid(*image.shape[-2:], flow.device) + flow.permute(0, 2, 3, 1))


def image_terms(source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The derivatives the energy is linearised with: (B, 8, h, w) Ix, Iy, Iz, Ixx, Ixy, Iyy, Ixz, Iyz, on the mean
    of source and target warped by flow (Iz: the warped target - source)."""
    warped = warp(target, flow)
    mean, iz = (source + warped) / 2, warped - source
    ix, iy = central_dx(mean), central_dy(mean)
    return torch.cat((ix, iy, iz, central_dx(ix), central_dy(ix), central_dy(iy), central_dx(iz), central_dy(iz)), 1)


def data_system(terms: torch.Tensor, increment: torch.Tensor, params: RefinementParams) -> torch.Tensor:
    """The constancy terms' share of each pixel's 2 x 2 system at the increment (B, 2, h, w): (B, 5, h, w) a11,
    a12, a22, b1, b2 (zeta^2 on the diagonal)."""
    ix, iy, iz, ixx, ixy, iyy, ixz, iyz = terms.unbind(1)
    du, dv = increment.unbind(1)
    zeta2, eps2 = params.zeta ** 2, params.epsilon ** 2
    norm = ix * ix + iy * iy + zeta2
    residual = iz + ix * du + iy * dv
    colour = params.delta / 2 / torch.sqrt(residual * residual / norm + eps2) / norm
    norm_x = ixx * ixx + ixy * ixy + zeta2
    norm_y = iyy * iyy + ixy * ixy + zeta2
    rx = ixz + ixx * du + ixy * dv
    ry = iyz + ixy * du + iyy * dv
    grad = params.gamma / 2 / torch.sqrt(rx * rx / norm_x + ry * ry / norm_y + eps2)
    gx, gy = grad / norm_x, grad / norm_y
    a11 = colour * ix * ix + gx * ixx * ixx + gy * ixy * ixy + zeta2
    a12 = colour * ix * iy + gx * ixx * ixy + gy * ixy * iyy
    a22 = colour * iy * iy + gx * ixy * ixy + gy * iyy * iyy + zeta2
    b1 = -(colour * iz * ix + gx * ixx * ixz + gy * ixy * iyz)
    b2 = -(colour * iz * iy + gx * ixy * ixz + gy * iyy * iyz)
    return torch.stack((a11, a12, a22, b1, b2), 1)


def smoothness_weights(current: torch.Tensor, params: RefinementParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Psi' of the current flow's (B, 2, h, w) forward differences: the weights (B, 1, h, w) of each pixel's edge to
    its right and its lower neighbour (0 where that neighbour lies outside the image)."""
    dx = F.pad(current[..., 1:] - current[..., :-1], (0, 1))
    dy = F.pad(current[..., 1:, :] - current[..., :-1, :], (0, 0, 0, 1))
    weight = params.alpha / 2 / torch.sqrt((dx * dx + dy * dy).sum(1, keepdim=True) + params.epsilon ** 2)
    right = weight.clone()
    right[..., -1] = 0
    down = weight
    down[..., -1, :] = 0
    return right, down


def edges(right: torch.Tensor, down: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every pixel's four edge weights (B, 1, h, w) from `smoothness_weights`: to its right and lower neighbours,
    and from its left and upper ones (0 at the image's edges)."""
    return right, down, F.pad(right, (1, 0))[..., :-1], F.pad(down, (0, 0, 1, 0))[..., :-1, :]


def neighbour_sum(values: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """For each pixel, its edges' weights (`edges`) times values (B, C, h, w) at the other end: left, right, up,
    down."""
    right, down, right_in, down_in = weights
    padded = F.pad(values, (1, 1, 1, 1))
    return (right_in * padded[..., 1:-1, :-2] + right * padded[..., 1:-1, 2:]
            + down_in * padded[..., :-2, 1:-1] + down * padded[..., 2:, 1:-1])


def refine(source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor,
           params: RefinementParams = RefinementParams()) -> torch.Tensor:
    """flow (B, 2, h, w) px from source to target (B, 1, h, w) float 0..255 -> the refined flow (B, 2, h, w)."""
    if flow.shape[0] != source.shape[0] or flow.shape[-2:] != source.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"flow: expected (B, 2, h, w) matching source {tuple(source.shape)}, got {tuple(flow.shape)}")
    terms = image_terms(source, target, flow)
    h, w = flow.shape[-2:]
    parity = (torch.arange(h, device=flow.device)[:, None] + torch.arange(w, device=flow.device)[None, :]) % 2
    colours = (parity == 0, parity == 1)              # red, then black
    omega = params.omega
    increment = torch.zeros_like(flow)
    current = flow
    for _ in range(params.fixed_point_iterations):
        a11, a12, a22, b1, b2 = data_system(terms, increment, params).unbind(1)
        weights = edges(*smoothness_weights(current, params))
        spread = sum(weights)[:, 0]
        pull = neighbour_sum(flow, weights) - flow * spread[:, None]     # the smoothness term's pull on W
        a11, a22 = a11 + spread, a22 + spread
        b1, b2 = b1 + pull[:, 0], b2 + pull[:, 1]
        du, dv = increment[:, 0], increment[:, 1]
        for _ in range(params.sor_iterations):
            for colour in colours:
                near_u = neighbour_sum(du[:, None], weights)[:, 0]
                du = torch.where(colour, du + omega * ((near_u + b1 - a12 * dv) / a11 - du), du)
                near_v = neighbour_sum(dv[:, None], weights)[:, 0]
                dv = torch.where(colour, dv + omega * ((near_v + b2 - a12 * du) / a22 - dv), dv)
        increment = torch.stack((du, dv), 1)
        current = flow + increment
    return current

