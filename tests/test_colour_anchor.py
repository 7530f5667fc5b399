"""The colour anchor (`model.anchor`): jump flooding against a brute-force nearest seed, and the anchored fill's
low band, texture and known pixels."""
import pytest
import torch

from rethined_engine.config import ModelConfig
from rethined_engine.model.anchor import ANCHOR_CELL, FAR, colour_anchor, jump_steps, nearest_seeds
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
