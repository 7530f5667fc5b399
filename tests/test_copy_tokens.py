"""`copy_tokens` (hard LR copies, feathered) against a per-token loop that pastes each copy window."""
import pytest
import torch

from rethined_engine.model.patchmatch import COPY_FLOOR, copy_tokens, feather_weight


def reference_copy(image, known, source, patch, feather):
    """Loop over tokens: paste the source window (token + feather px) at the token, weight by the feather
    ramps and the source pixel's known-ness; normalise."""
    batch, channels, height, width = image.shape
    grid_w = width // patch
    total = torch.zeros(batch, channels, height, width, dtype=torch.float64)
    weight_sum = torch.zeros(batch, 1, height, width, dtype=torch.float64)
    ramp = feather_weight(torch.arange(-feather, patch + feather, dtype=torch.float64), patch, feather)
    for b in range(batch):
        for t in range(source.shape[1]):
            ty, tx = divmod(t, grid_w)
            sy, sx = divmod(int(source[b, t]), grid_w)
            for i in range(-feather, patch + feather):
                for j in range(-feather, patch + feather):
                    y, x = ty * patch + i, tx * patch + j
                    if not (0 <= y < height and 0 <= x < width):
                        continue
                    yy = min(max(sy * patch + i, 0), height - 1)
                    xx = min(max(sx * patch + j, 0), width - 1)
                    w = ramp[i + feather] * ramp[j + feather] * (float(known[b, 0, yy, xx]) + COPY_FLOOR)
                    total[b, :, y, x] += w * image[b, :, yy, xx].double()
                    weight_sum[b, 0, y, x] += w
    return (total / weight_sum).float()


@pytest.mark.parametrize("grid,patch,feather", [((3, 4), 8, 0), ((3, 4), 8, 2), ((2, 3), 8, 4), ((4, 3), 4, 1)])
def test_copy_tokens_matches_the_pasting_loop(grid, patch, feather):
    g = torch.Generator().manual_seed(sum(grid) + patch + feather)
    gh, gw = grid
    image = torch.rand(2, 3, gh * patch, gw * patch, generator=g)
    known = (torch.rand(2, 1, gh * patch, gw * patch, generator=g) > 0.3).float()
    source = torch.randint(0, gh * gw, (2, gh * gw), generator=g)
    out = copy_tokens(image, known, source, patch, feather)
    torch.testing.assert_close(out, reference_copy(image, known, source, patch, feather), atol=1e-5, rtol=1e-5)


def test_own_sources_reproduce_the_image_and_feather_0_is_an_exact_copy():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 16, 24, generator=g)
    known = torch.ones(1, 1, 16, 24)
    own = torch.arange(6)[None]
    torch.testing.assert_close(copy_tokens(image, known, own, 8, 2), image)
    source = own.clone()
    source[0, 4] = 0                                   # token (1, 1) copies token (0, 0) exactly
    out = copy_tokens(image, known, source, 8, 0)
    assert torch.equal(out[..., 8:16, 8:16], image[..., 0:8, 0:8])


def test_feather_is_a_partition_of_unity_across_a_shared_edge():
    x = torch.arange(-8, 16, dtype=torch.float64)
    for feather in (1, 2, 3, 4):
        left, right = feather_weight(x, 8, feather), feather_weight(x - 8, 8, feather)
        span = (x >= 8 - feather) & (x < 8 + feather)
        torch.testing.assert_close(left[span] + right[span], torch.ones(int(span.sum()), dtype=torch.float64))


def test_feather_wider_than_half_a_token_is_refused():
    with pytest.raises(ValueError, match="feather"):
        copy_tokens(torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8), torch.zeros(1, 1, dtype=torch.long), 8, 5)
