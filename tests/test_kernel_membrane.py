"""Triton membrane (`kernels.membrane`) vs its torch reference (`model.patchmatch.harmonic_fill`, `poisson_fill`,
`border_match`).
CPU: the Triton interpreter at small sizes; CUDA: the LR size too."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels import membrane  # noqa: E402
from rethined_engine.kernels.membrane import (SMALL_GRID, border_match, border_match_reference,  # noqa: E402
                                              harmonic_fill, harmonic_fill_reference, poisson_fill,
                                              poisson_fill_reference)
from rethined_engine.model import patchmatch  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (shape, levels): one level and more; the last two with finer levels above SMALL_GRID cells (single sweeps)
CPU_CASES = [((1, 3, 16, 24), 3), ((2, 3, 32, 32), 2), ((1, 1, 8, 40), 0),
             pytest.param((1, 2, 48, 96), 1, marks=pytest.mark.slow), ((1, 3, 96, 64), 3)]
GPU_SHAPES = [(1, 3, 512, 512), (2, 3, 288, 512)]
FP32_ATOL = 1e-6          # float32 in [0, 1]: the pyramid's and the mean's sums in another order than torch's
FP16_ATOL = 2e-3          # float16 grids: the kernel sums in float32 and rounds once, torch rounds every add


def grids(shape, dtype, seed):
    """(values, fixed) on DEVICE: uniform values, about 30 % of the cells fixed."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    values = torch.rand(b, c, h, w, generator=g)
    fixed = (torch.rand(b, 1, h, w, generator=g) < 0.3).float()
    return values.to(DEVICE, dtype), fixed.to(DEVICE, dtype)


@pytest.mark.parametrize("shape,levels", CPU_CASES)
def test_harmonic_fill_matches_reference(shape, levels):
    values, fixed = grids(shape, torch.float32, seed=levels)
    got = harmonic_fill(values, fixed, levels)
    want = harmonic_fill_reference(values, fixed, levels)
    assert got.shape == values.shape and got.dtype == values.dtype
    torch.testing.assert_close(got, want, rtol=0, atol=FP32_ATOL)
    on_fixed = fixed.expand_as(got) > 0
    assert torch.equal(got[on_fixed], values[on_fixed])                    # fixed cells keep their value
    assert got[~on_fixed].std() < values[~on_fixed].std()                  # free cells are smoothed, not copied


@pytest.mark.parametrize("shape,levels", CPU_CASES)
def test_poisson_fill_matches_reference(shape, levels):
    """The rhs summed over each level by the pyramid launch and taken by every sweep, in the one-program levels and
    the single sweeps alike; it moves the free cells."""
    values, fixed = grids(shape, torch.float32, seed=levels + 20)
    rhs = 0.01 * torch.randn(shape, generator=torch.Generator().manual_seed(levels)).to(DEVICE)
    got = poisson_fill(values, fixed, rhs, levels)
    torch.testing.assert_close(got, poisson_fill_reference(values, fixed, rhs, levels), rtol=0, atol=FP32_ATOL)
    assert (got - harmonic_fill(values, fixed, levels)).abs().max() > 1e-3


def test_poisson_fill_sweeps_over_many_programs(monkeypatch):
    monkeypatch.setattr(membrane, "BLOCK", 512)
    values, fixed = grids((1, 3, 96, 72), torch.float32, seed=12)
    rhs = 0.01 * torch.randn(1, 3, 96, 72, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    torch.testing.assert_close(poisson_fill(values, fixed, rhs, 3), poisson_fill_reference(values, fixed, rhs, 3),
                               rtol=0, atol=FP32_ATOL)


def test_poisson_fill_rejects_an_rhs_of_another_shape():
    values, fixed = grids((1, 3, 16, 16), torch.float32, seed=1)
    with pytest.raises(ValueError, match="rhs: expected"):
        poisson_fill(values, fixed, values[:, :2], 2)


def test_harmonic_fill_crosses_the_small_grid_limit():
    """The 96 x 64 grid's finest level is above SMALL_GRID cells: it runs as single sweeps."""
    assert 96 * 64 > SMALL_GRID >= 48 * 32


def test_harmonic_fill_sweeps_over_many_programs(monkeypatch):
    """Single sweeps in blocks of 512 cells, the GPU's (the interpreter's default block holds a 96 x 72 level
    whole): the program offsets and a partial last block."""
    monkeypatch.setattr(membrane, "BLOCK", 512)
    values, fixed = grids((1, 3, 96, 72), torch.float32, seed=11)
    torch.testing.assert_close(harmonic_fill(values, fixed, 3), harmonic_fill_reference(values, fixed, 3), rtol=0,
                               atol=FP32_ATOL)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_harmonic_fill_at_lr_sizes_on_cuda(shape):
    values, fixed = grids(shape, torch.float32, seed=11)
    torch.testing.assert_close(harmonic_fill(values, fixed, 4), patchmatch.harmonic_fill(values, fixed, 4), rtol=0,
                               atol=FP32_ATOL)
    values, fixed = values.half(), fixed.half()
    torch.testing.assert_close(harmonic_fill(values, fixed, 4), patchmatch.harmonic_fill(values, fixed, 4), rtol=0,
                               atol=FP16_ATOL)


def test_harmonic_fill_float16_within_tolerance():
    values, fixed = grids((1, 3, 32, 48), torch.float16, seed=4)
    got, want = harmonic_fill(values, fixed, 3), patchmatch.harmonic_fill(values, fixed, 3)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got, want, rtol=0, atol=FP16_ATOL)


def test_harmonic_fill_without_a_fixed_cell_is_zero():
    values, _ = grids((1, 3, 16, 16), torch.float32, seed=6)
    fixed = torch.zeros(1, 1, 16, 16, device=DEVICE)
    assert torch.equal(harmonic_fill(values, fixed, 2), torch.zeros_like(values))


def test_harmonic_fill_rejects_bad_arguments():
    values, fixed = grids((1, 3, 24, 24), torch.float32, seed=0)
    with pytest.raises(ValueError, match="values, fixed"):
        harmonic_fill(values, fixed[:, :, :8], 1)
    with pytest.raises(ValueError, match="levels"):
        harmonic_fill(values, fixed, 4)                                   # 24 is not divisible by 16


def test_border_match_matches_reference():
    """The Gaussian means (`kernels.blur`) may fuse a multiply-add where torch does not: float rounding."""
    g = torch.Generator().manual_seed(5)
    b, h, w = 1, 48, 64
    composite, filled = torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)
    mask = torch.zeros(b, 1, h, w)
    mask[..., 10:40, 8:50] = 1.0
    composite, filled, mask = composite.to(DEVICE), filled.to(DEVICE), mask.to(DEVICE)
    got = border_match(composite, mask, filled, 2.0)
    torch.testing.assert_close(got, border_match_reference(composite, mask, filled, 2.0), rtol=0, atol=FP32_ATOL)
    assert not torch.allclose(got, filled, atol=1e-3)


def border_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(composite, mask, filled) on DEVICE, three images of 32 x 64: a disc, two boxes (one at the image's edge),
    no hole."""
    g = torch.Generator().manual_seed(seed)
    composite, filled = torch.rand(3, 3, 32, 64, generator=g), torch.rand(3, 3, 32, 64, generator=g)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(64.0), indexing="ij")
    mask = torch.zeros(3, 1, 32, 64)
    mask[0, 0] = (((ys - 15.5) ** 2 + (xs - 30.0) ** 2) < 11.0 ** 2).float()
    mask[1, 0, 0:12, 40:64] = 1.0
    mask[1, 0, 18:29, 5:21] = 1.0
    return composite.to(DEVICE), mask.to(DEVICE), filled.to(DEVICE)


def test_border_match_matches_reference_over_many_programs_and_ragged_holes(monkeypatch):
    """Blocks of 64 pixels: program offsets, partial blocks, holes at the image's edge and an image without one."""
    monkeypatch.setattr(membrane, "BLOCK", 64)
    composite, mask, filled = border_case(seed=8)
    got = border_match(composite, mask, filled, 2.0)
    torch.testing.assert_close(got, border_match_reference(composite, mask, filled, 2.0), rtol=0, atol=FP32_ATOL)
    assert torch.equal(got[2], filled[2])


def test_border_match_float16():
    composite, mask, filled = border_case(seed=9)
    got = border_match(composite.half(), mask.half(), filled.half(), 2.0)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), border_match_reference(composite, mask, filled, 2.0), rtol=0,
                               atol=FP16_ATOL)


@pytest.mark.parametrize("change,message", [
    (lambda c, m, f, s: (c[:, :2], m, f[:, :2], s), "composite, mask, filled"),
    (lambda c, m, f, s: (c, m[..., :16], f, s), "composite, mask, filled"),
    (lambda c, m, f, s: (c, m, f, 0.0), "sigma"),
])
def test_border_match_names_bad_arguments(change, message):
    with pytest.raises(ValueError, match=message):
        border_match(*change(*border_case(seed=1), 2.0))


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_border_match_at_lr_sizes_on_cuda(shape):
    b, _, h, w = shape
    g = torch.Generator().manual_seed(12)
    composite, filled = torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)
    mask = torch.zeros(b, 1, h, w)
    mask[..., h // 5:3 * h // 5, w // 4:3 * w // 4] = 1.0
    composite, mask, filled = composite.to(DEVICE), mask.to(DEVICE), filled.to(DEVICE)
    torch.testing.assert_close(border_match(composite, mask, filled, 2.0),
                               border_match_reference(composite, mask, filled, 2.0), rtol=0, atol=FP32_ATOL)
