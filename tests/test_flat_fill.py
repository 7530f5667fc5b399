"""Flat surroundings (`model.flat`): how flat the known surroundings are, how alike the colours a membrane mixes,
and the model's fill moved towards the membrane where both say so (`ModelConfig.colour_anchor_flat`); the
continued fill and its held-out weight (`ModelConfig.flat_fill_form`)."""
import pytest
import torch

from rethined_engine.config import ModelConfig
from rethined_engine.model.anchor import ANCHOR_CELL, colour_anchor, jump_steps
from rethined_engine.model.flat import (FLAT_LOW_SIGMA, MEMBRANE_CELL, MEMBRANE_LEVELS, continued_fill, divergence,
                                        flat_fill, flat_weight, grid_steps, holdout_weight, known_membrane, log_ramp)
from rethined_engine.model.patchmatch import blur_base

from conftest import make_model

SIZE = (96, 128)


def surroundings(pattern: torch.Tensor, hole=(32, 64, 40, 96)) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) pattern (or (3, H, W)) added to mid grey, with a rectangular hole (top, bottom, left, right)."""
    image = (0.5 + pattern).expand(3, *SIZE)[None].clone()
    mask = torch.zeros(1, 1, *SIZE)
    top, bottom, left, right = hole
    mask[..., top:bottom, left:right] = 1.0
    return image, mask


def columns() -> torch.Tensor:
    return torch.arange(float(SIZE[1]))[None, :].expand(*SIZE)


def test_flat_surroundings_weigh_one_and_structured_ones_zero():
    gradient, mask = surroundings(0.001 * columns() - 0.05)             # a sky's gradient: 0.5 over a 512 px image
    assert flat_weight(gradient, mask)[mask > 0].min() > 0.99
    stripes, _ = surroundings(0.1 * torch.sin(columns() * (2 * torch.pi / 12)))  # a leaf's veins, 12 px apart
    assert flat_weight(stripes, mask)[mask > 0].max() < 0.01
    fine_noise, _ = surroundings(0.01 * torch.randn(*SIZE, generator=torch.Generator().manual_seed(0)))
    assert flat_weight(fine_noise, mask)[mask > 0].min() > 0.8        # grain alone leaves a surface mostly flat


def test_flat_weight_ignores_the_hole_and_follows_the_nearer_side():
    """The hole's own pixels do not count; a hole between a flat half and a striped half weighs one at the flat
    side, falling towards the striped side (the membrane of the structure's size: the larger size reaches
    further), and zero there."""
    cols = columns()
    half = torch.where(cols < 64, torch.zeros_like(cols), 0.1 * torch.sin(cols * (2 * torch.pi / 12)))
    image, mask = surroundings(half, hole=(24, 72, 32, 96))
    weight = flat_weight(image, mask)
    noisy = torch.where(mask > 0, torch.rand(image.shape, generator=torch.Generator().manual_seed(1)), image)
    assert torch.equal(flat_weight(noisy, mask), weight)
    row = weight[0, 0, 48, 32:96]
    assert row[0] > 0.99 and row[-4:].max() < 0.01
    assert (row[1:] <= row[:-1] + 1e-6).all()


def test_known_membrane_is_harmonic_between_two_sides():
    """Known columns at 0.2 left of the hole and 0.8 right of it, the hole spanning whole rows: the membrane runs
    from one to the other, monotonic, and holds the known cells' means."""
    cols = columns()
    image, mask = surroundings(torch.where(cols < 64, torch.full_like(cols, -0.3), torch.full_like(cols, 0.3)),
                               hole=(0, 96, 32, 96))
    membrane = known_membrane(image, mask, 4, 3)
    row = membrane[0, 0, 48, 32:96]
    assert (row[1:] >= row[:-1] - 1e-6).all() and row[0] < 0.3 and row[-1] > 0.7
    assert torch.allclose(membrane[0, :, :, :28], image[0, :, :, :28], atol=1e-6)


def test_log_ramp():
    value = torch.tensor([1e-4, 1e-3, 10 ** -2.5, 1e-2, 1.0])
    assert torch.allclose(log_ramp(value, 1e-3, 1e-2), torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]), atol=1e-6)


def test_flat_fill_keeps_apart_two_flat_regions_the_hole_separates():
    """One flat colour all round weighs one, and the fill's low band becomes that colour, its grain kept; a hole
    across the image's height between two flat regions of other colours is flat everywhere, but the membrane would
    mix them there, so it weighs zero."""
    grain = 0.02 * torch.randn(3, *SIZE, generator=torch.Generator().manual_seed(2))
    filled = 0.5 + grain[None]                                                   # a fill of grain on mid grey
    plain, mask = surroundings(torch.full(SIZE, 0.1))
    smooth, weight = flat_fill(plain, mask, torch.where(mask > 0, filled, plain))
    assert weight[mask > 0].min() > 0.99
    hole = (mask > 0).expand_as(plain)
    assert abs(smooth[hole].mean().item() - 0.6) < 0.01                        # the membrane's colour, not 0.5
    inner = (smooth - filled)[..., 40:56, 48:88]                                 # 8 px and more from the border
    assert inner.std() < 0.01 and abs(inner.mean().item() - 0.1) < 0.01       # the grain kept, its base moved
    cols = columns()
    two, mask = surroundings(torch.where(cols < 64, torch.full_like(cols, -0.3), torch.full_like(cols, 0.3)),
                             hole=(0, 96, 32, 96))
    _, weight = flat_fill(two, mask, torch.where(mask > 0, filled, two))
    assert flat_weight(two, mask)[mask > 0].min() > 0.99 and weight[mask > 0].max() < 0.01


def test_model_moves_a_flat_hole_towards_the_membrane(rng):
    """forward_lr with colour_anchor_flat equals the colour anchor's fill moved by `flat_fill`'s weight towards
    its fill; with a flat image of one colour that is its fill itself."""
    cfg = ModelConfig(lr_long_side=64, lr_texture="copy", colour_anchor=0.7, colour_anchor_sigma=6.0)
    image = 0.4 + 0.01 * torch.from_numpy(rng.random((1, 3, 64, 96), dtype="float32"))
    mask = torch.zeros(1, 1, 64, 96)
    mask[..., 16:48, 24:72] = 1.0
    keys = torch.ones(8 * 12, dtype=torch.bool)
    off = make_model(cfg=cfg).forward_lr(image, mask, keys)
    flat = make_model(cfg=cfg.replace(colour_anchor_flat=True)).forward_lr(image, mask, keys)
    composite = torch.where(mask > 0, off.coarse, image)
    copied = off.mixed                                                    # the copies, before any anchor
    smooth, weight = flat_fill(composite, mask, copied)
    assert weight[mask > 0].min() > 0.99
    hole = (mask > 0).expand_as(image)
    assert torch.allclose(flat.refined[hole], smooth[hole], atol=1e-5)
    steps = jump_steps(cfg.lr_long_side // ANCHOR_CELL)
    assert torch.allclose(off.refined, colour_anchor(composite, mask, copied, 0.7, 6.0, steps), atol=1e-6)


def rows() -> torch.Tensor:
    return torch.arange(float(SIZE[0]))[:, None].expand(*SIZE)


def test_divergence_of_a_grids_steps_is_its_laplacian():
    grid = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(grid, (1, 1, 1, 1), mode="replicate")   # a missing neighbour adds nothing
    laplacian = (padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1] + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:]
                 - 4 * grid)
    torch.testing.assert_close(divergence(*grid_steps(grid)), laplacian, rtol=0, atol=1e-6)


def test_continued_fill_continues_slopes_where_a_membrane_levels_them():
    """A bowl (quadratic) and a ridge's flank: the continued fill follows them into a wide hole (within 0.01 on
    average, 0.02 at worst) where the membrane strays over 3 times as far on average."""
    bowl, mask = surroundings(((columns() - 40) ** 2 + (rows() - 70) ** 2) / 40000.0 - 0.3, hole=(24, 80, 24, 104))
    flank, _ = surroundings(0.3 * torch.tanh((columns() - 30) / 40.0), hole=(24, 80, 24, 104))
    hole = mask[0, 0] > 0
    for image in (bowl, flank):
        continued = (continued_fill(image, mask, 4, 3) - image)[0][:, hole].abs()
        membrane = (known_membrane(image, mask, 4, 3) - image)[0][:, hole].abs()
        assert continued.mean() < 0.01 and continued.max() < 0.02
        assert membrane.mean() > 3 * continued.mean()


def holdout_scene(grain: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A gentle ramp with Gaussian grain of this size per channel, around a hole."""
    noise = grain * torch.randn(3, *SIZE, generator=torch.Generator().manual_seed(seed))
    return surroundings(0.002 * columns() - 0.1 + noise)


def test_holdout_weight_follows_the_continued_fills_error_on_the_ring():
    """A clean ramp is predicted well (weight 1), grain of 0.2 not at all (0); grain of 0.02 puts the ring's
    squared error (3 x 0.02 ** 2, summed over RGB) inside the ramp; the hole's own pixels do not count."""
    clean, mask = holdout_scene(0.0)
    assert holdout_weight(clean, mask)[mask > 0].min() > 0.99
    rough, _ = holdout_scene(0.2)
    assert holdout_weight(rough, mask)[mask > 0].max() < 0.01
    grain, _ = holdout_scene(0.02)
    weight = holdout_weight(grain, mask)
    assert 0.2 < weight[mask > 0].mean() < 0.8
    noisy = torch.where(mask > 0, torch.rand(grain.shape, generator=torch.Generator().manual_seed(1)), grain)
    assert torch.equal(holdout_weight(noisy, mask), weight)


def test_holdout_weight_follows_the_nearer_side():
    """A hole between a clean ramp (left) and grain of 0.04 (right): the error on each side of the ring is carried
    into the hole from that side, weight 1 at the hole's left edge falling to 0 at its right; an image without known
    pixels weighs 0."""
    cols = columns()
    grain = 0.04 * torch.randn(3, *SIZE, generator=torch.Generator().manual_seed(3))
    image, mask = surroundings(0.002 * cols - 0.1 + torch.where(cols < 64, 0.0, 1.0) * grain, hole=(24, 72, 32, 96))
    row = holdout_weight(image, mask)[0, 0, 48, 32:96]
    assert row[:4].min() > 0.95 and row[-4:].max() < 0.01
    assert (row[1:] <= row[:-1] + 1e-6).all()
    assert holdout_weight(image, torch.ones_like(mask)).max() == 0


@pytest.mark.parametrize("form", ["continued", "continued_flat"])
def test_flat_fill_continued_forms(form):
    """The continued forms: the fill's low band replaced by `continued_fill`, weighted by `holdout_weight` (times
    `flat_weight` for continued_flat); TorchScript gives the same."""
    image, mask = holdout_scene(0.02)
    filled = torch.rand(image.shape, generator=torch.Generator().manual_seed(2))
    smooth, weight = flat_fill(image, mask, filled, form)
    expected = holdout_weight(image, mask)
    if form == "continued_flat":
        expected = expected * flat_weight(image, mask)
    torch.testing.assert_close(weight, expected, rtol=0, atol=1e-6)
    low = blur_base(torch.where(mask > 0, filled, image), FLAT_LOW_SIGMA)
    torch.testing.assert_close(smooth, filled - low + continued_fill(image, mask, MEMBRANE_CELL, MEMBRANE_LEVELS),
                               rtol=0, atol=1e-6)
    scripted = torch.jit.script(flat_fill)(image, mask, filled, form)
    torch.testing.assert_close(scripted[0], smooth, rtol=0, atol=1e-6)
    torch.testing.assert_close(scripted[1], weight, rtol=0, atol=1e-6)
