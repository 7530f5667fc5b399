"""Training losses; none needs downloaded network weights."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..metrics import (SWD_LEVELS, SWD_PATCH, _descriptors, hole_laplacian_energy, hole_pyramid, laplacian_pyramid,
                       ssim_map, swd_projection)
from ..model import LROutput
from ..model.patchmatch import patchify

PROB_FLOOR = 1e-8
PATCH_SWD_PROJECTIONS = 64      # random unit directions per level and step of `patch_swd`
PATCH_SWD_CENTRES = 2048        # hole centres per level and image of `patch_swd` (a random subset above this)
ENERGY_FLOOR = 1e-8   # Laplacian energy floor of the HR sharpness loss (flat holes)


@dataclass(frozen=True)
class LossWeights:
    hole_l1: float = 1.0        # final LR result, hole pixels
    coarse_l2: float = 1.0      # coarse CNN, hole pixels
    mixed_l1: float = 0.5       # attention-mixed tokens before the coherence layer, hole pixels
    focal_freq: float = 1.0     # focal frequency loss of the final result
    hole_grad_l1: float = 1.0   # image-gradient L1 of the final result next to/inside holes (token seams)
    retrieval: float = 0.05     # -log A at the known token closest to the ground-truth patch
    copy_distance: float = 0.0  # expected RMS distance between a hole token's truth and the keys A weights
    hole_ssim: float = 0.0      # 1 - SSIM of the final result over hole pixels (from run v3 on)
    hr_ssim: float = 0.0        # 1 - SSIM of the attention-upscaled HR result over hole pixels (HR crops only)
    hr_sharpness: float = 0.0   # |log| of the HR hole's Laplacian energy over the ground truth's (HR crops only)
    coarse_swd: float = 0.0     # `patch_swd` of the coarse CNN's fill: the distribution of its 7x7 neighbourhoods


def hole_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, C, h, w) over hole pixels of mask (B, 1, h, w)."""
    return (x * mask).sum() / (mask.sum() * x.shape[1]).clamp_min(1.0)


def focal_frequency_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Focal frequency loss (Jiang et al. 2021): spectrum distance weighted by its own (detached) size."""
    diff = torch.fft.fft2(pred.float(), norm="ortho") - torch.fft.fft2(target.float(), norm="ortho")
    dist = diff.real ** 2 + diff.imag ** 2
    weight = dist.sqrt() ** alpha
    weight = (weight / weight.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)).detach()
    return (weight * dist).mean()


def gradient_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |grad pred - grad target| over horizontal/vertical pixel pairs that touch a hole.

    pred, target (B, 3, h, w); mask (B, 1, h, w). Token seams and hole borders are steps that the
    ground truth does not have, so this is the loss that teaches the coherence layer to remove them.
    """
    total, count = pred.new_zeros(()), pred.new_zeros(())
    for dim in (-1, -2):
        n = pred.shape[dim] - 1
        grad_err = (pred.diff(dim=dim) - target.diff(dim=dim)).abs()
        pair = torch.maximum(mask.narrow(dim, 0, n), mask.narrow(dim, 1, n))
        total = total + (grad_err * pair).sum()
        count = count + pair.sum() * pred.shape[1]
    return total / count.clamp_min(1.0)


def patch_swd(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, levels: int = SWD_LEVELS,
              projections: int = PATCH_SWD_PROJECTIONS, centres: int = PATCH_SWD_CENTRES) -> torch.Tensor:
    """The realism metric (`metrics.swd_levels`) as a loss: per image and Laplacian level, the sliced Wasserstein-1
    distance between pred's and target's 7 x 7 x 3 neighbourhoods centred in the hole (at most `centres` of them,
    the same for both), normalised and projected as the metric does (`metrics.swd_projection`, detached), on
    `projections` random unit directions drawn from torch's generator (new ones every call); the mean over images
    and levels.
    pred, target (B, 3, h, w) in [0, 1], mask (B, 1, h, w) > 0 = hole; pred carries the gradient."""
    pred_bands, target_bands = laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels)
    holes = hole_pyramid(mask, levels)
    total, count = pred.new_zeros(()), 0
    for level in range(levels):
        for i in range(pred.shape[0]):
            ys, xs = torch.nonzero(holes[level][i, 0], as_tuple=True)
            if ys.numel() == 0:
                continue
            if ys.numel() > centres:
                keep = torch.randperm(ys.numel(), device=ys.device)[:centres]
                ys, xs = ys[keep], xs[keep]
            a = _descriptors(pred_bands[level][i], ys, xs, SWD_PATCH)
            b = _descriptors(target_bands[level][i], ys, xs, SWD_PATCH)
            with torch.no_grad():
                directions = torch.randn(a.shape[1], projections, device=a.device, dtype=a.dtype)
                mean, weights = swd_projection(a, b, directions / directions.norm(dim=0, keepdim=True))
            pa = torch.sort((a - mean) @ weights.T, dim=0).values
            pb = torch.sort((b - mean) @ weights.T, dim=0).values
            total = total + (pa - pb).abs().mean()
            count += 1
    return total / max(count, 1)


def true_token_distances(out: LROutput, target: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, N, N) RMS pixel distance between token i's ground truth and key j's pixels (inf where j is not an
    allowed key). Keys are known tokens, so their pixels are the ground truth's; no gradient."""
    gt_tokens = patchify(target.detach(), patch).float()               # (B, N, 3 P^2)
    dist = torch.cdist(gt_tokens, gt_tokens) / gt_tokens.shape[-1] ** 0.5
    return dist.masked_fill(~out.key_ok[:, None, :], float("inf"))


def _hole_rows(out: LROutput) -> torch.Tensor:
    """(B, N) bool: hole tokens that have at least one allowed key."""
    return out.query_masked & out.key_ok.any(dim=-1, keepdim=True)


def retrieval_loss(out: LROutput, dist: torch.Tensor) -> torch.Tensor:
    """Teach the attention to put its mass on the known token nearest to each hole's true patch.
    dist: `true_token_distances`."""
    best = dist.argmin(dim=-1)                                        # (B, N)
    rows = _hole_rows(out)
    prob = out.attn.gather(-1, best[..., None])[..., 0].clamp_min(PROB_FLOOR)
    return -(prob.log() * rows).sum() / rows.sum().clamp_min(1)


def copy_distance_loss(out: LROutput, dist: torch.Tensor) -> torch.Tensor:
    """Mean over hole tokens of sum_j A_ij dist_ij: how far, in true content, the keys the attention weights
    are from what the hole hides. The copy styles take the strongest key's pixels, so this is the error of
    a copy drawn from A; unlike `retrieval_loss` any key as close as the nearest one is as good (textures
    have many). dist: `true_token_distances`."""
    rows = _hole_rows(out)
    expected = (out.attn * dist.nan_to_num(posinf=0.0)).sum(dim=-1)  # A is 0 off the allowed keys
    return (expected * rows).sum() / rows.sum().clamp_min(1)


def total_loss(out: LROutput, target: torch.Tensor, mask: torch.Tensor, patch: int,
               w: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """target (B, 3, h, w) ground truth, mask (B, 1, h, w) holes. Returns (loss, parts for logging)."""
    parts = {
        "hole_l1": hole_mean((out.refined - target).abs(), mask),
        "coarse_l2": hole_mean((out.coarse - target) ** 2, mask),
        "mixed_l1": hole_mean((out.mixed - target).abs(), mask),
        "focal_freq": focal_frequency_loss(out.result, target),
        "hole_grad_l1": gradient_l1(out.result, target, mask),
    }
    dist = true_token_distances(out, target, patch)
    parts["retrieval"] = retrieval_loss(out, dist)
    if w.copy_distance:
        parts["copy_distance"] = copy_distance_loss(out, dist)
    if w.hole_ssim:
        parts["hole_ssim"] = 1.0 - hole_mean(ssim_map(out.result, target), mask)
    if w.coarse_swd:
        parts["coarse_swd"] = patch_swd(torch.where(mask > 0, out.coarse, target).float(), target.float(), mask)
    loss = sum(getattr(w, name) * value for name, value in parts.items())
    return loss, {name: float(value.detach()) for name, value in parts.items()}


def log_energy_ratio(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of |log(E_pred / E_target)|, E = per-image hole mean of the squared Laplacian.

    The log form of `metrics.hole_sharpness` (1 = as much fine detail as the ground truth): blur and
    noise cost the same per factor of energy. pred, target (B, 3, H, W); mask (B, 1, H, W).
    """
    ratio = ((hole_laplacian_energy(pred, mask) + ENERGY_FLOOR).log()
             - (hole_laplacian_energy(target, mask) + ENERGY_FLOOR).log())
    return ratio.abs().mean()


def hr_loss(hr_result: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
            w: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Losses of the attention-upscaled result at HR (B, 3, H, W) against the HR ground truth, over holes."""
    parts = {"hr_ssim": 1.0 - hole_mean(ssim_map(hr_result, target), mask),
             "hr_sharpness": log_energy_ratio(hr_result, target, mask),
             "hr_l1": hole_mean((hr_result - target).abs(), mask)}
    loss = w.hr_ssim * parts["hr_ssim"] + w.hr_sharpness * parts["hr_sharpness"]
    return loss, {name: float(value.detach()) for name, value in parts.items()}
