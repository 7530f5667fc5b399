"""Hole-region metrics."""
import math
from pathlib import Path

import numpy as np
import torch

import torch.nn.functional as F
from PIL import Image

from rethined_engine.metrics import (grid_seam_ratio, hole_metrics, hole_psnr, hole_pyramid, hole_sharpness,
                                      hole_sharpness_inner, hole_ssim, laplacian, laplacian_pyramid, realism_swd, seam_free_hole, ssim_map,
                                      swd_levels, swd_reach)

SAMPLE = Path(__file__).resolve().parents[1] / "rethined_engine" / "assets" / "sample.jpg"


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


def test_grid_seam_ratio_sees_pasted_blocks_not_the_photo():
    """Blocks of the photo pasted from shifted places step at the grid lines; the photo itself, and the
    same blocks on a grid the metric is not told about, do not."""
    x, span = photo(), 16
    mask = box_hole(180, 320, 16, 160, 32, 288)
    assert abs(float(grid_seam_ratio(x, mask, span)) - 1) < 0.15
    g = torch.Generator().manual_seed(0)
    pasted = x.clone()
    for top in range(16, 160, span):
        for left in range(32, 288, span):
            dy, dx = (int(v) for v in torch.randint(-12, 13, (2,), generator=g))
            pasted[..., top:top + span, left:left + span] = x[..., top + dy:top + dy + span, left + dx:left + dx + span]
    assert float(grid_seam_ratio(pasted, mask, span)) > 1.5
    assert abs(float(grid_seam_ratio(pasted, mask, 11)) - 1) < 0.3


def test_grid_seam_ratio_ignores_known_pixels_and_needs_pairs():
    x, span = photo(), 16
    mask = box_hole(180, 320, 16, 160, 32, 288)
    noisy = torch.where(mask > 0, x, torch.rand_like(x))
    assert float(grid_seam_ratio(noisy, mask, span)) == float(grid_seam_ratio(x, mask, span))
    assert abs(hole_metrics(x, x, mask, grid_span=span)["seam_ratio"] - float(grid_seam_ratio(x, mask, span))) < 1e-12
    inside_one_block = box_hole(180, 320, 17, 30, 33, 46)
    assert math.isnan(float(grid_seam_ratio(x, inside_one_block, span)))


def photo(width: int = 320, height: int = 180) -> torch.Tensor:
    """The sample photograph, Lanczos-resized, (1, 3, height, width) float in [0, 1]."""
    image = Image.open(SAMPLE).convert("RGB").resize((width, height), Image.LANCZOS)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255


def box_hole(height: int, width: int, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, height, width)
    mask[..., top:bottom, left:right] = 1
    return mask


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype) / sigma) ** 2)
    taps = taps / taps.sum()
    c = x.shape[1]
    across, down = taps.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), taps.reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), across, groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), down, groups=c)


def test_laplacian_pyramid_sizes_and_exact_reconstruction():
    x = torch.rand(2, 3, 37, 50, dtype=torch.float64)
    bands = laplacian_pyramid(x, 4)
    assert [tuple(b.shape[-2:]) for b in bands] == [(37, 50), (19, 25), (10, 13), (5, 7)]
    from rethined_engine.metrics import _expand
    rebuilt = bands[-1]
    for band in reversed(bands[:-1]):
        rebuilt = band + _expand(_expand(rebuilt, 2, band.shape[2]), 3, band.shape[3])
    torch.testing.assert_close(rebuilt, x)
    flat = torch.full((1, 3, 40, 40), 0.3, dtype=torch.float64)          # no detail: band-pass levels vanish
    assert all(float(b.abs().max()) < 1e-12 for b in laplacian_pyramid(flat, 4)[:-1])


def test_hole_pyramid_marks_any_source_pixel():
    mask = torch.zeros(1, 1, 20, 30)
    mask[..., 9, 17] = 1                              # one pixel: level l holds it at (9 >> l, 17 >> l)
    for level, hole in enumerate(hole_pyramid(mask, 4)):
        assert hole.shape[-2:] == ((20 + 2 ** level - 1) // 2 ** level, (30 + 2 ** level - 1) // 2 ** level)
        assert torch.nonzero(hole[0, 0]).tolist() == [[9 >> level, 17 >> level]]


def test_swd_of_identical_images_is_zero_at_every_level():
    x = photo()
    mask = box_hole(180, 320, 40, 140, 80, 240)
    scores = realism_swd(x, x, mask)
    assert scores == {"swd_l0": 0.0, "swd_l1": 0.0, "swd_l2": 0.0, "swd_l3": 0.0, "swd_mean": 0.0}
    assert realism_swd(x[0], x[0], mask[0, 0]) == scores               # (3, H, W) images, (H, W) mask


def test_swd_blur_is_worse_than_slight_noise_at_the_finest_level():
    x = photo()
    mask = box_hole(180, 320, 40, 140, 80, 240)
    blurred = torch.where(mask > 0, gaussian_blur(x, 1.5), x)
    noise = 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    noisy = torch.where(mask > 0, (x + noise).clamp(0, 1), x)
    blur_l0, noise_l0 = realism_swd(blurred, x, mask)["swd_l0"], realism_swd(noisy, x, mask)["swd_l0"]
    assert blur_l0 > 3 * noise_l0 > 0


def test_swd_colour_cast_shows_at_the_coarsest_level():
    x = photo()
    mask = box_hole(180, 320, 40, 140, 80, 240)
    cast = x.clone()
    cast[:, 0] = torch.where(mask[:, 0] > 0, (x[:, 0] + 0.1).clamp(0, 1), x[:, 0])     # +0.1 on red in the hole
    scores = realism_swd(cast, x, mask)
    assert scores["swd_l3"] > 5 * scores["swd_l0"]
    assert scores["swd_mean"] == sum(scores[f"swd_l{level}"] for level in range(4)) / 4


def test_swd_ignores_pixels_beyond_its_reach():
    """Pixels farther than `swd_reach` (Chebyshev px) from the hole, changed in both images, change nothing;
    a change well inside the reach does."""
    h, w = 200, 240
    x = photo(w, h)
    pred = torch.where(box_hole(h, w, 80, 110, 100, 150) > 0, gaussian_blur(x, 1.0), x)
    mask = box_hole(h, w, 80, 110, 100, 150)
    reach = swd_reach(4, 7)
    assert reach == 45
    near = F.max_pool2d(mask, 2 * reach + 1, stride=1, padding=reach) > 0           # within the reach
    rng = torch.Generator().manual_seed(1)
    far_x = torch.where(near, x, torch.rand(x.shape, generator=rng))
    far_pred = torch.where(near, pred, torch.rand(x.shape, generator=rng))
    assert not torch.equal(far_x, x)
    assert torch.equal(swd_levels(far_pred, far_x, mask), swd_levels(pred, x, mask))
    close = F.max_pool2d(mask, 2 * reach // 3 + 1, stride=1, padding=reach // 3) > 0
    changed = torch.where(close & ~(mask > 0), torch.rand(x.shape, generator=rng), x)
    assert not torch.equal(swd_levels(pred, changed, mask), swd_levels(pred, x, mask))


def test_swd_is_deterministic_per_seed_and_scores_each_image_alone():
    x = photo()
    mask = box_hole(180, 320, 20, 160, 40, 280)
    pred = torch.where(mask > 0, gaussian_blur(x, 1.0), x)
    few = 1000                                        # fewer than the hole's centres: a seeded subset
    first = swd_levels(pred, x, mask, max_descriptors=few, seed=3)
    assert torch.equal(first, swd_levels(pred, x, mask, max_descriptors=few, seed=3))
    assert not torch.equal(first, swd_levels(pred, x, mask, max_descriptors=few, seed=4))
    batch = swd_levels(torch.cat([x, pred]), torch.cat([x, x]), mask, max_descriptors=few, seed=3)
    assert batch.shape == (2, 4) and torch.equal(batch[1], first[0])
    assert torch.equal(batch[0], torch.zeros(4, dtype=batch.dtype))
    assert torch.isnan(swd_levels(x, x, torch.zeros(1, 1, 180, 320))).all()       # no hole, no score
