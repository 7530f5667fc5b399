"""`copy_tokens` (hard LR copies, feathered) against a per-token loop that pastes each copy window."""
import pytest
import torch

from rethined_engine.model.patchmatch import COPY_FLOOR, blur_base, border_match, copy_tokens, feather_weight


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


@pytest.mark.parametrize("grid,patch,feather,base_feather,sigma", [((3, 4), 8, 2, 4, 2.0), ((2, 3), 8, 1, 3, 1.5),
                                                                   ((4, 3), 4, 1, 2, 1.0)])
def test_two_bands_are_the_mean_blended_base_plus_the_contrast_kept_detail(grid, patch, feather, base_feather, sigma):
    g = torch.Generator().manual_seed(patch + feather + base_feather)
    gh, gw = grid
    image = torch.rand(2, 3, gh * patch, gw * patch, generator=g)
    known = (torch.rand(2, 1, gh * patch, gw * patch, generator=g) > 0.3).float()
    source = torch.randint(0, gh * gw, (2, gh * gw), generator=g)
    out = copy_tokens(image, known, source, patch, feather, base_feather=base_feather, base_sigma=sigma)
    base = blur_base(image, sigma)
    expected = (reference_copy(base, known, source, patch, base_feather)
                + copy_tokens(image - base, known, source, patch, feather, keep_contrast=True))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_blur_base_keeps_a_flat_image_flat_up_to_its_border():
    flat = torch.full((1, 3, 16, 24), 0.3)
    torch.testing.assert_close(blur_base(flat, 2.0), flat)


def test_two_bands_turn_a_brightness_step_between_flat_copies_into_a_ramp():
    """Flat areas of brightness 0.4 and 0.6 (tokens 0-2 and 3-5) copied side by side (tokens 6 and 7 copy 1 and
    4): the wide base fade spreads their step over more pixels than the one-band feather does."""
    levels = [0.4, 0.4, 0.4, 0.6, 0.6, 0.6, 0.5, 0.5]
    image = torch.cat([torch.full((1, 3, 8, 8), v) for v in levels], dim=-1)
    known = torch.ones(1, 1, 8, 64)
    source = torch.tensor([[0, 1, 2, 3, 4, 5, 1, 4]])
    one = copy_tokens(image, known, source, 8, 1)
    two = copy_tokens(image, known, source, 8, 1, base_feather=4, base_sigma=2.0)
    def largest_step(x):
        return (x[0, 0, 4, 49:63] - x[0, 0, 4, 48:62]).abs().max()
    assert largest_step(two) < 0.7 * largest_step(one)
    torch.testing.assert_close(two[..., :40], image[..., :40])        # tokens that keep themselves, off the fade


def test_two_band_settings_out_of_range_are_refused():
    args = (torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8), torch.zeros(1, 1, dtype=torch.long), 8, 2)
    with pytest.raises(ValueError, match="base_feather"):
        copy_tokens(*args, base_feather=5)
    with pytest.raises(ValueError, match="base_sigma"):
        copy_tokens(*args, base_feather=2, base_sigma=0.0)


def _hole(h, w, box):
    mask = torch.zeros(1, 1, h, w)
    y0, y1, x0, x1 = box
    mask[..., y0:y1, x0:x1] = 1.0
    return mask


def test_border_match_removes_a_brightness_offset_and_keeps_the_fill_texture():
    g = torch.Generator().manual_seed(4)
    truth = 0.5 + 0.05 * torch.randn(1, 3, 64, 96, generator=g)
    mask = _hole(64, 96, (16, 48, 24, 72))
    filled = torch.where(mask > 0, truth + 0.15, truth)            # the right texture, 0.15 too bright
    out = border_match(truth, mask, filled, 2.0)
    hole = mask.expand_as(out) > 0
    assert (out - truth)[hole].abs().mean() < 0.02 < 0.15
    assert torch.equal(out[~hole], filled[~hole])                  # known pixels untouched
    def texture(x):
        return x - blur_base(x, 2.0)
    inner = _hole(64, 96, (22, 42, 30, 66)).expand_as(out) > 0     # off the border ring
    torch.testing.assert_close(texture(out)[inner], texture(filled)[inner], atol=0.01, rtol=0)


def test_border_match_without_a_hole_or_mismatch_changes_nothing():
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(border_match(image, torch.zeros(1, 1, 32, 32), image, 2.0), image)
    flat = torch.full((1, 3, 32, 32), 0.3)
    torch.testing.assert_close(border_match(flat, _hole(32, 32, (8, 24, 8, 24)), flat, 2.0), flat)


def test_reflect_unknown_reads_the_source_mirrored():
    """One row of five 4-px tokens, holes at tokens 2 and 3 (their pixels 0 here, as the HR texture's are):
    token 2 copies token 0, token 3 copies token 4. Within the fade left of their shared edge, token 3's copy
    read past its source's left edge lands in the hole (token 3 itself): plain, token 2's copy alone reaches
    those pixels (up to COPY_FLOOR); with reflect_unknown, token 4's own pixels mirrored about its left edge."""
    patch, feather = 4, 2
    values = torch.arange(20, dtype=torch.float32).reshape(1, 1, 1, 20).expand(1, 3, 4, 20).clone()
    known = torch.ones(1, 1, 4, 20)
    known[..., 8:16] = 0.0
    values = values * known
    source = torch.tensor([[0, 1, 0, 4, 4]])
    plain = copy_tokens(values, known, source, patch, feather)
    mirrored = copy_tokens(values, known, source, patch, feather, reflect_unknown=True)
    for x, mirror_x in ((10, 17), (11, 16)):
        local = torch.tensor(float(x % patch))
        own, other = feather_weight(local, patch, feather), feather_weight(local - patch, patch, feather)
        own_value = float(values[0, 0, 0, x - 8])
        expected = (own * own_value + other * float(values[0, 0, 0, mirror_x])) / (own + other)
        assert float(mirrored[0, 0, 1, x]) == pytest.approx(float(expected), rel=1e-6)
        assert float(plain[0, 0, 1, x]) == pytest.approx(own_value, rel=1e-3)
    assert torch.equal(mirrored[..., :8], plain[..., :8])       # reads that find known pixels are unchanged
