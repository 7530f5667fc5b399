"""video.dis_torch: DIS flow in torch, against known flows and OpenCV's DIS on the same pairs."""
import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from rethined_engine.video import dis_torch
from rethined_engine.video.dis_torch import (
    TORCH_DIS_PRESETS,
    TorchDIS,
    auto_coarsest_scale,
    dis_flow,
    patch_origins,
)
from rethined_engine.video.flow import dis, estimator, warp_back

SIZE = (120, 200)         # H, W of the test pairs
INNER = (slice(12, -12), slice(12, -12))   # pixels whose flow is judged (the edges see past the frame)
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                          reason="needs CUDA")])]


def texture(rng, height=SIZE[0], width=SIZE[1], sigma=1.5):
    """Blurred-noise grey texture (height, width) uint8."""
    smooth = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), sigma)
    return np.round((smooth - smooth.min()) / (smooth.max() - smooth.min()) * 230 + 12).astype(np.uint8)


def smooth_flow(rng, amplitude, offset=(0.0, 0.0)):
    """A smooth flow (H, W, 2) float32 of about +-amplitude px around offset."""
    flow = cv2.GaussianBlur(rng.normal(0, 1, (*SIZE, 2)).astype(np.float32), (0, 0), 20)
    return flow / np.abs(flow).max() * amplitude + np.float32(offset)


def pair(rng, flow):
    """(source, target) uint8 with source(x) = target(x + flow(x)) (bilinear)."""
    target = texture(rng)
    return warp_back(target, flow), target


def end_point_error(estimate, truth):
    return np.linalg.norm(estimate - truth, axis=-1)[INNER]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", list(TORCH_DIS_PRESETS))
def test_recovers_a_smooth_flow_as_well_as_opencv(rng, preset, device):
    """Median end-point error within 0.5 px of the truth and at most 1.5x OpenCV's DIS without its variational
    refinement (ultrafast) on the same pair."""
    truth = smooth_flow(rng, 4.0, (2.5, -1.5))
    source, target = pair(rng, truth)
    ours = np.median(end_point_error(TorchDIS(preset, device).calc(source, target, None), truth))
    opencv = np.median(end_point_error(dis("ultrafast").calc(source, target, None), truth))
    assert ours < 0.5 and ours < 1.5 * opencv, (ours, opencv)


def test_identical_images_give_zero_flow(rng):
    image = texture(rng)
    flow = TorchDIS("fast").calc(image, image, None)
    assert flow.shape == (*SIZE, 2) and flow.dtype == np.float32
    assert np.abs(flow).max() < 1e-3


def test_a_start_flow_is_refined_locally(rng):
    """Searching only the finest scale, a 14 px shift is found from a start 0.6 px off and missed from zero."""
    truth = np.broadcast_to(np.float32([14.0, -9.0]), (*SIZE, 2)).copy()
    source, target = pair(rng, truth)
    local = TorchDIS("fast", scales_above_finest=0)
    near = local.calc(source, target, truth + np.float32([0.6, -0.4]))
    far = local.calc(source, target, None)
    assert np.median(end_point_error(near, truth)) < 0.3
    assert np.median(end_point_error(far, truth)) > 5


def test_the_coarsest_scale_is_a_bound_on_the_automatic_one_as_in_opencv(rng):
    """OpenCV's setCoarsestScale only lowers its automatic coarsest scale: on a small image a larger bound searches
    the automatic scales (there, the finest alone), a smaller one fewer than automatic on a large image."""
    truth = smooth_flow(rng, 2.0, (1.0, 0.5))
    source, target = pair(rng, truth)
    source, target = np.ascontiguousarray(source[:60, :100]), np.ascontiguousarray(target[:60, :100])
    start = truth[:60, :100] + np.float32([0.5, -0.5])   # automatic coarsest scale 2 = fast's finest: one scale
    assert dis_torch.auto_coarsest_scale(60, 100, 8) == TORCH_DIS_PRESETS["fast"].finest_scale
    bounded = TorchDIS("fast", scales_above_finest=3).calc(source, target, start)
    np.testing.assert_array_equal(bounded, TorchDIS("fast").calc(source, target, start))
    opencv = dis("fast")
    opencv.setCoarsestScale(opencv.getFinestScale() + 3)
    np.testing.assert_array_equal(opencv.calc(source, target, start.copy()), dis("fast").calc(source, target, start.copy()))
    full_source, full_target = pair(rng, truth)                    # automatic: 3 scales; bounded to one
    lowered = TorchDIS("fast", scales_above_finest=0).calc(full_source, full_target, None)
    assert not np.array_equal(lowered, TorchDIS("fast").calc(full_source, full_target, None))


@pytest.mark.parametrize("rounds", [1, 3])
def test_propagation_carries_a_flow_one_patch_per_round(rng, rounds):
    """One patch holds the true 14 px shift, the others zero: after each round of `propagate` the patches one grid
    step further have taken it (it matches their pixels; zero does not), and no other patch has."""
    truth = np.broadcast_to(np.float32([14.0, -9.0]), (*SIZE, 2)).copy()
    source, target = (torch.from_numpy(image).float()[None, None] for image in pair(rng, truth))
    params = TORCH_DIS_PRESETS["fast"]
    index, _, x, y = dis_torch.patch_geometry(*SIZE, params.patch_size, params.patch_stride, torch.device("cpu"))
    grid = (len(patch_origins(SIZE[0], 8, 4)), len(patch_origins(SIZE[1], 8, 4)))
    flow = torch.zeros(1, 2, *grid)
    seed = (grid[0] // 2, grid[1] // 2)
    flow[0, :, seed[0], seed[1]] = torch.tensor([14.0, -9.0])
    flow = flow.flatten(2)
    template = source.flatten(1)[:, index]
    for _ in range(rounds):
        flow = dis_torch.propagate(target, template, x, y, flow, grid)
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    reached = (np.abs(rows - seed[0]) + np.abs(cols - seed[1]) <= rounds).reshape(-1)
    took = (flow[0, 0] == 14.0).numpy()
    np.testing.assert_array_equal(took, reached)
    assert (flow[0, :, ~torch.from_numpy(reached)] == 0).all()


def test_without_from_start_a_start_flow_is_not_searched_from(rng):
    """The re-estimation of composed flows searches from zero on a crop already moved by the flow's median."""
    truth = smooth_flow(rng, 3.0, (2.0, -1.0))
    source, target = pair(rng, truth)
    start = truth + np.float32([0.7, -0.4])
    blind = TorchDIS("fast", from_start=False)
    np.testing.assert_array_equal(blind.calc(source, target, start), blind.calc(source, target, None))
    assert not np.array_equal(TorchDIS("fast").calc(source, target, start), blind.calc(source, target, None))


def test_a_batch_equals_its_pairs_one_by_one(rng):
    pairs = [pair(rng, smooth_flow(rng, 3.0)) for _ in range(3)]
    params = TORCH_DIS_PRESETS["fast"]
    sources = torch.from_numpy(np.stack([s for s, _ in pairs]))
    targets = torch.from_numpy(np.stack([t for _, t in pairs]))
    batched = dis_flow(sources, targets, params)
    for k in range(3):
        alone = dis_flow(sources[k:k + 1], targets[k:k + 1], params)
        torch.testing.assert_close(batched[k:k + 1], alone, rtol=0, atol=1e-4)


def test_patches_cover_every_pixel_and_the_last_is_flush():
    origins = patch_origins(30, 8, 4)
    assert origins.tolist() == [0, 4, 8, 12, 16, 20, 22]
    assert patch_origins(5, 8, 4).tolist() == [0]
    assert auto_coarsest_scale(270, 480, 8) == 4      # OpenCV's choice at the video working size


@pytest.mark.parametrize("kind", ["opencv", "torch"])
def test_estimator_factory_gives_a_calc_with_the_same_contract(rng, kind):
    truth = smooth_flow(rng, 2.0)
    source, target = pair(rng, truth)
    flow = estimator(kind, "fast").calc(source, target, None)
    assert flow.shape == (*SIZE, 2) and flow.dtype == np.float32
    assert np.median(end_point_error(flow, truth)) < 0.5


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="preset"):
        TorchDIS("slow")
    with pytest.raises(ValueError, match="scales_above_finest"):
        TorchDIS("fast", scales_above_finest=-1)
    with pytest.raises(ValueError, match="kind"):
        estimator("farneback")
    with pytest.raises(ValueError, match="source, target"):
        dis_flow(torch.zeros(1, 8, 8), torch.zeros(1, 8, 9), TORCH_DIS_PRESETS["fast"])
