"""Hole-region image quality metrics. Images (B, 3, H, W) float in [0, 1]; masks (B, 1, H, W), 1 = hole."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _hole_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean of x (B, C, H, W) over hole pixels -> (B,)."""
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)


def hole_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _hole_mean((pred - target).abs(), mask)


def hole_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mse = _hole_mean((pred - target) ** 2, mask)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5), (B, 3, H, W)."""
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-0.5 * (coords / SSIM_SIGMA) ** 2)
    g = (g / g.sum()).to(pred)
    c = pred.shape[1]
    kh, kw = g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)
    pad = SSIM_WINDOW // 2

    def blur(x):
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)

    mu_x, mu_y = blur(pred), blur(target)
    var_x = blur(pred * pred) - mu_x ** 2
    var_y = blur(target * target) - mu_y ** 2
    cov = blur(pred * target) - mu_x * mu_y
    return ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2))


def hole_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over hole pixels, (B,). Computed in fp32: within 1e-7 of fp64 on a 2048^2 photo-sized
    input and 2.6x faster on the CPU (fp64 made 4K quality runs take minutes per image)."""
    return _hole_mean(ssim_map(pred.float(), target.float()), mask).double()


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Per-channel 3x3 Laplacian (4-neighbour), reflect-padded, same shape as x."""
    c = x.shape[1]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel.expand(c, 1, 3, 3), groups=c)


def hole_laplacian_energy(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared Laplacian of x (B, C, H, W) over hole pixels, (B,)."""
    return _hole_mean(laplacian(x) ** 2, mask)


def hole_sharpness(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """High-frequency energy (squared Laplacian) of pred over that of target, summed over hole pixels, (B,).

    1.0: as much fine detail as the ground truth; blur -> 0; noise or hard seams -> above 1.
    """
    pred, target = pred.double(), target.double()
    return hole_laplacian_energy(pred, mask) / hole_laplacian_energy(target, mask).clamp_min(1e-12)


def seam_free_hole(mask: torch.Tensor, grid_span: int) -> torch.Tensor:
    """Hole pixels (B, 1, H, W) bool whose 3x3 Laplacian straddles neither the hole's border (no known
    8-neighbour) nor a token-grid line (rows and columns at multiples of grid_span px, the HR token size
    s * P of our attention upscaling, which pastes each token's texture from its own source)."""
    hole = mask > 0
    inside = ~F.max_pool2d((~hole).to(torch.float32), 3, stride=1, padding=1).bool()
    rows = torch.arange(mask.shape[-2], device=mask.device) % grid_span
    cols = torch.arange(mask.shape[-1], device=mask.device) % grid_span
    on_line = ((rows == 0) | (rows == grid_span - 1))[:, None] | ((cols == 0) | (cols == grid_span - 1))[None, :]
    return hole & inside & ~on_line


def hole_sharpness_inner(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, grid_span: int) -> torch.Tensor:
    """`hole_sharpness` over `seam_free_hole` pixels only, (B,); NaN where there are none.

    Seams are high-frequency energy but not detail: a fill offset from the known pixels, or tokens pasted
    side by side, score as "sharp" in `hole_sharpness` (the same pixels are used for every method and the
    truth, so peers without seams score about the same in both)."""
    inner = seam_free_hole(mask, grid_span)
    ratio = hole_sharpness(pred, target, inner)
    return torch.where(inner.flatten(1).any(dim=1), ratio, torch.full_like(ratio, float("nan")))


def hole_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 grid_span: int | None = None) -> dict[str, float]:
    """Mean over the batch of hole PSNR (dB), SSIM, L1 and sharpness ratio; with grid_span (px) also
    `sharpness_inner` (`hole_sharpness_inner`)."""
    scores = {"psnr": float(hole_psnr(pred, target, mask).mean()),
              "ssim": float(hole_ssim(pred, target, mask).mean()),
              "l1": float(hole_l1(pred, target, mask).mean()),
              "sharpness": float(hole_sharpness(pred, target, mask).mean())}
    if grid_span is not None:
        scores["sharpness_inner"] = float(hole_sharpness_inner(pred, target, mask, grid_span).mean())
    return scores
