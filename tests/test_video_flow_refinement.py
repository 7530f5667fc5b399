"""video.flow_refinement: the variational refinement in torch, against OpenCV's VariationalRefinement on the same
inputs, and its place in TorchDIS."""
import dataclasses

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from rethined_engine.video import flow_refinement
from rethined_engine.video.dis_torch import TORCH_DIS_PRESETS, TorchDIS
from rethined_engine.video.flow import DIS_PRESETS, dis
from rethined_engine.video.flow_refinement import RefinementParams, refine

OPENCV_TOLERANCE = 1e-3     # px: most our float ordering and OpenCV's may part (1.4e-4 seen)


def textured_pair(rng, height, width, shift=(2, 1)):
    """(source, target) (height, width) uint8: a blurred noise texture and the same texture moved by shift px, so
    that source(x) = target(x - shift)."""
    dx, dy = shift
    base = cv2.GaussianBlur(rng.uniform(0, 255, (height + 16, width + 16)).astype(np.float32), (0, 0), 2)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return base[8:8 + height, 8:8 + width].copy(), base[8 + dy:8 + dy + height, 8 + dx:8 + dx + width].copy()


def as_tensor(image):
    return torch.from_numpy(image.astype(np.float32))[None, None]


def torch_refine(source, target, flow, params):
    out = refine(as_tensor(source), as_tensor(target), torch.from_numpy(flow).permute(2, 0, 1)[None], params)
    return out[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("height, width", [(40, 64), (33, 47), (68, 120)])
@pytest.mark.parametrize("epsilon, iterations", [(0.01, 5), (0.001, 2)])
def test_matches_opencv_variational_refinement(rng, height, width, epsilon, iterations):
    """Odd sizes included: the red-black passes and the image's edges as OpenCV's."""
    source, target = textured_pair(rng, height, width)
    start = (rng.normal(0, 0.4, (height, width, 2)) + np.float32([-2.0, -1.0])).astype(np.float32)
    opencv = cv2.VariationalRefinement_create()
    opencv.setEpsilon(epsilon)
    opencv.setFixedPointIterations(iterations)
    expected = start.copy()
    opencv.calc(source, target, expected)
    ours = torch_refine(source, target, start, RefinementParams(fixed_point_iterations=iterations, epsilon=epsilon))
    assert np.abs(expected - start).mean() > 0.1          # the refinement moved the flow
    np.testing.assert_allclose(ours, expected, rtol=0, atol=OPENCV_TOLERANCE)


def test_brings_a_noisy_flow_nearer_the_truth(rng):
    source, target = textured_pair(rng, 64, 96)
    truth = np.float32([-2.0, -1.0])
    start = (rng.normal(0, 0.5, (64, 96, 2)) + truth).astype(np.float32)
    refined = torch_refine(source, target, start, RefinementParams())
    inner = (slice(4, -4), slice(4, -4))
    before = np.linalg.norm(start - truth, axis=-1)[inner].mean()
    after = np.linalg.norm(refined - truth, axis=-1)[inner].mean()
    assert after < 0.5 * before, (before, after)


def test_a_batch_equals_its_pairs_one_by_one(rng):
    pairs = [textured_pair(rng, 36, 52, shift) for shift in ((1, 2), (3, 0))]
    starts = [rng.normal(0, 0.5, (2, 36, 52)).astype(np.float32) for _ in pairs]
    sources = torch.cat([as_tensor(s) for s, _ in pairs])
    targets = torch.cat([as_tensor(t) for _, t in pairs])
    batched = refine(sources, targets, torch.from_numpy(np.stack(starts)))
    for k, ((source, target), start) in enumerate(zip(pairs, starts)):
        alone = refine(as_tensor(source), as_tensor(target), torch.from_numpy(start)[None])
        torch.testing.assert_close(batched[k:k + 1], alone, rtol=0, atol=1e-5)


def test_no_iterations_keep_the_flow():
    source = torch.rand(1, 1, 20, 30) * 255
    flow = torch.randn(1, 2, 20, 30)
    assert torch.equal(refine(source, source, flow, RefinementParams(fixed_point_iterations=0)), flow)


def test_neighbour_sum_counts_only_edges_inside_the_image():
    """With every edge weight 1 and values 1, each pixel sums its neighbours inside the image: 2 at a corner, 3
    along an edge, 4 inside."""
    values = torch.ones(1, 1, 4, 5)
    right, down = flow_refinement.smoothness_weights(torch.zeros(1, 2, 4, 5), RefinementParams(alpha=2.0,
                                                                                               epsilon=1.0))
    counts = flow_refinement.neighbour_sum(values, flow_refinement.edges(right, down))[0, 0]
    assert counts[0, 0] == 2 and counts[0, 2] == 3 and counts[2, 2] == 4 and counts[3, 4] == 2


@pytest.mark.parametrize("preset", list(TORCH_DIS_PRESETS))
def test_torch_dis_presets_refine_as_opencv_presets(preset):
    opencv = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    assert TORCH_DIS_PRESETS[preset].refinement_iterations == opencv.getVariationalRefinementIterations()
    ours = RefinementParams()
    assert (ours.alpha, ours.delta, ours.gamma) == (opencv.getVariationalRefinementAlpha(),
                                                   opencv.getVariationalRefinementDelta(),
                                                   opencv.getVariationalRefinementGamma())
    assert ours.epsilon == pytest.approx(opencv.getVariationalRefinementEpsilon())


def test_torch_dis_follows_opencv_dis_with_the_refinement(rng):
    """The fast preset on a shifted texture: the refinement lowers TorchDIS's median end-point error, and TorchDIS
    stays within 1.5x of OpenCV's DIS without its sequential spatial propagation (TorchDIS's is a parallel form)."""
    source, target = textured_pair(rng, 120, 200, (3, 2))
    truth = np.float32([-3.0, -2.0])

    def error(flow):
        return float(np.median(np.linalg.norm(flow - truth, axis=-1)[12:-12, 12:-12]))

    plain = TorchDIS("fast")
    plain.params = dataclasses.replace(plain.params, refinement_iterations=0)
    opencv = dis("fast")
    opencv.setUseSpatialPropagation(False)
    ours, without, theirs = (error(x.calc(source, target, None)) for x in (TorchDIS("fast"), plain, opencv))
    assert ours < without, (ours, without)
    assert ours < 1.5 * theirs, (ours, theirs)


def test_bad_flow_shape_is_named():
    with pytest.raises(ValueError, match="flow"):
        refine(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 9))
