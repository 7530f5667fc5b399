"""Copy sources ranked by detail level: `detail_levels` on flat and textured tokens, `detail_keys`' extra
dimensions against the term they stand for, and the term's effect on the choice."""
import math

import pytest
import torch
import torch.nn.functional as F

from rethined_engine.config import COPY_DETAIL_WEIGHT_MAX, ModelConfig
from rethined_engine.model.patchmatch import (DETAIL_LEVEL_SPAN, DETAIL_MAX, DETAIL_MIN, NO_OPTION, NeuralPatchMatch,
                                              copy_candidates, detail_keys, detail_levels, hole_spread)


def test_detail_levels_of_flat_and_textured_tokens():
    """A flat token sits at the floor, a noisy one above it, a token of full-swing noise at the ceiling."""
    g = torch.Generator().manual_seed(0)
    image = torch.full((1, 3, 8, 24), 0.5)
    image[:, :, :, 8:16] += 0.05 * torch.randn(1, 3, 8, 8, generator=g)
    image[:, :, :, 16:] = torch.rand(1, 3, 8, 8, generator=g).round()
    levels = detail_levels(image, 8)[0, 0, 0]
    assert levels.shape == (3,)
    assert levels[0] == pytest.approx(math.log(DETAIL_MIN))
    assert math.log(DETAIL_MIN) < levels[1] < math.log(DETAIL_MAX)
    assert levels[2] == pytest.approx(math.log(DETAIL_MAX))


@pytest.mark.parametrize("weight", [0.03, 0.09])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_detail_keys_subtract_the_squared_level_distance(weight, dtype):
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(2, 30, 16, generator=g, dtype=dtype), dim=-1)
    k = F.normalize(torch.randn(2, 30, 16, generator=g, dtype=dtype), dim=-1)
    span = (math.log(DETAIL_MIN), math.log(DETAIL_MAX))
    levels = torch.empty(2, 30, 1, dtype=dtype).uniform_(*span, generator=g)
    expected = torch.empty(2, 30, 1, dtype=dtype).uniform_(*span, generator=g)
    q2, k2 = detail_keys(q, k, levels, expected, torch.tensor(weight, dtype=dtype))
    assert q2.shape == k2.shape == (2, 30, 19) and q2.dtype == dtype
    want = q @ k.transpose(1, 2) - weight * (expected - levels.transpose(1, 2)) ** 2
    torch.testing.assert_close(q2 @ k2.transpose(1, 2), want, rtol=0, atol=1e-5)
    assert float((want.min() + 1.0)) > -weight * DETAIL_LEVEL_SPAN ** 2 - 1e-6


def test_the_largest_weight_keeps_every_option_above_no_option():
    assert -1.0 - COPY_DETAIL_WEIGHT_MAX * DETAIL_LEVEL_SPAN ** 2 > NO_OPTION


def test_detail_weight_prefers_the_key_of_the_expected_level():
    """Key 1 is a little less similar than the rest but has the detail level the hole's surroundings predict:
    similarity alone ranks it below them, the detail term first."""
    n, dim = 12, 8
    q = F.normalize(torch.ones(1, n, dim), dim=-1)
    k = F.normalize(torch.ones(1, n, dim) + 0.05 * torch.arange(dim), dim=-1)
    k[0, 1] = F.normalize(torch.ones(dim) + 0.3 * torch.arange(dim), dim=0)
    hole = torch.zeros(1, n, dtype=torch.bool)
    hole[0, 0] = True
    levels = torch.full((1, n, 1), math.log(DETAIL_MIN))       # every key flat ...
    levels[0, 1] = math.log(0.1)                               # ... but key 1, textured
    expected = torch.full((1, n, 1), math.log(0.1))           # so are the hole's surroundings
    no_colour = torch.zeros(1, n, 3)
    first = {}
    for weight in (0.0, 0.06):
        qd, kd = (q, k) if weight == 0.0 else detail_keys(q, k, levels, expected, torch.tensor(weight))
        first[weight] = int(copy_candidates(qd, kd, no_colour, no_colour, hole, ~hole, n, 0.0, compact=True)[0, 0, 0])
    assert first[0.0] != 1 and first[0.06] == 1


def test_a_weight_per_image_equals_each_image_alone():
    g = torch.Generator().manual_seed(2)
    q = F.normalize(torch.randn(2, 20, 8, generator=g), dim=-1)
    k = F.normalize(torch.randn(2, 20, 8, generator=g), dim=-1)
    levels = torch.rand(2, 20, 1, generator=g) * -4.0
    expected = torch.rand(2, 20, 1, generator=g) * -4.0
    weights = torch.tensor([0.0, 0.06]).reshape(2, 1, 1)
    qb, kb = detail_keys(q, k, levels, expected, weights)
    for b in range(2):
        qa, ka = detail_keys(q[b:b + 1], k[b:b + 1], levels[b:b + 1], expected[b:b + 1], weights[b, 0, 0])
        torch.testing.assert_close(qb[b:b + 1] @ kb[b:b + 1].transpose(1, 2), qa @ ka.transpose(1, 2),
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("min_spread", [0.0, 0.2, 0.9])
def test_detail_weight_applies_to_images_whose_hole_is_spread(min_spread):
    """copy_keys with copy_detail_min_spread: image 0 holds one compact hole (spread under 0.2), image 1 strokes
    over the whole grid (spread above 0.2, under 0.9); an image under the bound keeps its similarities, one at or
    above it loses the detail term."""
    grid_h, grid_w, patch = 8, 8, 8
    cfg = ModelConfig(lr_texture="copy", copy_detail_weight=0.06, copy_detail_min_spread=min_spread)
    pm = NeuralPatchMatch(cfg, feature_channels=4)
    g = torch.Generator().manual_seed(3)
    amplitude = torch.rand(2, 1, grid_h, grid_w, generator=g) ** 3 * 0.3    # tokens from flat to busy
    composite = 0.5 + amplitude.repeat_interleave(patch, 2).repeat_interleave(patch, 3) * torch.randn(
        2, 3, grid_h * patch, grid_w * patch, generator=g)
    query_masked = torch.zeros(2, grid_h, grid_w, dtype=torch.bool)
    query_masked[0, 3:5, 3:5] = True
    query_masked[1, :, 1::4] = True
    query_masked = query_masked.reshape(2, -1)
    inside = torch.ones_like(query_masked)
    key_ok = ~query_masked
    spread = hole_spread(query_masked, key_ok, grid_w)[:, 0]
    assert spread[0] < 0.2 < spread[1] < 0.9
    q = F.normalize(torch.randn(2, grid_h * grid_w, 16, generator=g), dim=-1)
    k = F.normalize(torch.randn(2, grid_h * grid_w, 16, generator=g), dim=-1)
    qd, kd = pm.copy_keys(composite, q, k, key_ok, query_masked, inside)
    plain = q @ k.transpose(1, 2)
    got = qd @ kd.transpose(1, 2)
    for b in range(2):
        weighted = bool(spread[b] >= min_spread)
        assert torch.allclose(got[b], plain[b], atol=1e-5) != weighted, (b, float(spread[b]))
