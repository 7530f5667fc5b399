"""Resampling between HR and LR, and attention upscaling of the LR result to HR.

HR stage (integer scale s): each LR token is an (sP) x (sP) HR patch. With up = bilinear(x_LR),
HF_j = y_j - up_j on known tokens (hole-free by construction, so no zero-filled blur enters), and a
masked token becomes up_i + sum_j A_ij (g_i HF_j + (f_i - g_i) fine_j), where fine_j = y_j - B(y_j) is
the source's finest band (B: 3x3 binomial blur inside the token, `fine_band`) and the gains g_i (whole
HF, scaled by `hf_mid_gain`) and f_i (finest band) fade the transferred texture with the token's distance
from known content (`hf_gain`, `hf_band_gains`). Known pixels are copied from the input.
"""
from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F

from .. import geometry
from ..geometry import gaussian_tap_list, pad_mode
from .patchmatch import TopKRows, _per_pixel, copy_tokens, patchify, unpatchify

_consts = sys.modules[__name__]  # TorchScript reads module-level numbers only as a module's attributes: _consts.NAME


def pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad (B, C, H, W) bottom/right to `size` (H', W') by `geometry.pad_mode`."""
    pad_h, pad_w = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, [0, pad_w, 0, pad_h], mode=pad_mode(x.shape[-2], x.shape[-1], size))


def _blur_down(x: torch.Tensor, taps: list[float], radius: int, scale: int) -> torch.Tensor:
    """Separable strided filtering of (B, C, H, W) -> (B, C, H/s, W/s), reflect-padded."""
    c = x.shape[1]
    x = F.pad(x, [radius, radius, radius, radius], mode="reflect")
    kh = torch.tensor(taps, dtype=x.dtype, device=x.device).reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(x, kh, stride=(scale, 1), groups=c)
    return F.conv2d(x, kh.reshape(c, 1, 1, -1), stride=(1, scale), groups=c)


def downsample(image: torch.Tensor, mask: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HR image (B, 3, H, W) in [0, 1] and hole mask (B, 1, H, W) float -> LR (B, 3, H/s, W/s), LR mask.

    Normalised convolution: only known HR pixels contribute, so holes never bleed into known LR pixels.
    An LR pixel is a hole if any of its s x s HR pixels is (max pooling).
    """
    if scale == 1:
        return image, mask
    taps, radius = gaussian_tap_list(scale)
    known = 1.0 - mask
    num = _blur_down(torch.cat([image * known, known], dim=1), taps, radius, scale)
    weight = num[:, 3:]
    lr = torch.where(weight > 0, num[:, :3] / weight.clamp_min(1e-12), torch.zeros_like(num[:, :3]))
    return lr, F.max_pool2d(mask, scale)


def upsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Bilinear x s (half-pixel centres, the inverse geometry of `downsample`)."""
    if scale == 1:
        return image
    return F.interpolate(image, scale_factor=float(scale), mode="bilinear", align_corners=False)


HF_GAIN_FLOOR = 0.01   # hf_gain counts distances only up to where the gain falls below this


def hf_gain(key_ok: torch.Tensor, decay: float) -> torch.Tensor:
    """Per-token gain of the transferred HF, (B, gh * gw) float32.

    key_ok: (B, 1, gh, gw) bool or {0, 1}, the known in-image tokens; decay: in tokens. A token at
    Chebyshev distance d >= 1 from the nearest known token gets exp(-(d - 1) / decay): full texture next to
    the hole's border, where the match continues what is visible, fading inside where it is a guess (and
    where texture uncorrelated with the truth costs more SSIM than it gives detail). d is counted up to
    where the gain falls below HF_GAIN_FLOOR. Known tokens get 1; decay 0 gives 1 everywhere.
    """
    reached = key_ok.float()
    if decay <= 0:
        return torch.ones_like(reached).flatten(1)
    steps = 1 + math.ceil(decay * math.log(1.0 / _consts.HF_GAIN_FLOOR))
    distance = torch.zeros_like(reached)
    for _ in range(steps):      # distance counts the dilations of the known tokens that miss a token
        distance = distance + (1.0 - reached)
        reached = F.max_pool2d(reached, 3, stride=1, padding=1)     # padding never counts as known
    return torch.exp((1.0 - distance).clamp_max(0.0) / decay).flatten(1)


def fine_band(tokens: torch.Tensor, span: int) -> torch.Tensor:
    """The finest band x - B(x) of HR tokens (..., C * span * span), channel-major as `patchify` makes them.

    B is the 3x3 binomial blur (FINE_TAPS x FINE_TAPS) with the token's edge pixels replicated, so only
    the token's own pixels enter: a hole-free source token stays hole-free.
    """
    planes = tokens.reshape(-1, 1, span, span)
    a, b, c = geometry.FINE_TAPS
    padded = F.pad(planes, (1, 1, 1, 1), mode="replicate")
    rows = a * padded[..., :-2] + b * padded[..., 1:-1] + c * padded[..., 2:]      # shifted adds: a 3-tap conv on
    blurred = a * rows[..., :-2, :] + b * rows[..., 1:-1, :] + c * rows[..., 2:, :]  # thousands of tiny planes is slow
    return (planes - blurred).reshape(tokens.shape)


def hf_band_gains(key_ok: torch.Tensor, decay: float, fine_decay: float | None,
                  mid_gain: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, f - g), each (B, gh * gw) float32: g = mid_gain * hf_gain(decay) scales a token's whole transferred
    HF, f - g what its finest band gets on top (f = hf_gain(fine_decay)), so that the band between the LR
    result's cut-off and the finest band gets g and the finest band f. fine_decay None: one band, f = g
    (mid_gain is ignored: there is no band to scale apart)."""
    gain = hf_gain(key_ok, decay)
    if fine_decay is None:
        return gain, torch.zeros_like(gain)
    gain = gain * mid_gain
    return gain, hf_gain(key_ok, fine_decay) - gain


def _mix_sources(image: torch.Tensor, hf: torch.Tensor, source_ok: torch.Tensor, batch: torch.Tensor,
                 weights: torch.Tensor, idx: torch.Tensor, hr_patch: int, two_bands: bool) -> torch.Tensor:
    """The weighted sum of each hole token's chosen sources' HF (M, D), and of their finest band after it
    with two_bands (M, 2 * D). image: padded HR (B, 3, ...); hf: (B, N, D) HF of the known tokens; source_ok:
    (B, N, 1); batch: (M,) image of each hole token; weights, idx: (M, k) its sources' weights and tokens."""
    values = hf[batch[:, None], idx]                        # (M, k, D): only the chosen sources
    if two_bands:   # their finest band too: (M, k, 2 * D)
        tokens = patchify(image, hr_patch)[batch[:, None], idx] * source_ok[batch[:, None], idx]
        values = torch.cat([values, fine_band(tokens, hr_patch)], dim=-1)
    return (weights[..., None].to(values.dtype) * values).sum(dim=1)


def attention_upscale(image: torch.Tensor, mask: torch.Tensor, lr_result: torch.Tensor,
                      attn: torch.Tensor | TopKRows,
                      query_masked: torch.Tensor, key_ok: torch.Tensor, scale: int, patch: int,
                      topk: int = 1, hf_transfer: bool = True, hf_decay: float = 0.0,
                      hf_fine_decay: float | None = None, hf_mid_gain: float = 1.0, feather: int = 0,
                      known: torch.Tensor | None = None, reflect: bool = False) -> torch.Tensor:
    """Carry the LR result to HR.

    image: padded HR (B, 3, gh*s*P, gw*s*P) in [0, 1]; mask: (B, 1, ...) float hole mask; lr_result:
    (B, 3, gh*P, gw*P); attn: (B, N, N) LR attention, or `TopKRows` (the sources each token mixes, as
    lr_texture="copy" makes them); query_masked, key_ok: (B, N) bool.
    topk: mix the k strongest keys per masked token (weights renormalised); 0 mixes the dense row.
    hf_decay, hf_fine_decay, hf_mid_gain: the decays of the whole HF and of its finest band, and the scale of
    the band between them (`hf_band_gains`).
    feather: LR px (`ModelConfig.hr_feather`); with copies (`TopKRows`, K = 1, one band) > 0, the texture of
    neighbouring copies cross-fades over 2 * feather * scale HR px (`feathered_texture`) instead of each
    token's source texture being pasted whole; known (B, N) bool: the tokens whose own texture a copy fades
    into (hole-free and inside the image; None: key_ok); reflect: `feathered_texture`'s.
    Returns the HR result (B, 3, ...) with known pixels equal to `image`.
    """
    grid_h, grid_w = lr_result.shape[-2] // patch, lr_result.shape[-1] // patch
    hr_patch = scale * patch
    up = upsample(lr_result, scale)
    if hf_transfer:
        # HF of known tokens only: hole tokens (and the garbage y - up inside holes) are never sources.
        hole = query_masked.nonzero()
        batch, token = hole[:, 0], hole[:, 1]
        gain, fine_gain = hf_band_gains(key_ok.reshape(-1, 1, grid_h, grid_w), hf_decay, hf_fine_decay, hf_mid_gain)
        gain, fine_gain = gain[batch, token][:, None].to(up.dtype), fine_gain[batch, token][:, None].to(up.dtype)
        two_bands = hf_fine_decay is not None
        if feather > 0 and isinstance(attn, TopKRows) and not two_bands:
            texture = feathered_texture(image - up, key_ok if known is None else known, attn, gain, batch, token,
                                        patch, scale, feather, reflect)
            return torch.where(mask > 0, (up + texture).clamp(0.0, 1.0), image)
        source_ok = key_ok[..., None].to(up.dtype)
        hf = patchify(image - up, hr_patch) * source_ok
        out = patchify(up, hr_patch)
        if isinstance(attn, TopKRows):      # sparse rows (lr_texture="copy"): their K entries are the choice
            kept = attn.index.shape[-1] if topk == 0 else min(topk, attn.index.shape[-1])
            weights, idx = attn.weight[batch, token, :kept], attn.index[batch, token, :kept]
            weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
            mixed = _mix_sources(image, hf, source_ok, batch, weights, idx, hr_patch, two_bands)
        else:
            rows = attn[batch, token]                               # (M, N) rows of masked tokens
            if topk > 0:
                weights, idx = rows.topk(min(topk, rows.shape[-1]), dim=-1)
                weights = weights / weights.sum(dim=-1, keepdim=True)
                mixed = _mix_sources(image, hf, source_ok, batch, weights, idx, hr_patch, two_bands)
            else:
                values = hf
                if two_bands:   # mix both bands of the sources at once: (N, 2 * D)
                    values = torch.cat([hf, fine_band(patchify(image, hr_patch), hr_patch) * source_ok], dim=-1)
                mixed = torch.empty(rows.shape[0], values.shape[-1], dtype=values.dtype, device=values.device)
                for b in range(values.shape[0]):
                    sel = batch == b
                    mixed[sel] = rows[sel].to(values.dtype) @ values[b]
        dim = hf.shape[-1]
        transferred = gain * mixed[:, :dim]
        if two_bands:
            transferred = transferred + fine_gain * mixed[:, dim:]
        out[batch, token] += transferred
        up = unpatchify(out, hr_patch, grid_h, grid_w)
    return torch.where(mask > 0, up.clamp(0.0, 1.0), image)


def feathered_texture(hf: torch.Tensor, key_ok: torch.Tensor, attn: TopKRows, gain: torch.Tensor,
                      batch: torch.Tensor, token: torch.Tensor, patch: int, scale: int, feather: int,
                      reflect: bool = False) -> torch.Tensor:
    """The copied texture of `attention_upscale`'s copies, cross-faded between neighbouring tokens.

    hf: (B, 3, gh*s*P, gw*s*P) padded HR image minus the upsampled LR result; key_ok: (B, N) bool; attn:
    `TopKRows` with K = 1 (the source of each hole token that copies, weight 1); gain: (M, 1) the texture gain of
    the hole tokens (batch, token) (M,) each. Every token's source texture is the known tokens' hf moved by
    its copy's offset, feathered over feather * scale HR px across token edges (`copy_tokens` at HR with the
    LR copies' fade weights, normalised to keep the textures' contrast): where two copies from different
    places meet, the texture blends instead of stepping, and stays as strong in the middle of the fade. reflect
    (`ModelConfig.hr_fade_reflect`): past a source's edge where a hole lies, the source's own texture, mirrored
    (`copy_tokens(reflect_unknown=True)`). Returns (B, 3, ...) texture, gain times it on hole tokens that copy, 0 elsewhere."""
    batch_size, n = key_ok.shape
    grid_h = hf.shape[-2] // (scale * patch)
    grid_w = n // grid_h
    hr_patch = scale * patch
    source = torch.arange(n, device=hf.device)[None].expand(batch_size, -1).clone()
    copies = attn.weight[batch, token, 0] > 0
    source[batch, token] = torch.where(copies, attn.index[batch, token, 0], token)
    known_px = _per_pixel(key_ok.to(hf.dtype).reshape(batch_size, 1, grid_h, grid_w), hr_patch)
    texture = copy_tokens(hf * known_px, known_px, source, hr_patch, feather * scale, keep_contrast=True,
                          reflect_unknown=reflect)
    token_gain = torch.zeros(batch_size, n, dtype=hf.dtype, device=hf.device)
    token_gain[batch, token] = gain[:, 0].to(hf.dtype) * copies.to(hf.dtype)
    return texture * _per_pixel(token_gain.reshape(batch_size, 1, grid_h, grid_w), hr_patch)


def _gaussian_along(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """The 1-D filter `taps` (odd length, centred) along dim of x, zero outside: 2r + 1 shifted in-place adds
    (a third of the time and none of the padded copies of a depthwise conv2d on the CPU)."""
    radius, n = (taps.numel() - 1) // 2, x.shape[dim]
    out = torch.zeros_like(x)
    weights: list[float] = taps.tolist()
    for t, g in enumerate(weights):
        shift = t - radius
        if abs(shift) >= n:
            continue
        if shift >= 0:
            out.narrow(dim, 0, n - shift).add_(x.narrow(dim, shift, n - shift), alpha=g)
        else:
            out.narrow(dim, -shift, n + shift).add_(x.narrow(dim, 0, n + shift), alpha=g)
    return out


def blend_seams(image: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, taps: torch.Tensor,
                gain: float) -> torch.Tensor:
    """Soften the step where the fill meets the known pixels (`ModelConfig.seam_sigma`, `seam_gain`).

    image, filled: (B, 3, H, W) uint8 or float in [0, 1] (filled: the inpainted result, known pixels equal to
    image); mask: (B, 1, H, W) bool, True = hole; taps: `seam_taps(sigma)` as a float32 tensor on image's
    device. With G the separable Gaussian of those taps (zero outside the image), D = G * known and
    N = G * (known x image), a hole pixel becomes N / D where gain D >= 1, else gain N + (1 - gain D) filled,
    in the image's units (uint8: rounded half to even). Hole pixels farther than the taps' radius from every
    known pixel (D = 0) and known pixels are returned unchanged. Same dtype as image.
    """
    known = (~mask).float()
    stack = torch.cat([image.float() * known, known], dim=1)
    stack = _gaussian_along(_gaussian_along(stack, taps, 2), taps, 3)
    num, den = stack[:, :3], stack[:, 3:]
    fill = filled.float()
    saturated = gain * den >= 1.0
    blended = torch.where(saturated, num / torch.where(saturated, den, torch.ones_like(den)),
                          gain * num + (1.0 - gain * den) * fill)
    if image.dtype == torch.uint8:
        blended = blended.round().clamp(0, 255).to(torch.uint8)
    else:
        blended = blended.clamp(0.0, 1.0).to(image.dtype)
    return torch.where(mask & (den > 0), blended, filled)
