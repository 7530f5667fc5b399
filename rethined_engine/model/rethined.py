"""The whole RETHINED model in plain torch: the reference every backend matches."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..config import ModelConfig
from ..geometry import pad_to, plan
from .coarse import CoarseNet
from .patchmatch import NeuralPatchMatch, TopKRows
from .reparam import reparameterize_model
from .upscale import attention_upscale, downsample


class LROutput(NamedTuple):
    """Everything the LR network produces. Images (B, 3, h, w) in [0, 1]; tokens N = (h/P) * (w/P)."""

    result: torch.Tensor        # composited LR inpainting
    coarse: torch.Tensor        # coarse CNN output (not composited)
    refined: torch.Tensor       # NeuralPatchMatch + coherence output (not composited)
    mixed: torch.Tensor         # tokens mixed by the attention, before the coherence layer
    attn: torch.Tensor | TopKRows  # (B, N, N) fp32 attention, or its rows' top K (forward_lr(topk=K))
    query_masked: torch.Tensor  # (B, N) bool
    key_ok: torch.Tensor        # (B, N) bool


class Rethined(nn.Module):
    """Coarse CNN + NeuralPatchMatch at LR, attention upscaling to HR."""

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.coarse_net = CoarseNet(cfg)
        self.patch_match = NeuralPatchMatch(cfg, self.coarse_net.feature_channels)

    def reparameterize(self) -> "Rethined":
        """Fold BN and MobileOne branches into single convs (inference form, eval mode)."""
        return reparameterize_model(self)

    def forward_lr(self, image: torch.Tensor, mask: torch.Tensor, key_inside: torch.Tensor,
                   topk: int | None = None) -> LROutput:
        """image (B, 3, h, w) in [0, 1] (hole values ignored), mask (B, 1, h, w) float {0, 1}, key_inside
        (B, N) or (N,) bool; h, w multiples of 32. topk=K: the attention is computed over hole rows x
        allowed keys only and `LROutput.attn` holds its rows' top K (eager inference)."""
        coarse, features = self.coarse_net(image, mask)
        composite = torch.where(mask > 0, coarse, image)
        key_inside = key_inside.expand(image.shape[0], -1)
        refined, mixed, attn, query_masked, key_ok = self.patch_match(composite, coarse, mask, features, key_inside, topk)
        result = torch.where(mask > 0, refined.clamp(0.0, 1.0), image)
        return LROutput(result, coarse, refined, mixed, attn, query_masked, key_ok)

    def prepare(self, image: torch.Tensor, mask: torch.Tensor):
        """image (B, 3, H, W) in [0, 1], mask (B, 1, H, W) float {0, 1} -> (geometry, padded HR image with
        holes zeroed, padded mask, LR image, LR mask)."""
        geom = plan(image.shape[-2], image.shape[-1], self.cfg)
        padded = pad_to(image * (1.0 - mask), geom.padded_size)
        padded_mask = pad_to(mask, geom.padded_size)
        lr_image, lr_mask = downsample(padded, padded_mask, geom.scale)
        return geom, padded, padded_mask, lr_image, lr_mask

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Inpaint at full resolution.

        image: (B, 3, H, W) float in [0, 1]; mask: (B, 1, H, W) bool or {0, 1}, True = fill.
        Returns (B, 3, H, W) in image.dtype with known pixels equal to the input.
        """
        height, width = image.shape[-2:]
        mask = mask.to(image.dtype)
        geom, padded, padded_mask, lr_image, lr_mask = self.prepare(image, mask)
        lr = self.forward_lr(lr_image, lr_mask, geom.key_inside(image.device))
        if geom.scale == 1:
            hr = lr.result
        else:
            hr = attention_upscale(padded, padded_mask, lr.result, lr.attn, lr.query_masked, lr.key_ok,
                                   geom.scale, self.cfg.patch_size, self.cfg.hr_topk, self.cfg.hf_transfer,
                                   self.cfg.hf_decay, self.cfg.hf_fine_decay, self.cfg.hf_mid_gain)
        return torch.where(mask > 0, hr[..., :height, :width], image)
