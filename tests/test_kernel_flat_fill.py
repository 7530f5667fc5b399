"""Triton flat fill (`kernels.flat_fill`) vs its torch reference (`model.flat.flat_fill`), every form.
CPU: the Triton interpreter at small sizes; CUDA: the LR size too."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels import flat_fill as flat_kernels  # noqa: E402
from rethined_engine.kernels.flat_fill import flat_fill, flat_fill_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CPU_SHAPES = [(1, 64, 96), (2, 96, 64), pytest.param((1, 128, 160), marks=pytest.mark.slow)]
GPU_SHAPES = [(1, 512, 512), (2, 288, 512)]
FILL_ATOL = 1e-5     # [0, 1] colours: blurs and membranes summed in another order than torch's
WEIGHT_ATOL = 1e-3   # the ramps are linear in log(value): a value's rounding near the low end of a ramp moves it most
FP16_ATOL = 4e-3     # float16: the kernels work in float32 and round once; the reference rounds every step
FP16_WEIGHT_ATOL = 1e-2  # ... and the inputs' rounding moves a small variance, whose log the agreement ramp reads


def scene(kind: str, batch: int, height: int, width: int, seed: int
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(composite, mask, filled) on DEVICE: a sky's gentle gradient with grain ("sky": flat, the ramps' top end),
    faint stripes 16 px apart ("haze": inside the flatness ramp), strong ones 10 px apart ("stripes": structured,
    its bottom end) or a steep ramp across the image ("ramp": flat, but the known colours a membrane mixes in the
    hole disagree: the agreement ramp's middle and bottom end), a colour cast per image, a rectangular hole and a
    random fill in it."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0.0, 1.0, height)[:, None].expand(height, width)
    cols = torch.arange(float(width))[None, :].expand(height, width)
    if kind == "sky":
        pattern = 0.6 + 0.05 * rows + 0.0002 * cols + 0.002 * torch.rand(height, width, generator=g)
    elif kind == "ramp":
        pattern = 0.3 + 0.4 * cols / width + 0.002 * torch.rand(height, width, generator=g)
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


def assert_matches_reference(composite, mask, filled, form="membrane"):
    fill, weight = flat_fill(composite, mask, filled, form)
    want_fill, want_weight = flat_fill_reference(composite, mask, filled, form)
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


@pytest.mark.parametrize("shape", CPU_SHAPES[:2])
def test_where_the_known_colours_disagree_the_weight_falls(shape):
    composite, mask, filled = scene("ramp", *shape, seed=5)
    weight = assert_matches_reference(composite, mask, filled)[mask > 0]
    assert weight.min() < 0.05 and ((weight > 0.1) & (weight < 0.9)).any()


def test_flat_fill_matches_reference_without_a_hole():
    composite, mask, filled = scene("sky", 1, 64, 64, seed=3)
    assert_matches_reference(composite, torch.zeros_like(mask), filled)


def ragged_scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(composite, mask, filled): three 64 x 96 haze images with other holes than `scene`'s: a disc (cells partly
    known), two boxes one at the image's edge, and an image without a known pixel."""
    composite, _, filled = scene("haze", 3, 64, 96, seed=11)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(96.0), indexing="ij")
    mask = torch.zeros(3, 1, 64, 96)
    mask[0, 0] = (((ys - 30.5) ** 2 + (xs - 41.5) ** 2) < 19.0 ** 2).float()
    mask[1, 0, 5:27, 60:96] = 1.0
    mask[1, 0, 40:59, 3:33] = 1.0
    mask[2] = 1.0
    mask = mask.to(DEVICE)
    return composite * (1.0 - mask), mask, filled


def test_flat_fill_matches_reference_over_many_programs_and_ragged_holes(monkeypatch):
    """Blocks of 64 cells or pixels (the interpreter's default block holds the small shapes whole): the program
    offsets and partial last blocks, on `ragged_scene`."""
    monkeypatch.setattr(flat_kernels, "BLOCK", 64)
    assert_matches_reference(*ragged_scene())


@pytest.mark.parametrize("form", ["continued", "continued_flat"])
@pytest.mark.parametrize("kind", ["sky", "haze", "stripes"])
def test_continued_forms_match_reference(kind, form):
    """The continued fill (cell steps, their membrane, divergence, Poisson solve) and its weight (the ring's
    dilation, the ring's error per cell, its membrane, the ramp); the sky's clean ramp scores 1, the stripes 0."""
    composite, mask, filled = scene(kind, 1, 64, 96, seed=17)
    weight = assert_matches_reference(composite, mask, filled, form)[mask > 0]
    if form == "continued":
        low, high = {"sky": (0.9, 1.0), "haze": (0.0, 1.0), "stripes": (0.0, 0.1)}[kind]
        assert low <= weight.min() and weight.max() <= high


def test_continued_forms_over_many_programs_and_ragged_holes(monkeypatch):
    """As the membrane form's case above: blocks of 64, a disc, two boxes one at the image's edge, and an image
    without a known pixel (weight 0: no ring to judge by)."""
    monkeypatch.setattr(flat_kernels, "BLOCK", 64)
    for form in ("continued", "continued_flat"):
        weight = assert_matches_reference(*ragged_scene(), form)
        assert weight[2].max() == 0


def test_float16():
    composite, mask, filled = scene("haze", 1, 64, 96, seed=13)
    fill, weight = flat_fill(composite.half(), mask.half(), filled.half())
    assert fill.dtype == weight.dtype == torch.float16
    want_fill, want_weight = flat_fill_reference(composite, mask, filled)
    torch.testing.assert_close(fill.float(), want_fill, rtol=0, atol=FP16_ATOL)
    torch.testing.assert_close(weight.float(), want_weight, rtol=0, atol=FP16_WEIGHT_ATOL)


@pytest.mark.parametrize("change,message", [
    (lambda c, m, f: (c[:, :2], m, f[:, :2]), "composite, mask, filled"),
    (lambda c, m, f: (c, m[:, :, :-32], f), "composite, mask, filled"),
    (lambda c, m, f: (c[..., :-4], m[..., :-4], f[..., :-4]), "multiples of BAND_CELL"),
    (lambda c, m, f: (c, m, f, "biharmonic"), "form: expected one of"),
])
def test_bad_arguments_are_named(change, message):
    composite, mask, filled = scene("sky", 1, 64, 64, seed=1)
    with pytest.raises(ValueError, match=message):
        flat_fill(*change(composite, mask, filled))


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_flat_fill_at_lr_sizes_on_cuda(shape):
    for kind in ("sky", "haze", "stripes"):
        for form in ("membrane", "continued", "continued_flat"):
            assert_matches_reference(*scene(kind, *shape, seed=7), form)
