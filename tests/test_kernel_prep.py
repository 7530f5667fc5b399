"""Triton preparation kernel vs its torch reference (interpreter on the CPU, real sizes on CUDA)."""
import numpy as np
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.config import ModelConfig  # noqa: E402
from rethined_engine.geometry import pad_mode, plan  # noqa: E402
from rethined_engine.kernels.prep import prepare_lr, prepare_lr_reference  # noqa: E402
from rethined_engine.train.masks import random_mask  # noqa: E402

# (H, W), lr_long_side -> scales 1, 2, 3, 2 with replicate padding, 5 (the interpreter is slow, so CPU
# shapes stay small; larger scales run in the CUDA list)
CPU_SHAPES = [((37, 53), 512), ((70, 45), 64), ((90, 70), 32), ((9, 40), 32), ((61, 130), 32)]
GPU_SHAPES = [((2048, 2048), 512), ((2160, 3840), 512), ((1030, 2050), 512), ((130, 101), 32)]
ATOL = 1e-5   # fp32 sums in another order


def run_case(rng, size, lr_long, device, channels_last):
    h, w = size
    geom = plan(h, w, ModelConfig(lr_long_side=lr_long))
    image = torch.from_numpy(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).to(device)
    img = image if channels_last else image.permute(2, 0, 1)
    mask = torch.from_numpy(random_mask(h, w, rng)).to(device)
    lr, lr_mask = prepare_lr(img, mask, geom, channels_last)
    ref, ref_mask = prepare_lr_reference(img, mask, geom, channels_last)
    torch.testing.assert_close(lr, ref, atol=ATOL, rtol=0)
    assert torch.equal(lr_mask, ref_mask)
    return geom


@pytest.mark.parametrize("size,lr_long", CPU_SHAPES)
@pytest.mark.parametrize("channels_last", [True, False], ids=["HWC", "CHW"])
def test_prep_matches_reference(rng, size, lr_long, channels_last):
    run_case(rng, size, lr_long, "cpu", channels_last)


def test_shapes_cover_scales_and_pads():
    geoms = [plan(*size, ModelConfig(lr_long_side=lr_long)) for size, lr_long in CPU_SHAPES]
    assert {g.scale for g in geoms} == {1, 2, 3, 5}
    assert {pad_mode(g.height, g.width, g.padded_size) for g in geoms} == {"reflect", "replicate"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("size,lr_long", CPU_SHAPES + GPU_SHAPES)
def test_prep_matches_reference_cuda(rng, size, lr_long):
    run_case(rng, size, lr_long, "cuda", True)
