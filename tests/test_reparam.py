"""Re-parameterisation: the fused inference model equals the train-time branches (eval mode)."""
import pytest
import torch

from rethined_engine.model.reparam import MobileOneBlock, ReparamConv

from conftest import make_model, randomise_batchnorm

REL_TOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).detach())


@pytest.mark.parametrize("in_ch,out_ch,k,stride,groups", [
    (4, 16, 3, 2, 1),     # full conv stem, stride 2
    (12, 12, 3, 1, 12),   # depthwise with identity branch
    (12, 12, 3, 2, 12),   # depthwise, stride 2 (no identity)
    (12, 20, 1, 1, 1),    # pointwise
    (16, 16, 1, 1, 1),    # pointwise with identity
])
def test_reparam_conv_equivalence(in_ch, out_ch, k, stride, groups):
    torch.manual_seed(0)
    layer = ReparamConv(in_ch, out_ch, k, stride, groups, branches=3)
    randomise_batchnorm(layer, 1)
    layer.eval()
    x = torch.randn(2, in_ch, 19, 23, dtype=torch.float64)
    layer.double()
    ref = layer(x)
    layer.reparameterize()
    assert layer.fused is not None and len(layer.conv_branches) == 0
    assert rel_err(layer(x), ref) < REL_TOL


def test_block_equivalence():
    block = MobileOneBlock(8, 24, stride=2, branches=2)
    randomise_batchnorm(block, 3)
    block.eval()
    x = torch.randn(1, 8, 32, 40)
    ref = block(x)
    for m in block.modules():
        if isinstance(m, ReparamConv):
            m.reparameterize()
    assert rel_err(block(x), ref) < REL_TOL


def test_whole_model_equivalence():
    model = make_model(seed=5)
    torch.manual_seed(1)
    image = torch.rand(2, 3, 96, 160)
    mask = torch.rand(2, 1, 96, 160) < 0.3
    with torch.no_grad():
        key_inside = torch.ones(1, 12 * 20, dtype=torch.bool)
        ref = model.forward_lr(image, mask.float(), key_inside)
        model.reparameterize()
        fused = model.forward_lr(image, mask.float(), key_inside)
    assert rel_err(fused.coarse, ref.coarse) < REL_TOL
    assert rel_err(fused.refined, ref.refined) < REL_TOL
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
