"""metrics.warping_error against direct differences on clips whose motion is known exactly."""
import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from rethined_engine.metrics import warping_error
from rethined_engine.video.flow import forward_backward_valid

SIZE = (96, 128)           # H, W of the test clips
SHIFT = 3                  # px per frame of the pan, content moving left
FRAMES = 4
BORDER = 16                # px of the frame edge left out of the direct reference (flow is weakest there)
TEXTURE_BLUR = 2.0         # sigma of the blurred-noise texture, px: smooth enough for DIS, textured enough to lock


def texture(rng, height, width):
    """Blurred-noise RGB texture (height, width, 3) uint8 spanning most of [0, 255]."""
    noise = rng.normal(0, 1, (height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), TEXTURE_BLUR)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.round(smooth * 230 + 12).astype(np.uint8)


def pan(rng):
    """A camera pan of FRAMES frames SIZE over a wider texture: frame t is columns [t * SHIFT, t * SHIFT + W)."""
    field = texture(rng, SIZE[0], SIZE[1] + SHIFT * FRAMES)
    return np.stack([field[:, t * SHIFT:t * SHIFT + SIZE[1]] for t in range(FRAMES)])


def hole():
    mask = np.zeros(SIZE, bool)
    mask[30:60, 40:90] = True
    return mask


def test_identical_static_frames_give_zero(rng):
    frames = np.repeat(texture(rng, *SIZE)[None], FRAMES, 0)
    scores = warping_error(frames, frames, hole())
    assert scores == {"hole": 0.0, "frame": 0.0}


def test_pure_translation_is_near_zero(rng):
    frames = pan(rng)
    scores = warping_error(frames, frames, hole())
    assert scores["hole"] < 1e-4 and scores["frame"] < 1e-4   # ~0.01 levels^2 per channel of interpolation


def test_flicker_matches_the_direct_difference_along_the_known_motion(rng):
    frames = pan(rng)
    noise = rng.normal(0, 6, frames.shape)
    outputs = np.clip(np.round(frames + noise), 0, 255).astype(np.uint8)
    mask = hole()
    # direct reference: pixel (y, x) of frame t is pixel (y, x - SHIFT) of frame t + 1
    inner = np.zeros(SIZE, bool)
    inner[BORDER:-BORDER, BORDER:-BORDER] = True
    hole_errors, frame_errors = [], []
    for t in range(FRAMES - 1):
        diff = np.zeros(SIZE)
        diff[:, SHIFT:] = np.square(outputs[t, :, SHIFT:] / 255.0 - outputs[t + 1, :, :-SHIFT] / 255.0).sum(-1)
        hole_errors.append(diff[inner & mask].mean())
        frame_errors.append(diff[inner].mean())
    scores = warping_error(frames, outputs, mask)
    assert scores["hole"] == pytest.approx(np.mean(hole_errors), rel=0.1)
    assert scores["frame"] == pytest.approx(np.mean(frame_errors), rel=0.1)
    assert scores["hole"] > 100 * warping_error(frames, frames, mask)["hole"]


def test_forward_backward_check_against_exact_flows():
    """Forward flow +SHIFT px in x everywhere; backward flow -SHIFT px except on a band where it is 0 (what
    lands there was occluded). Pixels whose end lies in the band or outside the frame fail the check."""
    h, w = SIZE
    forward = np.zeros((h, w, 2), np.float32)
    forward[..., 0] = SHIFT
    backward = -forward
    backward[:, 50:60] = 0
    xs = np.arange(w)[None].repeat(h, 0)
    expected = ~(((xs + SHIFT >= 50) & (xs + SHIFT < 60)) | (xs + SHIFT > w - 1))
    np.testing.assert_array_equal(forward_backward_valid(forward, backward), expected)


def test_rejects_mismatched_shapes(rng):
    frames = pan(rng)
    with pytest.raises(ValueError, match="frames, outputs"):
        warping_error(frames, frames[:, :-1], hole())
