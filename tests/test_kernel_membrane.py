"""Triton membrane sweeps (`kernels.membrane`) vs their torch reference (`model.patchmatch.harmonic_fill`,
`border_match`). CPU: the Triton interpreter at small sizes; CUDA: the LR size too."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels.membrane import (border_match, harmonic_fill, jacobi_sweeps,  # noqa: E402
                                              jacobi_sweeps_reference)
from rethined_engine.model import patchmatch  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CPU_SHAPES = [(1, 3, 16, 24), (2, 3, 32, 32), (1, 1, 8, 40), (1, 2, 48, 96)]   # the last above SMALL_GRID
GPU_SHAPES = [(1, 3, 512, 512), (2, 3, 288, 512)]
BLUR_ATOL = 1e-6          # float32 in [0, 1]: a rounding step of the blurred means, carried by the membrane
FP16_ATOL = 2e-3          # float16 grids: the kernel sums in float32 and rounds once, torch rounds every add


def grids(shape, dtype, seed):
    """(values, fixed) on DEVICE: uniform values, about 30 % of the cells fixed."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    values = torch.rand(b, c, h, w, generator=g)
    fixed = (torch.rand(b, 1, h, w, generator=g) < 0.3).float()
    return values.to(DEVICE, dtype), fixed.to(DEVICE, dtype)


@pytest.mark.parametrize("shape", CPU_SHAPES)
@pytest.mark.parametrize("sweeps", [1, 5])
def test_jacobi_sweeps_match_reference_bit_for_bit(shape, sweeps):
    check_sweeps(shape, sweeps)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_jacobi_sweeps_at_lr_sizes_on_cuda(shape):
    """At the LR sizes the engine runs (IEEE division on the GPU: still bit-equal), and the whole membrane."""
    check_sweeps(shape, 8)
    values, fixed = grids(shape, torch.float32, seed=11)
    assert torch.equal(harmonic_fill(values, fixed, 4), patchmatch.harmonic_fill(values, fixed, 4))
    values, fixed = values.half(), fixed.half()
    torch.testing.assert_close(harmonic_fill(values, fixed, 4), patchmatch.harmonic_fill(values, fixed, 4), rtol=0,
                               atol=FP16_ATOL)


def check_sweeps(shape, sweeps):
    values, fixed = grids(shape, torch.float32, seed=sweeps)
    start = torch.rand(shape, generator=torch.Generator().manual_seed(7)).to(DEVICE)
    count = patchmatch.neighbour_count(fixed)
    got = jacobi_sweeps(start, values, fixed > 0, count, sweeps)
    want = jacobi_sweeps_reference(start, values, fixed > 0, count, sweeps)
    assert torch.equal(got, want)
    assert torch.equal(got[fixed.expand_as(got) > 0], values[fixed.expand_as(got) > 0])
    assert not torch.equal(got, start)


@pytest.mark.parametrize("shape", [(1, 3, 32, 48), (2, 3, 64, 32)])
def test_harmonic_fill_matches_reference(shape):
    values, fixed = grids(shape, torch.float32, seed=3)
    assert torch.equal(harmonic_fill(values, fixed, 3), patchmatch.harmonic_fill(values, fixed, 3))


def test_harmonic_fill_float16_within_tolerance():
    values, fixed = grids((1, 3, 32, 48), torch.float16, seed=4)
    got, want = harmonic_fill(values, fixed, 3), patchmatch.harmonic_fill(values, fixed, 3)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got, want, rtol=0, atol=FP16_ATOL)


def test_border_match_matches_reference():
    """The Gaussian means (`kernels.blur`) may fuse a multiply-add where torch does not: float rounding."""
    g = torch.Generator().manual_seed(5)
    b, h, w = 1, 48, 64
    composite, filled = torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)
    mask = torch.zeros(b, 1, h, w)
    mask[..., 10:40, 8:50] = 1.0
    composite, filled, mask = composite.to(DEVICE), filled.to(DEVICE), mask.to(DEVICE)
    got = border_match(composite, mask, filled, 2.0)
    torch.testing.assert_close(got, patchmatch.border_match(composite, mask, filled, 2.0), rtol=0, atol=BLUR_ATOL)
    assert not torch.allclose(got, filled, atol=1e-3)


def test_jacobi_sweeps_shape_errors():
    values, fixed = grids((1, 3, 8, 8), torch.float32, seed=0)
    with pytest.raises(ValueError, match="is_fixed \\(B, 1, h, w\\) bool and count"):
        jacobi_sweeps(values, values, fixed[:, :, :4] > 0, fixed[:, :, :4], 1)
    with pytest.raises(ValueError, match="is_fixed \\(B, 1, h, w\\) bool"):
        jacobi_sweeps(values, values, fixed, fixed, 1)                # float, not bool
