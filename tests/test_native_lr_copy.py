"""The LR copy steps in the native extension (csrc/native/lr_copy.cpp, source_sweep.cpp) against their torch references in
`model.patchmatch`: fresh random inputs, odd batch and grid shapes, 1 and several threads. The C++ does each
operation in the torch order, so results agree to float rounding (COPY_ATOL); the native backend's outputs with
and without them are compared end to end."""
import numpy as np
import pytest
import torch

from rethined_engine import Engine
from rethined_engine.backends.native_backend import (ColourAnchor, CopyKernels, FlatFill, NativePropagation,
                                                     native_module)
from rethined_engine.config import FLAT_FILL_FORMS
from rethined_engine.geometry import seam_taps
from rethined_engine.model import patchmatch as pm
from rethined_engine.model.flat import flat_fill
from rethined_engine.model.anchor import ANCHOR_CELL, colour_anchor, jump_steps
from rethined_engine.train.masks import random_mask

from conftest import propagation_inputs

native = native_module()
pytestmark = pytest.mark.skipif(native is None, reason="rethined_engine._native not built")
COPY_ATOL = 1e-6     # float32 values in [0, 1]; the C++ differs from torch by a rounding step at most (~1e-7)
FLAT_WEIGHT_ATOL = 1e-4  # `flat_fill`'s weight: log ramps of a variance that is the difference of two membranes of
                         # similar size (the squares' and the square of the colours'), which magnifies rounding


def channels_last(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def hole_masks(batch: int, h: int, w: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([random_mask(h, w, rng) for _ in range(batch)]).astype(np.float32))[:, None]


@pytest.mark.parametrize("shape", [(1, 40, 56, 1), (2, 64, 48, 3), (1, 96, 128, 8)])
@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_blur_base_matches_torch(threads, shape, sigma):
    b, h, w, c = shape
    image = torch.rand(b, c, h, w)
    got = native.blur_base(channels_last(image), seam_taps(sigma))
    np.testing.assert_allclose(got, channels_last(pm.blur_base(image, sigma)), atol=COPY_ATOL, rtol=0)


@pytest.mark.parametrize("batch,grid_h,grid_w,patch", [(1, 5, 7, 8), (2, 8, 6, 4), (1, 4, 3, 16)])
@pytest.mark.parametrize("feather,base_feather", [(0, 0), (2, 0), (1, 2), (2, 4)])
def test_copy_tokens_matches_torch(threads, batch, grid_h, grid_w, patch, feather, base_feather):
    if max(feather, base_feather) > patch // 2:
        pytest.skip("feather past half a token")
    h, w = grid_h * patch, grid_w * patch
    image = torch.rand(batch, 3, h, w)
    known = 1.0 - hole_masks(batch, h, w, seed=grid_h * patch + feather)
    n = grid_h * grid_w
    source = torch.where(torch.rand(batch, n) < 0.5, torch.randint(0, n, (batch, n)), torch.arange(n)[None])
    ref = pm.copy_tokens(image, known, source, patch, feather, base_feather=base_feather, base_sigma=2.0)
    got = native.copy_tokens(channels_last(image), known[:, 0].numpy().copy(), source.numpy(), patch, feather,
                             base_feather, seam_taps(2.0))
    np.testing.assert_allclose(got, channels_last(ref), atol=COPY_ATOL, rtol=0)


@pytest.mark.parametrize("batch,h,w,channels,levels", [(1, 32, 48, 1, 0), (2, 64, 32, 3, 3), (1, 128, 96, 3, 4)])
def test_harmonic_fill_matches_torch(threads, batch, h, w, channels, levels):
    fixed = (torch.rand(batch, 1, h, w) < 0.05).float()
    values = torch.randn(batch, channels, h, w)
    ref = pm.harmonic_fill(values, fixed, levels)
    got = native.harmonic_fill(channels_last(values), fixed[:, 0].numpy().copy(), levels, pm.JACOBI_SWEEPS,
                               pm.JACOBI_COARSEST_SWEEPS, pm.COARSE_FIXED_SHARE)
    np.testing.assert_allclose(got, channels_last(ref), atol=COPY_ATOL * 10, rtol=0)   # values ~N(0, 1), not [0, 1]


@pytest.mark.parametrize("batch,h,w,sigma", [(1, 64, 96, 2.0), (2, 128, 64, 1.0)])
def test_border_match_matches_torch(threads, batch, h, w, sigma):
    composite, filled = torch.rand(batch, 3, h, w), torch.rand(batch, 3, h, w)
    mask = hole_masks(batch, h, w, seed=h + w)
    ref = pm.border_match(composite, mask, filled, sigma)
    got = native.border_match(channels_last(composite), mask[:, 0].numpy().copy(), channels_last(filled),
                              seam_taps(sigma), pm.BORDER_MATCH_LEVELS, pm.JACOBI_SWEEPS, pm.JACOBI_COARSEST_SWEEPS,
                              pm.COARSE_FIXED_SHARE, pm.MEAN_WEIGHT_FLOOR)
    hole = channels_last(mask.expand(-1, 3, -1, -1)) > 0
    np.testing.assert_allclose(got, channels_last(ref), atol=COPY_ATOL, rtol=0)
    assert hole.any() and (~hole).any()


def test_copy_kernels_stand_in_for_the_torch_steps():
    """`CopyKernels` with the arguments NeuralPatchMatch passes gives the torch steps' result (realistic settings)."""
    image, mask = torch.rand(1, 3, 64, 64), hole_masks(1, 64, 64, seed=3)
    source = torch.randint(0, 64, (1, 64))
    got = CopyKernels(native)(image.contiguous(memory_format=torch.channels_last), mask, source, 8, 2, 4, 3.0, 2.0)
    copied = pm.copy_tokens(image, 1.0 - mask, source, 8, 2, base_feather=4, base_sigma=3.0)
    ref = pm.border_match(image, mask, copied, 2.0)
    torch.testing.assert_close(got, ref, atol=COPY_ATOL, rtol=0)


@pytest.mark.parametrize("batch,h,w,sigma,strength", [(1, 64, 96, 12.0, 0.7), (2, 128, 64, 4.0, 1.0),
                                                      (1, 96, 160, 8.0, 0.5)])
def test_colour_anchor_matches_torch(threads, batch, h, w, sigma, strength):
    """`ColourAnchor` (the jump flooding, cell means, blurs and upsampling in C++) against `colour_anchor`; the
    second image of a batch of two is all hole (unchanged)."""
    composite, filled = torch.rand(batch, 3, h, w), torch.rand(batch, 3, h, w)
    mask = hole_masks(batch, h, w, seed=h * w)
    if batch > 1:
        mask[1] = 1.0
    steps = jump_steps(max(h, w) // ANCHOR_CELL)
    ref = colour_anchor(composite, mask, filled, strength, sigma, steps)
    got = ColourAnchor(native)(composite, mask, filled, strength, sigma, steps)
    torch.testing.assert_close(got, ref, atol=COPY_ATOL, rtol=0)
    assert not torch.allclose(ref[:1], filled[:1], atol=1e-3)
    if batch > 1:
        assert torch.equal(got[1], filled[1])


@pytest.mark.parametrize("form", FLAT_FILL_FORMS)
@pytest.mark.parametrize("batch,h,w", [(1, 64, 96), (3, 128, 64), (1, 96, 160)])
def test_flat_fill_matches_torch(threads, batch, h, w, form):
    """`FlatFill` (cell means, known-pixel blurs, membranes, the continued fill's Poisson solve, the ring's dilation
    and upsampling in C++) against `flat_fill`: the first image's known pixels a faint gradient with grain (flat:
    weights near 1), a second one random (weights near 0); with three, the third a ramp with grain of 0.02 (the
    continued weight inside its ramp)."""
    composite, filled = torch.rand(batch, 3, h, w), torch.rand(batch, 3, h, w)
    composite[0] = torch.linspace(0.2, 0.4, w).expand(3, h, w) + 0.003 * torch.randn(3, h, w)
    if batch > 2:
        composite[2] = torch.linspace(0.3, 0.6, w).expand(3, h, w) + 0.02 * torch.randn(3, h, w)
    mask = hole_masks(batch, h, w, seed=h + w)
    ref_fill, ref_weight = flat_fill(composite, mask, filled, form)
    got_fill, got_weight = FlatFill(native, form)(composite, mask, filled)
    torch.testing.assert_close(got_fill, ref_fill, atol=COPY_ATOL, rtol=0)
    torch.testing.assert_close(got_weight, ref_weight, atol=FLAT_WEIGHT_ATOL, rtol=0)
    assert ref_weight[0].mean() > 0.5
    if batch > 1:
        assert ref_weight[1].mean() < 0.5
    if batch > 2 and form == "continued":
        hole = mask[2] > 0
        assert 0.05 < ref_weight[2][hole].mean() < 0.95


@pytest.mark.parametrize("batch,grid_h,grid_w,dim,candidates", [(1, 8, 12, 16, 8), (2, 16, 16, 256, 8),
                                                                 (1, 10, 14, 70, 6)])
@pytest.mark.parametrize("colour_weight,sweeps,radius,penalty", [(0.0, 1, 0, 0.0), (0.0, 8, 1, 0.05),
                                                                 (0.5, 3, 2, 0.1)])
@pytest.mark.parametrize("border_continuity,support_margin", [(0.0, 0.0), (0.75, 0.0), (0.0, 0.15), (0.75, 0.1)])
def test_propagate_sources_matches_torch(threads, batch, grid_h, grid_w, dim, candidates, colour_weight, sweeps,
                                         radius, penalty, border_continuity, support_margin):
    """On random unit vectors no two options' scores lie within float rounding: the sources are equal (with the
    border credit, the known tokens beside the hole start from their look-alikes; with the support margin, only
    supported copies credited)."""
    args = propagation_inputs(batch, grid_h, grid_w, dim, candidates, colour_weight, seed=sweeps + radius,
                              border_continuity=border_continuity)
    start = args[7].clone()
    got = NativePropagation(native)(*args, sweeps, 0.5, radius, penalty, border_continuity, support_margin)
    assert torch.equal(got, pm.propagate_sources(*args, sweeps, 0.5, radius, penalty,
                                                 border_continuity=border_continuity, support_margin=support_margin))
    assert torch.equal(args[7], start) and (got != start).any()
    if support_margin > 0.0:                  # the gate takes the credit from some copies on these inputs
        assert not torch.equal(got, NativePropagation(native)(*args, sweeps, 0.5, radius, penalty, border_continuity))


@pytest.mark.parametrize("style,flat", [("realistic", False), ("fast", False), ("realistic", True)])
def test_native_backend_with_and_without_the_kernels(rng, style, flat):
    """End to end the kernels change nothing a uint8 result shows but a rare rounding tie (flat: a flat photo, whose
    fill also moves towards the membrane of `model.flat`)."""
    image = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)
    if flat:
        image = np.repeat(np.linspace(60, 90, 420, dtype=np.float32)[None, :, None], 300, 0).repeat(3, 2)
        image = (image + rng.normal(0, 1, image.shape)).round().astype(np.uint8)
    mask = random_mask(300, 420, rng).astype(np.uint8)
    with_kernels = Engine(backend="native", style=style, colour_anchor=0.7, colour_anchor_flat=flat)
    assert with_kernels._impl.model.patch_match.copy_kernels is not None
    assert with_kernels._impl.model.patch_match.propagation_kernel is not None
    assert with_kernels._impl.model.anchor_kernel is not None
    assert with_kernels._impl.model.flat_kernel is not None
    without = Engine(backend="native", style=style, colour_anchor=0.7, colour_anchor_flat=flat)
    without._impl.model.patch_match.copy_kernels = None
    without._impl.model.patch_match.propagation_kernel = None
    without._impl.model.anchor_kernel = None
    without._impl.model.flat_kernel = None
    diff = np.abs(with_kernels.inpaint(image, mask).astype(int) - without.inpaint(image, mask).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


@pytest.mark.parametrize("call,message", [
    (lambda: native.copy_tokens(np.zeros((1, 16, 16, 3), np.float32), np.ones((1, 16, 16), np.float32),
                                np.zeros((1, 3), np.int64), 8, 2), "source: expected"),
    (lambda: native.copy_tokens(np.zeros((1, 16, 16, 3), np.float32), np.ones((1, 16, 16), np.float32),
                                np.full((1, 4), 9, np.int64), 8, 2), "source: token index out of range"),
    (lambda: native.copy_tokens(np.zeros((1, 16, 16, 3), np.float32), np.ones((1, 16, 16), np.float32),
                                np.zeros((1, 4), np.int64), 8, 5), "feather: expected 0..4"),
    (lambda: native.copy_tokens(np.zeros((1, 16, 16, 3), np.float32), np.ones((1, 16, 8), np.float32),
                                np.zeros((1, 4), np.int64), 8, 2), "known: expected"),
    (lambda: native.blur_base(np.zeros((1, 8, 8, 3), np.float32), np.ones(4, np.float32)), "taps: expected an odd"),
    (lambda: native.colour_anchor(np.zeros((1, 12, 16, 3), np.float32), np.zeros((1, 12, 16), np.float32),
                                  np.zeros((1, 12, 16, 3), np.float32), 0.5, np.ones(3, np.float32), 8, [1]),
     "cell: expected a divisor"),
    (lambda: native.colour_anchor(np.zeros((1, 16, 16, 3), np.float32), np.zeros((1, 16, 8), np.float32),
                                  np.zeros((1, 16, 16, 3), np.float32), 0.5, np.ones(3, np.float32), 8, [1]),
     "mask: expected"),
    (lambda: FlatFill(native, "membrane")(torch.zeros(1, 3, 36, 48), torch.zeros(1, 1, 36, 48),
                                          torch.zeros(1, 3, 36, 48)),
     "composite: expected h and w divisible by"),
    (lambda: FlatFill(native, "membrane")(torch.zeros(1, 3, 32, 48), torch.zeros(1, 1, 32, 48),
                                          torch.zeros(1, 3, 32, 48)),
     "levels: expected"),
    (lambda: native.flat_fill(
        *[np.zeros(shape, np.float32) for shape in ((1, 32, 32, 3), (1, 32, 32), (1, 32, 32, 3))], 2,
        np.ones(3, np.float32), np.ones(3, np.float32), np.ones(3, np.float32), 4, 1, 0.01, 0.02, 1e-5, 4, 1,
        np.ones(3, np.float32), 0.001, 0.01, 1e-7, 8, 24, 0.5, 1e-6, 3), "form: expected 0"),
    (lambda: native.harmonic_fill(np.zeros((1, 24, 24, 3), np.float32), np.zeros((1, 24, 24), np.float32), 4, 8, 24,
                                  0.5), "levels: expected"),
    (lambda: native.harmonic_fill(np.zeros((1, 8, 8, 5), np.float32), np.zeros((1, 8, 8), np.float32), 1, 8, 24, 0.5),
     "values: expected at most 4 channels"),
    (lambda: propagate(own_score=np.zeros((1, 16, 3), np.float32)), r"own_score: expected shape \(1, 16, 4\)"),
    (lambda: propagate(candidates=np.full((1, 16, 4), 16, np.int64)), "candidates: token index out of range"),
    (lambda: propagate(source=np.full((1, 16), -1, np.int64)), "source: token index out of range"),
    (lambda: propagate(grid_w=5), "grid_w: expected >= 1 dividing"),
    (lambda: propagate(border_continuity=-1.0), "border_continuity: expected >= 0"),
    (lambda: propagate(support_margin=-0.1), "support_margin: expected >= 0"),
    (lambda: propagate(support_margin=float("nan")), "support_margin: expected >= 0"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def propagate(**changed):
    """`native.propagate_sources` on a valid 4 x 4 grid case, with some arguments replaced."""
    args = dict(q=np.zeros((1, 16, 8), np.float32), k=np.zeros((1, 16, 8), np.float32),
                candidates=np.zeros((1, 16, 4), np.int64), own_score=np.zeros((1, 16, 4), np.float32),
                valid=np.ones((1, 16, 4), bool), has_key=np.ones((1, 16), bool), key_ok=np.ones((1, 16), bool),
                source=np.zeros((1, 16), np.int64), grid_w=4, colours=np.zeros((1, 16, 3), np.float32),
                expected=np.zeros((1, 16, 3), np.float32), colour_weight=0.0, sweeps=1, continuity=0.5,
                repeat_radius=1, repeat_penalty=0.05)
    return native.propagate_sources(**{**args, **changed})
