"""Coarse CNN f_theta: a small MobileOne encoder-decoder that fills the hole at LR."""
from __future__ import annotations

import sys
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .flat import known_membrane
from .layout import cat_channels
from .reparam import MobileOneBlock, ReparamConv

INPUT_CHANNELS = 4  # RGB with holes zeroed (or prefilled) + the hole mask
HEAD_HIDDEN = 16
PREFILL_CELL = 4      # LR px: the membrane prefill is solved on cells of this side and upsampled bilinearly
PREFILL_LEVELS = 3    # multigrid halvings of that cell grid (LR sides are multiples of 32 = PREFILL_CELL * 2 ** 3)
_consts = sys.modules[__name__]  # TorchScript reads module-level numbers only as a module's attributes: _consts.NAME


with warnings.catch_warnings():   # torch 2.13 deprecates TorchScript, which hosts such as Nuke still load
    warnings.simplefilter("ignore", DeprecationWarning)

    @torch.jit.interface
    class _Block(nn.Module):
        """What TorchScript needs to index the decoder with a loop variable: (B, C, H, W) -> (B, C', H, W)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pass


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def upsample_join(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """x (B, C1, h, w) upsampled 2x (bilinear) with skip (B, C2, 2h, 2w) after it along the channels: the torch
    form of `CoarseNet.join`."""
    return cat_channels([_upsample2x(x), skip])


def membrane_prefill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """image (B, 3, h, w) with holes zeroed, mask (B, 1, h, w) float {0, 1}, h and w multiples of 32 -> (B, 3, h, w):
    the image with its hole pixels a membrane through the known pixels (`ModelConfig.coarse_prefill` "membrane"):
    the mean known colour of every PREFILL_CELL x PREFILL_CELL cell that holds a known pixel is fixed, the other
    cells are harmonic (`harmonic_fill`), and the cell grid is upsampled bilinearly: a first guess of the hole's
    colours for the network to correct, where zeros tell it nothing."""
    membrane = known_membrane(image, mask, _consts.PREFILL_CELL, _consts.PREFILL_LEVELS)
    return torch.where(mask > 0, membrane, image)


class CoarseNet(nn.Module):
    """(B, 3, h, w) image in [0, 1] (hole values ignored), (B, 1, h, w) hole mask -> coarse RGB (B, 3, h, w)
    in [0, 1] and the decoder features at stride P (B, widths[feature_stage], h/P, w/P). The network sees the
    image with its holes zeroed, or with cfg.coarse_prefill "membrane" filled by `membrane_prefill`.

    h and w must be multiples of 32 (five stride-2 stages).
    """

    __jit_unused_properties__ = ["feature_channels"]   # Python-side only (TorchScript compiles properties)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w, n, k = cfg.widths, cfg.blocks_per_stage, cfg.train_branches
        self.feature_stage = cfg.feature_stage
        self.membrane_prefill = cfg.coarse_prefill == "membrane"
        self.stem = nn.Sequential(ReparamConv(INPUT_CHANNELS, w[0], 3, stride=2, branches=k), nn.ReLU(inplace=True))
        stages = [nn.Sequential(*[MobileOneBlock(w[0], w[0], 1, k) for _ in range(n[0])])]
        for i in range(1, 5):
            blocks = [MobileOneBlock(w[i - 1], w[i], 2, k)] + [MobileOneBlock(w[i], w[i], 1, k) for _ in range(n[i] - 1)]
            stages.append(nn.Sequential(*blocks))
        self.encoder = nn.ModuleList(stages)
        # decoder[i] merges the upsampled level i+1 with the skip of level i -> width w[i]
        self.decoder = nn.ModuleList(MobileOneBlock(w[i + 1] + w[i], w[i], 1, k) for i in range(4))
        self.head = nn.Sequential(
            nn.Conv2d(w[0] + INPUT_CHANNELS, HEAD_HIDDEN, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(HEAD_HIDDEN, 3, 3, padding=1))
        self.join_kernel = None   # a backend's `join`: native `UpsampleCat` (C++)

    @property
    def feature_channels(self) -> int:
        return self.decoder[self.feature_stage].pointwise.out_ch

    def join(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, C1, h, w) upsampled 2x (bilinear) with skip (B, C2, 2h, 2w) after it along the channels: the
        decoder's and the head's inputs."""
        if self.join_kernel is not None and not torch.jit.is_scripting():
            return self.kernel_join(x, skip)
        return upsample_join(x, skip)

    @torch.jit.unused
    def kernel_join(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """`join` by `self.join_kernel`."""
        return self.join_kernel(x, skip)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        known_image = image * (1.0 - mask)
        if self.membrane_prefill:
            known_image = membrane_prefill(known_image, mask)
        x_in = cat_channels([known_image, mask])
        skips = []
        x = self.stem(x_in)
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips[-1]
        features = x
        for i in range(3, -1, -1):
            block: _Block = self.decoder[i]
            x = block.forward(self.join(x, skips[i]))
            if i == self.feature_stage:
                features = x
        coarse = torch.sigmoid(self.head(self.join(x, x_in)))
        return coarse, features
