"""Triton candidate search (`kernels.copy_candidates`) vs its torch reference (`model.patchmatch.copy_candidates`,
compact). CPU: the Triton interpreter at small grids; CUDA: the LR grid too. On random unit vectors no two keys'
similarities or scores lie within float rounding of each other, so the interpreter's candidates must be equal,
not close; on CUDA the tensor cores sum in their own order (a near-tie may flip)."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels.copy_candidates import (POOL_MAX, copy_candidates,  # noqa: E402
                                                     copy_candidates_reference, key_splits)
from rethined_engine.model import patchmatch  # noqa: E402

from conftest import token_inputs  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CUDA_MIN_AGREEMENT = 0.999   # share of equal entries on CUDA


def case(batch, grid_h, grid_w, dim, seed, dtype=torch.float32, hole_share=0.5):
    """copy_candidates' tensors on DEVICE: `conftest.token_inputs` (q, k in dtype), random colours and expected
    colours."""
    g = torch.Generator().manual_seed(seed)
    n = grid_h * grid_w
    q, k, hole, key_ok = token_inputs(g, batch, n, dim, hole_share)
    colours, expected = torch.rand(batch, n, 3, generator=g), torch.rand(batch, n, 3, generator=g)
    return q.to(DEVICE, dtype), k.to(DEVICE, dtype), colours.to(DEVICE), expected.to(DEVICE), hole.to(DEVICE), \
        key_ok.to(DEVICE)


@pytest.mark.parametrize("batch,grid_h,grid_w,dim", [(1, 8, 12, 16), (2, 16, 16, 64), (1, 10, 14, 70)])
@pytest.mark.parametrize("pool,colour_weight,locality", [(8, 0.0, 0.0), (8, 0.5, 0.0), (5, 0.3, 1.0),
                                                         (20, 0.2, 0.0), (1, 0.5, 0.5)])
def test_copy_candidates_matches_reference(batch, grid_h, grid_w, dim, pool, colour_weight, locality):
    q, k, colours, expected, hole, key_ok = case(batch, grid_h, grid_w, dim, seed=pool + dim)
    got = copy_candidates(q, k, colours, expected, hole, key_ok, pool, colour_weight, grid_w, locality)
    want = copy_candidates_reference(q, k, colours, expected, hole, key_ok, pool, colour_weight, grid_w, locality)
    assert got.dtype == torch.int64 and got.shape == (batch, grid_h * grid_w, patchmatch.COPY_CANDIDATES)
    assert torch.equal(got, want)


@pytest.mark.parametrize("pool,colour_weight,locality", [(8, 0.5, 0.0), (20, 0.2, 1.0)])
def test_copy_candidates_over_several_key_ranges(pool, colour_weight, locality):
    """1536 keys: searched as key_splits(1536) > 1 ranges, whose pools the merge joins. (With seed 20 two of a
    row's scores lie 3e-8 apart, within float rounding: these seeds have no such near-tie.)"""
    assert key_splits(32 * 48) > 1
    q, k, colours, expected, hole, key_ok = case(1, 32, 48, 16, seed=pool + 1)
    got = copy_candidates(q, k, colours, expected, hole, key_ok, pool, colour_weight, 48, locality)
    assert torch.equal(got, copy_candidates_reference(q, k, colours, expected, hole, key_ok, pool, colour_weight, 48,
                                                      locality))


def test_copy_candidates_float16_queries():
    """float16 q, k: products exact, sums in float32, as the reference's float32 matmul of the same values."""
    args = case(1, 12, 12, 64, seed=3, dtype=torch.float16)
    assert torch.equal(copy_candidates(*args, 8, 0.5, 12), copy_candidates_reference(*args, 8, 0.5, 12))


def test_copy_candidates_with_fewer_allowed_keys_than_the_pool():
    """Three allowed keys in all: every hole row lists them, best first, then its own index; known rows list only
    their own index."""
    q, k, colours, expected, hole, key_ok = case(1, 8, 8, 16, seed=4)
    key_ok = torch.zeros_like(key_ok)
    key_ok[0, torch.nonzero(~hole[0])[:3, 0]] = True
    got = copy_candidates(q, k, colours, expected, hole, key_ok, 8, 0.5, 8)
    assert torch.equal(got, copy_candidates_reference(q, k, colours, expected, hole, key_ok, 8, 0.5, 8))
    own = torch.arange(64, device=got.device)
    assert torch.equal(got[0, hole[0], 3:], own[hole[0], None].expand(-1, patchmatch.COPY_CANDIDATES - 3))
    assert torch.equal(got[0, ~hole[0]], own[~hole[0], None].expand(-1, patchmatch.COPY_CANDIDATES))


def test_copy_candidates_without_a_hole_or_a_key_lists_own_indices():
    q, k, colours, expected, hole, key_ok = case(2, 6, 6, 16, seed=5)
    hole[0] = False                                   # image 0: no hole row
    key_ok[1] = False                                 # image 1: no allowed key
    own = torch.arange(36, device=q.device)[None, :, None].expand(2, 36, patchmatch.COPY_CANDIDATES)
    assert torch.equal(copy_candidates(q, k, colours, expected, hole, key_ok, 8, 0.5, 6), own)


@pytest.mark.parametrize("which,bad,message", [(0, lambda t: t[..., :-1], "q, k"),
                                               (3, lambda t: t[..., :2], "expected"),
                                               (5, lambda t: t[:, :-1], "key_ok"),
                                               (6, lambda t: POOL_MAX + 1, "pool"),
                                               (6, lambda t: 0, "pool"),
                                               (8, lambda t: 7, "grid_w")])
def test_copy_candidates_rejects_bad_arguments(which, bad, message):
    args = [*case(1, 6, 6, 16, seed=1), 8, 0.5, 6]
    args[which] = bad(args[which])
    with pytest.raises(ValueError, match=message):
        copy_candidates(*args)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_copy_candidates_on_the_lr_grid_on_cuda(dtype):
    """The default's pool on the 64 x 64 token grid of a 512 px LR image, 256-dim keys, 40 % holes."""
    args = case(1, 64, 64, 256, seed=9, dtype=dtype, hole_share=0.4)
    got = copy_candidates(*args, 8, 0.5, 64)
    want = copy_candidates_reference(*args, 8, 0.5, 64)
    assert (got == want).float().mean() >= CUDA_MIN_AGREEMENT
