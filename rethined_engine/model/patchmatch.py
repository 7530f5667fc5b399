"""NeuralPatchMatch: token attention from masked patches to known patches, at LR.

Shapes: an LR image (B, C, h, w) with h = gh * P and w = gw * P splits into N = gh * gw non-overlapping
P x P tokens (row-major over the grid) of C * P * P values, channel-major (c, dy, dx) as
`pixel_unshuffle` orders them.
"""

import math
import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..geometry import gaussian_kernel_list
from .layout import cat_channels

PIXEL_CENTER = 0.5  # tokens are centred before projection so that cosine similarity sees contrast, not brightness
NORM_EPS = 1e-6     # floor of |q|, |k| before normalising; 1e-12 (torch's default) is 0 in fp16
_consts = sys.modules[__name__]  # TorchScript reads module-level numbers only as a module's attributes: _consts.NAME


def patchify(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, gh*P, gw*P) -> tokens (B, N, C*P*P)."""
    return F.pixel_unshuffle(image, patch).flatten(2).transpose(1, 2)


def unpatchify(tokens: torch.Tensor, patch: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """tokens (B, N, C*P*P) -> (B, C, gh*P, gw*P); inverse of `patchify`."""
    b, n, d = tokens.shape
    return F.pixel_shuffle(tokens.transpose(1, 2).reshape(b, d, grid_h, grid_w), patch)


def token_mask(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 1, h, w) hole mask -> (B, N) bool: True where any pixel of the token is a hole."""
    return F.max_pool2d(mask.float(), patch).flatten(1) > 0


def masked_attention(q: torch.Tensor, k: torch.Tensor, query_masked: torch.Tensor,
                     key_ok: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Attention weights A (B, N, N), fp32, rows summing to 1.

    q, k: (B, N, d) unit vectors; query_masked: (B, N) bool (hole tokens); key_ok: (B, N) bool (known
    tokens allowed as sources). A masked token attends to allowed keys only (never itself, never another
    hole, never padding); a row with no allowed key (every known token, or a hole when the image has no
    allowed key) keeps itself: A_ii = 1. Disallowed logits are -inf before the softmax, so their weights
    are exactly 0.
    """
    logits = torch.bmm(q.float(), k.float().transpose(1, 2)) * logit_scale.float()
    allowed = query_masked[:, :, None] & key_ok[:, None, :]
    keeps_self = ~allowed.any(dim=-1)
    token = torch.arange(q.shape[1], device=q.device)
    diagonal = token[:, None] == token[None, :]      # not torch.eye: exports to Range + Equal, not EyeLike
    allowed = allowed | (diagonal[None] & keeps_self[:, :, None])
    return torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)


class TopKRows(NamedTuple):
    """The K largest entries of each attention row, renormalised to sum 1 (B, N, K) fp32, and their key
    indices (B, N, K) int64. Zero weight (index: the row's own token) on known rows, on rows without an
    allowed key and past the number of allowed keys."""

    weight: torch.Tensor
    index: torch.Tensor


def pad_rows(rows: TopKRows, topk: int) -> TopKRows:
    """`rows` with exactly `topk` entries: cut, or padded with zero weights on the row's own token."""
    kept = rows.index.shape[-1]
    if kept >= topk:
        return TopKRows(rows.weight[..., :topk], rows.index[..., :topk])
    own = torch.arange(rows.index.shape[1], device=rows.index.device)[None, :, None]
    pad = topk - kept
    index = torch.cat([rows.index, own.expand(rows.index.shape[0], -1, pad)], dim=-1)
    return TopKRows(torch.cat([rows.weight, rows.weight.new_zeros(*rows.weight.shape[:2], pad)], dim=-1), index)


def as_attention(attn: torch.Tensor | TopKRows) -> torch.Tensor | TopKRows:
    """`attn` typed as either form of the attention (TorchScript: a saved module's code is compiled again on
    loading, where a variable that is a Tensor on one branch and `TopKRows` on the other only type-checks when
    both branches give it this union type)."""
    return attn


def masked_attention_topk(q: torch.Tensor, k: torch.Tensor, tokens: torch.Tensor, query_masked: torch.Tensor,
                          key_ok: torch.Tensor, logit_scale: torch.Tensor, topk: int) -> tuple[torch.Tensor, TopKRows]:
    """`masked_attention`, its product with the tokens and the top-K of its rows, computed over hole rows x
    allowed keys only (a quarter of the dense work at 50 % holes; data-dependent sizes, so eager
    inference only: the exported graph and training use the dense form).

    q, k: (B, N, d) unit vectors; tokens (B, N, D); query_masked, key_ok (B, N) bool; topk >= 1.
    Returns (A @ tokens (B, N, D) in tokens.dtype: known rows and rows without an allowed key keep their
    own token, `TopKRows`).
    """
    batch, n = query_masked.shape
    own = torch.arange(n, device=q.device)
    mixed = tokens.clone()
    weight = torch.zeros(batch, n, topk, dtype=torch.float32, device=q.device)
    index = own[None, :, None].expand(batch, n, topk).clone()
    for b in range(batch):
        rows, keys = query_masked[b].nonzero()[:, 0], key_ok[b].nonzero()[:, 0]
        if len(rows) == 0 or len(keys) == 0:
            continue
        logits = q[b, rows].float() @ k[b, keys].float().T * logit_scale.float()
        attn = torch.softmax(logits, dim=-1)
        mixed[b, rows] = (attn @ tokens[b, keys].float()).to(tokens.dtype)
        kept = min(topk, len(keys))
        top, at = attn.topk(kept, dim=-1)
        weight[b, rows, :kept] = top / top.sum(dim=-1, keepdim=True)
        index[b, rows, :kept] = keys[at]
    return mixed, TopKRows(weight, index)


COPY_FLOOR = 1e-3   # weight of a copied pixel whose source pixel is a hole: only counts where nothing known reaches


def feather_weight(offset: torch.Tensor, patch: int, feather: int) -> torch.Tensor:
    """Weight of a token's copy at `offset` px from the token's first row (or column): 1 inside the
    token, falling linearly to 0 over `feather` px on either side of its edges, so that the weights of two
    neighbouring tokens sum to 1 across their shared edge (a partition of unity for feather <= P / 2).
    feather 0: 1 inside the token, 0 outside. offset: any float tensor (px)."""
    if feather == 0:
        return ((offset > -1) & (patch - offset > 0)).to(offset.dtype)
    rising, falling = offset + feather + 0.5, patch + feather - 0.5 - offset
    return (torch.where(falling > rising, rising, falling) / (2 * feather)).clamp(0.0, 1.0)


def _modulo(x: torch.Tensor, divisor: int) -> torch.Tensor:
    """x mod divisor for non-negative int64 x, as Div/Mul/Sub (the TensorRT operator list has no Mod)."""
    return x - (x // divisor) * divisor


def _pad_grid(grid: torch.Tensor) -> torch.Tensor:
    """(B, C, gh, gw) -> (B, C, gh + 2, gw + 2) with a border of zeros, by concatenation (no Pad op)."""
    column, row = _zero_border(grid)
    return _pad_with(grid, column, row)


def _zero_border(grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The zero column (B, C, gh, 1) and row (B, C, 1, gw + 2) that `_pad_with` puts around grid (B, C, gh, gw)."""
    b, c, gh, gw = grid.shape
    return grid.new_zeros(b, c, gh, 1), grid.new_zeros(b, c, 1, gw + 2)


def _pad_with(grid: torch.Tensor, column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """`_pad_grid` with its zero border made beforehand (`_zero_border`: once for many grids of one shape)."""
    return torch.cat([row, torch.cat([column, grid, column], dim=3), row], dim=2)


def _per_pixel(grid: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, gh, gw) -> (B, C, gh * P, gw * P), each token's value repeated over its pixels (nearest
    upsampling as plain Unsqueeze/Expand/Reshape: exports to ONNX without Resize)."""
    b, c, gh, gw = grid.shape
    return grid[:, :, :, None, :, None].expand(b, c, gh, patch, gw, patch).reshape(b, c, gh * patch, gw * patch)


def _filter_along(x: torch.Tensor, taps: list[float], dim: int) -> torch.Tensor:
    """The 1-D filter `taps` (odd length, centred) along dim of x, zero outside: a sum of shifted slices of x
    padded with zeros by concatenation (Slice, Mul, Add, Concat: no Pad op, no Conv weights to export; on the
    CPU five times faster than a depthwise conv2d at 512 x 512 x 8)."""
    radius = (len(taps) - 1) // 2
    shape = list(x.shape)
    shape[dim] = radius
    zeros = x.new_zeros(shape)
    padded = torch.cat([zeros, x, zeros], dim=dim)
    n = x.shape[dim]
    out = padded.narrow(dim, 0, n) * taps[0]
    for t in range(1, len(taps)):
        out.add_(padded.narrow(dim, t, n), alpha=taps[t])     # in place: a fifth of the time of out + ... on the CPU
    return out


def blur_base(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Gaussian blur (sigma px, radius ceil(3 sigma), separable) of (B, C, h, w), normalised by the taps
    that fall inside the image (no darkened border)."""
    taps = gaussian_kernel_list(sigma)
    channels = image.shape[1]
    stack = torch.cat([image, torch.ones_like(image[:, :1])], dim=1)
    stack = _filter_along(_filter_along(stack, taps, 2), taps, 3)
    return stack[:, :channels] / stack[:, channels:]


def check_copy_settings(patch: int, feather: int, base_feather: int, base_sigma: float) -> None:
    """`copy_tokens`' feathers (0..P / 2 px) and, with two bands (base_feather > 0), base_sigma > 0 px."""
    if not 0 <= feather <= patch // 2:
        raise ValueError(f"feather: expected 0..{patch // 2} px (half a token), got {feather}")
    if not 0 <= base_feather <= patch // 2:
        raise ValueError(f"base_feather: expected 0..{patch // 2} px (half a token; 0 = one band), got {base_feather}")
    if base_feather > 0 and not base_sigma > 0.0:
        raise ValueError(f"base_sigma: expected > 0 px, got {base_sigma}")


def copy_tokens(image: torch.Tensor, known: torch.Tensor, source: torch.Tensor, patch: int,
                feather: int, keep_contrast: bool = False, base_feather: int = 0,
                base_sigma: float = 1.0, reflect_unknown: bool = False) -> torch.Tensor:
    """Hard copies at LR: every token takes the pixels of its source token, feathered into its neighbours.

    image: (B, 3, h, w) composite (known pixels real, holes filled by the coarse CNN); known: (B, 1, h, w)
    float {0, 1}; source: (B, N) int64 source token of each token (its own index where it keeps itself);
    h = gh * P, w = gw * P. Each token's copy is its source token's P x P pixels plus `feather` px of the
    source's surroundings, weighted by `feather_weight` (the copies of neighbouring tokens cross-fade over
    2 * feather px instead of meeting at a step), and by whether the source pixel is known (COPY_FLOOR if
    not): a hole pixel is the weighted mean of the copies that reach it. With feather <= P / 2 a pixel is
    reached by its own token's copy and by those of the (up to) three neighbours on its side of the
    token's centre lines. Returns (B, 3, h, w); known tokens reproduce themselves on their known pixels.
    keep_contrast: for zero-mean images (texture): the weighted sum over the root of the summed squared weights
    (the weights of copies with one displacement, which continue each other, summed first) instead of over
    the summed weights, so that two uncorrelated textures cross-fade without losing contrast in the middle
    of the fade (a weighted mean halves their variance there); where one copy reaches a pixel alone, both
    are that copy.
    base_feather > 0 (px, `ModelConfig.copy_base_feather`): two bands. The copies' base (`blur_base` of the
    image, base_sigma px) cross-fades over 2 * base_feather px as a weighted mean, their detail (image - base)
    over 2 * feather px with the contrast kept (as keep_contrast), and the result is their sum: neighbouring
    copies' brightness meets in a wide ramp instead of a step while their texture keeps its contrast.
    reflect_unknown: where a copy read past its source token's edge meets a hole pixel, it reads the source
    token's own pixel mirrored about that edge instead (`ModelConfig.hr_fade_reflect`): the fade stays two-sided
    where the source lies next to a hole (without, the other copy alone reaches those pixels and the two meet
    at a step).
    """
    check_copy_settings(patch, feather, base_feather, base_sigma)
    two_bands = base_feather > 0
    if two_bands:
        base = blur_base(image, base_sigma)
        image = torch.cat([base, image - base], dim=1)
        keep_contrast = True
    batch, channels, height, width = image.shape
    grid_h, grid_w = height // patch, width // patch
    token = torch.arange(grid_h * grid_w, device=image.device)
    shift = torch.stack([source // grid_w - token // grid_w, _modulo(source, grid_w) - _modulo(token, grid_w)], dim=1)
    shift = (shift * patch).reshape(batch, 2, grid_h, grid_w)                  # (dy, dx) px to the source, int64
    padded = _pad_grid(shift)                                                    # no neighbour: weight 0 below
    inside = _pad_grid(torch.ones_like(shift[:, :1]))
    local_y = _modulo(torch.arange(height, device=image.device), patch)
    local_x = _modulo(torch.arange(width, device=image.device), patch)
    side_y = torch.where(patch // 2 - local_y > 0, -1, 1)                            # the neighbour row each pixel meets
    side_x = torch.where(patch // 2 - local_x > 0, -1, 1)
    rows = torch.arange(height, device=image.device)[:, None]
    cols = torch.arange(width, device=image.device)[None, :]
    pixels = torch.cat([image, known], dim=1).permute(0, 2, 3, 1).reshape(batch * height * width, -1)
    first_pixel = (torch.arange(batch, device=image.device) * (height * width))[:, None, None, None]
    band = channels // 2 if two_bands else channels
    total = torch.zeros_like(image[:, :band])
    weight_sum = torch.zeros_like(known)
    base_total, base_sum = torch.zeros_like(total), torch.zeros_like(known)
    weights, displacements = [], []
    for use_y, use_x in ((False, False), (True, False), (False, True), (True, True)):
        picked, picked_inside = [], []
        for dy in ([-1, 1] if use_y else [0]):
            for dx in ([-1, 1] if use_x else [0]):
                picked.append(_per_pixel(padded[:, :, 1 + dy:1 + dy + grid_h, 1 + dx:1 + dx + grid_w], patch))
                picked_inside.append(_per_pixel(inside[:, :, 1 + dy:1 + dy + grid_h, 1 + dx:1 + dx + grid_w], patch))
        ny = side_y[:, None] if use_y else torch.zeros_like(side_y)[:, None]
        nx = side_x[None, :] if use_x else torch.zeros_like(side_x)[None, :]
        if use_y and use_x:   # four candidates: (-1, -1), (-1, 1), (1, -1), (1, 1)
            left_x, up_y = nx == -1, ny == -1
            top = torch.where(left_x, picked[0], picked[1])
            bottom = torch.where(left_x, picked[2], picked[3])
            disp = torch.where(up_y, top, bottom)
            top_in = torch.where(left_x, picked_inside[0], picked_inside[1])
            bottom_in = torch.where(left_x, picked_inside[2], picked_inside[3])
            valid = torch.where(up_y, top_in, bottom_in)
        elif use_y or use_x:
            toward = ny if use_y else nx
            disp = torch.where(toward == -1, picked[0], picked[1])
            valid = torch.where(toward == -1, picked_inside[0], picked_inside[1])
        else:
            disp, valid = picked[0], picked_inside[0]
        offset_y = local_y[:, None] - ny * patch          # px from the copying token's first row / column
        offset_x = local_x[None, :] - nx * patch
        weight = (feather_weight(offset_y.float(), patch, feather) *
                  feather_weight(offset_x.float(), patch, feather)).to(image.dtype)
        src_y, src_x = rows + disp[:, :1], cols + disp[:, 1:]
        sampled = _sample(pixels, src_y, src_x, first_pixel)
        values, source_known = sampled[:, :-1], sampled[:, -1:]                    # image and known, one gather
        if reflect_unknown:      # the same read mirrored into the source token
            mirrored = _sample(pixels, src_y - (offset_y - _mirror(offset_y, patch)),
                               src_x - (offset_x - _mirror(offset_x, patch)), first_pixel)
            use = (source_known < 0.5) & (mirrored[:, -1:] > 0.5)
            values = torch.where(use, mirrored[:, :-1], values)
            source_known = torch.where(use, mirrored[:, -1:], source_known)
        known_weight = valid.to(image.dtype) * (source_known + _consts.COPY_FLOOR)
        weight = weight * known_weight
        if two_bands:      # the base's weight: the same copy, a wider fade
            base_weight = (feather_weight(offset_y.float(), patch, base_feather) *
                           feather_weight(offset_x.float(), patch, base_feather)).to(image.dtype)
            base_weight = base_weight * known_weight
            base_total = base_total + base_weight * values[:, :band]
            base_sum = base_sum + base_weight
            values = values[:, band:]
        total = total + weight * values
        weight_sum = weight_sum + weight
        weights.append(weight)
        displacements.append(disp)
    if keep_contrast:      # copies that continue each other (one displacement) are one texture: their weights add
        squares = torch.zeros_like(known)
        for i in range(len(weights)):
            for j in range(len(weights)):
                same = (displacements[i] == displacements[j]).all(dim=1, keepdim=True)
                squares = squares + weights[i] * weights[j] * same.to(known.dtype)
        detail = total / squares.sqrt()
        return base_total / base_sum + detail if two_bands else detail
    return total / weight_sum


def _mirror(offset: torch.Tensor, patch: int) -> torch.Tensor:
    """An offset (px) from a token's first row or column, reflected into the token (0..patch - 1) about the edge it
    lies past (patch - 1 - k px before the far edge for k px past it; likewise before the near edge)."""
    return torch.where(offset >= patch, 2 * patch - 1 - offset, torch.where(offset < 0, -1 - offset, offset))


def _sample(pixels: torch.Tensor, src_y: torch.Tensor, src_x: torch.Tensor, first_pixel: torch.Tensor) -> torch.Tensor:
    """`copy_tokens`' gather: the rows of pixels (B * h * w, C + 1) (values and known) at (src_y, src_x) (B, 1, h, w)
    px, clamped into the image; first_pixel (B, 1, 1, 1) each image's first row -> (B, C + 1, h, w)."""
    batch, height, width = src_y.shape[0], src_y.shape[-2], src_x.shape[-1]
    index = src_y.clamp(0, height - 1) * width + src_x.clamp(0, width - 1) + first_pixel   # (B, 1, h, w) int64
    return pixels[index.flatten()].reshape(batch, height, width, -1).permute(0, 3, 1, 2)


COPY_CANDIDATES = 8           # strongest keys per hole token that `choose_sources` considers
LOOKALIKE_RADIUS = 1          # tokens: a look-alike (`border_lookalikes`) lies farther than this (Chebyshev)
NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))
NO_OPTION = -3.0              # score of a ruled-out candidate (cosine similarities + bonus lie in [-1, 1.02])
NOT_ALLOWED = -1.0e4          # similarity of a key a hole token may not copy (below any colour-penalised score)
COPY_MATCH_MAX_STEP = 0.08     # `copy_colour_offsets`: colour steps (L1 over RGB, [0, 1] scale) above this are not evened out
JACOBI_SWEEPS = 8             # `harmonic_fill`: neighbour-mean sweeps per finer grid level
JACOBI_COARSEST_SWEEPS = 24   # `harmonic_fill`: sweeps on the coarsest grid, from the fixed cells' mean
COARSE_FIXED_SHARE = 0.5      # `harmonic_fill`: a coarse cell is fixed where at least this share of its 4 cells is
BORDER_MATCH_LEVELS = 4       # `border_match`: multigrid halvings of the membrane (LR sides are multiples of 32)
DETAIL_SIGMA = 1.0            # `detail_levels`: LR px; a token's detail is what a Gaussian blur of this sigma removes
DETAIL_MIN, DETAIL_MAX = 0.003, 0.3   # `detail_levels`: a token's mean detail (L1 over RGB, [0, 1] scale) is clamped to this
DETAIL_LEVEL_SPAN = math.log(DETAIL_MAX / DETAIL_MIN)   # the most two detail levels differ by
MEAN_WEIGHT_FLOOR = 1e-6      # `border_match`: a Gaussian mean over no pixel of its kind is 0, not NaN


def choose_sources(q: torch.Tensor, k: torch.Tensor, candidates: torch.Tensor, query_masked: torch.Tensor,
                   key_ok: torch.Tensor, grid_w: int, colours: torch.Tensor, expected: torch.Tensor,
                   colour_weight: float, sweeps: int = 1, continuity: float = 0.02, compact: bool = False,
                   repeat_radius: int = 0, repeat_penalty: float = 0.0, border_continuity: float = 0.0,
                   support_margin: float = 0.0) -> torch.Tensor:
    """The source token each token copies with lr_texture="copy", (B, N) int64.

    q, k: (B, N, d) unit vectors; candidates: (B, N, C) key indices, strongest first (entries that are not
    allowed keys are ignored); query_masked, key_ok: (B, N) bool; colours, expected (B, N, 3) and
    colour_weight as in `copy_candidates` (every option's score loses colour_weight times its colour
    distance, as the candidates' ranking did). Copying every hole token's strongest key
    stamps the same source on neighbouring tokens (a lattice of repeats in flat regions), so the hole
    tokens are split like a checkerboard and start from their strongest key (`start_sources`); then `sweeps`
    updates alternate between the two colours (`propagate_sources`). compact: the scores are computed on the
    rows that use them only (eager inference; data-dependent sizes), else densely. border_continuity > 0: the
    known tokens beside the hole take their look-alikes as sources for the updates (`border_lookalikes`), so a
    hole token may continue the border as it continues a hole neighbour's copy, credited border_continuity per
    known neighbour; every token that does not copy is its own source again in the result. support_margin > 0: a
    hole neighbour's copy is credited only while its query supports it (`propagate_sources`).
    """
    source, own_score, valid, has_key = start_sources(q, k, candidates, query_masked, key_ok, colours, expected,
                                                      colour_weight, compact)
    if border_continuity > 0.0:
        source = border_lookalikes(k, has_key, key_ok, source, grid_w, compact)
    source = propagate_sources(q, k, candidates, own_score, valid, has_key, key_ok, source, grid_w, colours, expected,
                               colour_weight, sweeps, continuity, repeat_radius, repeat_penalty, compact,
                               border_continuity, support_margin)
    return copies_only(source, has_key)


def copies_only(source: torch.Tensor, has_key: torch.Tensor) -> torch.Tensor:
    """source (B, N) int64 -> the same with every token that does not copy (has_key (B, N) bool false) its own
    source: the known tokens' look-alikes (`border_lookalikes`) guide the propagation only."""
    own = torch.arange(source.shape[1], device=source.device)
    return torch.where(has_key, source, own[None])


def _far_apart(row_a: torch.Tensor, col_a: torch.Tensor, row_b: torch.Tensor, col_b: torch.Tensor) -> torch.Tensor:
    """Token cells (A,) and (B,) int64 -> (A, B) bool: farther apart than LOOKALIKE_RADIUS tokens (Chebyshev)."""
    dy = (row_a[:, None] - row_b[None, :]).to(torch.float32)      # float: the exported graph's Relu takes no ints
    dx = (col_a[:, None] - col_b[None, :]).to(torch.float32)
    return torch.gt(_abs(dy), float(_consts.LOOKALIKE_RADIUS)) | torch.gt(_abs(dx), float(_consts.LOOKALIKE_RADIUS))


def border_lookalikes(k: torch.Tensor, has_key: torch.Tensor, key_ok: torch.Tensor, source: torch.Tensor,
                      grid_w: int, compact: bool = False) -> torch.Tensor:
    """source (B, N) int64 (`start_sources`) with each allowed key beside the hole (a 4-neighbour of a hole token
    that copies, has_key) set to its look-alike: the allowed key j of highest k_i . k_j farther than
    LOOKALIKE_RADIUS tokens (Chebyshev) from it (k (B, N, d) unit vectors). A hole token beside it that copies
    the look-alike's neighbour on its own side continues the border as its known neighbour continues there
    (exemplar-based inpainting's idea: what lies beside a look-alike of the border comes next). A known token
    without a look-alike keeps itself. compact: computed over the border rows x allowed keys only (eager
    inference), else densely over all N x N pairs (the exported graph)."""
    batch, n = has_key.shape
    own = torch.arange(n, device=k.device)
    border = key_ok & ~clear_keys(has_key, key_ok, grid_w, 1)
    row, col = own // grid_w, _modulo(own, grid_w)
    if not compact:
        allowed = border[:, :, None] & key_ok[:, None, :] & _far_apart(row, col, row, col)[None]
        similarity = torch.bmm(k.float(), k.float().transpose(1, 2))
        similarity = torch.where(allowed, similarity, torch.full_like(similarity, _consts.NOT_ALLOWED))
        best_similarity, best = similarity.topk(1, dim=-1)          # TopK, not ArgMax: the TensorRT operator list
        found = best_similarity[..., 0] > _consts.NOT_ALLOWED
        return torch.where(found, best[..., 0], source)
    lookalike = source.clone()
    for b in range(batch):
        rows, keys = border[b].nonzero()[:, 0], key_ok[b].nonzero()[:, 0]
        if len(rows) == 0 or len(keys) == 0:
            continue
        far = _far_apart(row[rows], col[rows], row[keys], col[keys])
        similarity = torch.where(far, k[b, rows].float() @ k[b, keys].float().T,
                                 torch.full(far.shape, _consts.NOT_ALLOWED, device=k.device))
        best_similarity, best = similarity.max(dim=-1)
        found = best_similarity > _consts.NOT_ALLOWED
        lookalike[b, rows[found]] = keys[best[found]]
    return lookalike


def start_sources(q: torch.Tensor, k: torch.Tensor, candidates: torch.Tensor, query_masked: torch.Tensor,
                  key_ok: torch.Tensor, colours: torch.Tensor, expected: torch.Tensor, colour_weight: float,
                  compact: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`choose_sources`' start (arguments as there) -> (source (B, N) int64: each hole token with an allowed
    candidate takes its first, every other token itself; own_score (B, N, C) float32: each candidate's score,
    NO_OPTION off the hole rows with compact; valid (B, N, C) bool: which candidates are allowed keys;
    has_key (B, N) bool: the hole tokens with at least one)."""
    n = query_masked.shape[1]
    own = torch.arange(n, device=q.device)
    valid = torch.gather(key_ok, 1, candidates.flatten(1)).reshape(candidates.shape)
    has_key = (valid.to(torch.int32).sum(dim=-1) > 0) & query_masked
    source = torch.where(has_key, candidates[..., 0], own[None])
    if compact:
        own_score = _scores_on_rows(q, k, candidates, colours, expected, colour_weight, has_key)
    else:
        own_score = _option_scores(q, k, candidates, colours, expected, colour_weight)
    return source, own_score, valid, has_key


def propagate_sources(q: torch.Tensor, k: torch.Tensor, candidates: torch.Tensor, own_score: torch.Tensor,
                      valid: torch.Tensor, has_key: torch.Tensor, key_ok: torch.Tensor, source: torch.Tensor,
                      grid_w: int, colours: torch.Tensor, expected: torch.Tensor, colour_weight: float, sweeps: int,
                      continuity: float, repeat_radius: int = 0, repeat_penalty: float = 0.0,
                      compact: bool = False, border_continuity: float = 0.0,
                      support_margin: float = 0.0) -> torch.Tensor:
    """`choose_sources`' propagation: `sweeps` checkerboard updates of source (B, N) int64 from `start_sources`
    (own_score, valid, has_key), the second colour first -> the updated sources (B, N) int64.

    An update gives each hole token of its colour, whose four neighbours are all of the other, the option of
    highest score that none of its hole neighbours copies, where options are its own C candidates (scored
    own_score) and each hole neighbour's source shifted by their offset (which continues that neighbour's copy
    without a seam; scored as `_option_scores` does), and an option is credited `continuity` for every hole
    neighbour whose copy it continues. More sweeps let continued copies grow into coherent regions, as
    PatchMatch's propagation does (one sweep: the second colour's update only). Known tokens, and holes
    without an allowed key, keep themselves. repeat_radius, repeat_penalty: an option loses repeat_penalty for
    every hole token before it in raster order within repeat_radius tokens (a square window) that copies that
    same source (0: off): a salient source copied over and over (a lattice of repeats of one distinctive
    region) gives way to the next best. Only earlier tokens count, so the first copy keeps its source
    (counting every token that updates at the same time makes them all leave a source together, and return
    together in the next update). Scores are float32; of equal scores of two different keys (identical key
    vectors) torch's TopK picks either. compact: continuations scored on the rows each sweep updates only.
    A token that does not copy but whose source is not itself (a known token's look-alike, `border_lookalikes`)
    offers its continuation too, credited border_continuity instead of continuity (0: such sources are ignored).
    support_margin > 0: a hole neighbour's copy earns the credit only while it is supported, i.e. its score (the
    option's score without credits or penalties when that neighbour chose it; at the start its source's score) is
    at least its best allowed candidate's less support_margin; so a cluster of copies that only their continuations
    hold in place, none of them supported by its own query, gives way to the tokens' own candidates (a continuation
    stays an option, uncredited). 0: every copy earns it. The look-alikes of known neighbours always do.
    """
    batch, n = has_key.shape
    grid_h = n // grid_w
    own = torch.arange(n, device=q.device)
    row, col = own // grid_w, _modulo(own, grid_w)
    # the four sides at once: each token's neighbours (B, N * 4), which of them are holes that copy (fixed), and
    # the offsets (4,) that shift a neighbour's source back to the token's own position
    neighbours, inside, side_dy, side_dx = [], [], [], []
    for dy, dx in _consts.NEIGHBOURS:
        neighbour, neighbour_inside = _grid_cell(row + dy, col + dx, grid_h, grid_w)
        neighbours.append(neighbour)
        inside.append(neighbour_inside)
        side_dy.append(torch.full((1,), dy, dtype=torch.int64, device=q.device))
        side_dx.append(torch.full((1,), dx, dtype=torch.int64, device=q.device))
    sides = len(neighbours)
    neighbour_index = torch.stack(neighbours, -1).flatten()[None].expand(batch, -1)
    neighbour_hole = torch.gather(has_key, 1, neighbour_index).reshape(batch, n, sides) & torch.stack(inside, -1)[None]
    neighbour_copies = neighbour_hole      # the neighbours whose copies a token may continue (fixed)
    if border_continuity > 0.0:            # and the known ones with a look-alike
        guides = ~has_key & (source != own[None])
        neighbour_copies = neighbour_hole | \
            (torch.gather(guides, 1, neighbour_index).reshape(batch, n, sides) & torch.stack(inside, -1)[None])
    dy_side, dx_side = torch.cat(side_dy), torch.cat(side_dx)
    no_source = torch.full((batch, n, sides), -1, dtype=torch.int64, device=q.device)
    parity = _modulo(row + col, 2)
    window_cells, window_in = own[:, None], has_key[:, :, None]          # (N, W), (B, N, W); set below when used
    if repeat_radius > 0 and repeat_penalty > 0.0:
        cells, cells_in = [], []
        for dy in range(-repeat_radius, 1):                  # the tokens before each one in raster order
            for dx in range(-repeat_radius, repeat_radius + 1 if dy < 0 else 0):
                cell, cell_in = _grid_cell(row + dy, col + dx, grid_h, grid_w)
                cells.append(cell)
                cells_in.append(cell_in)
        window_cells = torch.stack(cells, -1)
        window_in = torch.stack(cells_in, -1)[None] & \
            torch.gather(has_key, 1, window_cells.flatten()[None].expand(batch, -1)).reshape(batch, n, -1)
    floor = current = own_score[..., 0]     # each token's floor and current score: set and read with the gate only
    if support_margin > 0.0:
        floor = support_floors(own_score, valid, support_margin)
        if compact:
            current = _scores_on_rows(q, k, source[..., None], colours, expected, colour_weight, has_key)[..., 0]
        else:
            current = source_scores(q, k, source, colours, expected, colour_weight)
    for sweep in range(sweeps):
        neighbour_source = torch.gather(source, 1, neighbour_index).reshape(batch, n, sides)
        taken = torch.where(neighbour_hole, neighbour_source, no_source)                    # (B, N, 4)
        continuation, in_grid = _grid_cell(neighbour_source // grid_w - dy_side,
                                           _modulo(neighbour_source, grid_w) - dx_side, grid_h, grid_w)
        continuation_ok = neighbour_copies & in_grid & \
            torch.gather(key_ok, 1, continuation.flatten(1)).reshape(batch, n, sides)
        all_options = torch.cat([candidates, continuation], -1)                              # (B, N, C + 4)
        all_ok = torch.cat([valid, continuation_ok], -1)
        repeats = (all_options[..., :, None] == taken[..., None, :]).to(torch.int32).sum(dim=-1) > 0
        continued_ok = torch.where(continuation_ok, continuation, no_source)
        continues = (all_options[..., :, None] == continued_ok[..., None, :]).to(own_score.dtype)  # (B, N, C + 4, 4)
        if support_margin > 0.0:       # credit only the supported hole neighbours' copies (and every look-alike)
            supported = (~torch.gt(floor, current) | ~has_key).to(own_score.dtype)   # >= without GreaterOrEqual
            continues = continues * torch.gather(supported, 1, neighbour_index).reshape(batch, n, sides)[:, :, None, :]
        updated = (parity == 1 - sweep % 2)[None] & has_key
        if compact:                                   # score the rows this sweep updates only
            continued = _scores_on_rows(q, k, continuation, colours, expected, colour_weight, updated)
        else:
            continued = _option_scores(q, k, continuation, colours, expected, colour_weight)
        if border_continuity > 0.0:
            per_side = neighbour_hole.to(own_score.dtype)
            credit = torch.where(neighbour_hole, torch.full_like(per_side, continuity),
                                 torch.full_like(per_side, border_continuity))                     # (B, N, 4)
            score = torch.cat([own_score, continued], -1) + (continues * credit[:, :, None, :]).sum(dim=-1)
        else:
            score = torch.cat([own_score, continued], -1) + continuity * continues.sum(dim=-1)
        if repeat_radius > 0 and repeat_penalty > 0.0:
            window_source = torch.gather(source, 1, window_cells.flatten()[None].expand(batch, -1)).reshape(batch, n, -1)
            window_source = torch.where(window_in, window_source, torch.full_like(window_source, -1))
            repeated = (all_options[..., :, None] == window_source[..., None, :]).to(own_score.dtype).sum(dim=-1)
            score = score - repeat_penalty * repeated
        score = torch.where(all_ok & ~repeats, score, torch.full_like(score, _consts.NO_OPTION))
        top_score, top = score.topk(1, dim=-1)               # TopK, not ArgMax: the TensorRT operator list
        best = torch.gather(all_options, 2, top)[..., 0]
        updated = updated & (top_score[..., 0] > _consts.NO_OPTION)
        source = torch.where(updated, best, source)
        if support_margin > 0.0:
            current = torch.where(updated, torch.gather(torch.cat([own_score, continued], -1), 2, top)[..., 0], current)
    return source


def source_scores(q: torch.Tensor, k: torch.Tensor, source: torch.Tensor, colours: torch.Tensor,
                  expected: torch.Tensor, colour_weight: float) -> torch.Tensor:
    """q, k (B, N, d), source (B, N) int64, colours, expected (B, N, 3) -> (B, N) float32: each token's score of
    its source as an option (`_option_scores`)."""
    return _option_scores(q, k, source[..., None], colours, expected, colour_weight)[..., 0]


def support_floors(own_score: torch.Tensor, valid: torch.Tensor, support_margin: float) -> torch.Tensor:
    """own_score (B, N, C) float32, valid (B, N, C) bool -> (B, N) float32: the score a token's copy needs to be
    supported (`propagate_sources`' support_margin): its best allowed candidate's score less support_margin."""
    best = torch.where(valid, own_score, torch.full_like(own_score, _consts.NO_OPTION)).topk(1, dim=-1).values
    return best[..., 0] - support_margin      # TopK, not ReduceMax: the TensorRT operator list


def copy_colour_offsets(colours: torch.Tensor, source: torch.Tensor, copies: torch.Tensor, key_ok: torch.Tensor,
                        grid_w: int, sweeps: int) -> torch.Tensor:
    """Per-token colour offsets (B, N, 3) that make neighbouring copies meet without a step in brightness.

    colours (B, N, 3): every token's mean colour in the composite; source (B, N) int64 as `choose_sources`
    gives; copies (B, N) bool: hole tokens that copy a source; key_ok (B, N) bool. Where two neighbouring
    tokens copy one source region (a continued copy) nothing changes. Elsewhere a copy predicts its
    neighbour's colour: the token next to its source, in the neighbour's direction. Each copying token i
    asks for the offset o_i that agrees with every neighbour n's prediction: o_i = colour(n) - colour(s_i +
    d) for a known n (d the offset from i to n; s_i + d must be a known token), o_i = o_n + colour(s_n - d) -
    colour(s_i) for a copying n (s_n - d known). `sweeps` Jacobi updates, from 0, average those targets
    (a Poisson problem on the token grid whose guidance is the copies' own colour steps: seams between
    different sources spread into gradients over a few tokens, and the hole's colour follows its border).
    Tokens that do not copy get 0."""
    batch, n, _ = colours.shape
    grid_h = n // grid_w
    own = torch.arange(n, device=colours.device)
    row, col = own // grid_w, _modulo(own, grid_w)
    first_row = (torch.arange(batch, device=colours.device) * n)[:, None]
    colours_flat, known_flat = colours.reshape(batch * n, -1).float(), key_ok.reshape(-1)
    copy_colour = colours_flat[(source + first_row).flatten()].reshape(batch, n, -1)
    weights, constants, chained, neighbours = [], [], [], []
    for dy, dx in _consts.NEIGHBOURS:
        neighbour, inside = _grid_cell(row + dy, col + dx, grid_h, grid_w)
        neighbour, inside = neighbour[None].expand(batch, -1), inside[None]
        # a known neighbour: the token beside i's source, towards it
        ahead, ahead_in = _grid_cell(source // grid_w + dy, _modulo(source, grid_w) + dx, grid_h, grid_w)
        ahead = (ahead + first_row).flatten()
        known_ok = torch.gather(key_ok, 1, neighbour) & inside & ahead_in & known_flat[ahead].reshape(batch, n)
        known_target = colours_flat[(neighbour + first_row).flatten()].reshape(batch, n, -1) - \
            colours_flat[ahead].reshape(batch, n, -1)
        # a copying neighbour: the token beside its source, back towards i
        neighbour_source = torch.gather(source, 1, neighbour)
        back, back_in = _grid_cell(neighbour_source // grid_w - dy, _modulo(neighbour_source, grid_w) - dx, grid_h, grid_w)
        back = (back + first_row).flatten()
        copy_ok = torch.gather(copies, 1, neighbour) & inside & back_in & known_flat[back].reshape(batch, n)
        copy_target = colours_flat[back].reshape(batch, n, -1) - copy_colour
        constant = torch.where(known_ok[..., None], known_target, copy_target)
        small = _consts.COPY_MATCH_MAX_STEP - _abs(constant).sum(dim=-1) > 0     # a larger step is structure, kept (no Less op)
        weights.append((copies & (known_ok | copy_ok) & small).to(colours_flat.dtype)[..., None])
        constants.append(constant)
        chained.append((copy_ok & ~known_ok).to(colours_flat.dtype)[..., None])
        neighbours.append((neighbour + first_row).flatten())
    weight_sum = (weights[0] + weights[1] + weights[2] + weights[3]).clamp(min=1.0)
    offsets = torch.zeros_like(copy_colour)
    for _ in range(sweeps):
        flat = offsets.reshape(batch * n, -1)
        total = torch.zeros_like(offsets)
        for side in range(4):
            total = total + weights[side] * (constants[side] + chained[side] * flat[neighbours[side]].reshape(batch, n, -1))
        offsets = total / weight_sum
    return offsets


def consensus_offsets(q: torch.Tensor, k: torch.Tensor, candidates: torch.Tensor, key_ok: torch.Tensor,
                      copies: torch.Tensor, colours: torch.Tensor, copied: torch.Tensor, mask: torch.Tensor, patch: int,
                      logit_scale: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-token colour offsets (B, N, 3) that move each copy's colour towards its candidates' consensus.

    A copy keeps its one source's colour; when that source is a look-alike from a region of another colour (a
    sky-blue block over a mountain) the fill's colour is wrong, which the hole's fidelity (PSNR) and its
    coarsest realism level pay for. The consensus of a hole token is the mean colour of its candidates weighted
    as the attention weighs them (softmax of logit_scale times the cosine similarities, over the allowed keys):
    the colour the smooth style's attention mix would give the token. Each copying token's hole pixels move
    `strength` of the way from their mean to it (0: none, 1: all the way; the offset is scaled by the token's
    hole share, as a partly known token's known pixels stay).

    q, k (B, N, d) unit vectors; candidates (B, N, C) key indices; key_ok, copies (B, N) bool (the hole tokens
    that copy a source); colours (B, N, 3) every token's mean colour in the composite; copied (B, 3, h, w) the
    copies; mask (B, 1, h, w) float {0, 1}; patch P px. Tokens that do not copy get 0."""
    valid = torch.gather(key_ok, 1, candidates.flatten(1)).reshape(candidates.shape)
    similarity = _option_scores(q, k, candidates, colours, colours, 0.0) * logit_scale
    weight = torch.softmax(torch.where(valid, similarity, torch.full_like(similarity, _consts.NOT_ALLOWED)), dim=-1)
    consensus = (weight[..., None] * _picked_rows(colours, candidates)).sum(dim=2)
    share = token_colours(mask.float(), patch).flatten(2).transpose(1, 2)                  # (B, N, 1)
    hole_sum = token_colours(copied.float() * mask, patch).flatten(2).transpose(1, 2)      # (B, N, 3)
    return strength * (share * consensus - hole_sum) * copies.to(consensus.dtype)[..., None]


def add_token_offsets(copied: torch.Tensor, mask: torch.Tensor, offsets: torch.Tensor, grid_w: int,
                      patch: int) -> torch.Tensor:
    """copied (B, 3, h, w) with per-token offsets (B, N, 3) spread bilinearly over the pixels (each token's at
    its centre) added to its hole pixels (mask (B, 1, h, w) > 0), clamped to [0, 1]."""
    grid = offsets.transpose(1, 2).reshape(offsets.shape[0], 3, -1, grid_w).to(copied.dtype)
    smooth = F.interpolate(grid, scale_factor=float(patch), mode="bilinear", align_corners=False)
    return torch.where(mask > 0, (copied + smooth).clamp(0.0, 1.0), copied)


def _grid_cell(row: torch.Tensor, col: torch.Tensor, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token (row, col) of a gh x gw grid, any int64 shape -> (its row-major index, clamped into the grid;
    whether it lies inside), with comparisons the TensorRT operator list has (Greater, no Less)."""
    inside = (row > -1) & (grid_h - row > 0) & (col > -1) & (grid_w - col > 0)
    return row.clamp(0, grid_h - 1) * grid_w + col.clamp(0, grid_w - 1), inside


def _option_scores(q: torch.Tensor, k: torch.Tensor, options: torch.Tensor, colours: torch.Tensor,
                   expected: torch.Tensor, colour_weight: float) -> torch.Tensor:
    """q (B, R, d) queries, k (B, K, d) keys, options (B, R, O) key indices, colours (B, K, 3) of the keys,
    expected (B, R, 3) -> (B, R, O) fp32: each option's cosine similarity to its row's query, less
    colour_weight times the L1 distance of its colour from the row's expected colour."""
    score = torch.matmul(_picked_rows(k, options), q.float()[..., None])[..., 0]
    if colour_weight > 0.0:
        picked = _picked_rows(colours, options)
        score = score - colour_weight * _abs(picked - expected.float()[:, :, None, :]).sum(dim=-1)
    return score


def _picked_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, K, C), index (B, R, O) rows of x per image -> (B, R, O, C) fp32: x's rows at index (one flat
    gather, which the exported graph keeps as a single Gather)."""
    batch, rows, width = index.shape
    keys_per_image = x.shape[1]
    flat = (index + (torch.arange(batch, device=x.device) * keys_per_image)[:, None, None]).flatten()
    return x.reshape(batch * keys_per_image, -1).float()[flat].reshape(batch, rows, width, x.shape[-1])


def _scores_on_rows(q: torch.Tensor, k: torch.Tensor, options: torch.Tensor, colours: torch.Tensor,
                    expected: torch.Tensor, colour_weight: float, rows: torch.Tensor) -> torch.Tensor:
    """`_option_scores` (B, N, O) of q, k (B, N, d), options (B, N, O), colours, expected (B, N, 3), computed on
    the rows where `rows` (B, N) bool is set only; NO_OPTION elsewhere."""
    batch, n, _ = options.shape
    flat_rows = rows.flatten().nonzero()[:, 0]
    picked = _option_scores(q.reshape(batch * n, -1)[flat_rows][None], k.reshape(1, batch * n, -1),
                            (options.reshape(batch * n, -1)[flat_rows] + (flat_rows // n * n)[:, None])[None],
                            colours.reshape(1, batch * n, -1), expected.reshape(batch * n, -1)[flat_rows][None],
                            colour_weight)[0]
    scores = torch.full(options.shape, _consts.NO_OPTION, dtype=picked.dtype, device=q.device)
    scores.reshape(batch * n, -1)[flat_rows] = picked
    return scores


def _abs(x: torch.Tensor) -> torch.Tensor:
    """|x| as two Relus (the TensorRT operator list has neither Abs nor Neg)."""
    return torch.relu(x) + torch.relu(0.0 - x)


def _neighbour_mean(x: torch.Tensor, count: torch.Tensor, column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> the mean of each cell's 4 grid neighbours; count (B, 1, h, w): how many it has;
    column, row: x's `_zero_border`."""
    padded = _pad_with(x, column, row)
    total = padded[:, :, :-2, 1:-1] + padded[:, :, 2:, 1:-1] + padded[:, :, 1:-1, :-2] + padded[:, :, 1:-1, 2:]
    return total / count


def _halve(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, h / 2, w / 2): sums of 2 x 2 cells (h, w even; ReduceSum, no AveragePool)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).sum(dim=(3, 5))


def harmonic_fill(values: torch.Tensor, fixed: torch.Tensor, levels: int) -> torch.Tensor:
    """A membrane through the fixed cells: (B, C, h, w) `values` where `fixed` (B, 1, h, w, float {0, 1}) is
    set; elsewhere an approximation of the discrete harmonic interpolation (each free cell the mean of its
    grid neighbours: Laplace's equation with the fixed cells as boundary), by a coarse-to-fine multigrid:
    `levels` halvings (h and w divisible by 2 ** levels; a coarse cell is fixed where at least half of its
    four are), JACOBI_COARSEST_SWEEPS neighbour-mean sweeps on the coarsest grid starting from the fixed
    cells' mean, then at each finer grid JACOBI_SWEEPS sweeps starting from the coarser solution
    (`membrane_pyramid`, `membrane_sweeps`). Without a fixed cell the free cells are 0."""
    value_levels, fixed_levels, x = membrane_pyramid(values, fixed, levels)
    for level in range(levels, -1, -1):
        value, weight = value_levels[level], fixed_levels[level]
        if level < levels:
            x = _per_pixel(x, 2)
        is_fixed = weight > 0
        x = jacobi_sweeps(torch.where(is_fixed, value, x), value, is_fixed, neighbour_count(weight),
                          membrane_sweeps(level, levels))
    return x


def poisson_fill(values: torch.Tensor, fixed: torch.Tensor, rhs: torch.Tensor, levels: int) -> torch.Tensor:
    """`harmonic_fill` with a right-hand side: (B, C, h, w) `values` where `fixed` (B, 1, h, w, float {0, 1}) is
    set; elsewhere an approximation of the discrete Poisson solution (each free cell's grid Laplacian, the sum of
    its neighbours less their count times the cell, equals its rhs (B, C, h, w)), by the same coarse-to-fine
    multigrid and sweeps; a coarse cell's rhs is the sum of its four (the Laplacian of a grid of twice the spacing
    is four times as large)."""
    value_levels, fixed_levels, x = membrane_pyramid(values, fixed, levels)
    rhs_levels = [rhs]
    for _ in range(levels):
        rhs_levels.append(_halve(rhs_levels[-1]))
    for level in range(levels, -1, -1):
        value, weight = value_levels[level], fixed_levels[level]
        if level < levels:
            x = _per_pixel(x, 2)
        is_fixed = weight > 0
        count = neighbour_count(weight)
        column, row = _zero_border(x)
        shift = rhs_levels[level] / count
        x = torch.where(is_fixed, value, x)
        for _ in range(membrane_sweeps(level, levels)):
            x = torch.where(is_fixed, value, _neighbour_mean(x, count, column, row) - shift)
    return x


def jacobi_sweeps(x: torch.Tensor, value: torch.Tensor, is_fixed: torch.Tensor, count: torch.Tensor,
                  sweeps: int) -> torch.Tensor:
    """`sweeps` Jacobi sweeps of `harmonic_fill` from x: every free cell of x, value (B, C, h, w) becomes the
    mean of its grid neighbours, every cell where is_fixed (B, 1, h, w) bool is set its value; count
    (B, 1, h, w): `neighbour_count`."""
    column, row = _zero_border(x)
    for _ in range(sweeps):
        x = torch.where(is_fixed, value, _neighbour_mean(x, count, column, row))
    return x


def neighbour_count(grid: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w) -> each cell's number of grid neighbours (2, 3 or 4), in grid's dtype."""
    ones = torch.ones_like(grid)
    return _neighbour_mean(ones, ones, *_zero_border(ones))


def membrane_pyramid(values: torch.Tensor, fixed: torch.Tensor,
                     levels: int) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """`harmonic_fill`'s grids: values * fixed and fixed (B, 1, h, w) at full size and after each of `levels`
    halvings (a coarse cell's value the mean of its fixed cells; fixed where at least COARSE_FIXED_SHARE of its
    four are), finest first, and the coarsest grid's start (the mean of its fixed cells everywhere)."""
    value_levels, fixed_levels = [values * fixed], [fixed]
    for _ in range(levels):
        value, weight = value_levels[-1], fixed_levels[-1]
        weight_sum = _halve(weight)
        value_levels.append(_halve(value * weight) / weight_sum.clamp(min=1.0))
        fixed_levels.append((weight_sum > 4 * _consts.COARSE_FIXED_SHARE - 0.5).to(values.dtype))   # >= without GreaterOrEqual
    value, weight = value_levels[-1], fixed_levels[-1]
    mean = (value * weight).sum(dim=(2, 3), keepdim=True) / weight.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
    return value_levels, fixed_levels, mean.expand_as(value)


def membrane_sweeps(level: int, levels: int) -> int:
    """`harmonic_fill`'s Jacobi sweeps at `level` (0: the finest) of `levels` halvings."""
    return _consts.JACOBI_COARSEST_SWEEPS if level == levels else _consts.JACOBI_SWEEPS


def border_match(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, sigma: float) -> torch.Tensor:
    """The fill shifted by a membrane of its colour mismatch at the hole's border (`ModelConfig.copy_border_sigma`).

    composite: (B, 3, h, w) image with known pixels real; mask: (B, 1, h, w) float {0, 1}, 1 = hole; filled:
    (B, 3, h, w) the fill (hole pixels used). At each hole pixel touching a known one (8-neighbourhood) the
    mismatch is the Gaussian (sigma px) mean of the known pixels around it minus that of the fill's hole pixels
    around it (`border_mismatch`); `harmonic_fill` carries it smoothly over the hole (Laplace's equation with
    those pixels fixed), and the hole pixels of the fill get it added (clamped to [0, 1]): a gradient-domain
    correction, so the fill meets its surroundings' colour and brightness without a step while its own texture
    is kept. h and w are multiples of 2 ** BORDER_MATCH_LEVELS. Returns (B, 3, h, w); known pixels are
    `filled`'s."""
    mismatch, at_border = border_mismatch(composite, mask, filled, sigma)
    membrane = harmonic_fill(mismatch, at_border, _consts.BORDER_MATCH_LEVELS)
    return torch.where(mask > 0, (filled + membrane).clamp(0.0, 1.0), filled)


def border_mismatch(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor,
                    sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`border_match`'s boundary: (the mismatch (B, 3, h, w), zero away from the border; the hole pixels that
    touch a known one (B, 1, h, w) float {0, 1})."""
    return mismatch_from_means(blur_base(border_stack(composite, mask, filled), sigma), mask)


def border_stack(composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """What `border_mismatch` blurs: (B, 8, h, w) = the known pixels and their weight, the fill's hole pixels and
    theirs."""
    known = 1.0 - mask
    return torch.cat([composite * known, known, filled * mask, mask], dim=1)


def mismatch_from_means(means: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`border_mismatch` from the Gaussian means of `border_stack` (B, 8, h, w) and mask (B, 1, h, w)."""
    known = 1.0 - mask
    known_mean = means[:, 0:3] / means[:, 3:4].clamp_min(_consts.MEAN_WEIGHT_FLOOR)
    fill_mean = means[:, 4:7] / means[:, 7:8].clamp_min(_consts.MEAN_WEIGHT_FLOOR)
    at_border = F.max_pool2d(known, 3, stride=1, padding=1) * mask
    return (known_mean - fill_mean) * at_border, at_border


def clear_keys(query_masked: torch.Tensor, key_ok: torch.Tensor, grid_w: int, clearance: int) -> torch.Tensor:
    """(B, N) bool: the keys of key_ok (B, N) at least `clearance` 4-neighbour steps from every hole token
    (query_masked (B, N)) of the (N / grid_w, grid_w) token grid."""
    batch = query_masked.shape[0]
    near = query_masked.reshape(batch, 1, -1, grid_w).to(torch.float32)
    for _ in range(clearance):   # > 0 within the steps taken so far (a sum, not a max: the exported graph's ops)
        near = F.max_pool2d(near, (3, 1), 1, (1, 0)) + F.max_pool2d(near, (1, 3), 1, (0, 1))
    return key_ok & (near.reshape(batch, -1) == 0.0)


def hole_spread(query_masked: torch.Tensor, key_ok: torch.Tensor, grid_w: int) -> torch.Tensor:
    """(B, 1) float32: the share of each image's keys (key_ok (B, N)) one 4-neighbour step from a hole token.
    0.15-0.40 for strokes spread over the image, 0.02-0.09 for one or two compact objects (the saved masks of
    docs/quality.md at 1K); 0 for an image without keys."""
    keys = key_ok.to(torch.float32).sum(dim=-1, keepdim=True)
    clear = clear_keys(query_masked, key_ok, grid_w, 1).to(torch.float32).sum(dim=-1, keepdim=True)
    return (keys - clear) / keys.clamp_min(1.0)


def allowed_keys(query_masked: torch.Tensor, key_inside: torch.Tensor, grid_w: int, clearance: int,
                 max_loss: float = 1.0) -> torch.Tensor:
    """(B, N) bool, the tokens a hole token may copy: known (not query_masked (B, N)), key_inside (B, N), and with
    clearance > 0 at least `clearance` 4-neighbour steps from every hole token of the (N / grid_w, grid_w) grid
    (`ModelConfig.key_hole_clearance`). A source next to a hole has no known texture beyond that edge, so its
    copy's cross-fade with the next copy is one-sided and they meet at a step (the token staircase). An image
    whose known, inside keys the clearance would cut by more than `max_loss` (a share; strokes spread over the image
    leave few sources clear of them, and the nearest look-alikes go), or leave without any, keeps them all."""
    key_ok = ~query_masked & key_inside
    if clearance <= 0:
        return key_ok
    clear = clear_keys(query_masked, key_ok, grid_w, clearance)
    keys = key_ok.to(torch.float32).sum(dim=-1, keepdim=True)
    kept = clear.to(torch.float32).sum(dim=-1, keepdim=True)
    too_few = ((1.0 - max_loss) * keys).clamp_min(1.0) > kept   # Greater, no bool Where/any: the exported graph
    return clear | (key_ok & too_few)


def detail_levels(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, gh * P, gw * P) -> each token's detail level (B, 1, gh, gw): the log of the mean over its pixels of
    the L1 (RGB) difference between the image and its Gaussian blur (DETAIL_SIGMA px), clamped to
    [DETAIL_MIN, DETAIL_MAX] (flat sky about 0.003, foliage 0.1 and more), so two levels differ by at most
    DETAIL_LEVEL_SPAN."""
    detail = _abs(image - blur_base(image, _consts.DETAIL_SIGMA)).sum(dim=1, keepdim=True)
    return torch.log(token_colours(detail, patch).clamp(_consts.DETAIL_MIN, _consts.DETAIL_MAX))


def detail_keys(q: torch.Tensor, k: torch.Tensor, levels: torch.Tensor, expected: torch.Tensor,
                weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k (B, N, d); levels, expected (B, N, 1) float32 (each token's `detail_levels`, the level expected
    at it); weight (B, 1, 1) float32, one per image (or a 0-d tensor for all) -> q', k' (B, N, d + 3) of q's dtype
    with q'_i . k'_j = q_i . k_j - weight * (expected_i - levels_j)^2:
    the copy's similarities lose the squared distance between a key's detail level and the level expected at
    the hole token, so a smooth source is not copied into textured surroundings (a blurred blotch) nor a
    busy one into smooth surroundings. Three more dimensions instead of another term, so every backend's
    candidate search and propagation (`copy_candidates`, `choose_sources`) takes it unchanged."""
    root = torch.sqrt(2.0 * weight)
    ones = torch.ones_like(levels)
    minus_weight = -1.0 * weight                   # a Mul, not a Neg, in the exported graph
    q_extra = torch.cat([root * expected, ones, minus_weight * expected * expected], dim=-1)
    k_extra = torch.cat([root * levels, minus_weight * levels * levels, ones], dim=-1)
    return torch.cat([q, q_extra.to(q.dtype)], dim=-1), torch.cat([k, k_extra.to(k.dtype)], dim=-1)


def token_colours(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, gh * P, gw * P) -> each token's mean colour (B, 3, gh, gw)."""
    b, c, h, w = image.shape
    return image.reshape(b, c, h // patch, patch, w // patch, patch).sum(dim=(3, 5)) * (1.0 / (patch * patch))


def copy_candidates(q: torch.Tensor, k: torch.Tensor, colours: torch.Tensor, expected: torch.Tensor,
                    query_masked: torch.Tensor, key_ok: torch.Tensor, pool: int, colour_weight: float,
                    compact: bool, grid_w: int = 1, locality: float = 0.0) -> torch.Tensor:
    """The keys each hole token's copy is chosen from (`choose_sources`), (B, N, COPY_CANDIDATES) int64.

    q, k: (B, N, d) unit vectors; colours: (B, N, 3) each token's mean colour; expected: (B, N, 3) the
    colour expected at each token (`NeuralPatchMatch.expected_values`); query_masked, key_ok (B, N) bool.
    Of a hole token i's `pool` allowed keys j of highest similarity q_i . k_j, the COPY_CANDIDATES of
    highest q_i . k_j - colour_weight * |expected_i - colour_j|_1, best first (a source of the colour the
    surroundings predict continues the hole's content; similarity alone copies look-alikes of any colour).
    Entries past the allowed keys, and every entry of a known row, are not allowed keys (`choose_sources`
    ignores them). compact: computed over hole rows x allowed keys only (eager inference; data-dependent
    sizes), else densely over all N x N pairs (the exported graph). locality > 0: the similarities that choose
    and rank the pool lose locality times the distance between the hole token and the key (`token_distance`,
    on the grid of width grid_w): of look-alikes, the nearer one is copied (its content and colour are likelier
    to be what the hole hides); the options' scores in `choose_sources` stay the similarities.
    """
    batch, n = query_masked.shape
    width = _consts.COPY_CANDIDATES
    own = torch.arange(n, device=q.device)
    if not compact:
        allowed = query_masked[:, :, None] & key_ok[:, None, :]
        similarity = torch.bmm(q.float(), k.float().transpose(1, 2))
        if locality > 0.0:
            similarity = similarity - locality * token_distance(own, own, n // grid_w, grid_w)[None]
        similarity = torch.where(allowed, similarity, torch.full_like(similarity, _consts.NOT_ALLOWED))
        return _rank_by_colour(similarity, colours, expected, pool, colour_weight, width)
    candidates = own[None, :, None].expand(batch, n, width).clone()
    for b in range(batch):
        rows, keys = query_masked[b].nonzero()[:, 0], key_ok[b].nonzero()[:, 0]
        if len(rows) == 0 or len(keys) == 0:
            continue
        similarity = q[b, rows].float() @ k[b, keys].float().T
        if locality > 0.0:
            similarity = similarity - locality * token_distance(rows, keys, n // grid_w, grid_w)
        chosen = _rank_by_colour(similarity[None], colours[b, keys][None], expected[b, rows][None], pool,
                                 colour_weight, width)[0]
        candidates[b, rows, :chosen.shape[-1]] = keys[chosen]
    return candidates


def token_distance(rows: torch.Tensor, keys: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Token indices rows (R,) and keys (K,) of a grid_h x grid_w grid -> (R, K) float32: the Euclidean distance
    between their cells in units of the grid's longer side (0 .. sqrt(2)), so that a penalty on it means the same
    at every LR size."""
    row_y, row_x = (rows // grid_w).float(), _modulo(rows, grid_w).float()
    key_y, key_x = (keys // grid_w).float(), _modulo(keys, grid_w).float()
    dy, dx = row_y[:, None] - key_y[None, :], row_x[:, None] - key_x[None, :]
    return torch.sqrt(dy * dy + dx * dx) * (1.0 / max(grid_h, grid_w))


def _rank_by_colour(similarity: torch.Tensor, colours: torch.Tensor, expected: torch.Tensor, pool: int,
                    colour_weight: float, width: int) -> torch.Tensor:
    """similarity (B, R, K) of rows to keys (NOT_ALLOWED where ruled out), colours (B, K, 3) of the keys,
    expected (B, R, 3) of the rows -> (B, R, min(width, pool, K)) key positions, best first: the `pool` most
    similar keys re-ranked by similarity - colour_weight * L1 colour distance (ruled-out keys stay last)."""
    batch, rows, keys = similarity.shape
    top_similarity, top = similarity.topk(min(pool, keys), dim=-1)                       # (B, R, pool)
    first_key = (torch.arange(batch, device=similarity.device) * keys)[:, None, None]
    picked = colours.reshape(batch * keys, -1)[(top + first_key).flatten()].reshape(batch, rows, top.shape[-1], -1)
    distance = _abs(picked - expected[:, :, None, :]).sum(dim=-1)
    score = top_similarity - colour_weight * distance
    score = torch.where(top_similarity > _consts.NOT_ALLOWED, score, torch.full_like(score, _consts.NOT_ALLOWED))
    _, order = score.topk(min(width, top.shape[-1]), dim=-1)
    return torch.gather(top, 2, order)


def coherence_layer(hidden: int, dilations: tuple[int, ...]) -> nn.Sequential:
    """Residual conv stack (B, 7 = mixed RGB + coarse RGB + mask, h, w) -> (B, 3, h, w) correction.

    Dilated 3x3 convs widen the receptive field past a token so that a seam sees both patches' interiors.
    """
    layers: list[nn.Module] = []
    channels = 7
    for dilation in dilations:
        layers += [nn.Conv2d(channels, hidden, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
        channels = hidden
    layers.append(nn.Conv2d(channels, 3, 3, padding=1))
    return nn.Sequential(*layers)


class NeuralPatchMatch(nn.Module):
    """Masked patch attention + token mixing + coherence layer at LR.

    forward(composite (B, 3, h, w), coarse (B, 3, h, w), mask (B, 1, h, w) float, features
    (B, Cf, gh, gw), key_inside (B, N) bool, topk) -> (refined (B, 3, h, w), mixed (B, 3, h, w) (tokens mixed
    by A, before the coherence layer), A (B, N, N) or, with topk=K, its rows' `TopKRows` (computed over
    hole rows x allowed keys only), query_masked (B, N), key_ok (B, N)). With lr_texture="copy" refined =
    mixed = the hard copies and A is the chosen source per token as `TopKRows` with K = 1.
    """

    def __init__(self, cfg: ModelConfig, feature_channels: int):
        super().__init__()
        self.patch = cfg.patch_size
        self.copy = cfg.lr_texture == "copy"
        self.copy_feather = cfg.copy_feather
        self.copy_base_feather, self.copy_base_sigma = cfg.copy_base_feather, cfg.copy_base_sigma
        self.copy_border_sigma = cfg.copy_border_sigma
        self.copy_pool = cfg.copy_pool
        self.copy_locality = float(cfg.copy_locality)
        self.copy_colour_weight = float(cfg.copy_colour_weight)
        self.copy_detail_weight = float(cfg.copy_detail_weight)
        self.copy_sweeps, self.copy_continuity = cfg.copy_sweeps, float(cfg.copy_continuity)
        self.copy_border_continuity = float(cfg.copy_border_continuity)
        self.copy_support_margin = float(cfg.copy_support_margin)
        self.copy_match_sweeps = cfg.copy_match_sweeps
        self.copy_consensus = float(cfg.copy_consensus)
        self.copy_repeat_radius, self.copy_repeat_penalty = cfg.copy_repeat_radius, float(cfg.copy_repeat_penalty)
        self.key_hole_clearance = cfg.key_hole_clearance
        self.key_hole_clearance_max_loss = float(cfg.key_hole_clearance_max_loss)
        self.copy_detail_min_spread = float(cfg.copy_detail_min_spread)
        self.copy_kernels = None   # a backend's copy steps: native `CopyKernels` (C++), triton `TritonCopyKernels`
        self.propagation_kernel = None   # a backend's `propagate_sources`: triton `kernels.source_sweep`
        self.candidates_kernel = None    # a backend's `copy_candidates` (compact): triton `kernels.copy_candidates`
        self.colour_levels = (cfg.grid_multiple // cfg.patch_size).bit_length() - 1   # token grid sides divide by 2 ** this
        in_dim = cfg.token_dim + feature_channels
        self.to_q = nn.Linear(in_dim, cfg.attn_dim)
        self.to_k = nn.Linear(in_dim, cfg.attn_dim)
        # start as nearest-neighbour search: identical Q and K projections (q_i . k_j ~ similarity of i and j)
        self.to_k.load_state_dict(self.to_q.state_dict())
        self.log_logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)).log())
        self.max_log_logit_scale = float(torch.tensor(cfg.max_logit_scale).log())
        self.coherence = coherence_layer(cfg.coherence_hidden, cfg.coherence_dilations)
        nn.init.zeros_(self.coherence[-1].weight)
        nn.init.zeros_(self.coherence[-1].bias)

    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.clamp(max=self.max_log_logit_scale).exp()

    def project(self, tokens: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, 3P^2), features (B, Cf, gh, gw) -> unit-norm q, k (B, N, d)."""
        x = torch.cat([tokens - _consts.PIXEL_CENTER, features.flatten(2).transpose(1, 2)], dim=-1)
        eps = _consts.NORM_EPS
        return F.normalize(self.to_q(x), dim=-1, eps=eps), F.normalize(self.to_k(x), dim=-1, eps=eps)

    def forward(self, composite, coarse, mask, features, key_inside, topk: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | TopKRows, torch.Tensor, torch.Tensor]:
        grid_h, grid_w = features.shape[-2], features.shape[-1]
        tokens = patchify(composite, self.patch)
        query_masked = token_mask(mask, self.patch)
        key_ok = self.allowed_keys(query_masked, key_inside, grid_w)
        q, k = self.project(tokens, features)
        if self.copy:
            q, k = self.copy_keys(composite, q, k, key_ok, query_masked, key_inside)
            candidates, colours, expected = self.copy_candidates(composite, q, k, query_masked, key_ok, topk is not None)
            return self.copy_outputs(composite, mask, q, k, candidates, colours, expected, query_masked, key_ok, grid_w,
                                     topk is not None)
        if topk is None:
            dense = masked_attention(q, k, query_masked, key_ok, self.logit_scale())
            mixed_tokens = torch.bmm(dense, tokens.float()).to(tokens.dtype)
            attn = as_attention(dense)
        else:
            mixed_tokens, rows = masked_attention_topk(q, k, tokens, query_masked, key_ok, self.logit_scale(), topk)
            attn = as_attention(rows)
        mixed = unpatchify(mixed_tokens, self.patch, grid_h, grid_w)
        refined = mixed + self.coherence(cat_channels([mixed, coarse, mask]))
        return refined, mixed, attn, query_masked, key_ok

    def expected_values(self, value_grid: torch.Tensor, key_ok: torch.Tensor) -> torch.Tensor:
        """value_grid (B, C, gh, gw) a value per token (their mean colours, detail levels), key_ok (B, N) bool ->
        (B, N, C): the allowed keys' own values, and on every other token the membrane through them
        (`harmonic_fill` on the token grid): the value a hole token's surroundings predict."""
        fixed = key_ok.reshape(value_grid.shape[0], 1, value_grid.shape[2], value_grid.shape[3])
        return harmonic_fill(value_grid, fixed.to(value_grid.dtype), self.colour_levels).flatten(2).transpose(1, 2)

    def allowed_keys(self, query_masked: torch.Tensor, key_inside: torch.Tensor, grid_w: int) -> torch.Tensor:
        """`allowed_keys` with this module's clearance and its largest loss of keys: (B, N) bool."""
        return allowed_keys(query_masked, key_inside, grid_w, self.key_hole_clearance, self.key_hole_clearance_max_loss)

    def copy_keys(self, composite: torch.Tensor, q: torch.Tensor, k: torch.Tensor, key_ok: torch.Tensor,
                  query_masked: torch.Tensor, key_inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The copy's q, k (B, N, d): with copy_detail_weight > 0 `detail_keys` of composite's detail levels and
        their membrane through the allowed keys (B, N, d + 3), the weight 0 for an image whose `hole_spread` (over
        its known tokens key_inside (B, N) bool) is under copy_detail_min_spread; else q, k themselves."""
        if self.copy_detail_weight <= 0.0:
            return q, k
        level_grid = detail_levels(composite.float(), self.patch)
        expected = self.expected_values(level_grid, key_ok)
        weight = torch.full((q.shape[0], 1, 1), self.copy_detail_weight, dtype=torch.float32, device=q.device)
        if self.copy_detail_min_spread > 0.0:
            spread = hole_spread(query_masked, ~query_masked & key_inside, level_grid.shape[-1])
            under = torch.gt(torch.full_like(spread, self.copy_detail_min_spread), spread)   # Greater: the exported graph's ops
            weight = weight * (~under).to(torch.float32)[..., None]
        return detail_keys(q, k, level_grid.flatten(2).transpose(1, 2), expected, weight)

    def copy_candidates(self, composite, q, k, query_masked, key_ok, compact: bool):
        """`copy_candidates` with this module's pool, colour weight and locality -> (candidates (B, N,
        COPY_CANDIDATES) int64, the tokens' mean colours (B, N, 3), the expected colours (B, N, 3)), for
        `copy_outputs`."""
        colour_grid = token_colours(composite, self.patch).float()
        colours = colour_grid.flatten(2).transpose(1, 2)
        if self.copy_colour_weight > 0.0:
            expected = self.expected_values(colour_grid, key_ok)
        else:                                  # unused without the colour term: skip the membrane
            expected = colours
        if self.candidates_kernel is not None and not torch.jit.is_scripting():
            candidates = self.kernel_candidates(q, k, colours, expected, query_masked, key_ok, colour_grid.shape[-1])
        else:
            candidates = copy_candidates(q, k, colours, expected, query_masked, key_ok, self.copy_pool,
                                         self.copy_colour_weight, compact, colour_grid.shape[-1], self.copy_locality)
        return candidates, colours, expected

    @torch.jit.unused
    def kernel_candidates(self, q, k, colours, expected, query_masked, key_ok, grid_w: int) -> torch.Tensor:
        """`copy_candidates` by `self.candidates_kernel` (the compact rows, without host syncs)."""
        return self.candidates_kernel(q, k, colours, expected, query_masked, key_ok, self.copy_pool,
                                      self.copy_colour_weight, grid_w, self.copy_locality)

    @torch.jit.unused
    def kernel_copies(self, composite: torch.Tensor, mask: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """`copy_tokens` then (copy_border_sigma > 0) `border_match`, by `self.copy_kernels`."""
        return self.copy_kernels(composite, mask, source, self.patch, self.copy_feather, self.copy_base_feather,
                                 self.copy_base_sigma, self.copy_border_sigma)

    @torch.jit.unused
    def kernel_sources(self, q, k, candidates, colours, expected, query_masked, key_ok, grid_w: int,
                       compact: bool) -> torch.Tensor:
        """`choose_sources` with its propagation updates by `self.propagation_kernel`."""
        source, own_score, valid, has_key = start_sources(q, k, candidates, query_masked, key_ok, colours, expected,
                                                          self.copy_colour_weight, compact)
        if self.copy_border_continuity > 0.0:
            source = border_lookalikes(k, has_key, key_ok, source, grid_w, compact)
        source = self.propagation_kernel(q, k, candidates, own_score, valid, has_key, key_ok, source, grid_w, colours,
                                         expected, self.copy_colour_weight, self.copy_sweeps, self.copy_continuity,
                                         self.copy_repeat_radius, self.copy_repeat_penalty,
                                         self.copy_border_continuity, self.copy_support_margin)
        return copies_only(source, has_key)

    def copy_outputs(self, composite, mask, q, k, candidates, colours, expected, query_masked, key_ok, grid_w: int,
                     compact: bool):
        """forward's outputs with lr_texture="copy": every hole token takes the pixels of the source
        `choose_sources` picks among its candidates (`copy_tokens`; known tokens and holes without an allowed
        key keep their own), no coherence layer; the attention output is that choice as `TopKRows` with K = 1
        (weight 1 on hole rows that copy), so the HR stage transfers the same source's texture."""
        if self.propagation_kernel is not None and not torch.jit.is_scripting():
            source = self.kernel_sources(q, k, candidates, colours, expected, query_masked, key_ok, grid_w, compact)
        else:
            source = choose_sources(q, k, candidates, query_masked, key_ok, grid_w, colours, expected,
                                    self.copy_colour_weight, self.copy_sweeps, self.copy_continuity, compact,
                                    self.copy_repeat_radius, self.copy_repeat_penalty, self.copy_border_continuity,
                                    self.copy_support_margin)
        if self.copy_kernels is not None and not torch.jit.is_scripting():
            copied = self.kernel_copies(composite, mask, source)
        else:
            copied = copy_tokens(composite, 1.0 - mask, source, self.patch, self.copy_feather,
                                 base_feather=self.copy_base_feather, base_sigma=self.copy_base_sigma)
            if self.copy_border_sigma > 0.0:
                copied = border_match(composite, mask, copied, self.copy_border_sigma)
        own = torch.arange(source.shape[1], device=source.device)
        copies = query_masked & (source != own)
        if self.copy_consensus > 0.0:
            offsets = consensus_offsets(q, k, candidates, key_ok, copies, colours, copied, mask, self.patch,
                                        self.logit_scale(), self.copy_consensus)
            copied = add_token_offsets(copied, mask, offsets, grid_w, self.patch)
        if self.copy_match_sweeps > 0:
            offsets = copy_colour_offsets(colours, source, copies, key_ok, grid_w, self.copy_match_sweeps)
            copied = add_token_offsets(copied, mask, offsets, grid_w, self.patch)
        weight = copies.to(torch.float32)[..., None]
        return copied, copied, TopKRows(weight, source[..., None]), query_masked, key_ok
