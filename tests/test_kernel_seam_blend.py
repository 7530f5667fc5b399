"""Triton seam-blend kernels vs their torch reference (`model.upscale.blend_seams`). CPU: the Triton interpreter
at small sizes; CUDA: real sizes too."""
import numpy as np
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.geometry import seam_taps  # noqa: E402
from rethined_engine.kernels.seam_blend import TILE_H, TILE_W, seam_blend, seam_blend_reference  # noqa: E402
from rethined_engine.train.masks import random_mask  # noqa: E402

from conftest import fp32_convolutions  # noqa: E402

CPU_SHAPES = [(37, 53), (61, 130), (130, 517)]
GPU_SHAPES = [(2048, 2048), (2160, 3840), (4096, 4096)]
MAX_FLIPPED = 1e-4       # float summation order may turn a value near .5 the other way: one uint8 level


def case(rng, h, w, device, channels_last):
    """(image, mask, filled, taps) on the device: random image and free-form mask, random fill in the hole."""
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = random_mask(h, w, rng).astype(bool)
    filled = np.where(mask[..., None], rng.integers(0, 256, (h, w, 3), dtype=np.uint8), image)
    to = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    layout = (lambda t: t) if channels_last else (lambda t: t.permute(2, 0, 1))   # CHW: strided views
    return layout(to(image)), to(mask), layout(to(filled)), to(seam_taps(2.0))


def run_case(rng, size, device, channels_last, gain=8.0):
    image, mask, filled, taps = case(rng, *size, device, channels_last)
    got = seam_blend(image, mask, filled.clone(), taps, gain, channels_last)
    want = seam_blend_reference(image, mask, filled.clone(), taps, gain, channels_last)
    diff = (got.int() - want.int()).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) <= MAX_FLIPPED
    assert bool((got != filled).any())                      # it did blend something
    known = ~mask if channels_last else ~mask[None].expand_as(image)
    assert torch.equal(got[known], image[known])


@pytest.mark.parametrize("size", CPU_SHAPES)
@pytest.mark.parametrize("channels_last", [True, False], ids=["HWC", "CHW"])
def test_kernel_matches_reference(rng, size, channels_last):
    run_case(rng, size, "cpu", channels_last)


def test_low_gain_and_no_hole(rng):
    run_case(rng, (61, 130), "cpu", True, gain=0.5)
    image, mask, filled, taps = case(rng, 20, 30, "cpu", True)
    untouched = filled.clone()
    assert torch.equal(seam_blend(image, torch.zeros_like(mask), filled, taps, 8.0), untouched)


@pytest.mark.parametrize("side", ["left", "right", "above", "below"])
def test_known_pixels_only_in_a_tiles_halo(rng, side):
    """A tile that is all hole, its only known pixels a line just outside it: it must still be blended
    (the kernel skips tiles without hole pixels or without known pixels within reach)."""
    h, w = 3 * TILE_H, 3 * TILE_W
    mask = np.ones((h, w), bool)
    line = {"left": np.s_[:, TILE_W - 1], "right": np.s_[:, 2 * TILE_W],
            "above": np.s_[TILE_H - 1, :], "below": np.s_[2 * TILE_H, :]}[side]
    mask[line] = False
    image = torch.from_numpy(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    filled = torch.where(torch.from_numpy(mask)[..., None], torch.zeros_like(image), image)
    taps = torch.from_numpy(seam_taps(2.0))
    got = seam_blend(image, torch.from_numpy(mask), filled.clone(), taps, 8.0)
    want = seam_blend_reference(image, torch.from_numpy(mask), filled.clone(), taps, 8.0)
    assert int((got.int() - want.int()).abs().max()) <= 1
    assert bool((got[TILE_H:2 * TILE_H, TILE_W:2 * TILE_W] != 0).any())   # the middle tile was blended


@pytest.mark.parametrize("size", [(5, 7), (1, 40), (40, 1)])
@pytest.mark.parametrize("sigma", [0.5, 8.0])
def test_tiny_images_and_other_radii(rng, size, sigma):
    """Images smaller than a tile and radii other than the shipped one (R = 2 and 24: ROWS 32 and 64)."""
    image = torch.from_numpy(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    mask = torch.from_numpy(rng.random(size) < 0.5)
    filled = torch.where(mask[..., None], torch.randint_like(image, 0, 256), image)
    taps = torch.from_numpy(seam_taps(sigma))
    got = seam_blend(image, mask, filled.clone(), taps, 8.0)
    assert int((got.int() - seam_blend_reference(image, mask, filled.clone(), taps, 8.0).int()).abs().max()) <= 1


def test_rejects_non_uint8(rng):
    image, mask, filled, taps = case(rng, 20, 30, "cpu", True)
    with pytest.raises(TypeError, match="uint8"):
        seam_blend(image.float(), mask, filled, taps, 8.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("size", CPU_SHAPES + GPU_SHAPES)
@pytest.mark.parametrize("channels_last", [True, False], ids=["HWC", "CHW"])
def test_kernel_matches_reference_cuda(rng, size, channels_last):
    with fp32_convolutions():                               # the reference's, not TF32
        run_case(rng, size, "cuda", channels_last)
