"""Triton Gaussian blur passes (`kernels.blur`) vs their torch reference (`model.patchmatch._filter_along`,
`blur_base`). CPU: the Triton interpreter at small sizes; CUDA: the LR size too."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels import blur  # noqa: E402
from rethined_engine.kernels.blur import blur_base, blur_base_reference, filter_axis, gaussian_taps  # noqa: E402
from rethined_engine.model import patchmatch  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 1e-6               # float32 values in [0, 1]: the sums' multiply-adds may be fused or not
FP16_ATOL = 2e-3          # float16: the kernel sums in float32 and rounds once, torch rounds every add


@pytest.mark.parametrize("shape", [(1, 3, 16, 24), (2, 8, 20, 12), (1, 1, 5, 40)])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_filter_axis_matches_reference(shape, dim, sigma):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(dim)).to(DEVICE)
    taps = gaussian_taps(sigma, torch.device(DEVICE))
    want = patchmatch._filter_along(x, taps.tolist(), dim)
    torch.testing.assert_close(filter_axis(x, taps, dim), want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("dim", [2, 3])
def test_filter_axis_over_many_programs(monkeypatch, dim):
    """Blocks of 64 values (the interpreter's default block holds the small shapes whole): the program offsets
    and a partial last block."""
    monkeypatch.setattr(blur, "BLOCK", 64)
    x = torch.rand(2, 3, 20, 12, generator=torch.Generator().manual_seed(7)).to(DEVICE)
    taps = gaussian_taps(3.0, torch.device(DEVICE))
    want = patchmatch._filter_along(x, taps.tolist(), dim)
    torch.testing.assert_close(filter_axis(x, taps, dim), want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape", [(1, 3, 32, 48), (2, 8, 24, 16)])
@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_blur_base_matches_reference(shape, sigma):
    image = torch.rand(shape, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    got = blur_base(image, sigma)
    torch.testing.assert_close(got, blur_base_reference(image, sigma), rtol=0, atol=ATOL)
    assert not torch.allclose(got, image, atol=1e-3)                  # it blurred


def test_blur_base_float16():
    image = torch.rand(1, 4, 24, 32, generator=torch.Generator().manual_seed(2)).to(DEVICE, torch.float16)
    torch.testing.assert_close(blur_base(image, 3.0), blur_base_reference(image.float(), 3.0).half(), rtol=0,
                               atol=FP16_ATOL)


def test_taps_are_made_once_per_sigma_and_device():
    assert gaussian_taps(3.0, torch.device(DEVICE)) is gaussian_taps(3.0, torch.device(DEVICE))


@pytest.mark.parametrize("call,message", [
    (lambda x, t: filter_axis(x[0], t, 2), "x, dim"),
    (lambda x, t: filter_axis(x, t, 1), "x, dim"),
    (lambda x, t: filter_axis(x, t[:-1], 2), "taps"),
    (lambda x, t: filter_axis(x, t.double(), 2), "taps"),
    (lambda x, t: blur_base(x, 0.0), "sigma"),
])
def test_bad_arguments_are_named(call, message):
    x = torch.rand(1, 3, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match=message):
        call(x, gaussian_taps(1.0, torch.device(DEVICE)))


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
def test_blur_base_at_the_lr_size_on_cuda():
    """The border match's 8-channel stack at 512^2 LR."""
    image = torch.rand(1, 8, 512, 512, device=DEVICE)
    torch.testing.assert_close(blur_base(image, 2.0), blur_base_reference(image, 2.0), rtol=0, atol=ATOL)
