"""Temporal mode on a torch device (`video.device_temporal`) against the numpy/OpenCV reference (`video.temporal`,
`VideoInpainter` with temporal_device="host"): its primitives, and whole streams with the same flow estimator.
CPU here; on CUDA the same streams run on the GPU."""
import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from test_video_stream import box_mask, hole_psnr, pan_clip, texture

from rethined_engine.video import device_temporal as dt
from rethined_engine.video import temporal as ht
from rethined_engine.video.flow import forward_backward_valid
from rethined_engine.video.stream import VideoConfig, VideoInpainter

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_DEVICE = VideoConfig(temporal_device="engine")
REFERENCE = VideoConfig(temporal_device="host", flow_estimator="torch")   # the same flow estimator on the host
AGREEMENT_DB = 35.0       # hole PSNR of the device path's output against the reference's: resize windows, float
                          # bilinear reads and float flows differ in the last digits, decisions do not


def tensor(x):
    return torch.from_numpy(np.ascontiguousarray(x)).to(DEVICE)


def blobs(rng, shape, coverage=0.15, sigma=6.0):
    noise = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), sigma)
    return noise > np.quantile(noise, 1 - coverage)


# --- primitives ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("margin", [0, 1, 5])
def test_grow_and_bounding_box_equal_the_reference(rng, margin):
    mask = blobs(rng, (90, 130), 0.05)
    np.testing.assert_array_equal(dt.grow(tensor(mask), margin).cpu().numpy(), ht.grow(mask, margin))
    assert dt.bounding_box(tensor(mask)) == ht.bounding_box(mask)
    assert dt.bounding_box(tensor(np.zeros((4, 4), bool))) is None


def host_syncs(call):
    """call()'s result and the host syncs it makes (`bench.op_count`: reads to the host and copies to it)."""
    from rethined_engine.bench.op_count import OpCounter

    counter = OpCounter(lambda stack: "call")
    with counter, counter.count_host_reads():
        result = call()
    return result, counter.syncs["call"]


@pytest.mark.parametrize("coverage", [0.0, 0.05])
def test_box_cut_and_motion_read_the_device_once_and_equal_the_reference(rng, coverage):
    """bounding_box, scene_cut and camera_motion each make one read to the host (on a GPU one wait), with or
    without any pixel set, and give the reference's values."""
    mask = blobs(rng, (90, 130), coverage) if coverage else np.zeros((90, 130), bool)
    assert host_syncs(lambda: dt.bounding_box(tensor(mask))) == (ht.bounding_box(mask), 1)
    thumb, previous = (rng.integers(0, 256, (24, 40), dtype=np.uint8) for _ in range(2))
    known = ~blobs(rng, (24, 40), 0.3, 2.0) if coverage else np.zeros((24, 40), bool)
    for threshold in (80.0, 90.0):                            # the mean difference of uniform noise is ~85
        want = ht.scene_cut(thumb, previous, known, threshold)
        assert host_syncs(lambda: dt.scene_cut(tensor(thumb), tensor(previous), tensor(known), threshold)) == (want, 1)
    flow = rng.normal(0, 3, (2, 90, 130)).astype(np.float32)
    hole = mask if coverage else np.ones((90, 130), bool)      # every pixel a hole: no pixel around it
    got, syncs = host_syncs(lambda: dt.camera_motion(tensor(flow), tensor(hole), 4))
    assert syncs == 1 and got == pytest.approx(ht.camera_motion(flow.transpose(1, 2, 0), hole, 4), rel=1e-6)


@pytest.mark.parametrize("margin", [0, 3])
def test_shrink_mask_equals_the_reference_at_a_whole_ratio(rng, margin):
    mask = blobs(rng, (96, 160), 0.1, 3.0)
    want = ht.shrink_mask(mask, (24, 40), margin)
    np.testing.assert_array_equal(dt.shrink_mask(tensor(mask), (24, 40), margin).cpu().numpy(), want)


def test_fill_flow_matches_the_reference_affine_fill(rng):
    h, w = 60, 90
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    flow = np.stack([0.02 * xs - 0.01 * ys + 1.5, 0.015 * ys + 0.005 * xs - 0.7], -1).astype(np.float32)
    flow += rng.normal(0, 0.05, flow.shape).astype(np.float32)
    unknown = np.zeros((h, w), bool)
    unknown[20:35, 30:55] = True
    want = ht.fill_flow(flow, unknown, "affine", 8)
    got = dt.fill_flow(tensor(flow).permute(2, 0, 1), tensor(unknown), "affine", 8).permute(1, 2, 0).cpu().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_push_pull_keeps_known_pixels_and_fills_a_constant_exactly(rng):
    known = ~blobs(rng, (40, 70), 0.3, 4.0)
    values = torch.full((2, 40, 70), 3.25, device=DEVICE)
    values[:, torch.from_numpy(~known).to(DEVICE)] = -100.0
    out = dt.push_pull(values, tensor(known))
    torch.testing.assert_close(out, torch.full_like(values, 3.25), rtol=0, atol=1e-5)


def test_forward_backward_check_agrees_with_the_reference(rng):
    h, w = 50, 80
    forward = cv2.GaussianBlur(rng.normal(0, 3, (h, w, 2)).astype(np.float32), (0, 0), 8) * 4
    backward = -forward + rng.normal(0, 0.4, (h, w, 2)).astype(np.float32)
    box = (5, 45, 10, 70)
    want = forward_backward_valid(forward, backward, 0.01, 0.5, box)
    got = dt.forward_backward_valid(tensor(forward).permute(2, 0, 1), tensor(backward).permute(2, 0, 1), 0.01, 0.5,
                                    box).cpu().numpy()
    assert 0.2 < want.mean() < 0.9                      # the check passes some pixels and fails others
    assert (got == want).mean() > 0.99                  # OpenCV's remap reads at 1/32 px: a few borderline pixels


# --- the stream ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("excluded", [False, True], ids=["plain", "exclude"])
def test_device_path_follows_the_reference_on_a_pan_with_a_moving_hole(engine, rng, excluded):
    """The device path fills as the host path does, also with the right half of every frame excluded."""
    frames = pan_clip(rng, 8)
    exclude = None
    if excluded:
        exclude = np.zeros(frames.shape[1:3], bool)
        exclude[:, frames.shape[2] // 2:] = True
    device, reference = VideoInpainter(engine, config=ON_DEVICE), VideoInpainter(engine, config=REFERENCE)
    assert device._device is not None and reference._device is None
    for t, frame in enumerate(frames):
        mask = box_mask(20 + 2 * t, 50 + 2 * t, 40 + 3 * t, 80 + 3 * t)
        got, want = device.process(frame, mask, exclude), reference.process(frame, mask, exclude)
        np.testing.assert_array_equal(got[~mask], frame[~mask])
        assert hole_psnr(got, want, mask) > AGREEMENT_DB, t
    assert (device.held_frames, device.scene_cuts) == (reference.held_frames, reference.scene_cuts)


HOST_SYNCS_PER_FRAME_MAX = 26    # the device path on the pan below: 7-26 per frame (each one a wait on a GPU, and
                                 # in the way of one CUDA graph per frame; docs/video.md, "Launches per frame")


def test_device_path_stays_within_its_host_sync_budget(engine, rng):
    """Reads to the host (a tensor as a number or bool, a data-dependent shape, torch.equal, tolist, cpu) per frame
    of the device path on a pan with a still hole, the engine's own left out: none more without a reason."""
    from rethined_engine.bench.op_count import OpCounter

    def outside_the_engine(stack):
        return None if any(path.endswith("rethined_engine/engine.py") for path, _ in stack) else "path"

    device = VideoInpainter(engine, config=ON_DEVICE)
    per_frame = []
    for frame in pan_clip(rng, 8):
        counter = OpCounter(outside_the_engine)
        with counter, counter.count_host_reads():
            device.process(frame, box_mask())
        per_frame.append(counter.syncs["path"])
    assert 0 < max(per_frame) <= HOST_SYNCS_PER_FRAME_MAX, per_frame


@pytest.mark.parametrize("moving", [True, False], ids=["moving_hole", "still_hole"])
def test_device_path_with_a_lookahead_follows_the_reference(engine, rng, moving):
    """Frames later in the stream give what they show (a pan's first frames, a hole moving off what it covered),
    on the device as on the host; outputs come lookahead frames late, in order, and flush gives the rest."""
    lookahead = 3
    frames = pan_clip(rng, 7)
    device = VideoInpainter(engine, config=VideoConfig(temporal_device="engine", lookahead=lookahead))
    reference = VideoInpainter(engine, config=VideoConfig(temporal_device="host", flow_estimator="torch",
                                                          lookahead=lookahead))
    masks = [box_mask(20 + 2 * t, 50 + 2 * t, 40 + 4 * t, 80 + 4 * t) if moving else box_mask() for t in range(7)]
    got, want = [], []
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        ready = device.push(frame, mask)
        assert len(ready) == (1 if t >= lookahead else 0)
        got += ready
        want += reference.push(frame, mask)
    got, want = got + device.flush(), want + reference.flush()
    assert len(got) == len(want) == 7
    for t, (g, w, frame, mask) in enumerate(zip(got, want, frames, masks)):
        np.testing.assert_array_equal(g[~mask], frame[~mask])
        assert hole_psnr(g, w, mask) > AGREEMENT_DB, t
    per_frame = hole_psnr(engine.inpaint(frames[0], masks[0]), frames[0], masks[0])
    assert hole_psnr(got[0], frames[0], masks[0]) > per_frame + 2      # the first frame, partly from later ones


def test_device_path_recovers_a_pans_hole_from_past_frames(engine, rng):
    frames, mask = pan_clip(rng, 10), box_mask()
    outputs = VideoInpainter(engine, config=ON_DEVICE).process_batch(frames, mask)
    for t in range(6, 10):
        per_frame = hole_psnr(engine.inpaint(frames[t], mask), frames[t], mask)
        assert hole_psnr(outputs[t], frames[t], mask) > per_frame + 10, t


def test_device_path_holds_a_still_shot_and_takes_tensors(engine, rng):
    """A still texture with a still hole: the first fill is held (the engine runs once); (3, H, W) uint8 tensors
    in give tensors out on the frame's device, the state keeps its own copies."""
    still = texture(rng, 96, 160)
    frames = np.stack([np.clip(still.astype(np.int16) + rng.integers(-2, 3, still.shape), 0, 255).astype(np.uint8)
                       for _ in range(5)])
    mask = box_mask()
    inpainter = VideoInpainter(engine, config=ON_DEVICE)
    outputs = []
    for frame in frames:
        out = inpainter.process(torch.from_numpy(frame).permute(2, 0, 1), torch.from_numpy(mask))
        assert isinstance(out, torch.Tensor) and out.shape == (3, 96, 160) and out.dtype == torch.uint8
        outputs.append(out.permute(1, 2, 0).numpy().copy())
        out.fill_(255)                                   # the caller draws on it: the next frames do not see it
    assert inpainter.held_frames == 4
    for out in outputs[1:]:    # the held fill, read through the anchor's flow (noise: a fraction of a px)
        change = np.abs(out[mask].astype(int) - outputs[0][mask])
        assert change.mean() < 0.5 and change.max() <= 4


@pytest.mark.parametrize("lookahead", [0, 2])
def test_device_path_state_is_bounded_and_a_cut_forgets(engine, rng, lookahead):
    config = VideoConfig(temporal_device="engine", memory_frames=3, recent_frames=1, key_interval=4,
                         lookahead=lookahead)
    frames, mask = pan_clip(rng, 6), box_mask(30, 34, 50, 54)
    inpainter = VideoInpainter(engine, config=config)
    held = []
    for t in range(24):
        inpainter.push(frames[t % 6], mask)
        held.append(inpainter.state_nbytes())
        assert len(inpainter._device._memory.frames) <= config.memory_frames
        assert len(inpainter._device._waiting) <= lookahead
    assert min(held) > 0 and max(held[12:]) == max(held)
    inpainter.push(frames[0] // 3, mask)             # another, darker scene
    inpainter.flush()
    assert inpainter.scene_cuts >= 1


def test_the_host_path_is_the_default_and_the_device_path_takes_a_lookahead(engine):
    assert VideoInpainter(engine)._device is None
    assert VideoInpainter(engine, config=VideoConfig(temporal_device="engine", lookahead=4))._device is not None
    with pytest.raises(ValueError, match="temporal_device"):
        VideoConfig(temporal_device="gpu")


@pytest.mark.parametrize("temporal, config", [("off", VideoConfig()), ("on", VideoConfig(lookahead=2)),
                                              ("on", VideoConfig(lookahead=2, temporal_device="engine"))],
                         ids=["off", "host_lookahead", "device_lookahead"])
def test_tensor_frames_give_tensors_equal_to_the_numpy_outputs(engine, rng, temporal, config):
    frames, mask = pan_clip(rng, 4), box_mask()
    as_arrays, as_tensors = VideoInpainter(engine, temporal, config), VideoInpainter(engine, temporal, config)
    want, got = [], []
    for frame in frames:
        want += as_arrays.push(frame, mask)
        got += as_tensors.push(torch.from_numpy(frame).permute(2, 0, 1), torch.from_numpy(mask))
    want, got = want + as_arrays.flush(), got + as_tensors.flush()
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        assert isinstance(g, torch.Tensor) and g.shape == (3, *mask.shape)
        np.testing.assert_array_equal(g.permute(1, 2, 0).numpy(), w)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("excluded", [False, True], ids=["plain", "exclude"])
def test_on_a_cuda_engine_the_device_path_runs_on_the_gpu_and_follows_the_host_path(weights_path, rng, excluded):
    """On a CUDA engine the device path runs on the GPU; with frames on the GPU it returns them there, known
    pixels exact, the hole as the host path fills it with the same flow estimator (with an exclusion too)."""
    from rethined_engine import Engine

    engine = Engine(weights=weights_path, device="cuda")
    frames = pan_clip(rng, 8)
    exclude = None
    if excluded:
        exclude = np.zeros(frames.shape[1:3], bool)
        exclude[:, frames.shape[2] // 2:] = True
    device, reference = VideoInpainter(engine, config=ON_DEVICE), VideoInpainter(engine, config=REFERENCE)
    assert device._device is not None and device._device.device.type == "cuda"
    for t, frame in enumerate(frames):
        mask = box_mask(20 + 2 * t, 50 + 2 * t, 40 + 3 * t, 80 + 3 * t)
        out = device.process(torch.from_numpy(frame).permute(2, 0, 1).cuda(), torch.from_numpy(mask).cuda(),
                             None if exclude is None else torch.from_numpy(exclude).cuda())
        assert out.is_cuda
        got = out.permute(1, 2, 0).cpu().numpy()
        np.testing.assert_array_equal(got[~mask], frame[~mask])
        assert hole_psnr(got, reference.process(frame, mask, exclude), mask) > AGREEMENT_DB, t
