"""Triton DIS patch search and propagation (`kernels.dis_search`) vs their torch references
(`video.dis_torch.inverse_search` and `propagate`, themselves
checked against known flows in tests/test_video_dis_torch.py). CPU: the Triton interpreter; CUDA: also the
whole estimator with the kernel against the torch search."""
import pytest
import torch

pytest.importorskip("triton")
from rethined_engine.kernels import dis_search  # noqa: E402
from rethined_engine.kernels.dis_search import (  # noqa: E402
    inverse_search,
    inverse_search_reference,
    propagate,
    propagate_reference,
)
from rethined_engine.video import dis_torch  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 2e-3               # px: float32 bilinear reads and sums in another order, over up to 16 Newton steps


def case(b, h, w, seed, size=8, stride=4, shift=2.5):
    """A scale's inputs as `search_scale` builds them: a blurred-noise target, the source the target shifted by
    about `shift` px (so the search has something to find), patches every stride px, starts near zero."""
    g = torch.Generator().manual_seed(seed)
    target = torch.nn.functional.avg_pool2d(torch.rand(b, 1, h + 4, w + 4, generator=g) * 255, 5, 1)
    source = torch.roll(target, shifts=(1, 2), dims=(-2, -1)) + torch.rand(b, 1, h, w, generator=g)
    ys, xs = dis_torch.patch_origins(h, size, stride), dis_torch.patch_origins(w, size, stride)
    rows, cols = dis_torch.patch_pixels(ys, xs, size)
    index = rows * w + cols
    gx, gy = dis_torch.gradients(source)
    template, gx, gy = (t.flatten(1)[:, index] for t in (source, gx, gy))
    gx, gy = gx - gx.mean(-1, keepdim=True), gy - gy.mean(-1, keepdim=True)
    start = (torch.rand(b, 2, index.shape[0], generator=g) - 0.5) * shift
    tensors = target, template, gx, gy, cols.float(), rows.float(), start
    return [t.to(DEVICE) for t in tensors]


@pytest.mark.parametrize("shape", [(1, 24, 40), (2, 33, 50)])
@pytest.mark.parametrize("iterations", [1, 12])
def test_matches_reference(shape, iterations):
    args = case(*shape, seed=sum(shape) + iterations)
    got = inverse_search(*args, iterations, 8)
    want = inverse_search_reference(*args, iterations, 8)
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    assert (got - args[-1]).abs().max() > 0.1          # the patches moved from their starts


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", [(2, 68, 120), (1, 270, 480)])   # the video working size's finest scales
def test_matches_reference_at_the_working_size_on_cuda(shape):
    args = case(*shape, seed=13)
    torch.testing.assert_close(inverse_search(*args, 16, 8), inverse_search_reference(*args, 16, 8), rtol=0,
                               atol=ATOL)


def test_matches_reference_over_many_programs(monkeypatch):
    """Blocks of 4 patches: program offsets and a partial last block, over two images."""
    monkeypatch.setattr(dis_search, "BLOCK_P", 4)
    args = case(2, 30, 46, seed=7)
    torch.testing.assert_close(inverse_search(*args, 6, 8), inverse_search_reference(*args, 6, 8), rtol=0, atol=ATOL)


def test_matches_reference_where_patches_stop_on_noise():
    """A noisy target and many iterations: most patches stop where their SSD stops falling (OpenCV's rule), at the
    same step in the kernel as in the reference, and keep still after it (without the stop, 40 and 80 iterations
    left only a quarter of the patches at the same flow; with it, all)."""
    target, template, gx, gy, x, y, start = case(1, 24, 40, seed=11)
    target = target + torch.randn(target.shape, generator=torch.Generator().manual_seed(2)).to(target.device) * 4
    got = inverse_search(target, template, gx, gy, x, y, start, 40, 8)
    want = inverse_search_reference(target, template, gx, gy, x, y, start, 40, 8)
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    longer = inverse_search_reference(target, template, gx, gy, x, y, start, 80, 8)
    assert (longer == want).all(-2).float().mean() > 0.9     # stopped patches do not move


def test_a_patch_that_strays_keeps_its_start():
    """A start 40 px off on a periodic-free texture: the search wanders; every patch whose result lies more than
    size px from its start is reset to it, in the kernel as in the reference."""
    target, template, gx, gy, x, y, start = case(1, 24, 40, seed=3)
    start = start + 40.0
    got = inverse_search(target, template, gx, gy, x, y, start, 12, 8)
    want = inverse_search_reference(target, template, gx, gy, x, y, start, 12, 8)
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    moved = (got - start).square().sum(1)
    assert bool((moved <= 64).all())


def grid_of(h, w, size=8, stride=4):
    return len(dis_torch.patch_origins(h, size, stride)), len(dis_torch.patch_origins(w, size, stride))


@pytest.mark.parametrize("shape", [(1, 24, 40), (2, 33, 50)])
def test_propagation_matches_reference(shape, monkeypatch):
    """Starts of up to +-5 px: most patches take a neighbour's flow, the same one in the kernel as in the reference
    (both compare the same SSDs, ties to the first of own, left, right, up, down). Blocks of 4 patches when
    interpreted: program offsets and a partial last block."""
    monkeypatch.setattr(dis_search, "BLOCK_P", 4 if DEVICE == "cpu" else dis_search.BLOCK_P)
    target, template, _, _, x, y, start = case(*shape, seed=3)
    start = start * 4
    got = propagate(target, template, x, y, start, grid_of(*shape[1:]))
    want = propagate_reference(target, template, x, y, start, grid_of(*shape[1:]))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert (got != start).any(1).float().mean() > 0.5


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA")
@pytest.mark.parametrize("shape", [(2, 68, 120), (1, 270, 480)])   # the video working size's finest scales
def test_propagation_matches_reference_at_the_working_size_on_cuda(shape):
    target, template, _, _, x, y, start = case(*shape, seed=13)
    start = start * 4
    grid = grid_of(*shape[1:])
    got = propagate(target, template, x, y, start, grid)
    want = propagate_reference(target, template, x, y, start, grid)
    differs = (got != want).any(1).float().mean().item()
    assert differs <= 0.002, differs      # a near tie of two flows' SSDs may go either way in another sum order


def test_propagation_rejects_a_grid_that_does_not_hold_the_patches():
    target, template, _, _, x, y, start = case(1, 24, 40, seed=1)
    with pytest.raises(ValueError, match="grid"):
        propagate(target, template, x, y, start, (3, 3))


def test_rejects_a_patch_size_that_is_not_a_power_of_two():
    args = case(1, 24, 40, seed=1, size=6)
    with pytest.raises(ValueError, match="power of two"):
        inverse_search(*args, 4, 6)


def test_estimator_with_the_kernels_matches_the_torch_search_interpreted(monkeypatch, flows_close):
    """The whole estimator on the CPU with both kernels picked (interpreted) against its torch search."""
    g = torch.Generator().manual_seed(5)
    target = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 100, generator=g) * 255, 5, 1)[:, 0]
    source = torch.roll(target, shifts=(2, -3), dims=(-2, -1))
    params = dis_torch.TORCH_DIS_PRESETS["fast"]
    plain = dis_torch.dis_flow(source, target, params)
    monkeypatch.setattr(dis_torch, "search_function", lambda device, size: inverse_search)
    monkeypatch.setattr(dis_torch, "propagate_function", lambda device, size: propagate)
    flows_close(dis_torch.dis_flow(source, target, params), plain)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the estimator picks the kernel on CUDA only")
def test_estimator_with_the_kernels_matches_the_torch_search(monkeypatch, flows_close):
    g = torch.Generator().manual_seed(5)
    target = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 124, 204, generator=g) * 255, 5, 1)[:, 0]
    source = torch.roll(target, shifts=(2, -3), dims=(-2, -1))
    params = dis_torch.TORCH_DIS_PRESETS["fast"]
    fused = dis_torch.dis_flow(source.cuda(), target.cuda(), params)
    monkeypatch.setattr(dis_torch, "search_function", lambda device, size: dis_torch.inverse_search)
    monkeypatch.setattr(dis_torch, "propagate_function", lambda device, size: dis_torch.propagate)
    plain = dis_torch.dis_flow(source.cuda(), target.cuda(), params)
    flows_close(fused, plain)
