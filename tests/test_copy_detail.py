"""Copy sources ranked by detail level: `detail_levels` on flat and textured tokens, `detail_keys`' extra
dimensions against the term they stand for, and the term's effect on the choice."""
import math

import pytest
import torch
import torch.nn.functional as F

from rethined_engine.config import COPY_DETAIL_WEIGHT_MAX
from rethined_engine.model.patchmatch import (DETAIL_LEVEL_SPAN, DETAIL_MAX, DETAIL_MIN, NO_OPTION, copy_candidates,
                                              detail_keys, detail_levels)


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
    q2, k2 = detail_keys(q, k, levels, expected, weight)
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
        qd, kd = (q, k) if weight == 0.0 else detail_keys(q, k, levels, expected, weight)
        first[weight] = int(copy_candidates(qd, kd, no_colour, no_colour, hole, ~hole, n, 0.0, compact=True)[0, 0, 0])
    assert first[0.0] != 1 and first[0.06] == 1
