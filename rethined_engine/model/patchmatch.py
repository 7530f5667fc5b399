"""NeuralPatchMatch: token attention from masked patches to known patches, at LR.

Shapes: an LR image (B, C, h, w) with h = gh * P and w = gw * P splits into N = gh * gw non-overlapping
P x P tokens (row-major over the grid) of C * P * P values, channel-major (c, dy, dx) as
`pixel_unshuffle` orders them.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .layout import cat_channels

PIXEL_CENTER = 0.5  # tokens are centred before projection so that cosine similarity sees contrast, not brightness
NORM_EPS = 1e-6     # floor of |q|, |k| before normalising; 1e-12 (torch's default) is 0 in fp16


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
    hole rows x allowed keys only), query_masked (B, N), key_ok (B, N)).
    """

    def __init__(self, cfg: ModelConfig, feature_channels: int):
        super().__init__()
        self.patch = cfg.patch_size
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
        x = torch.cat([tokens - PIXEL_CENTER, features.flatten(2).transpose(1, 2)], dim=-1)
        return F.normalize(self.to_q(x), dim=-1, eps=NORM_EPS), F.normalize(self.to_k(x), dim=-1, eps=NORM_EPS)

    def forward(self, composite, coarse, mask, features, key_inside, topk: int | None = None):
        grid_h, grid_w = features.shape[-2:]
        tokens = patchify(composite, self.patch)
        query_masked = token_mask(mask, self.patch)
        key_ok = ~query_masked & key_inside
        q, k = self.project(tokens, features)
        if topk is None:
            attn = masked_attention(q, k, query_masked, key_ok, self.logit_scale())
            mixed_tokens = torch.bmm(attn, tokens.float()).to(tokens.dtype)
        else:
            mixed_tokens, attn = masked_attention_topk(q, k, tokens, query_masked, key_ok, self.logit_scale(), topk)
        mixed = unpatchify(mixed_tokens, self.patch, grid_h, grid_w)
        refined = mixed + self.coherence(cat_channels([mixed, coarse, mask]))
        return refined, mixed, attn, query_masked, key_ok
