"""The colour anchor (`model.anchor`): jump flooding against a brute-force nearest seed, the anchored fill's
low band, texture and known pixels, and where the surroundings are flat (`flat_weight`)."""
import pytest
import torch

from rethined_engine.config import ModelConfig
from rethined_engine.model.anchor import (ANCHOR_CELL, FAR, FLAT_ANCHOR_SIGMA, colour_anchor, flat_weight, jump_steps,
                                          nearest_seeds)
from rethined_engine.model.patchmatch import blur_base

from conftest import make_model


def brute_force_distance(is_seed: torch.Tensor) -> torch.Tensor:
    """(gh, gw) bool -> each cell's squared distance to its nearest seed, by trying every seed."""
    gh, gw = is_seed.shape
    ys, xs = torch.nonzero(is_seed, as_tuple=True)
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    return ((rows[..., None] - ys) ** 2 + (cols[..., None] - xs) ** 2).min(dim=-1).values


@pytest.mark.parametrize("seed", range(6))
def test_jump_flooding_finds_the_nearest_seed(seed):
    gen = torch.Generator().manual_seed(seed)
    gh, gw = torch.randint(3, 90, (2,), generator=gen).tolist()
    density = [0.002, 0.02, 0.3][seed % 3]
    is_seed = torch.rand(2, 1, gh, gw, generator=gen) < density
    is_seed[0, 0, gh // 2, gw // 2] = True                       # at least one seed in the first image
    seeds = nearest_seeds(is_seed, jump_steps(max(gh, gw)))
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    for b in range(2):
        if not is_seed[b].any():
            assert bool((seeds[b] == FAR).all())
            continue
        found = (seeds[b, 0] - rows) ** 2 + (seeds[b, 1] - cols) ** 2
        assert torch.equal(found.long(), brute_force_distance(is_seed[b, 0]))
        picked = is_seed[b, 0, seeds[b, 0].long(), seeds[b, 1].long()]
        assert bool(picked.all())                                # every cell points at a seed


def test_jump_steps():
    assert jump_steps(128) == [64, 32, 16, 8, 4, 2, 1, 2, 1]
    assert jump_steps(2) == [1, 1]


def hole_case(size=96, hole=(16, 80)):
    """A known image of one colour with a square hole, and a fill of another colour plus a fine checker."""
    composite = torch.empty(1, 3, size, size)
    composite[:] = torch.tensor([0.2, 0.5, 0.7])[None, :, None, None]
    mask = torch.zeros(1, 1, size, size)
    mask[..., hole[0]:hole[1], hole[0]:hole[1]] = 1.0
    checker = ((torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2).float() * 0.1 - 0.05
    filled = torch.where(mask > 0, torch.tensor([0.6, 0.4, 0.3])[None, :, None, None] + checker, composite)
    return composite, mask, filled


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_anchor_moves_the_fill_colour_and_keeps_its_texture(strength):
    composite, mask, filled = hole_case()
    out = colour_anchor(composite, mask, filled, strength, 4.0, jump_steps(96 // ANCHOR_CELL))
    known = mask == 0
    assert torch.equal(out.expand_as(filled)[known.expand_as(filled)], filled[known.expand_as(filled)])
    centre = (slice(None), slice(None), slice(40, 56), slice(40, 56))   # beyond the low bands' reach of the border
    fill_colour, known_colour = torch.tensor([0.6, 0.4, 0.3]), torch.tensor([0.2, 0.5, 0.7])
    expected = fill_colour + strength * (known_colour - fill_colour)
    assert torch.allclose(out[centre].mean(dim=(0, 2, 3)), expected, atol=1e-4)
    texture = out[centre] - out[centre].mean(dim=(2, 3), keepdim=True)
    fill_texture = filled[centre] - filled[centre].mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(texture, fill_texture, atol=1e-5)     # the checker is above the low band: kept


def test_anchor_follows_the_nearest_known_side():
    """A hole between a dark left side and a bright right side: each half of the fill moves to its side's
    colour, not to one mean."""
    composite, mask, filled = hole_case()
    composite[..., :, 48:] = 0.9
    composite[..., :, :48] = 0.1
    filled = torch.where(mask > 0, torch.full_like(filled, 0.5), composite)
    out = colour_anchor(composite, mask, filled, 1.0, 2.0, jump_steps(96 // ANCHOR_CELL))
    left, right = out[..., 40:56, 20:28].mean(), out[..., 40:56, 68:76].mean()
    assert float(left) < 0.2 and float(right) > 0.8


def test_anchor_without_known_pixels_changes_nothing():
    composite, mask, filled = hole_case()
    mask = torch.ones_like(mask)
    out = colour_anchor(composite, mask, filled, 1.0, 4.0, jump_steps(96 // ANCHOR_CELL))
    assert torch.equal(out, filled)


def test_anchor_in_a_batch_reads_each_image_alone():
    composite, mask, filled = hole_case()
    other = hole_case(hole=(8, 60))
    both = [torch.cat(pair) for pair in zip((composite, mask, filled), other)]
    steps = jump_steps(96 // ANCHOR_CELL)
    batched = colour_anchor(*both, 0.7, 4.0, steps)
    assert torch.allclose(batched[:1], colour_anchor(composite, mask, filled, 0.7, 4.0, steps))
    assert torch.allclose(batched[1:], colour_anchor(*other, 0.7, 4.0, steps))


def test_model_applies_the_anchor_to_the_lr_fill(rng):
    """forward_lr with colour_anchor > 0 equals the copies anchored by `colour_anchor`; off, the copies."""
    cfg = ModelConfig(lr_long_side=64, lr_texture="copy", copy_border_sigma=2.0)
    image = torch.from_numpy(rng.random((1, 3, 64, 96), dtype="float32"))
    image = blur_base(image, 3.0)                                         # low-band content for the anchor to act on
    mask = torch.zeros(1, 1, 64, 96)
    mask[..., 16:48, 24:72] = 1.0
    keys = torch.ones(8 * 12, dtype=torch.bool)
    off = make_model(cfg=cfg).forward_lr(image, mask, keys)
    on = make_model(cfg=cfg.replace(colour_anchor=0.6, colour_anchor_sigma=3.0)).forward_lr(image, mask, keys)
    composite = torch.where(mask > 0, off.coarse, image)
    expected = colour_anchor(composite, mask, off.refined, 0.6, 3.0, jump_steps(cfg.lr_long_side // ANCHOR_CELL))
    assert torch.allclose(on.refined, expected, atol=1e-6)
    assert not torch.allclose(on.result, off.result, atol=1e-3)
    assert torch.equal(on.result[(mask == 0).expand_as(image)], image[(mask == 0).expand_as(image)])


def surroundings(pattern: torch.Tensor, size=(96, 128), hole=(32, 64, 40, 96)) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) pattern added to mid grey in RGB, with a rectangular hole (top, bottom, left, right)."""
    image = (0.5 + pattern)[None, None].expand(1, 3, *size).clone()
    mask = torch.zeros(1, 1, *size)
    top, bottom, left, right = hole
    mask[..., top:bottom, left:right] = 1.0
    return image, mask


def test_flat_surroundings_weigh_one_and_structured_ones_zero():
    _, cols = torch.meshgrid(torch.arange(96.0), torch.arange(128.0), indexing="ij")
    gradient, mask = surroundings(0.001 * cols - 0.05)                   # a sky's gradient: 0.5 over a 512 px image
    assert flat_weight(gradient, mask)[mask > 0].min() > 0.99
    stripes, _ = surroundings(0.1 * torch.sin(cols * (2 * torch.pi / 12)))  # a leaf's veins, 12 px apart
    assert flat_weight(stripes, mask)[mask > 0].max() < 0.01
    fine_noise, _ = surroundings(0.01 * torch.randn(96, 128, generator=torch.Generator().manual_seed(0)))
    assert flat_weight(fine_noise, mask)[mask > 0].min() > 0.8       # grain alone leaves a surface mostly flat


def test_flat_weight_ignores_the_hole_and_follows_the_nearer_side():
    """The hole's own pixels do not count; a hole between a flat half and a striped half weighs one at the flat
    side, falling towards the striped side (the membrane of the structure's size: the larger size reaches
    further), and zero there."""
    _, cols = torch.meshgrid(torch.arange(96.0), torch.arange(128.0), indexing="ij")
    half = torch.where(cols < 64, torch.zeros_like(cols), 0.1 * torch.sin(cols * (2 * torch.pi / 12)))
    image, mask = surroundings(half, hole=(24, 72, 32, 96))
    weight = flat_weight(image, mask)
    noisy = torch.where(mask > 0, torch.rand(image.shape, generator=torch.Generator().manual_seed(1)), image)
    assert torch.equal(flat_weight(noisy, mask), weight)
    row = weight[0, 0, 48, 32:96]
    assert row[0] > 0.99 and row[-4:].max() < 0.01
    assert (row[1:] <= row[:-1] + 1e-6).all()


def test_model_moves_a_flat_hole_towards_the_fine_anchor(rng):
    """forward_lr with colour_anchor_flat equals the colour anchor's fill moved by `flat_weight` towards the fine
    anchor; with a flat image that is the fine anchor itself."""
    cfg = ModelConfig(lr_long_side=64, lr_texture="copy", colour_anchor=0.7, colour_anchor_sigma=6.0)
    image = 0.4 + 0.01 * torch.from_numpy(rng.random((1, 3, 64, 96), dtype="float32"))
    mask = torch.zeros(1, 1, 64, 96)
    mask[..., 16:48, 24:72] = 1.0
    keys = torch.ones(8 * 12, dtype=torch.bool)
    model = make_model(cfg=cfg)
    off = model.forward_lr(image, mask, keys)
    flat = make_model(cfg=cfg.replace(colour_anchor_flat=True)).forward_lr(image, mask, keys)
    composite = torch.where(mask > 0, off.coarse, image)
    copied = off.mixed                                                    # the copies, before any anchor
    steps = jump_steps(cfg.lr_long_side // ANCHOR_CELL)
    fine = colour_anchor(composite, mask, copied, 1.0, FLAT_ANCHOR_SIGMA, steps)
    assert flat_weight(composite, mask)[mask > 0].min() > 0.99
    assert torch.allclose(flat.refined[(mask > 0).expand_as(image)], fine[(mask > 0).expand_as(image)], atol=1e-5)
    assert torch.allclose(off.refined, colour_anchor(composite, mask, copied, 0.7, 6.0, steps), atol=1e-6)
