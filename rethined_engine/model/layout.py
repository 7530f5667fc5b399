"""Memory-layout helpers for the CPU path, where the model runs channels-last (oneDNN's convs are faster
on NHWC)."""
from __future__ import annotations

import torch


def cat_channels(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat along dim 1 (B, C_i, H, W) -> (B, sum C_i, H, W), channels-last when the first tensor is.

    torch.cat returns NCHW as soon as one input's layout is ambiguous (a 1-channel mask is contiguous in
    both layouts), and the next convolution then copies the whole result back to channels-last (11 ms of
    a 2048² CPU call for the head's 36-channel input). Outside autograd the result is written straight
    into a channels-last tensor instead."""
    first = tensors[0]
    channels_last = (first.dim() == 4 and not first.is_contiguous()
                     and first.is_contiguous(memory_format=torch.channels_last))
    if not channels_last or (torch.is_grad_enabled() and any([t.requires_grad for t in tensors])):
        return torch.cat(tensors, dim=1)
    shape = [first.shape[0], sum([t.shape[1] for t in tensors]), first.shape[2], first.shape[3]]
    out = torch.empty(shape, dtype=first.dtype, device=first.device, memory_format=torch.channels_last)
    return torch.cat(tensors, dim=1, out=out)
