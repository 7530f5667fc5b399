"""Triton propagation updates (`kernels.source_sweep`) vs their torch reference (`model.patchmatch.propagate_sources`).
CPU: the Triton interpreter at small grids; CUDA: the LR grid too. On random unit vectors no two options' scores lie
within float rounding of each other, so the sources must be equal, not close (`conftest.propagation_inputs`)."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels.source_sweep import propagate_sources, propagate_sources_reference  # noqa: E402
from rethined_engine.model import patchmatch  # noqa: E402

from conftest import propagation_inputs  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CUDA_MIN_AGREEMENT = 0.999   # CUDA: cuBLAS sums the reference's scores in its own order (one flip can propagate)


def case(batch, grid_h, grid_w, dim, candidates, colour_weight, seed, dtype=torch.float32, border_continuity=0.0):
    """`propagate_sources`' inputs on DEVICE (`conftest.propagation_inputs`)."""
    return propagation_inputs(batch, grid_h, grid_w, dim, candidates, colour_weight, seed, DEVICE, dtype,
                              border_continuity)


@pytest.mark.parametrize("batch,grid_h,grid_w,dim,candidates", [(1, 8, 12, 16, 8), (2, 16, 16, 32, 8),
                                                                 (1, 10, 14, 70, 6)])
@pytest.mark.parametrize("colour_weight,sweeps,radius,penalty", [(0.0, 1, 0, 0.0), (0.0, 8, 1, 0.05),
                                                                 (0.5, 3, 2, 0.1)])
@pytest.mark.parametrize("border_continuity,support_margin", [(0.0, 0.0), (0.75, 0.0), (0.0, 0.15), (0.75, 0.1)])
def test_propagate_sources_matches_reference(batch, grid_h, grid_w, dim, candidates, colour_weight, sweeps, radius,
                                             penalty, border_continuity, support_margin):
    """With the border credit the known tokens beside the hole start from their look-alikes; with the support
    margin only supported copies are credited (their scores tracked across updates)."""
    args = case(batch, grid_h, grid_w, dim, candidates, colour_weight, seed=sweeps + radius,
                border_continuity=border_continuity)
    start = args[7].clone()
    got = propagate_sources(*args, sweeps, 0.5, radius, penalty, border_continuity, support_margin)
    want = propagate_sources_reference(*args, sweeps, 0.5, radius, penalty, border_continuity, support_margin)
    assert torch.equal(got, want)
    assert torch.equal(args[7], start)                                     # the start is not written
    assert (got != start).any()                                            # the updates changed something


def test_propagate_sources_float16_queries():
    """float16 q, k: both sides score in float32."""
    args = case(1, 12, 12, 64, 8, 0.0, seed=5, dtype=torch.float16)
    assert torch.equal(propagate_sources(*args, 4, 0.5, 1, 0.05), propagate_sources_reference(*args, 4, 0.5, 1, 0.05))


def test_propagate_sources_without_a_row_to_update_keeps_the_start():
    """No hole token with an allowed key: every token keeps its start."""
    args = list(case(1, 6, 6, 16, 8, 0.0, seed=2))
    args[5] = torch.zeros_like(args[5])                                    # has_key
    assert torch.equal(propagate_sources(*args, 8, 0.5, 1, 0.05), args[7])


@pytest.mark.parametrize("which,bad,message", [(0, lambda t: t[..., :-1], "q, k"),
                                               (3, lambda t: t[..., :-1], "own_score"),
                                               (7, lambda t: t.int(), "source"),
                                               (8, lambda t: 7, "grid_w"),
                                               (10, lambda t: t[..., :2], "expected")])
def test_propagate_sources_rejects_bad_arguments(which, bad, message):
    args = list(case(1, 6, 6, 16, 8, 0.0, seed=1))
    args[which] = bad(args[which])
    with pytest.raises(ValueError, match=message):
        propagate_sources(*args, 1, 0.5)


@pytest.mark.parametrize("name", ["border_continuity", "support_margin"])
def test_propagate_sources_rejects_a_negative_credit_or_margin(name):
    with pytest.raises(ValueError, match=name):
        propagate_sources(*case(1, 6, 6, 16, 8, 0.0, seed=1), 1, 0.5, **{name: -0.5})


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("support_margin", [0.0, 0.2])
def test_propagate_sources_on_the_lr_grid_on_cuda(dtype, support_margin):
    """The default's settings on the 64 x 64 token grid of a 512 px LR image, 256-dim keys (with and without the
    support gate)."""
    args = case(1, 64, 64, 256, patchmatch.COPY_CANDIDATES, 0.0, seed=9, dtype=dtype)
    got = propagate_sources(*args, 8, 0.5, 1, 0.05, support_margin=support_margin)
    want = propagate_sources_reference(*args, 8, 0.5, 1, 0.05, support_margin=support_margin)
    assert (got == want).float().mean() >= CUDA_MIN_AGREEMENT
