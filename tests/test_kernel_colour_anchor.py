"""Triton colour anchor (`kernels.colour_anchor`) vs its torch reference (`model.anchor.colour_anchor`, itself
checked against brute force in tests/test_colour_anchor.py). CPU: the Triton interpreter at small sizes; CUDA:
the LR size too."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
from rethined_engine.kernels import colour_anchor as anchor_kernels  # noqa: E402
from rethined_engine.kernels.colour_anchor import (NO_SEED, colour_anchor, colour_anchor_reference,  # noqa: E402
                                                   jump_flood)
from rethined_engine.model import anchor  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 1e-5               # float32 values in [0, 1]: cell means, a blur and a bilinear step, each to float rounding
FP16_ATOL = 4e-3          # float16: the kernels work in float32 and round once; the reference rounds every step


def blob_mask(b, h, w, seed, coverage=0.4):
    """(B, 1, h, w) float {0, 1}: blurred noise thresholded into blobs covering about `coverage`."""
    noise = torch.rand(b, 1, h // 4 + 1, w // 4 + 1, generator=torch.Generator().manual_seed(seed))
    smooth = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)
    return (smooth > torch.quantile(smooth.flatten(1), 1 - coverage, dim=1).reshape(b, 1, 1, 1)).float()


def case(b, h, w, seed, mask=None):
    g = torch.Generator().manual_seed(seed)
    mask = blob_mask(b, h, w, seed) if mask is None else mask
    composite = torch.rand(b, 3, h, w, generator=g)
    filled = torch.where(mask > 0, torch.rand(b, 3, h, w, generator=g), composite)
    steps = anchor.jump_steps(max(h, w) // anchor.ANCHOR_CELL)
    return [t.to(DEVICE) for t in (composite, mask, filled)] + [steps]


@pytest.mark.parametrize("shape", [(1, 16, 24), (2, 40, 64), (1, 66, 34)])
@pytest.mark.parametrize("strength,sigma", [(0.7, 12.0), (1.0, 3.0)])
def test_matches_reference(shape, strength, sigma):
    composite, mask, filled, steps = case(*shape, seed=sum(shape))
    got = colour_anchor(composite, mask, filled, strength, sigma, steps)
    want = colour_anchor_reference(composite, mask, filled, strength, sigma, steps)
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    assert torch.equal(got[(mask == 0).expand_as(got)], filled[(mask == 0).expand_as(filled)])   # known: as they were
    assert (got - filled).abs().max() > 1e-2                                                    # it moved the hole


def test_matches_reference_over_many_programs(monkeypatch):
    """Blocks of 64 cells or pixels (the interpreter's default block holds the small shapes whole): the program
    offsets and partial last blocks, over two images."""
    monkeypatch.setattr(anchor_kernels, "BLOCK", 64)
    composite, mask, filled, steps = case(2, 40, 64, seed=9)
    torch.testing.assert_close(colour_anchor(composite, mask, filled, 0.7, 12.0, steps),
                               colour_anchor_reference(composite, mask, filled, 0.7, 12.0, steps), rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape", [(1, 16, 24), (2, 48, 30)])
def test_jump_flooding_picks_the_reference_seeds(shape):
    b, h, w = shape
    _, mask, _, steps = case(b, h, w, seed=3)
    cell = anchor.ANCHOR_CELL
    is_seed = anchor.cell_sums(1.0 - mask, cell) > 0                       # (B, 1, gh, gw)
    gh, gw = is_seed.shape[-2:]
    own = torch.arange(gh * gw, device=DEVICE, dtype=torch.int32).reshape(1, gh, gw)
    seeds = torch.where(is_seed[:, 0], own, torch.full_like(own, NO_SEED.value))
    got = jump_flood(seeds.contiguous(), steps, gw)
    want = anchor.nearest_seeds(is_seed, steps)                             # (B, 2, gh, gw) row, col
    assert torch.equal(got, (want[:, 0] * gw + want[:, 1]).to(torch.int32))


def test_an_image_without_known_pixels_is_left_as_filled():
    composite, _, filled, steps = case(2, 16, 24, seed=5)
    mask = torch.ones(2, 1, 16, 24, device=DEVICE)
    mask[1, :, :4, :6] = 0.0                                                # the second image has known pixels
    filled = torch.where(mask > 0, filled, composite)
    got = colour_anchor(composite, mask, filled, 0.7, 12.0, steps)
    assert torch.equal(got[0], filled[0])
    torch.testing.assert_close(got, colour_anchor_reference(composite, mask, filled, 0.7, 12.0, steps),
                               rtol=0, atol=ATOL)


def test_float16():
    composite, mask, filled, steps = case(1, 32, 48, seed=7)
    half = [t.half() for t in (composite, mask, filled)]
    got = colour_anchor(*half, 0.7, 12.0, steps)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), colour_anchor_reference(composite, mask, filled, 0.7, 12.0, steps),
                               rtol=0, atol=FP16_ATOL)


@pytest.mark.parametrize("change,message", [
    (lambda c, m, f: (c[:, :2], m, f[:, :2]), "composite, mask, filled"),
    (lambda c, m, f: (c, m[:, :, :-1], f), "composite, mask, filled"),
    (lambda c, m, f: (c[..., :-1], m[..., :-1], f[..., :-1]), "multiples of ANCHOR_CELL"),
])
def test_bad_arguments_are_named(change, message):
    composite, mask, filled, steps = case(1, 16, 24, seed=1)
    with pytest.raises(ValueError, match=message):
        colour_anchor(*change(composite, mask, filled), 0.7, 12.0, steps)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", [(1, 512, 512), (2, 288, 512)])
def test_matches_reference_at_the_lr_size_on_cuda(shape):
    composite, mask, filled, steps = case(*shape, seed=11)
    torch.testing.assert_close(colour_anchor(composite, mask, filled, 0.7, 12.0, steps),
                               colour_anchor_reference(composite, mask, filled, 0.7, 12.0, steps), rtol=0, atol=ATOL)
