"""Triton coherence epilogue (last conv + residual + clamp + composite) vs its torch reference, and the
reference vs the model's coherence layer."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels.coherence import coherence_epilogue, coherence_epilogue_reference  # noqa: E402

from conftest import make_model  # noqa: E402

CPU_SHAPES = [(16, 9, 21), (8, 5, 130), (4, 19, 13)]      # (C, h, w): odd sizes, ragged tiles both ways
GPU_SHAPES = [(16, 512, 512), (16, 288, 512)]
ATOL = {torch.float32: 1e-5, torch.float16: 2e-3}


def case(shape, dtype, device, seed=0):
    c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    hidden = torch.relu(torch.randn(c, h, w, generator=g))
    weight, bias = torch.randn(3, c, 3, 3, generator=g) * 0.1, torch.randn(3, generator=g) * 0.1
    mixed, image = torch.rand(3, h, w, generator=g), torch.rand(3, h, w, generator=g)
    mask = (torch.rand(h, w, generator=g) < 0.4).float()
    return [t.to(device, dtype) for t in (hidden, weight, bias, mixed, image)] + [mask.to(device, dtype)]


def run_case(shape, dtype, device):
    hidden, weight, bias, mixed, image, mask = case(shape, dtype, device)
    out = torch.full_like(image, float("nan"))                    # poisoned
    got = coherence_epilogue(hidden, weight, bias, mixed, image, mask, out=out)
    want = coherence_epilogue_reference(*(t.double() for t in (hidden, weight, bias, mixed, image, mask)))
    assert got.data_ptr() == out.data_ptr() and got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=0, atol=ATOL[dtype])
    known = mask == 0
    assert torch.equal(got[:, known], image[:, known])


@pytest.mark.parametrize("shape", CPU_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_kernel_matches_reference(shape, dtype):
    run_case(shape, dtype, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shape", CPU_SHAPES + GPU_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_kernel_matches_reference_cuda(shape, dtype):
    run_case(shape, dtype, "cuda")


def test_reference_is_the_models_coherence_and_composite():
    model = make_model()
    coherence = model.patch_match.coherence
    g = torch.Generator().manual_seed(1)
    mixed, coarse, image = (torch.rand(1, 3, 24, 40, generator=g) for _ in range(3))
    mask = (torch.rand(1, 1, 24, 40, generator=g) < 0.5).float()
    x = torch.cat([mixed, coarse, mask], dim=1)
    want = torch.where(mask > 0, (mixed + coherence(x)).clamp(0, 1), image)[0]
    got = coherence_epilogue_reference(coherence[:-1](x)[0], coherence[-1].weight, coherence[-1].bias, mixed[0],
                                       image[0], mask[0, 0])
    torch.testing.assert_close(got, want)


def test_rejects_bad_shapes():
    hidden, weight, bias, mixed, image, mask = case(CPU_SHAPES[0], torch.float32, "cpu")
    with pytest.raises(ValueError, match="weight"):
        coherence_epilogue(hidden, weight[:, :-1], bias, mixed, image, mask)
    with pytest.raises(ValueError, match="mask"):
        coherence_epilogue(hidden, weight, bias, mixed, image, mask[:-1])
