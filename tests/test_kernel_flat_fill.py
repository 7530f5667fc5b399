"""Triton flat fill (`kernels.flat_fill`) vs its torch reference (`model.flat.flat_fill`).
CPU: the Triton interpreter at small sizes; CUDA: the LR size too."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels.flat_fill import flat_fill, flat_fill_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CPU_SHAPES = [(1, 64, 96), (2, 96, 64), pytest.param((1, 128, 160), marks=pytest.mark.slow)]
GPU_SHAPES = [(1, 512, 512), (2, 288, 512)]
FILL_ATOL = 1e-5     # [0, 1] colours: blurs and membranes summed in another order than torch's
WEIGHT_ATOL = 1e-3   # the ramps are linear in log(value): a value's rounding near the low end of a ramp moves it most


def scene(kind: str, batch: int, height: int, width: int, seed: int
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(composite, mask, filled) on DEVICE: a sky's gentle gradient with grain ("sky": flat, the ramps' top end),
    faint stripes 16 px apart ("haze": inside the flatness ramp) or strong ones 10 px apart ("stripes": structured,
    its bottom end), a colour cast per image, a rectangular hole and a random fill in it."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0.0, 1.0, height)[:, None].expand(height, width)
    cols = torch.arange(float(width))[None, :].expand(height, width)
    if kind == "sky":
        pattern = 0.6 + 0.05 * rows + 0.0002 * cols + 0.002 * torch.rand(height, width, generator=g)
    elif kind == "haze":
        pattern = 0.5 + 0.008 * torch.sin(cols * (2 * torch.pi / 16)) + 0.002 * torch.rand(height, width, generator=g)
    else:
        pattern = 0.4 + 0.15 * torch.sin(cols * (2 * torch.pi / 10)) + 0.05 * torch.rand(height, width, generator=g)
    image = pattern.expand(batch, 3, height, width) + 0.02 * torch.rand(batch, 3, 1, 1, generator=g)
    mask = torch.zeros(batch, 1, height, width)
    mask[..., height // 4:3 * height // 4, width // 3:2 * width // 3] = 1.0
    filled = torch.rand(batch, 3, height, width, generator=g)
    composite = torch.where(mask > 0, torch.zeros_like(image), image)
    return composite.to(DEVICE), mask.to(DEVICE), filled.to(DEVICE)


def assert_matches_reference(composite, mask, filled):
    fill, weight = flat_fill(composite, mask, filled)
    want_fill, want_weight = flat_fill_reference(composite, mask, filled)
    assert fill.shape == filled.shape and weight.shape == mask.shape
    torch.testing.assert_close(fill, want_fill, rtol=0, atol=FILL_ATOL)
    torch.testing.assert_close(weight, want_weight, rtol=0, atol=WEIGHT_ATOL)
    return weight


@pytest.mark.parametrize("shape", CPU_SHAPES)
@pytest.mark.parametrize("kind", ["sky", "haze", "stripes"])
def test_flat_fill_matches_reference(kind, shape):
    composite, mask, filled = scene(kind, *shape, seed=shape[1])
    weight = assert_matches_reference(composite, mask, filled)[mask > 0]
    # the cases cover the flatness ramp's two ends and its middle
    low, high = {"sky": (0.9, 1.0), "haze": (0.1, 0.95), "stripes": (0.0, 0.1)}[kind]
    assert low <= weight.min() and weight.max() <= high


def test_flat_fill_matches_reference_without_a_hole():
    composite, mask, filled = scene("sky", 1, 64, 64, seed=3)
    assert_matches_reference(composite, torch.zeros_like(mask), filled)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_flat_fill_at_lr_sizes_on_cuda(shape):
    for kind in ("sky", "haze", "stripes"):
        assert_matches_reference(*scene(kind, *shape, seed=7))
