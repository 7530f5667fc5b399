"""Triton HR upscale kernel vs its torch reference (and the reference vs the numpy host stage that is
tested against the model), pasted and cross-faded (feather > 0) texture. CPU: the Triton interpreter at
small sizes; CUDA: real sizes too."""
import numpy as np
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.config import ModelConfig  # noqa: E402
from rethined_engine.deploy.host import known_tokens, upscale_hr  # noqa: E402
from rethined_engine.geometry import plan  # noqa: E402
from rethined_engine.kernels.hr_upscale import hr_upscale, hr_upscale_reference  # noqa: E402
from rethined_engine.train.masks import random_mask  # noqa: E402

from conftest import fp32_convolutions, hr_key_tokens  # noqa: E402

CPU_SHAPES = [((37, 53), 512), ((61, 130), 32), ((61, 280), 32)]   # (H, W), lr_long_side: scales 1, 5, 9
# The interpreter's cost is per program, and under it the kernel runs 4 x 32 px tiles (`hr_upscale.TILE_PIXELS`:
# same kernel and edge masks, a quarter of the programs); the cases marked so run the GPU's 1 x 32 tile on the CPU
# too (at scale 9 it makes 216 programs per token: too slow). The GPU tests run the GPU's tile at every shape.
GPU_SHAPES = [((2048, 2048), 512), ((2160, 3840), 512), ((4096, 4096), 512)]
POISON = 77
MAX_LSB = 1             # fp32 rounding may turn a value near .5 the other way: one uint8 level
FLIP_SLACK = 1e-4       # on the fraction of such flips, beyond twice the fp32 torch reference's


def case(rng, size, lr_long, device, k=4):
    h, w = size
    geom = plan(h, w, ModelConfig(lr_long_side=lr_long))
    image = torch.from_numpy(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).to(device)
    mask_np = random_mask(h, w, rng)
    keys = hr_key_tokens(mask_np, geom)
    tokens = geom.grid_h * geom.grid_w
    weight = rng.random((tokens, k), dtype=np.float32)
    weight /= weight.sum(-1, keepdims=True)
    weight[::5, -1] = 0.0                                 # zero weights are skipped
    index = rng.choice(keys, (tokens, k)) if keys.size else np.zeros((tokens, k))
    weight = weight if keys.size else np.zeros_like(weight)
    fine_weight = weight * rng.uniform(-0.5, 2.0, (tokens, 1)).astype(np.float32)   # f - g: either sign
    fine_weight[::3] = 0.0                                                        # one-band tokens
    lr = rng.random((1, 3, *geom.lr_size), dtype=np.float32)
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return geom, image, to(mask_np), to(lr), to(weight), to(fine_weight), to(index.astype(np.int32))


def flipped(got, exact):
    """(largest difference in uint8 levels, fraction of values that differ) of got vs the float64 result."""
    diff = (got.int() - exact.int()).abs()
    return int(diff.max()), float((diff > 0).float().mean())


def check(got, exact, peer):
    """got within MAX_LSB of the float64 reference everywhere, and flipped no more often than twice the
    fp32 torch reference `peer` plus FLIP_SLACK."""
    lsb, rate = flipped(got, exact)
    _, peer_rate = flipped(peer, exact)
    assert lsb <= MAX_LSB, f"{lsb} levels off"
    assert rate <= 2 * peer_rate + FLIP_SLACK, f"{rate:.2e} of values flipped vs {peer_rate:.2e} for fp32 torch"


def run_case(rng, size, lr_long, device, channels_last, one_band=False):
    geom, image, mask, lr, weight, fine_weight, index = case(rng, size, lr_long, device)
    fine_weight = None if one_band else fine_weight          # None: the kernel without the fine band
    img = image if channels_last else image.permute(2, 0, 1)          # CHW: a strided view, not a copy
    out = torch.full(img.shape, POISON, dtype=torch.uint8, device=device)
    hr_upscale(img, mask, lr, weight, fine_weight, index, geom, channels_last, out=out)
    args = (img, mask, lr, weight, fine_weight, index, geom, channels_last)
    with fp32_convolutions():
        peer = hr_upscale_reference(*args)
    check(out, hr_upscale_reference(*args, compute_dtype=torch.float64), peer)
    known = ~mask.bool() if channels_last else ~mask.bool()[None].expand_as(img)
    assert torch.equal(out[known], img[known])


SCALE_1, SCALE_5, SCALE_9 = CPU_SHAPES
# ((H, W), lr_long_side), channels_last, the GPU's tile: both layouts at scales 1 and 5; at scale 9 (the slowest in
# the interpreter) the triton backend's CHW only; the GPU's tile at scale 1 and at scale 5 channels-last
LAYOUT_CASES = [pytest.param(size, lr_long, layout, gpu_tile,
                             id=f"{'HWC' if layout else 'CHW'}-{size[0]}x{size[1]}-lr{lr_long}")
                for (size, lr_long), layout, gpu_tile in ((SCALE_1, True, True), (SCALE_1, False, True),
                                                          (SCALE_5, True, True), (SCALE_5, False, False),
                                                          (SCALE_9, False, False))]


@pytest.mark.parametrize("size,lr_long,channels_last,gpu_tile", LAYOUT_CASES)
def test_kernel_matches_reference(rng, size, lr_long, channels_last, gpu_tile, request):
    if gpu_tile:
        request.getfixturevalue("gpu_hr_tile")
    run_case(rng, size, lr_long, "cpu", channels_last)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
def test_scale_one_is_the_lr_result(device):
    """At scale 1 the LR result is the result: the sources' weights, however large, change nothing."""
    rng = np.random.default_rng(0)                      # a mask that leaves known tokens (the fixture's: none)
    geom, image, mask, lr, weight, fine_weight, index = case(rng, (37, 53), 512, device)
    assert geom.scale == 1 and bool((weight != 0).any())
    got = hr_upscale(image, mask, lr, weight * 3, fine_weight, index, geom)
    lr_rounded = (lr[0, :, :37, :53].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
    hole = mask.bool()
    assert torch.equal(got[hole], lr_rounded[hole]) and torch.equal(got[~hole], image[~hole])


def test_one_band_kernel_matches_reference(rng):
    run_case(rng, (61, 130), 32, "cpu", channels_last=True, one_band=True)


@pytest.mark.parametrize("size,lr_long", CPU_SHAPES)
def test_reference_matches_numpy_host_stage(rng, size, lr_long):
    geom, image, mask, lr, weight, fine_weight, index = case(rng, size, lr_long, "cpu")
    args = (image, mask, lr, weight, fine_weight, index, geom)
    host = upscale_hr(*(a.numpy() for a in args[:-1]), geom)
    check(torch.from_numpy(host), hr_upscale_reference(*args, compute_dtype=torch.float64), hr_upscale_reference(*args))


def test_rejects_non_uint8(rng):
    geom, image, mask, lr, weight, fine_weight, index = case(rng, (37, 53), 512, "cpu")
    with pytest.raises(TypeError, match="image"):
        hr_upscale(image.float(), mask, lr, weight, fine_weight, index, geom)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("size,lr_long", CPU_SHAPES + GPU_SHAPES)
@pytest.mark.parametrize("channels_last", [True, False], ids=["HWC", "CHW"])
def test_kernel_matches_reference_cuda(rng, size, lr_long, channels_last):
    run_case(rng, size, lr_long, "cuda", channels_last)


# (H, W), lr_long_side, feather, the GPU's tile under the interpreter too; scales 3, 3, 4, 1
FEATHER_CPU_CASES = [((61, 130), 64, 1, True), ((61, 130), 64, 2, False), ((96, 200), 64, 1, False),
                     ((37, 53), 512, 2, True)]
FEATHER_GPU_SHAPES = [((2048, 2048), 512), ((2160, 3840), 512)]


def run_feather_case(rng, size, lr_long, device, feather, channels_last, reflect=False):
    """One copied source per token (every fifth token copies nothing) with a texture gain in [0.3, 1], one band:
    the kernel's cross-faded texture against the torch reference (`model.upscale.feathered_texture`); reflect:
    with `hr_fade_reflect`'s mirrored reads, which change the fill."""
    geom, image, mask, lr, weight, _, index = case(rng, size, lr_long, device, k=1)
    weight = weight * torch.from_numpy(rng.uniform(0.3, 1.0, weight.shape).astype(np.float32)).to(device)
    known = torch.from_numpy(known_tokens(mask.bool().cpu().numpy(), geom)).to(device)
    img = image if channels_last else image.permute(2, 0, 1)
    out = torch.full(img.shape, POISON, dtype=torch.uint8, device=device)
    args = (img, mask, lr, weight, None, index, geom, channels_last)
    hr_upscale(*args, out=out, feather=feather, known=known, reflect=reflect)
    with fp32_convolutions():
        peer = hr_upscale_reference(*args, feather=feather, known=known, reflect=reflect)
    check(out, hr_upscale_reference(*args, feather=feather, known=known, compute_dtype=torch.float64,
                                    reflect=reflect), peer)
    if geom.scale > 1:   # there are copies, and the cross-fade changes the fill
        assert bool((weight != 0).any()) and not torch.equal(out, hr_upscale_reference(*args))
        if reflect:
            assert not torch.equal(out, hr_upscale_reference(*args, feather=feather, known=known))


@pytest.mark.parametrize("size,lr_long,feather,gpu_tile", FEATHER_CPU_CASES)
def test_feathered_kernel_matches_reference(rng, size, lr_long, feather, gpu_tile, request):
    if gpu_tile:
        request.getfixturevalue("gpu_hr_tile")
    run_feather_case(rng, size, lr_long, "cpu", feather, channels_last=feather == 1)


def test_feathered_kernel_with_mirrored_reads_matches_reference(rng):
    run_feather_case(rng, (61, 130), 64, "cpu", 2, channels_last=True, reflect=True)


def test_feathered_kernel_refuses_bad_arguments(rng):
    geom, image, mask, lr, weight, fine_weight, index = case(rng, (61, 130), 64, "cpu", k=1)
    known = torch.from_numpy(known_tokens(mask.bool().numpy(), geom))
    with pytest.raises(ValueError, match="known: feather > 0 needs the known tokens"):
        hr_upscale(image, mask, lr, weight, None, index, geom, feather=1)
    with pytest.raises(ValueError, match="fine_weight: feather > 0 needs one band"):
        hr_upscale(image, mask, lr, weight, fine_weight, index, geom, feather=1, known=known)
    with pytest.raises(ValueError, match="feather: expected an int in 0..4"):
        hr_upscale(image, mask, lr, weight, None, index, geom, feather=5, known=known)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("size,lr_long", [case[:2] for case in FEATHER_CPU_CASES[1:]] + FEATHER_GPU_SHAPES)
@pytest.mark.parametrize("feather", [1, 2])
@pytest.mark.parametrize("channels_last", [True, False], ids=["HWC", "CHW"])
@pytest.mark.parametrize("reflect", [False, True])
def test_feathered_kernel_matches_reference_cuda(rng, size, lr_long, feather, channels_last, reflect):
    run_feather_case(rng, size, lr_long, "cuda", feather, channels_last, reflect)
