"""Hole-region metrics."""
import math

import torch

import torch.nn.functional as F

from rethined_engine.metrics import (hole_metrics, hole_psnr, hole_sharpness, hole_sharpness_inner, hole_ssim,
                                      laplacian, seam_free_hole, ssim_map)


def test_identical_images():
    x = torch.rand(2, 3, 32, 40)
    mask = torch.zeros(2, 1, 32, 40)
    mask[..., 5:20, 10:30] = 1
    m = hole_metrics(x, x, mask)
    assert m["l1"] == 0 and m["psnr"] > 100 and abs(m["ssim"] - 1) < 1e-6 and abs(m["sharpness"] - 1) < 1e-9


def test_only_holes_count():
    x = torch.rand(1, 3, 32, 32)
    y = x.clone()
    y[..., :16, :] = 0  # damage outside the hole only
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 24:, :] = 1
    assert float(hole_psnr(y, x, mask)) > 100


def test_known_psnr_value():
    x = torch.zeros(1, 3, 8, 8)
    mask = torch.ones(1, 1, 8, 8)
    torch.testing.assert_close(hole_psnr(x + 0.1, x, mask), torch.tensor([20.0]))


def test_ssim_drops_with_noise():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 48, 48)
    mask = torch.ones(1, 1, 48, 48)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert float(hole_ssim(noisy, x, mask)) < 0.9
    assert ssim_map(x, x).shape == x.shape


def test_laplacian_of_a_ramp_is_zero():
    ramp = torch.linspace(0, 1, 16).expand(1, 3, 16, 16).contiguous()
    assert float(laplacian(ramp)[..., 1:-1, 1:-1].abs().max()) < 1e-6


def test_sharpness_falls_with_blur_and_rises_with_noise():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 48, 48)
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 8:40, 8:40] = 1
    blurred = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    assert float(hole_sharpness(blurred, x, mask)) < 0.2
    assert float(hole_sharpness(x + 0.5 * torch.randn_like(x), x, mask)) > 1.5


def test_inner_sharpness_ignores_seams_but_not_texture():
    """A fill that is the truth plus a different constant per 8 x 8 token: seams at the hole's border and
    on the token grid, the truth's texture everywhere else."""
    torch.manual_seed(0)
    span = 8
    x = 0.1 * torch.rand(1, 3, 64, 72, dtype=torch.float64)
    mask = torch.zeros(1, 1, 64, 72)
    mask[..., 8:56, 16:64] = 1
    offsets = F.interpolate(0.5 * torch.rand(1, 3, 8, 9, dtype=torch.float64), scale_factor=span, mode="nearest")
    seamed = torch.where(mask > 0, x + offsets, x)
    assert float(hole_sharpness(seamed, x, mask)) > 1.5
    torch.testing.assert_close(hole_sharpness_inner(seamed, x, mask, span), torch.ones(1, dtype=torch.float64))
    blurred = torch.where(mask > 0, F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False), x)
    assert float(hole_sharpness_inner(blurred, x, mask, span)) < 0.2
    assert abs(hole_metrics(seamed, x, mask, grid_span=span)["sharpness_inner"] - 1) < 1e-9


def test_seam_free_hole_pixels():
    mask = torch.zeros(1, 1, 20, 20)
    mask[..., 2:18, 2:18] = 1                   # hole rows / cols 2..17; 8-px grid lines at 0, 7, 8, 15, 16
    inner = seam_free_hole(mask, 8)[0, 0]
    expected = torch.zeros(20, 20, dtype=torch.bool)
    for lo, hi in ((3, 7), (9, 15)):            # off the border ring (rows 2, 17) and the grid lines
        for lo2, hi2 in ((3, 7), (9, 15)):
            expected[lo:hi, lo2:hi2] = True
    assert torch.equal(inner, expected)
    thin = torch.zeros(1, 1, 16, 16)
    thin[..., 4:6, :] = 1                       # two rows: every hole pixel touches the border
    assert math.isnan(float(hole_sharpness_inner(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), thin, 8)))
