"""Batched inference and `Engine.inpaint_frames` on the CPU backends, against per-image `Engine.inpaint`
calls on fresh random inputs. The native backend runs the LR network once per image by default: its results
must equal the per-image calls bit for bit; batched convolutions (the torch backend, and the native one with
LR_BATCH > 1) may round one uint8 level apart (TORCH_BATCH_LSB)."""
import warnings

import numpy as np
import pytest
import torch

from rethined_engine import Engine
from rethined_engine.backends.native_backend import native_module
from rethined_engine.video.stream import VideoInpainter

HEIGHT, WIDTH = 96, 160          # HR frames; the LR network runs at this size (scale 1)
TORCH_BATCH_LSB = 1
BACKENDS = ["torch", pytest.param("native", marks=pytest.mark.skipif(native_module() is None,
                                                                      reason="the native extension is not built"))]


def box_masks(count: int, rng) -> np.ndarray:
    """count (HEIGHT, WIDTH) bool masks, each a random box of a quarter to half of each side."""
    masks = np.zeros((count, HEIGHT, WIDTH), bool)
    for mask in masks:
        h, w = rng.integers(HEIGHT // 4, HEIGHT // 2), rng.integers(WIDTH // 4, WIDTH // 2)
        y, x = rng.integers(0, HEIGHT - h), rng.integers(0, WIDTH - w)
        mask[y:y + h, x:x + w] = True
    return masks


def alone(engine: Engine, images, masks) -> list:
    """Each image inpainted on its own (the fully-masked warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [engine.inpaint(image, mask) for image, mask in zip(images, masks)]


def assert_same(batch, singles, backend: str) -> None:
    tolerance = TORCH_BATCH_LSB if backend == "torch" else 0
    for got, want in zip(batch, singles):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        scale = 1.0 if tolerance == 0 or want.max() > 1.0 else 255.0
        assert np.abs(got - want).max() * scale <= tolerance


@pytest.fixture(scope="module")
def engines(weights_path):
    return {name: Engine(weights=weights_path, device="cpu", backend=name) for name in ("torch", "native")
            if name == "torch" or native_module() is not None}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("shared_mask", [False, True])
def test_uint8_numpy_batch_equals_single_calls(engines, rng, backend, count, shared_mask):
    engine = engines[backend]
    images = rng.integers(0, 256, (count, HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = box_masks(1 if shared_mask else count, rng)
    batch = engine.inpaint(images, masks[0] if shared_mask else masks)
    assert batch.shape == images.shape and batch.dtype == np.uint8
    assert_same(batch, alone(engine, images, np.broadcast_to(masks, (count, HEIGHT, WIDTH))), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_torch_batch_equals_single_calls(engines, rng, backend):
    engine = engines[backend]
    images = torch.from_numpy(rng.random((3, 3, HEIGHT, WIDTH), dtype=np.float32))
    masks = torch.from_numpy(box_masks(3, rng))[:, None]
    batch = engine.inpaint(images, masks)
    assert batch.shape == images.shape and batch.dtype == torch.float32
    assert_same(batch.numpy(), [x.numpy() for x in alone(engine, images, masks)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_with_a_fully_masked_and_a_hole_free_image(engines, rng, backend):
    engine = engines[backend]
    images = rng.integers(0, 256, (4, HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = box_masks(4, rng)
    masks[1] = True           # nothing known: the coarse network's guess
    masks[2] = False          # nothing to fill: the image itself
    with pytest.warns(RuntimeWarning, match="whole image"):
        batch = engine.inpaint(images, masks)
    np.testing.assert_array_equal(batch[2], images[2])
    assert_same(batch, alone(engine, images, masks), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_inpaint_frames_yields_the_single_calls_in_order(engines, rng, backend, batch_size):
    engine = engines[backend]
    frames = rng.integers(0, 256, (5, HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = box_masks(5, rng)
    outputs = list(engine.inpaint_frames(iter(frames), (m for m in masks), batch_size=batch_size))
    assert len(outputs) == 5 and all(out.shape == (HEIGHT, WIDTH, 3) for out in outputs)
    assert_same(outputs, alone(engine, frames, masks), backend)


def test_inpaint_frames_shares_one_mask_and_keeps_torch_layout(engines, rng):
    engine = engines["torch"]
    frames = [torch.from_numpy(rng.integers(0, 256, (3, HEIGHT, WIDTH), dtype=np.uint8)) for _ in range(3)]
    mask = torch.from_numpy(box_masks(1, rng)[0])
    outputs = list(engine.inpaint_frames(frames, mask, batch_size=2))
    assert all(out.shape == (3, HEIGHT, WIDTH) and out.dtype == torch.uint8 for out in outputs)
    assert_same([o.numpy() for o in outputs], [o.numpy() for o in alone(engine, frames, [mask] * 3)], "torch")


def test_inpaint_frames_names_the_argument_at_fault(engines, rng):
    engine = engines["torch"]
    frames = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(2)]
    other = rng.integers(0, 256, (HEIGHT, WIDTH + 8, 3), dtype=np.uint8)
    masks = box_masks(2, rng)
    with pytest.raises(ValueError, match="frames: frame 2"):
        list(engine.inpaint_frames(frames + [other], masks[0]))
    with pytest.raises(ValueError, match="masks: ran out at frame 1"):
        list(engine.inpaint_frames(frames, [masks[0]]))
    with pytest.raises(ValueError, match="batch_size"):
        list(engine.inpaint_frames(frames, masks[0], batch_size=0))
    with pytest.raises(ValueError, match="excludes: ran out at frame 1"):
        list(engine.inpaint_frames(frames, masks[0], excludes=iter([masks[1]])))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shared_exclude", [False, True])
def test_inpaint_frames_passes_each_frame_its_exclusion(engines, rng, backend, shared_exclude):
    """With excludes, every frame's result is `inpaint(frame, mask, exclude)`'s, and not the plain call's."""
    engine = engines[backend]
    frames = rng.integers(0, 256, (3, HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = box_masks(3, rng)
    excludes = ~masks                          # every known pixel: nothing may be copied
    excludes[:, :, :WIDTH // 2] = False        # ... but from the left half
    if shared_exclude:
        excludes = excludes[0] & excludes[1] & excludes[2]
        per_frame = [excludes] * 3
    else:
        per_frame = list(excludes)
    got = list(engine.inpaint_frames(frames, iter(masks), batch_size=2,
                                     excludes=excludes if shared_exclude else iter(per_frame)))
    assert_same(got, [engine.inpaint(f, m, e) for f, m, e in zip(frames, masks, per_frame)], backend)
    plain = alone(engine, frames, masks)
    assert any(not np.array_equal(g, p) for g, p in zip(got, plain))


@pytest.mark.parametrize("shared_mask", [False, True])
def test_video_process_batch_with_temporal_off_uses_one_engine_call(engines, rng, monkeypatch, shared_mask):
    engine = engines["native" if "native" in engines else "torch"]
    frames = rng.integers(0, 256, (3, HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = box_masks(1 if shared_mask else 3, rng)
    masks = masks[0] if shared_mask else masks
    want = alone(engine, frames, np.broadcast_to(masks, frames.shape[:3]))
    calls = []
    inner = engine.inpaint
    monkeypatch.setattr(engine, "inpaint", lambda img, mask: calls.append(img.shape) or inner(img, mask))
    got = VideoInpainter(engine, temporal="off").process_batch(frames, masks)
    assert calls == [frames.shape]
    assert_same(got, want, engine.backend)


@pytest.mark.skipif(native_module() is None, reason="the native extension is not built")
@pytest.mark.parametrize("lr_batch", [2, 8])
def test_native_lr_network_on_several_images_per_call(engines, rng, monkeypatch, lr_batch):
    """The native backend's LR network on LR_BATCH images per call (1 by default: faster on the CPU) gives
    the per-image results within TORCH_BATCH_LSB (oneDNN may pick another convolution kernel for a batch on
    some CPUs), with a fully-masked and a hole-free image in the batch."""
    from rethined_engine.backends import native_backend

    monkeypatch.setattr(native_backend, "LR_BATCH", lr_batch)
    engine = engines["native"]
    images = rng.integers(0, 256, (5, HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = box_masks(5, rng)
    masks[1], masks[3] = True, False
    want = alone(engine, images, masks)
    calls = []
    inner = engine._impl._inpaint_known
    monkeypatch.setattr(engine._impl, "_inpaint_known", lambda i, m, e: calls.append(len(i)) or inner(i, m, e))
    with pytest.warns(RuntimeWarning, match="whole image"):
        batch = engine.inpaint(images, masks)
    assert calls == [min(lr_batch, 4)] + ([4 - lr_batch] if lr_batch < 4 else [])
    assert_same(batch, want, "torch")   # the LR network's batched convolutions: as torch's, within one level


def test_joined_results_are_channels_last_and_one_image_is_not_copied():
    """`join_channels_last`: the host's (B, H, W, 3) view of the joined results needs no copy, and a single
    result backed by (H, W, 3) memory comes back as a view of it."""
    from rethined_engine.backends.torch_backend import join_channels_last

    hwc = [torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).reshape(4, 5, 6)[..., i:i + 3] for i in (0, 3)]
    images = [image.contiguous().permute(2, 0, 1) for image in hwc]
    one = join_channels_last(images[:1])
    assert one.data_ptr() == images[0].data_ptr()
    both = join_channels_last(images)
    assert torch.equal(both, torch.stack(images))
    assert both.permute(0, 2, 3, 1).is_contiguous()
    chw = join_channels_last([images[1].contiguous()])
    assert torch.equal(chw[0], images[1]) and chw.permute(0, 2, 3, 1).is_contiguous()
