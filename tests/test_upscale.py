"""Geometry, resampling and the HR attention-upscaling stage."""
import numpy as np
import pytest
import torch

from rethined_engine import ModelConfig
from rethined_engine.geometry import gaussian_taps, pad_to, plan
from rethined_engine.deploy import host
from rethined_engine.model.patchmatch import patchify
from rethined_engine.model.upscale import HF_GAIN_FLOOR, attention_upscale, downsample, fine_band, hf_band_gains, hf_gain

from conftest import make_model

CFG = ModelConfig()


@pytest.mark.parametrize("h,w", [(1, 1), (37, 53), (333, 1000), (512, 512), (513, 200), (1030, 2050),
                                 (2160, 3840), (8192, 8192)])
def test_plan_covers_image(h, w):
    g = plan(h, w, CFG)
    ph, pw = g.padded_size
    assert ph >= h and pw >= w
    assert g.lr_size[0] % 32 == 0 and g.lr_size[1] % 32 == 0
    assert max(g.lr_size) <= max(CFG.lr_long_side, 32)
    assert g.scale == max(1, -(-max(h, w) // CFG.lr_long_side))
    # padding is less than one CNN multiple in HR pixels
    assert ph - h < g.scale * 32 and pw - w < g.scale * 32


def test_key_inside_excludes_padding():
    g = plan(100, 70, CFG)  # s=1, grid 16x12 (LR 128x96)
    inside = g.key_inside().reshape(g.grid_h, g.grid_w)
    assert inside[:12, :8].all() and not inside[12:].any() and not inside[:, 8:].any()


def test_pad_to_small_image_replicates():
    x = torch.rand(1, 3, 5, 4)
    y = pad_to(x, (32, 32))
    assert y.shape == (1, 3, 32, 32) and torch.equal(y[..., :5, :4], x)


def test_gaussian_taps_normalised_and_symmetric():
    for s in (2, 3, 4, 8):
        taps, r = gaussian_taps(s)
        assert len(taps) == s + 2 * r
        np.testing.assert_allclose(taps.sum(), 1.0)
        np.testing.assert_allclose(taps, taps[::-1])


def test_downsample_ignores_hole_values():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 96)
    mask = torch.zeros(1, 1, 64, 96)
    mask[..., 10:30, 20:50] = 1
    lr1, m1 = downsample(image * (1 - mask), mask, 4)
    lr2, m2 = downsample(torch.where(mask > 0, torch.ones_like(image), image), mask, 4)
    known = m1.expand_as(lr1) == 0
    assert torch.equal(m1, m2) and lr1.shape == (1, 3, 16, 24)
    torch.testing.assert_close(lr1[known], lr2[known])
    # a constant image stays constant
    lr, _ = downsample(torch.full((1, 3, 32, 32), 0.25), torch.zeros(1, 1, 32, 32), 4)
    torch.testing.assert_close(lr, torch.full_like(lr, 0.25))


@pytest.mark.parametrize("topk", [0, 1, 3])
def test_upscale_at_scale_one_equals_lr(topk):
    model = make_model(seed=3)
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 96)
    mask = (torch.rand(1, 1, 64, 96) < 0.05).float()
    with torch.no_grad():
        out = model.forward_lr(image * (1 - mask), mask, torch.ones(1, 96, dtype=torch.bool))
        hr = attention_upscale(image * (1 - mask), mask, out.result, out.attn, out.query_masked, out.key_ok,
                               scale=1, patch=8, topk=topk)
    torch.testing.assert_close(hr, out.result, rtol=0, atol=1e-6)


def test_upscale_copies_hf_of_selected_key():
    """One masked token, one key: the hole becomes up(LR) + HF of that key's HR patch."""
    s, p = 2, 8
    torch.manual_seed(0)
    image = torch.rand(1, 3, 16, 32)   # grid 1x2 at HR patch 16
    mask = torch.zeros(1, 1, 16, 32)
    mask[..., :, 16:] = 1              # token 1 is the hole
    lr = torch.rand(1, 3, 8, 16)
    attn = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    query_masked = torch.tensor([[False, True]])
    key_ok = torch.tensor([[True, False]])
    hr = attention_upscale(image, mask, lr, attn, query_masked, key_ok, s, p, topk=1)
    up = torch.nn.functional.interpolate(lr, scale_factor=2.0, mode="bilinear", align_corners=False)
    expected = (up[..., 16:] + (image[..., :16] - up[..., :16])).clamp(0, 1)
    torch.testing.assert_close(hr[..., 16:], expected)
    assert torch.equal(hr[..., :16], image[..., :16])
    no_hf = attention_upscale(image, mask, lr, attn, query_masked, key_ok, s, p, hf_transfer=False)
    torch.testing.assert_close(no_hf[..., 16:], up[..., 16:].clamp(0, 1))


def chebyshev_distance_to_known(known: np.ndarray) -> np.ndarray:
    """Brute force: for every cell of a (gh, gw) bool grid, the Chebyshev distance to the nearest True."""
    ys, xs = np.nonzero(known)
    gy, gx = np.mgrid[:known.shape[0], :known.shape[1]]
    if len(ys) == 0:
        return np.full(known.shape, np.inf)
    return np.maximum(np.abs(gy[..., None] - ys), np.abs(gx[..., None] - xs)).min(axis=-1)


@pytest.mark.parametrize("decay", [0.7, 2.0])
@pytest.mark.parametrize("grid", [(5, 7), (13, 31), (40, 24)])
def test_hf_gain_matches_brute_force_distance(decay, grid):
    rng = np.random.default_rng(grid[0])
    known = rng.random((2, *grid)) < 0.15
    known[1] = False
    known[1, 0, 0] = True                                     # one known corner: distances up to the cap
    gain = hf_gain(torch.from_numpy(known)[:, None], decay).reshape(2, *grid).numpy()
    cap = 1 + np.ceil(decay * np.log(1 / HF_GAIN_FLOOR))
    for b in range(2):
        d = np.minimum(chebyshev_distance_to_known(known[b]), cap)
        want = np.where(known[b], 1.0, np.exp(-(d - 1) / decay))
        np.testing.assert_allclose(gain[b], want, rtol=1e-6)
    assert gain.max() == 1.0


def test_hf_gain_without_decay_or_known_tokens():
    known = torch.zeros(1, 1, 4, 6, dtype=torch.bool)
    assert torch.equal(hf_gain(known, 0.0), torch.ones(1, 24))
    assert (hf_gain(known, 1.5) <= HF_GAIN_FLOOR).all()         # nothing known: every token as far as counted


def test_upscale_fades_hf_with_distance_from_known():
    """Grid 1x3, token 0 known, tokens 1 and 2 holes copying token 0: token 2 gets exp(-1 / decay) of the HF."""
    s, p, decay = 2, 8, 1.5
    torch.manual_seed(1)
    image = torch.rand(1, 3, 16, 48)
    mask = torch.zeros(1, 1, 16, 48)
    mask[..., 16:] = 1
    lr = torch.rand(1, 3, 8, 24)
    attn = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    query_masked = torch.tensor([[False, True, True]])
    key_ok = ~query_masked
    hr = attention_upscale(image, mask, lr, attn, query_masked, key_ok, s, p, topk=1, hf_decay=decay)
    up = torch.nn.functional.interpolate(lr, scale_factor=2.0, mode="bilinear", align_corners=False)
    hf = image[..., :16] - up[..., :16]
    torch.testing.assert_close(hr[..., 16:32], (up[..., 16:32] + hf).clamp(0, 1))
    torch.testing.assert_close(hr[..., 32:], (up[..., 32:] + np.exp(-1 / decay) * hf).clamp(0, 1))


@pytest.mark.parametrize("span", [2, 5, 16])
def test_fine_band_matches_host_and_keeps_to_the_token(span):
    rng = np.random.default_rng(span)
    tokens = rng.random((7, span, span, 3)).astype(np.float32)                   # host layout (N, span, span, 3)
    torch_tokens = torch.from_numpy(tokens).permute(0, 3, 1, 2).reshape(7, -1)   # channel-major, as patchify
    got = fine_band(torch_tokens, span).reshape(7, 3, span, span).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, host.fine_band(tokens), atol=1e-6)
    flat = np.full((1, span, span, 3), 0.4, np.float32)                           # a flat token has no fine band,
    np.testing.assert_allclose(host.fine_band(flat), 0.0, atol=1e-7)              # even at its edges (replicated)
    image = torch.rand(1, 3, 2 * span, 2 * span)                                  # tokens never see their neighbours
    alone = fine_band(patchify(image, span), span)
    image[..., span:, :] = 0.0
    torch.testing.assert_close(fine_band(patchify(image, span), span)[:, :2], alone[:, :2])


def test_band_gains():
    known = torch.zeros(1, 1, 1, 4, dtype=torch.bool)
    known[..., 0] = True                                           # distances 0, 1, 2, 3
    gain, extra = hf_band_gains(known, 1.0, None)
    assert torch.equal(gain, hf_gain(known, 1.0)) and torch.equal(extra, torch.zeros_like(gain))
    gain, extra = hf_band_gains(known, 1.0, 0.0)                   # the finest band is never faded
    torch.testing.assert_close(gain + extra, torch.ones_like(gain))
    mid, fine = hf_band_gains(known, 1.0, 0.0, mid_gain=0.25)      # the band below it scaled, the finest kept
    torch.testing.assert_close(mid, 0.25 * gain)
    torch.testing.assert_close(mid + fine, torch.ones_like(gain))
    one_band = hf_band_gains(known, 1.0, None, mid_gain=0.5)         # one band: nothing to scale apart
    assert all(torch.equal(a, b) for a, b in zip(one_band, hf_band_gains(known, 1.0, None)))


def test_upscale_fades_each_band_with_its_own_decay():
    """Grid 1x3 as above; token 2 (distance 2) gets exp(-1 / decay) of the HF below the finest band and
    exp(-1 / fine_decay) of the finest band; equal decays give the one-band result."""
    s, p, decay, fine_decay = 2, 8, 1.0, 4.0
    torch.manual_seed(2)
    image = torch.rand(1, 3, 16, 48)
    mask = torch.zeros(1, 1, 16, 48)
    mask[..., 16:] = 1
    lr = torch.rand(1, 3, 8, 24) * 0.2 + 0.4
    attn = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    query_masked = torch.tensor([[False, True, True]])
    key_ok = ~query_masked
    args = (image, mask, lr, attn, query_masked, key_ok, s, p)
    hr = attention_upscale(*args, topk=1, hf_decay=decay, hf_fine_decay=fine_decay)
    up = torch.nn.functional.interpolate(lr, scale_factor=2.0, mode="bilinear", align_corners=False)
    hf = image[..., :16] - up[..., :16]
    fine = fine_band(patchify(image[..., :16], 16), 16).reshape(1, 3, 16, 16)
    g, f = np.exp(-1 / decay), np.exp(-1 / fine_decay)
    torch.testing.assert_close(hr[..., 16:32], (up[..., 16:32] + hf).clamp(0, 1))
    torch.testing.assert_close(hr[..., 32:], (up[..., 32:] + g * (hf - fine) + f * fine).clamp(0, 1))
    fine_only = attention_upscale(*args, topk=1, hf_decay=decay, hf_fine_decay=fine_decay, hf_mid_gain=0.0)
    torch.testing.assert_close(fine_only[..., 16:32], (up[..., 16:32] + fine).clamp(0, 1))
    torch.testing.assert_close(fine_only[..., 32:], (up[..., 32:] + f * fine).clamp(0, 1))
    one_band = attention_upscale(*args, topk=1, hf_decay=decay)
    torch.testing.assert_close(attention_upscale(*args, topk=1, hf_decay=decay, hf_fine_decay=decay), one_band)
    dense = attention_upscale(*args, topk=0, hf_decay=decay, hf_fine_decay=fine_decay)
    torch.testing.assert_close(dense, hr)
