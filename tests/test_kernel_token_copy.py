"""Triton LR copies (`kernels.token_copy`) vs their torch reference (`model.patchmatch.copy_tokens`). CPU: the
Triton interpreter at small sizes; CUDA: the LR size too."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels import token_copy  # noqa: E402
from rethined_engine.kernels.token_copy import copy_tokens, copy_tokens_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 1e-6               # float32; on the GPU a multiply-add may be fused, so not always bit-equal
FP16_ATOL = 2e-3          # float16: the kernel computes in float32 and rounds once, torch rounds every op


def case(batch, h, w, patch, seed, dtype=torch.float32):
    """(image, known, source) on DEVICE: random image, a rectangular hole plus scattered hole pixels, every
    token copying a random token."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, h, w, generator=g)
    hole = torch.rand(batch, 1, h, w, generator=g) < 0.1
    hole[..., h // 4:h * 3 // 4, w // 5:w // 2] = True
    source = torch.randint(0, (h // patch) * (w // patch), (batch, (h // patch) * (w // patch)), generator=g)
    return image.to(DEVICE, dtype), (~hole).float().to(DEVICE, dtype), source.to(DEVICE)


@pytest.mark.parametrize("batch,h,w", [(1, 32, 48), (2, 40, 24)])
@pytest.mark.parametrize("feather,base_feather", [(0, 0), (2, 0), (4, 0), (4, 4), (1, 3)])
def test_copy_tokens_matches_reference(batch, h, w, feather, base_feather):
    image, known, source = case(batch, h, w, 8, seed=feather * 10 + base_feather)
    got = copy_tokens(image, known, source, 8, feather, base_feather, 3.0)
    want = copy_tokens_reference(image, known, source, 8, feather, base_feather, 3.0)
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    assert not torch.allclose(got, image)                        # it copied something


def test_copy_tokens_over_many_programs(monkeypatch):
    """Blocks of 128 LR pixels, the GPU's (the interpreter's default block holds the small shapes whole): the
    program offsets and a partial last block, over two images."""
    monkeypatch.setattr(token_copy, "BLOCK", 128)
    image, known, source = case(2, 40, 24, 8, seed=3)
    torch.testing.assert_close(copy_tokens(image, known, source, 8, 2, 2, 3.0),
                               copy_tokens_reference(image, known, source, 8, 2, 2, 3.0), rtol=0, atol=ATOL)


def test_copy_tokens_float16_is_the_float32_result_rounded():
    """float16 in and out: the float32 computation, rounded once (torch's float16 path rounds every op: up to
    0.055 off the float32 result here, where the small squared weights of the contrast term lose precision)."""
    image, known, source = case(1, 32, 48, 8, seed=3, dtype=torch.float16)
    got = copy_tokens(image, known, source, 8, 4, 4, 3.0)
    assert got.dtype == torch.float16
    want = copy_tokens_reference(image.float(), known.float(), source, 8, 4, 4, 3.0)
    torch.testing.assert_close(got.float(), want, rtol=0, atol=FP16_ATOL)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("h,w", [(512, 512), (288, 512)])
def test_copy_tokens_at_lr_sizes_on_cuda(h, w):
    image, known, source = case(1, h, w, 8, seed=h)
    got = copy_tokens(image, known, source, 8, 4, 4, 3.0)
    torch.testing.assert_close(got, copy_tokens_reference(image, known, source, 8, 4, 4, 3.0), rtol=0, atol=1e-5)


def test_copy_tokens_argument_errors():
    image, known, source = case(1, 32, 48, 8, seed=0)
    with pytest.raises(ValueError, match="feather"):
        copy_tokens(image, known, source, 8, 5)
    with pytest.raises(ValueError, match="source"):
        copy_tokens(image, known, source[:, :3], 8, 2)
    with pytest.raises(ValueError, match="patch"):
        copy_tokens(image, known, source, 7, 2)
