"""cat_channels: torch.cat along channels that keeps a channels-last layout (the CPU path's)."""
import torch

from rethined_engine.model.layout import cat_channels


def _parts(channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    image = torch.rand(2, 3, 17, 23).contiguous(memory_format=fmt)
    mask = torch.rand(2, 1, 17, 23)           # 1 channel: contiguous in both layouts
    return [image, mask, torch.rand(2, 5, 17, 23).contiguous(memory_format=fmt)]


def test_channels_last_result_equals_torch_cat():
    parts = _parts(channels_last=True)
    assert not torch.cat(parts, dim=1).is_contiguous(memory_format=torch.channels_last)   # what it mends
    with torch.inference_mode():
        out = cat_channels(parts)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.equal(out, torch.cat(parts, dim=1))


def test_nchw_input_stays_nchw():
    parts = _parts(channels_last=False)
    out = cat_channels(parts)
    assert out.is_contiguous() and torch.equal(out, torch.cat(parts, dim=1))


def test_autograd_falls_back_to_torch_cat():
    parts = [p.requires_grad_() for p in _parts(channels_last=True)]
    out = cat_channels(parts)
    out.sum().backward()
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in parts)
