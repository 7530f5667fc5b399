"""Hole-region metrics."""
import torch

import torch.nn.functional as F

from rethined_engine.metrics import hole_metrics, hole_psnr, hole_sharpness, hole_ssim, laplacian, ssim_map


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
