"""VideoInpainter and its temporal parts (rethined_engine.video.flow, .temporal) against plain references."""
import dataclasses

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from scipy import ndimage

from rethined_engine.video.flow import push_pull, warp_back
from rethined_engine.video.stream import VideoConfig, VideoInpainter
from rethined_engine.video.temporal import (
    ENGINE_BOX_MULTIPLE_CUDA,
    BackgroundCanvas,
    FrameMemory,
    PastFrame,
    chain_reach,
    copy_nearer,
    engine_box,
    engine_box_multiple,
    fill_flow,
    grow,
    hole_width,
    moving_pixels,
    propagate,
    stabilise,
    upsample_flow,
)

SIZE = (96, 160)          # H, W of the test clips (below the flow working size: flow runs at full size)
PAN = 6                   # px per frame, content moving left
TEXTURE_BLUR = 2.0        # sigma of the blurred-noise texture, px


def texture(rng, height, width):
    """Blurred-noise RGB texture (height, width, 3) uint8."""
    smooth = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), TEXTURE_BLUR)
    return np.round((smooth - smooth.min()) / (smooth.max() - smooth.min()) * 230 + 12).astype(np.uint8)


def pan_clip(rng, frames):
    """A camera pan (frames, H, W, 3) over a wider texture, PAN px per frame."""
    field = texture(rng, SIZE[0], SIZE[1] + PAN * frames)
    return np.stack([field[:, t * PAN:t * PAN + SIZE[1]] for t in range(frames)])


def box_mask(y0=30, y1=60, x0=50, x1=80):
    mask = np.zeros(SIZE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def hole_psnr(output, truth, mask):
    error = (output.astype(np.float64) - truth)[mask] / 255
    return 10 * np.log10(1 / max(np.mean(error ** 2), 1e-12))


def smooth_flow(rng, scale):
    """A random smooth flow field (H, W, 2) float32 of about +-scale px."""
    flow = cv2.GaussianBlur(rng.normal(0, 1, (*SIZE, 2)).astype(np.float32), (0, 0), 12)
    return flow / np.abs(flow).max() * scale


def reference_warp(image, flow):
    """image (H, W, C) sampled at x + flow(x) by scipy (bilinear, edge replicated)."""
    ys, xs = np.mgrid[0:flow.shape[0], 0:flow.shape[1]].astype(np.float64)
    coords = [ys + flow[..., 1], xs + flow[..., 0]]
    return np.stack([ndimage.map_coordinates(image[..., c].astype(np.float64), coords, order=1, mode="nearest")
                     for c in range(image.shape[2])], -1)


# --- flow and temporal parts -----------------------------------------------------------------------------

def test_warp_back_matches_scipy(rng):
    step = smooth_flow(rng, 5)
    image = texture(rng, *SIZE).astype(np.float32)
    # cv2.remap weighs its bilinear taps in 1/32 px: a few hundredths of the sampled value's local change
    np.testing.assert_allclose(warp_back(image, step), reference_warp(image, step), atol=0.5)


def test_advance_composes_flows_over_the_box_like_scipy(rng):
    step, flow = smooth_flow(rng, 5), smooth_flow(rng, 9)
    frame = texture(rng, *SIZE)
    memory = memory_with(frame, np.ones(SIZE, bool), flow.copy())
    box = (10, 70, 20, 120)
    memory.advance(step, np.ones(SIZE, bool), cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), np.zeros(SIZE, bool), box,
                   refine=None)
    # the flow to the past frame: one step, then the old flow, as known over the box (its edge beyond it)
    y0, y1, x0, x1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    coords = [ys + step[y0:y1, x0:x1, 1] - y0, xs + step[y0:y1, x0:x1, 0] - x0]
    old = flow[y0:y1, x0:x1].astype(np.float64)
    expected = step[y0:y1, x0:x1] + np.stack(
        [ndimage.map_coordinates(old[..., c], coords, order=1, mode="nearest") for c in range(2)], -1)
    outside = np.ones(SIZE, bool)
    outside[y0:y1, x0:x1] = False
    # remap's 1/32 px interpolation weights again
    np.testing.assert_allclose(memory.frames[0].flow[y0:y1, x0:x1], expected, atol=0.02)
    np.testing.assert_array_equal(memory.frames[0].flow[outside], flow[outside])


def test_push_pull_keeps_known_pixels_and_fills_a_constant_exactly(rng):
    values = rng.normal(0, 1, (*SIZE, 2)).astype(np.float32)
    known = ~box_mask()
    filled = push_pull(values, known)
    np.testing.assert_array_equal(filled[known], values[known])
    assert np.isfinite(filled).all()
    assert filled[~known].min() >= values[known].min() and filled[~known].max() <= values[known].max()
    constant = np.full((*SIZE, 2), 3.5, np.float32)
    np.testing.assert_allclose(push_pull(np.where(known[..., None], constant, 99), known), constant, atol=1e-5)


def test_affine_fill_recovers_an_affine_flow_despite_a_contaminated_edge(rng):
    """A zoom with a slight rotation (an affine flow); the hole's own motion leaks 2 px out of it (as DIS's
    patches carry it), which the trimmed fit over an 8 px ring ignores."""
    ys, xs = np.mgrid[0:SIZE[0], 0:SIZE[1]].astype(np.float64)
    truth = np.stack([0.03 * xs - 0.01 * ys + 2.0, 0.01 * xs + 0.03 * ys - 1.0], -1).astype(np.float32)
    hole = box_mask()
    edge = np.zeros(SIZE, bool)
    edge[28:62, 48:82] = True
    flow = truth.copy()
    flow[edge] = rng.normal(0, 4, (int(edge.sum()), 2))     # the hole and its edge: someone else's motion
    filled = fill_flow(flow, hole, "affine", ring=8)
    # the leaked values that happen to lie within the trim threshold stay in the fit: a few hundredths of a px
    np.testing.assert_allclose(filled[hole], truth[hole], atol=0.05)
    np.testing.assert_array_equal(filled[~hole], flow[~hole])
    pushed = fill_flow(flow, hole, "push_pull", ring=8)    # the edge's values spread into the hole
    assert np.abs(pushed[hole] - truth[hole]).mean() > 0.5


def test_upsample_flow_matches_cv2_resize(rng):
    small = smooth_flow(rng, 4)[:48, :80].copy()
    full_size, box = (96, 160), (10, 70, 30, 150)
    expected = cv2.resize(small, full_size[::-1], interpolation=cv2.INTER_LINEAR) * 2
    np.testing.assert_allclose(upsample_flow(small, full_size, box), expected[10:70, 30:150], atol=1e-4)


def memory_with(frame, source, flow):
    memory = FrameMemory(capacity=2, recent=1, key_interval=1, fill="affine", ring=8, trust_hole=True)
    memory.push(frame, source, cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), np.zeros(SIZE, bool), index=0)
    memory.frames[0].flow = flow
    return memory


def test_propagate_copies_along_an_exact_flow_and_not_from_the_past_hole(rng):
    past, frame = texture(rng, *SIZE), texture(rng, *SIZE)
    mask = box_mask()
    source = np.ones(SIZE, bool)
    source[:, 90:] = False            # the past frame may not give its columns >= 90
    flow = np.zeros((*SIZE, 2), np.float32)
    flow[..., 0] = 20                 # hole pixel x shows what the past frame had at x + 20
    out, remaining, given = propagate(frame, mask, memory_with(past, source, flow).frames)
    ys, xs = np.nonzero(mask)
    from_past = xs + 20 < 90
    np.testing.assert_array_equal(out[ys[from_past], xs[from_past]], past[ys[from_past], xs[from_past] + 20])
    np.testing.assert_array_equal(remaining[ys, xs], ~from_past)
    np.testing.assert_array_equal(out[~mask], frame[~mask])
    (index, pixels), = given
    assert index == 0 and pixels.shape == (30, 30) and np.array_equal(pixels, ~remaining[30:60, 50:80])


def still_frame(colour, index, source=None):
    """A remembered frame of one colour at stream position index whose zero flow passed every check."""
    return PastFrame(np.full((*SIZE, 3), colour, np.uint8), np.ones(SIZE, bool) if source is None else source,
                     None, None, np.zeros((*SIZE, 2), np.float32), np.ones(SIZE, np.uint8), index)


def test_copy_nearer_replaces_copies_from_farther_past_frames_only():
    """The frame at position 10: columns 50-64 of the hole were copied from a past frame 3 back, columns 65-79
    from one 1 back. A later frame 1 ahead replaces the first (nearer) but not the second (as near: the past
    keeps it); nothing is then left that a frame 2 or more ahead would be nearer for, so neither later frame
    is read (their flows are never computed)."""
    mask = box_mask()
    filled = np.zeros((*SIZE, 3), np.uint8)
    three_back, one_back = np.zeros((30, 30), bool), np.zeros((30, 30), bool)
    three_back[:, :15], one_back[:, 15:] = True, True
    given = [(9, one_back), (7, three_back)]
    read = []

    def later():
        for colour, index in ((200, 11), (100, 12), (50, 13)):
            read.append(index)
            yield still_frame(colour, index)

    out, nearer = copy_nearer(filled, mask, np.zeros(SIZE, bool), given, later(), 10)
    assert np.all(out[30:60, 50:65] == 200) and np.all(out[30:60, 65:80] == 0)
    np.testing.assert_array_equal(nearer[30:60, 50:80], three_back)
    assert nearer.sum() == three_back.sum() and read == [11]


def test_stabilise_is_the_stated_blend_where_the_flow_holds(rng):
    filled, previous = texture(rng, *SIZE), texture(rng, *SIZE)
    invented = box_mask()
    step = np.zeros((*SIZE, 2), np.float32)
    step[..., 1] = -3                 # this frame's pixel (x, y) was at (x, y - 3) in the previous frame
    valid = np.ones(SIZE, bool)
    valid[:, :65] = False
    out = stabilise(filled, invented, previous, step, valid, weight=0.7)
    shifted = np.roll(previous, 3, axis=0).astype(np.float32)
    expected = filled.copy()
    gate = invented & valid
    expected[gate] = np.round(0.7 * shifted[gate] + 0.3 * filled[gate].astype(np.float32))
    np.testing.assert_array_equal(out, expected)


# --- VideoInpainter --------------------------------------------------------------------------------------

def test_temporal_off_equals_the_engine_frame_by_frame(engine, rng):
    frames, masks = pan_clip(rng, 3), np.stack([box_mask(), box_mask(20, 50, 60, 100), box_mask()])
    inpainter = VideoInpainter(engine, temporal="off")
    for frame, mask in zip(frames, masks):
        np.testing.assert_array_equal(inpainter.process(frame, mask), engine.inpaint(frame, mask))


@pytest.mark.parametrize("flow_estimator", ["opencv", "torch"])
def test_temporal_on_keeps_known_pixels_bit_exact(engine, rng, flow_estimator):
    frames = pan_clip(rng, 5)
    inpainter = VideoInpainter(engine, config=VideoConfig(flow_estimator=flow_estimator))
    for t, frame in enumerate(frames):
        mask = box_mask(20 + 3 * t, 50 + 3 * t, 40 + 5 * t, 80 + 5 * t)
        out = inpainter.process(frame, mask.astype(np.uint8))
        assert out.dtype == np.uint8 and out.shape == frame.shape
        np.testing.assert_array_equal(out[~mask], frame[~mask])


def test_writing_to_a_returned_frame_does_not_change_later_frames(engine, rng):
    """The stream keeps its own copy of each output: a caller drawing on the frames it got (an overlay, a
    timestamp) leaves the next frames' blends and holds as they would be."""
    frames = pan_clip(rng, 6)
    mask = box_mask()
    untouched, scribbled = VideoInpainter(engine), VideoInpainter(engine)
    for frame in frames:
        want = untouched.process(frame, mask)
        got = scribbled.process(frame, mask)
        np.testing.assert_array_equal(got, want)
        got[:] = 255


@pytest.mark.parametrize("flow_estimator", ["opencv", "torch"])
def test_pan_with_a_static_mask_recovers_the_hole_from_past_frames(engine, rng, flow_estimator):
    """The hole (30 px wide) was in view PAN px per frame earlier: after a few frames it is copied, not invented,
    with either flow estimator."""
    frames, mask = pan_clip(rng, 10), box_mask()
    inpainter = VideoInpainter(engine, config=VideoConfig(flow_estimator=flow_estimator))
    outputs = inpainter.process_batch(frames, mask)
    for t in range(6, 10):
        per_frame = hole_psnr(engine.inpaint(frames[t], mask), frames[t], mask)
        temporal = hole_psnr(outputs[t], frames[t], mask)
        assert temporal > per_frame + 10, (t, temporal, per_frame)


def test_a_hole_moving_over_a_still_scene_is_copied_from_where_it_was_seen(rng):
    """A box moving 4 px per frame over a still texture whose right part is dark (an object's edge): from frame
    8 on, every pixel under it was seen outside the hole in frame 0 (kept as a key frame). The engine paints
    noise, so only a copy from the right place scores well. Flow estimated with each frame's hole completed on
    its own tracks the moving hole (a smooth patch that moves) and drags the flow around it, and the hole's flow
    completed from that, along with it: such copies scored 29-30 dB here."""
    still = texture(rng, *SIZE)
    still[:, 60:] //= 5
    masks = np.stack([box_mask(30, 60, 10 + 4 * t, 40 + 4 * t) for t in range(12)])
    outputs = VideoInpainter(CountingEngine(np.random.default_rng(3))).process_batch(
        np.broadcast_to(still, (12, *still.shape)), masks)
    for t in range(8, 12):
        assert hole_psnr(outputs[t], still, masks[t]) > 45, (t, hole_psnr(outputs[t], still, masks[t]))


class GreyEngine:
    """Fills the hole with one grey (R = G = B)."""

    def inpaint(self, frame, mask):
        out = frame.copy()
        out[mask != 0] = 128
        return out


@pytest.mark.parametrize("moving", [False, True], ids=["still_mask", "moving_mask"])
def test_copies_never_read_a_past_frames_hole_pixels(rng, moving):
    """A grey pan whose input frames hold magenta under the mask (what is being removed): every output pixel
    stays grey (R = G = B up to rounding), so no copy, not even a bilinear read beside a past hole, takes in a
    pixel the mask covered. With source_margin 0 such reads gave |R - G| up to 4 levels here."""
    frames = pan_clip(rng, 8)
    frames = np.repeat(frames.mean(-1, keepdims=True).round().astype(np.uint8), 3, -1)
    masks = np.stack([box_mask(30, 60, 50 + 3 * t * moving, 80 + 3 * t * moving) for t in range(8)])
    frames[masks] = (255, 0, 255)
    outputs = VideoInpainter(GreyEngine()).process_batch(frames, masks)
    spread = np.abs(outputs.astype(int)[..., 0] - outputs[..., 1])[masks]
    assert spread.max() <= 1, spread.max()


def test_moving_pixels_are_those_that_stray_from_the_camera_motion():
    """A camera zooming and panning (an affine flow) with a block that moves on its own: the block is flagged,
    grown by one pixel, and nothing else (not the hole, whose flow is unknown)."""
    h, w = SIZE
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    step = np.stack([0.02 * xs - 1.5, 0.01 * ys + 0.5], -1)
    step[40:52, 100:120] += (2.0, -1.0)                     # a walker
    hole = box_mask(10, 30, 20, 60)
    step[hole] = 30.0                                       # whatever a hole's flow was completed with
    moving = moving_pixels(step, hole, 0.6)
    want = np.zeros(SIZE, bool)
    want[39:53, 99:121] = True
    np.testing.assert_array_equal(moving, want)
    assert not moving_pixels(step, hole, 3.0).any()


def test_a_lookahead_gives_every_output_in_order_and_process_refuses_it(engine, rng):
    frames, mask = pan_clip(rng, 5), box_mask()
    config = VideoConfig(lookahead=2)
    pushed = VideoInpainter(engine, config=config)
    ready = [pushed.push(frame, mask) for frame in frames]
    assert [len(r) for r in ready] == [0, 0, 1, 1, 1]
    outputs = [out for r in ready for out in r] + pushed.flush()
    assert len(outputs) == 5 and pushed.flush() == []
    np.testing.assert_array_equal(np.stack(outputs), VideoInpainter(engine, config=config).process_batch(frames, mask))
    with pytest.raises(ValueError, match="lookahead"):
        VideoInpainter(engine, config=config).process(frames[0], mask)


def test_a_lookahead_copies_a_pans_first_frames_from_later_ones(engine, rng):
    """The hole (30 px wide) comes into view PAN px per frame later: with 6 frames of lookahead the first
    frames' holes are copied from later frames, where no past frame could show them; known pixels stay exact."""
    frames, mask = pan_clip(rng, 10), box_mask()
    ahead = VideoInpainter(engine, config=VideoConfig(lookahead=6)).process_batch(frames, mask)
    streaming = VideoInpainter(engine).process_batch(frames, mask)
    for t in range(4):
        with_lookahead, without = hole_psnr(ahead[t], frames[t], mask), hole_psnr(streaming[t], frames[t], mask)
        assert with_lookahead > without + 10, (t, with_lookahead, without)
        np.testing.assert_array_equal(ahead[t][~mask], frames[t][~mask])


def test_a_lookahead_runs_the_engine_only_for_what_no_frame_shows(rng):
    """Over a pan every hole pixel is in view within 5 frames, before or after: with 6 frames of lookahead the
    engine is never called; without, it fills the first frames."""
    frames, mask = pan_clip(rng, 10), box_mask()
    ahead, streaming = CountingEngine(np.random.default_rng(1)), CountingEngine(np.random.default_rng(1))
    VideoInpainter(ahead, config=VideoConfig(lookahead=6)).process_batch(frames, mask)
    VideoInpainter(streaming).process_batch(frames, mask)
    assert ahead.calls == 0 and streaming.calls > 0


def test_chain_reach_is_the_farthest_a_hole_pixel_moves_along_the_chain():
    """Three steps of (0.3, 0.4) px then one back by (0.6, 0.8): the hole's pixels are farthest, 1.5 px, after the
    third; flow outside the hole does not count, and an empty hole does not move."""
    hole = box_mask()
    step = np.broadcast_to(np.float32([0.3, 0.4]), (*SIZE, 2)).copy()
    back = -2 * step
    assert chain_reach(hole, [step, step, step, back]) == pytest.approx(1.5, abs=1e-5)
    still = np.zeros((*SIZE, 2), np.float32)
    still[~grow(hole, 20)] = 5.0
    assert chain_reach(hole, [still, still]) == 0.0
    assert chain_reach(np.zeros(SIZE, bool), [step]) == 0.0


def still_clip(rng, frames):
    """A still shot (frames, H, W, 3): one texture with fresh sensor noise (sigma 2 levels) in every frame."""
    field = texture(rng, *SIZE).astype(np.float32)
    noise = rng.normal(0, 2, (frames, *SIZE, 3))
    return np.clip(np.round(field + noise), 0, 255).astype(np.uint8)


def test_a_lookahead_composes_no_later_flow_for_a_still_logo(rng, monkeypatch):
    """A still shot with a still mask: no later frame can show the hole, so no flow to one is composed (the
    chain is never started) and the outputs are lookahead 0's; when the mask moves in a later frame, it is."""
    from rethined_engine.video import temporal

    chains = []
    original = temporal.HOST_STEPS.chain_later
    monkeypatch.setattr(temporal, "HOST_STEPS", dataclasses.replace(
        temporal.HOST_STEPS, chain_later=lambda *args, **kw: chains.append(1) or original(*args, **kw)))
    frames, mask = still_clip(rng, 6), box_mask()
    streamed = VideoInpainter(CountingEngine(np.random.default_rng(1))).process_batch(frames, mask)
    ahead = VideoInpainter(CountingEngine(np.random.default_rng(1)), config=VideoConfig(lookahead=3))
    np.testing.assert_array_equal(ahead.process_batch(frames, mask), streamed)
    assert chains == []
    masks = np.stack([mask] * 5 + [box_mask(30, 60, 58, 88)])
    VideoInpainter(CountingEngine(np.random.default_rng(1)), config=VideoConfig(lookahead=3)).process_batch(frames, masks)
    assert chains


def test_waiting_frames_with_a_still_mask_hold_one_mask_array(rng):
    """The frames a lookahead holds back share their mask and the pixels they may give while the mask stays the
    same and nothing moves (one array each, not one per frame: 8 MB each at 4K); a frame whose mask differs keeps
    its own."""
    frames, mask = still_clip(rng, 4), box_mask()
    inpainter = VideoInpainter(CountingEngine(np.random.default_rng(1)), config=VideoConfig(lookahead=3))
    for frame in frames[:3]:
        assert inpainter.push(frame, mask) == []
    first, second, third = (arrival.mask for arrival in inpainter._waiting)
    assert first is second is third and np.array_equal(first, mask != 0)
    sources = [arrival.source for arrival in inpainter._waiting]
    assert sources[0] is sources[1] is sources[2]
    inpainter.push(frames[3], box_mask(30, 60, 58, 88))
    assert inpainter._waiting[-1].mask is not third and inpainter._waiting[-1].source is not sources[2]
    assert np.array_equal(inpainter._waiting[-1].mask, box_mask(30, 60, 58, 88) != 0)


def test_a_lookahead_stops_at_a_scene_cut(rng):
    """Frames after a cut give nothing to the frames before it: the first scene's outputs are those of that
    scene streamed alone, and the cut is counted once."""
    first, second = pan_clip(rng, 4), pan_clip(rng, 3) // 3     # another, darker scene
    mask = box_mask()
    config = VideoConfig(lookahead=3)
    both = VideoInpainter(CountingEngine(np.random.default_rng(1)), config=config)
    outputs = both.process_batch(np.concatenate([first, second]), mask)
    alone = VideoInpainter(CountingEngine(np.random.default_rng(1)), config=config).process_batch(first, mask)
    np.testing.assert_array_equal(outputs[:4], alone)
    assert both.scene_cuts == 1


class ExcludeRecorder:
    """An engine wrapper recording the exclusion of each inpaint call (None when it got none)."""

    def __init__(self, engine):
        self.engine, self.excludes = engine, []
        self.config, self.device = engine.config, engine.device

    def inpaint(self, image, mask, exclude=None):
        self.excludes.append(exclude)
        return self.engine.inpaint(image, mask, exclude)


def test_temporal_off_passes_each_frames_exclusion_to_the_engine(engine, rng):
    frames, mask = pan_clip(rng, 3), box_mask()
    excludes = np.zeros((3, *SIZE), bool)
    excludes[:, :, 80:] = True
    inpainter = VideoInpainter(engine, temporal="off")
    for frame, exclude in zip(frames, excludes):
        np.testing.assert_array_equal(inpainter.process(frame, mask, exclude), engine.inpaint(frame, mask, exclude))
    np.testing.assert_array_equal(inpainter.process_batch(frames, mask, excludes[0]),
                                  np.stack([engine.inpaint(f, mask, excludes[0]) for f in frames]))


@pytest.mark.parametrize("temporal_device, lookahead", [("host", 0), ("engine", 0), ("host", 3)])
def test_excluded_pixels_are_neither_given_by_past_frames_nor_copied_by_the_engine(engine, rng, temporal_device,
                                                                                   lookahead):
    """A pan whose hole shows, a few frames on, what was in view right of it: with that band excluded in every
    frame, no past (or later) frame gives it, no blend with the previous output or the canvas reads it, and the
    engine copies none of it (every engine call gets its part of the exclusion), so the hole is no longer
    recovered; known pixels stay exact."""
    frames, mask = pan_clip(rng, 10), box_mask()
    exclude = np.zeros(SIZE, bool)
    exclude[:, 80:] = True                   # what enters the hole (content moves left PAN px per frame)
    config = VideoConfig(temporal_device=temporal_device, lookahead=lookahead)
    plain = VideoInpainter(engine, config=config).process_batch(frames, mask)
    recorder = ExcludeRecorder(engine)
    excluded = VideoInpainter(recorder, config=config).process_batch(frames, mask, exclude)
    np.testing.assert_array_equal(excluded[:, ~mask], frames[:, ~mask])
    assert recorder.excludes and all(e is not None and bool(e.any()) for e in recorder.excludes)
    for t in range(6, 10):
        assert hole_psnr(excluded[t], frames[t], mask) < hole_psnr(plain[t], frames[t], mask) - 10, t


def test_an_exclusion_of_another_size_is_refused_by_name(engine, rng):
    frame = pan_clip(rng, 1)[0]
    for temporal in ("on", "off"):
        with pytest.raises(ValueError, match="exclude"):
            VideoInpainter(engine, temporal=temporal).process(frame, box_mask(), np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="excludes"):
        VideoInpainter(engine).process_batch(pan_clip(rng, 2), box_mask(), np.zeros((3, *SIZE), bool))


def test_process_batch_equals_process_in_order(engine, rng):
    frames = pan_clip(rng, 4)
    masks = np.stack([box_mask(20 + 5 * t, 50 + 5 * t, 40, 80) for t in range(4)])
    batch = VideoInpainter(engine).process_batch(frames, masks)
    one_by_one = VideoInpainter(engine)
    for t in range(4):
        np.testing.assert_array_equal(batch[t], one_by_one.process(frames[t], masks[t]))


@pytest.mark.parametrize("lookahead", [0, 2])
def test_state_does_not_grow_with_the_clip(engine, rng, lookahead):
    config = VideoConfig(memory_frames=3, recent_frames=1, key_interval=4, lookahead=lookahead)
    frames, mask = pan_clip(rng, 6), box_mask(30, 34, 50, 54)
    inpainter = VideoInpainter(engine, config=config)
    held = []
    for t in range(30):
        inpainter.push(frames[t % 6], mask)
        held.append(inpainter.state_nbytes())
        assert len(inpainter._memory.frames) <= config.memory_frames and len(inpainter._waiting) <= lookahead
    # frames that share arrays (a still mask's) come and go with the clip's 6-frame cycle: the peak is flat
    assert min(held) > 0 and max(held[18:]) == max(held[6:18]) == max(held)


def test_a_scene_cut_forgets_the_past(engine, rng):
    first, second = pan_clip(rng, 3), pan_clip(rng, 2) // 3    # another, darker scene
    mask = box_mask()
    inpainter = VideoInpainter(engine)
    inpainter.process_batch(first, mask)
    assert inpainter.scene_cuts == 0
    after_cut = inpainter.process_batch(second, mask)
    assert inpainter.scene_cuts == 1
    np.testing.assert_array_equal(after_cut, VideoInpainter(engine).process_batch(second, mask))


def test_reset_allows_a_new_size_and_sizes_are_checked(engine, rng):
    inpainter = VideoInpainter(engine)
    inpainter.process(pan_clip(rng, 1)[0], box_mask())
    with pytest.raises(ValueError, match="reset"):
        inpainter.process(np.zeros((64, 64, 3), np.uint8), np.ones((64, 64), bool))
    inpainter.reset()
    assert inpainter.process(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), bool)).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="mask"):
        inpainter.process(np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64), bool))


@pytest.mark.parametrize("field, value", [("stabilise_weight", 1.0), ("memory_frames", 0), ("flow_preset", "slow"),
                                          ("flow_estimator", "farneback"),
                                          ("source_margin", 0), ("lookahead", -1),
                                          ("fb_absolute", -1.0), ("flow_fill", "mean"), ("still_average_frames", 0),
                                          ("engine_box_multiple", 0)])
def test_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        VideoConfig(**{field: value})


class CountingEngine:
    """Fills the hole with fresh noise on every call and counts the calls."""

    def __init__(self, rng):
        self.rng, self.calls = rng, 0

    def inpaint(self, frame, mask):
        self.calls += 1
        out = frame.copy()
        out[mask != 0] = self.rng.integers(0, 256, (int((mask != 0).sum()), 3), dtype=np.uint8)
        return out


class PerfectEngine:
    """Returns the frame as it is (the test clips hold the truth under the hole) and counts the calls."""

    def __init__(self):
        self.calls = 0

    def inpaint(self, frame, mask):
        self.calls += 1
        return frame.copy()


def test_hold_keeps_the_invented_pixels_while_the_surroundings_stay(rng):
    still, mask = texture(rng, *SIZE), box_mask()
    engine = CountingEngine(rng)
    inpainter = VideoInpainter(engine)
    first = inpainter.process(still, mask)
    for _ in range(3):
        np.testing.assert_array_equal(inpainter.process(still, mask), first)
    assert engine.calls == 1 and inpainter.held_frames == 3
    brighter = np.clip(still.astype(int) + 20, 0, 255).astype(np.uint8)   # the surroundings change: fill anew
    inpainter.process(brighter, mask)
    assert engine.calls == 2


def test_a_still_hole_holds_the_mean_of_its_first_fills(rng):
    """While hold would keep the fill, the engine's first still_average_frames fills are averaged (a running mean,
    rounded each frame), then the fill is frozen."""
    still, mask, count = texture(rng, *SIZE), box_mask(), 4
    engine = CountingEngine(np.random.default_rng(5))
    inpainter = VideoInpainter(engine, config=VideoConfig(still_average_frames=count))
    outputs = [inpainter.process(still, mask) for _ in range(count + 2)]
    replay = CountingEngine(np.random.default_rng(5))
    expected = replay.inpaint(still, mask)[mask].astype(np.float64)
    for n in range(2, count + 1):
        expected = np.round(expected + (replay.inpaint(still, mask)[mask] - expected) / n)
    np.testing.assert_array_equal(outputs[count - 1][mask], expected)
    np.testing.assert_array_equal(outputs[-1], outputs[count - 1])
    assert engine.calls == count and inpainter.held_frames == 2


def test_without_hold_the_fill_is_blended_with_the_previous_output(rng):
    still, mask = texture(rng, *SIZE), box_mask()
    engine = CountingEngine(rng)
    config = VideoConfig(hold=False, still_stabilise_weight=0.5)   # the hole stays put
    inpainter = VideoInpainter(engine, config=config)
    first = inpainter.process(still, mask).astype(np.float32)
    engine.rng = np.random.default_rng(7)
    second = inpainter.process(still, mask)
    fill = CountingEngine(np.random.default_rng(7)).inpaint(still, mask).astype(np.float32)
    np.testing.assert_array_equal(second[mask], np.round(0.5 * first[mask] + 0.5 * fill[mask]))
    assert engine.calls == 2


# --- background canvas and motion-gated hold --------------------------------------------------------------

SLOW_PAN = 2              # px per frame
SHORT_MEMORY = {"memory_frames": 2, "recent_frames": 2, "key_interval": 1000}   # the last two frames only


def test_canvas_follows_an_exact_shift_and_decays(rng):
    """A shift of 3 px as the step flow: the canvas is the previous frame moved, the hole's confidence decayed."""
    frame, mask, shift = texture(rng, *SIZE), box_mask(), 3
    canvas = BackgroundCanvas(margin=4, decay=0.5)
    canvas.advance(frame, mask, ~mask, None, None, None)
    canvas.advance(frame, mask, ~mask, frame, np.zeros((*SIZE, 2), np.float32), np.ones(SIZE, bool))
    assert not canvas.confidence[4:-4, 4:-4].any()          # the hole was never seen
    moved = np.roll(frame, -shift, axis=1)                  # content moves left by shift px
    step = np.zeros((*SIZE, 2), np.float32)
    step[..., 0] = shift                                    # this frame's x lies at x + shift in the previous one
    canvas.advance(moved, mask, ~mask, frame, step,
                   np.ones(SIZE, bool))
    y0, y1, x0, x1 = canvas.box
    seen = canvas.confidence > 0
    hole = mask[y0:y1, x0:x1]
    # the hole's right 3 columns were known one frame ago: confidence 0.5, colour the shifted frame's, exactly
    assert seen[hole].sum() == 30 * shift and np.allclose(canvas.confidence[hole & seen], 0.5)
    colour = canvas.weighted[hole & seen] / canvas.confidence[hole & seen][:, None]
    np.testing.assert_allclose(colour, moved[y0:y1, x0:x1][hole & seen], atol=1e-3)
    np.testing.assert_array_equal(canvas.confidence[~hole], 1.0)


def test_canvas_recovers_what_the_kept_frames_no_longer_show(rng):
    """A slow pan under a static hole, two past frames kept: the hole's left part was seen over 10 frames ago."""
    field = texture(rng, SIZE[0], SIZE[1] + SLOW_PAN * 24)
    frames = np.stack([field[:, t * SLOW_PAN:t * SLOW_PAN + SIZE[1]] for t in range(24)])
    mask = box_mask()
    scores = {}
    for canvas in (False, True):
        inpainter = VideoInpainter(CountingEngine(np.random.default_rng(1)),
                                   config=VideoConfig(canvas=canvas, **SHORT_MEMORY))
        outputs = inpainter.process_batch(frames, mask)
        for out, frame in zip(outputs, frames):
            np.testing.assert_array_equal(out[~mask], frame[~mask])
        scores[canvas] = [hole_psnr(outputs[t], frames[t], mask) for t in range(20, 24)]
    assert min(scores[True]) > max(scores[False]) + 10, scores


def test_canvas_state_stays_bounded(rng):
    frames, mask = pan_clip(rng, 6), box_mask()
    inpainter = VideoInpainter(CountingEngine(rng), config=VideoConfig(canvas=True, **SHORT_MEMORY))
    held = []
    for t in range(24):
        inpainter.process(frames[t % 6], mask)
        held.append(inpainter.state_nbytes())
    assert inpainter._canvas.nbytes() > 0 and max(held) == held[-1] == held[8]


def test_hold_waits_for_a_still_camera(rng):
    """On a slow pan the hole is filled anew every frame; with the motion gate off, hold keeps the old fill.
    The engine fills perfectly (the frames hold the truth under the hole), so only the gate stops a hold."""
    field = texture(rng, SIZE[0], SIZE[1] + SLOW_PAN * 6)
    frames, mask = np.stack([field[:, t * SLOW_PAN:t * SLOW_PAN + SIZE[1]] for t in range(6)]), box_mask()
    calls = {}
    for max_motion in (1.0, float("inf")):
        engine = PerfectEngine()
        config = VideoConfig(hold_max_motion=max_motion, propagate=False, canvas=False)
        VideoInpainter(engine, config=config).process_batch(frames, mask)
        calls[max_motion] = engine.calls
    assert calls[1.0] == 6 and calls[float("inf")] < 6, calls


def test_canvas_gives_nothing_behind_a_moving_hole(rng):
    frames = pan_clip(rng, 5)
    masks = np.stack([box_mask(20 + 3 * t, 50 + 3 * t, 40 + 5 * t, 80 + 5 * t) for t in range(5)])
    outputs = [VideoInpainter(CountingEngine(np.random.default_rng(3)), config=VideoConfig(canvas=canvas))
               .process_batch(frames, masks) for canvas in (False, True)]
    np.testing.assert_array_equal(outputs[0], outputs[1])


# --- thin holes on a cut-out ------------------------------------------------------------------------------

class ShapeEngine(CountingEngine):
    """CountingEngine with an LR size (`config.lr_long_side`) that records the shape of every frame it fills."""

    def __init__(self, rng, lr_long_side):
        super().__init__(rng)
        self.config = type("ModelConfig", (), {"lr_long_side": lr_long_side})()
        self.shapes = []

    def inpaint(self, frame, mask):
        self.shapes.append(frame.shape[:2])
        return super().inpaint(frame, mask)


@pytest.mark.parametrize("width", [4, 9, 30])
def test_hole_width_is_a_long_stroke_width(width):
    mask = np.zeros((120, 200), bool)
    mask[40:40 + width, 10:190] = True
    assert abs(hole_width(mask) - width) <= 2, hole_width(mask)
    assert hole_width(np.zeros((8, 8), bool)) == 0


def test_a_thin_hole_is_filled_on_a_cut_out_and_a_wide_one_on_the_whole_frame(rng):
    frame, margin = texture(rng, *SIZE), 5
    thin, wide = box_mask(40, 44, 30, 120), box_mask(20, 80, 30, 120)      # 4 and 60 px wide
    config = VideoConfig(engine_margin=margin, engine_thin_width=12, engine_box_multiple=1)
    for mask, shape in ((thin, (4 + 2 * margin, 90 + 2 * margin)), (wide, SIZE)):
        engine = ShapeEngine(np.random.default_rng(1), lr_long_side=80)   # the frame is 2 LR px per px
        out = VideoInpainter(engine, config=config).process(frame, mask)
        assert engine.shapes == [shape]
        np.testing.assert_array_equal(out[~mask], frame[~mask])


@pytest.mark.parametrize("box, margin, multiple", [((40, 44, 30, 120), 5, 64), ((0, 3, 150, 160), 8, 32),
                                                   ((90, 96, 0, 7), 0, 64), ((10, 90, 5, 155), 4, 64)])
def test_the_engine_box_holds_the_grown_box_in_whole_multiples_inside_the_frame(box, margin, multiple):
    y0, y1, x0, x1 = engine_box(box, margin, multiple, SIZE)
    assert 0 <= y0 and y1 <= SIZE[0] and 0 <= x0 and x1 <= SIZE[1]
    assert y0 <= max(0, box[0] - margin) and y1 >= min(SIZE[0], box[1] + margin)
    assert x0 <= max(0, box[2] - margin) and x1 >= min(SIZE[1], box[3] + margin)
    for side, length in ((y1 - y0, SIZE[0]), (x1 - x0, SIZE[1])):
        assert side % multiple == 0 or side == length
    assert engine_box(box, margin, 1, SIZE) == (max(0, box[0] - margin), min(SIZE[0], box[1] + margin),
                                                max(0, box[2] - margin), min(SIZE[1], box[3] + margin))


def test_engine_box_multiple_rounds_on_cuda_only_by_default():
    assert engine_box_multiple(None, "cuda") == engine_box_multiple(None, "cuda:1") == ENGINE_BOX_MULTIPLE_CUDA
    assert engine_box_multiple(None, "cpu") == engine_box_multiple(None, None) == 1
    assert engine_box_multiple(32, "cpu") == engine_box_multiple(32, "cuda") == 32


def test_a_thin_hole_that_changes_keeps_the_engine_one_shape(rng):
    """A stroke growing by 3 px a frame, every frame filled by the engine: with the cut-out's sides rounded to 64 px
    (the default on CUDA) one shape (one captured CUDA graph on the triton backend), where unrounded ones (the
    default elsewhere) change shape every frame."""
    frames = np.stack([texture(rng, *SIZE)] * 6)
    masks = np.stack([box_mask(40, 44, 30, 90 + 3 * k) for k in range(6)])
    shapes = {}
    for multiple in (1, 64):
        engine = ShapeEngine(np.random.default_rng(1), lr_long_side=80)
        config = VideoConfig(propagate=False, hold=False, canvas=False, engine_margin=5, engine_thin_width=12,
                             engine_box_multiple=multiple)
        out = VideoInpainter(engine, config=config).process_batch(frames, masks)
        np.testing.assert_array_equal(out[~masks], frames[~masks])
        shapes[multiple] = engine.shapes
    assert len(shapes[1]) == 6 and len(set(shapes[1])) == 6
    assert len(shapes[64]) == 6 and len(set(shapes[64])) == 1

