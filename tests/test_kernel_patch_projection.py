"""Triton patch projection vs its torch reference (and the reference vs the model's `project`)."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels.patch_projection import (CONFIGS, patch_projection, patch_projection_kernel,  # noqa: E402
                                                      patch_projection_reference)
from rethined_engine.model.patchmatch import patchify  # noqa: E402

from conftest import make_model  # noqa: E402

# (grid_h, grid_w, patch, feature channels, d): odd grids (ragged last token block), every patch size
CPU_SHAPES = [(3, 5, 8, 96, 256), (9, 13, 8, 96, 256), (4, 7, 4, 48, 64), (2, 3, 16, 32, 128)]
GPU_SHAPES = [(64, 64, 8, 96, 256), (36, 64, 8, 96, 256)]            # 2048^2 and 16:9 images at LR 512
ATOL = {torch.float32: 1e-5, torch.float16: 2e-3}   # unit vectors; fp16 output rounding is ~5e-4


def case(shape, dtype, device, seed=0):
    gh, gw, p, cf, d = shape
    g = torch.Generator().manual_seed(seed)
    in_dim = 3 * p * p + cf
    image = torch.rand(3, gh * p, gw * p, generator=g)
    features = torch.randn(cf, gh, gw, generator=g)
    params = [torch.randn(d, in_dim, generator=g) / in_dim ** 0.5, torch.randn(d, generator=g) * 0.1,
              torch.randn(d, in_dim, generator=g) / in_dim ** 0.5, torch.randn(d, generator=g) * 0.1]
    return image.to(device, dtype), features.to(device, dtype), [t.to(device, dtype) for t in params], p


def run_case(shape, dtype, device):
    image, features, params, p = case(shape, dtype, device)
    n, d = shape[0] * shape[1], shape[4]
    out = torch.full((2, n, d), float("nan"), dtype=dtype, device=device)        # poisoned
    q, k = patch_projection(image, features, *params, p, out=out)
    ref_q, ref_k = patch_projection_reference(image.double(), features.double(), *[t.double() for t in params], p)
    assert q.dtype == dtype and q.shape == (n, d)
    torch.testing.assert_close(q.double(), ref_q, rtol=0, atol=ATOL[dtype])
    torch.testing.assert_close(k.double(), ref_k, rtol=0, atol=ATOL[dtype])


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


def test_reference_is_the_models_projection():
    model = make_model()
    pm, p = model.patch_match, model.cfg.patch_size
    image, features = torch.rand(1, 3, 32, 40), torch.randn(1, 96, 4, 5)
    want = pm.project(patchify(image, p), features)
    got = patch_projection_reference(image[0], features[0], pm.to_q.weight, pm.to_q.bias, pm.to_k.weight,
                                     pm.to_k.bias, p)
    torch.testing.assert_close(got[0], want[0][0])
    torch.testing.assert_close(got[1], want[1][0])


def test_rejects_mismatched_shapes():
    image, features, params, p = case(CPU_SHAPES[0], torch.float32, "cpu")
    with pytest.raises(ValueError, match="image"):
        patch_projection(image[:, :-8], features, *params, p)
    with pytest.raises(ValueError, match="wq"):
        patch_projection(image, features[:-1], *params, p)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_autotune_config(monkeypatch, name):
    """The interpreter runs the first config only; force each one so that no tile shape is untested."""
    monkeypatch.setattr(patch_projection_kernel, "configs", [CONFIGS[name]])
    monkeypatch.setattr(patch_projection_kernel, "cache", {})
    run_case((9, 13, 8, 96, 256), torch.float16, "cpu")
