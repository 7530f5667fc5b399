"""MobileOne-style re-parameterisable convolutions.

At train time a layer is a sum of branches (k x k conv+BN branches, a 1x1 conv+BN "scale" branch and
a BN-only identity branch); `reparameterize()` folds them into one k x k conv with bias, which is what
inference runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fuse_conv_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold BN (eval statistics) into a conv weight (O, I/g, k, k); returns (weight, bias)."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gain = bn.weight / std
    return weight * gain.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * gain


class ReparamConv(nn.Module):
    """k x k conv (any groups/stride) built from MobileOne train-time branches.

    Input (B, in_ch, H, W) -> output (B, out_ch, H/stride, W/stride); 'same' padding.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 branches: int = 2):
        super().__init__()
        self.in_ch, self.out_ch, self.k, self.stride, self.groups = in_ch, out_ch, kernel_size, stride, groups
        self.conv_branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
                          nn.BatchNorm2d(out_ch))
            for _ in range(branches))
        self.scale_branch = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, 0, groups=groups, bias=False), nn.BatchNorm2d(out_ch))
            if kernel_size > 1 else None)
        self.identity_branch = nn.BatchNorm2d(out_ch) if in_ch == out_ch and stride == 1 else None
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        out = sum(branch(x) for branch in self.conv_branches)
        if self.scale_branch is not None:
            out = out + self.scale_branch(x)
        if self.identity_branch is not None:
            out = out + self.identity_branch(x)
        return out

    @torch.no_grad()
    def fused_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single (weight, bias) equal to the sum of all branches in eval mode."""
        weight = torch.zeros_like(self.conv_branches[0][0].weight)
        bias = torch.zeros(self.out_ch, device=weight.device, dtype=weight.dtype)
        for conv, bn in self.conv_branches:
            w, b = _fuse_conv_bn(conv.weight, bn)
            weight += w
            bias += b
        pad = self.k // 2
        if self.scale_branch is not None:
            w, b = _fuse_conv_bn(self.scale_branch[0].weight, self.scale_branch[1])
            weight += F.pad(w, (pad, pad, pad, pad))
            bias += b
        if self.identity_branch is not None:
            per_group = self.in_ch // self.groups
            eye = torch.zeros_like(weight)
            channels = torch.arange(self.out_ch, device=weight.device)
            eye[channels, channels % per_group, pad, pad] = 1.0
            w, b = _fuse_conv_bn(eye, self.identity_branch)
            weight += w
            bias += b
        return weight, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one conv with bias (inference form). Irreversible."""
        if self.fused is not None:
            return
        weight, bias = self.fused_weight_bias()
        self.fused = nn.Conv2d(self.in_ch, self.out_ch, self.k, self.stride, self.k // 2, groups=self.groups,
                               bias=True).to(device=weight.device, dtype=weight.dtype)
        self.fused.weight.copy_(weight)
        self.fused.bias.copy_(bias)
        del self.conv_branches, self.scale_branch, self.identity_branch
        self.conv_branches, self.scale_branch, self.identity_branch = nn.ModuleList(), None, None


class MobileOneBlock(nn.Module):
    """Depthwise 3x3 (stride s) -> act -> pointwise 1x1 -> act, both re-parameterisable.

    (B, in_ch, H, W) -> (B, out_ch, H/s, W/s).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, branches: int = 2):
        super().__init__()
        self.depthwise = ReparamConv(in_ch, in_ch, 3, stride, groups=in_ch, branches=branches)
        self.pointwise = ReparamConv(in_ch, out_ch, 1, 1, groups=1, branches=branches)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pointwise(self.act(self.depthwise(x))))


def reparameterize_model(model: nn.Module) -> nn.Module:
    """Fuse every ReparamConv of `model` in place (switches to eval mode first); returns `model`."""
    model.eval()
    for module in model.modules():
        if isinstance(module, ReparamConv):
            module.reparameterize()
    return model
