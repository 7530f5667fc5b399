"""Frame lines (`rethined_engine.frame_lines`, `ModelConfig.key_frame_lines`): a thin line along an image's edge
that differs from the image just inside it is found, its side's edge tokens are no sources on every backend, and
an image without one is filled exactly as with the setting off."""
import numpy as np
import pytest
import torch

from rethined_engine import Engine
from rethined_engine.config import STYLES, ModelConfig
from rethined_engine.frame_lines import FRAME_LINE_MIN_STEP, frame_line_sides, keep_grid, keep_range
from rethined_engine.geometry import plan
from rethined_engine.model.rethined import frame_line_keys
from rethined_engine.train.masks import random_mask

from conftest import onnxruntime_pipeline  # noqa: E402
from test_exclude import chosen_sources, close_uint8, needs_native, photo  # noqa: E402

SPAN = 16   # HR px per token in the synthetic cases


def textured(rng, h, w, sigma=12.0):
    """(H, W, 3) uint8: a smooth colour field with noise of `sigma` levels."""
    ys, xs = np.mgrid[0:h, 0:w]
    base = 110 + 40 * np.sin(xs / 37.0)[..., None] * np.array([1.0, 0.6, 0.3]) + 20 * np.cos(ys / 23.0)[..., None]
    return np.clip(base + rng.normal(0, sigma, (h, w, 3)), 0, 255).astype(np.uint8)


def sides(image, mask=None):
    mask = np.zeros(image.shape[:2], bool) if mask is None else mask
    return frame_line_sides(np.moveaxis(image, -1, 0)[None], mask[None], SPAN)[0].tolist()


def test_a_thin_line_along_an_edge_is_found_on_that_side_only(rng):
    image = textured(rng, 160, 240)
    assert sides(image) == [False, False, False, False]
    dark = image.copy()
    dark[-1] = 30                                   # a dark last row (a resize's, a scan's)
    assert sides(dark) == [False, True, False, False]
    bright = image.copy()
    bright[:, :3] = np.minimum(image[:, :3].astype(int) + 60, 255)   # a bright 3 px left border
    assert sides(bright) == [False, False, True, False]


@pytest.mark.parametrize("case", ["vignette", "texture", "edge_in_part", "weak_line", "wide_border"])
def test_what_is_not_a_frame_line(rng, case):
    """A vignette (a gradient the band's line predicts), strong texture, a scene edge along part of a side, a line
    under FRAME_LINE_MIN_STEP (on a quiet image, where the departure is measured closely) and a border as wide as
    the band are not frame lines."""
    h, w = 160, 240
    image = textured(rng, h, w, sigma={"texture": 40.0, "weak_line": 2.0}.get(case, 12.0)).astype(np.float64)
    if case == "vignette":
        ys = np.arange(h)[:, None, None]
        image = image * (0.55 + 0.45 * np.minimum(ys / 40.0, 1.0))
    elif case == "edge_in_part":
        image[:, -3:][40:70] = 20                     # a dark object cut by the right edge over 30 rows
    elif case == "weak_line":
        image[-1] -= FRAME_LINE_MIN_STEP * 255 * 0.6
    elif case == "wide_border":
        image[-10:] = 15
    assert sides(np.clip(image, 0, 255).astype(np.uint8)) == [False, False, False, False]


def test_hole_pixels_are_not_judged(rng):
    """A line hidden under the hole is not there; a line whose side is half in the hole is still found."""
    image = textured(rng, 160, 240)
    image[-1] = 255
    mask = np.zeros((160, 240), bool)
    mask[-12:] = True
    assert sides(image, mask) == [False, False, False, False]
    mask[:, 120:] = False
    assert sides(image, mask)[1]


@pytest.mark.parametrize("h,w", [(160, 240), (150, 229), (40, 40), (15, 300)])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_token_forms_agree(rng, h, w, dtype):
    """`frame_lines.keep_grid` (numpy: the native backend, the deployed pipelines) and
    `model.rethined.frame_line_keys` (torch: the torch and Triton backends) keep the same tokens, over random lines
    and holes, for sizes that fill the token grid exactly or not, and images too small to judge."""
    for trial in range(4):
        image = textured(rng, h, w)
        for side in range(4):
            if rng.random() < 0.5:
                line = [np.s_[:1], np.s_[-2:], np.s_[:, :1], np.s_[:, -1:]][side]
                image[line] = rng.integers(0, 256)
        mask = rng.random((h, w)) < 0.05 * trial
        values = image if dtype == "uint8" else image.astype(np.float32) / 255
        grid_h, grid_w = -(-h // SPAN), -(-w // SPAN)
        want = keep_grid(values, mask, SPAN, grid_h, grid_w)
        got = frame_line_keys(torch.from_numpy(values).permute(2, 0, 1)[None], torch.from_numpy(mask)[None, None],
                              SPAN, grid_h, grid_w)
        np.testing.assert_array_equal(got[0].numpy(), want.reshape(-1))


def test_a_side_of_few_token_spans_is_not_judged(rng):
    """Under FRAME_LINE_MIN_SPANS spans a few agree by chance: a side that short holds no frame line."""
    image = textured(rng, 160, 7 * SPAN)
    image[-1] = 20
    image[:, -1] = 20
    assert sides(image) == [False, False, False, True]     # the bottom's 7 spans are not judged; the right's 10 are


def test_keep_range_drops_the_token_touching_the_line():
    assert keep_range((True, True), 64, 16) == (1, 3)
    assert keep_range((False, True), 70, 16) == (0, 4)      # the last whole token ends before the edge's line
    assert keep_range((True, True), 32, 16) == (0, 2)       # it would leave no token: all stay


@pytest.fixture(scope="module")
def framed():
    """The sample photo at 256 x 384 (one LR px per px: tokens of 8 px fill it exactly) with a bright last row and
    first column (the photo is dark there)."""
    image = photo(256, 384)
    image[-1] = 235
    image[:, 0] = 250
    return image


@pytest.fixture(scope="module")
def engines():
    return {on: Engine(backend="torch", device="cpu", key_frame_lines=on) for on in (False, True)}


def test_the_edge_tokens_along_a_frame_line_are_no_sources(engines, framed, rng):
    mask = random_mask(*framed.shape[:2], rng)
    geom = plan(*framed.shape[:2], engines[True].config)
    out, key_ok, sources = chosen_sources(engines[True], framed, mask)
    grid = key_ok.reshape(geom.grid_h, geom.grid_w)
    assert not grid[-1].any() and not grid[:, 0].any()
    assert not (sources // geom.grid_w == geom.grid_h - 1).any() and not (sources % geom.grid_w == 0).any()
    np.testing.assert_array_equal(out[~mask], framed[~mask])
    assert not np.array_equal(out, engines[False].inpaint(framed, mask))


def test_an_image_without_a_frame_line_is_filled_as_with_the_setting_off(engines, rng):
    image = photo(256, 384)
    mask = random_mask(256, 384, rng)
    np.testing.assert_array_equal(engines[True].inpaint(image, mask), engines[False].inpaint(image, mask))


def test_the_copy_styles_take_frame_lines_and_smooth_does_not():
    assert STYLES["realistic"]["key_frame_lines"] and STYLES["fast"]["key_frame_lines"]
    assert not ModelConfig(**{**STYLES["smooth"]}).key_frame_lines
    with pytest.raises(ValueError, match="key_frame_lines must be a bool"):
        ModelConfig(key_frame_lines=1)


@needs_native
def test_native_backend_matches_torch_with_frame_lines(engines, framed, rng):
    mask = random_mask(*framed.shape[:2], rng)
    native = Engine(backend="native", key_frame_lines=True)
    assert close_uint8(native.inpaint(framed, mask), engines[True].inpaint(framed, mask))


def test_deployed_pipeline_matches_torch_with_frame_lines(engines, framed, rng, onnx_path):
    """The deployed pipeline (onnxruntime standing in for TensorRT; the weights file's settings, which name
    key_frame_lines) finds the frame lines on the host."""
    from rethined_engine.deploy.pipeline import LRSizeRange

    deployed = onnxruntime_pipeline(onnx_path, LRSizeRange((32, 32), (512, 512)))
    assert deployed.config.key_frame_lines
    mask = random_mask(*framed.shape[:2], rng)
    assert close_uint8(deployed.inpaint(framed, mask), engines[True].inpaint(framed, mask))


def test_triton_backend_matches_torch_with_frame_lines(rng):
    """Interpreted on the CPU without CUDA (one LR px per px: 8 token spans along the bottom): the frame lines reach
    the Triton pipeline's keys."""
    pytest.importorskip("triton")
    from rethined_engine.backends.triton_backend import TritonBackend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = {**STYLES["realistic"], "lr_long_side": 64, "seam_sigma": 0.0, "key_frame_lines": True}
    fast = TritonBackend(device=device, dtype="float32", cuda_graphs=False, **settings)
    torch_engine = Engine(backend="torch", device=device, dtype="float32", **settings)
    image, mask = photo(48, 64), random_mask(48, 64, rng)
    image[-9:-1] = image[-9:-1].mean(axis=(0, 1)).astype(np.uint8)   # a plain band above a dark last row
    image[-1] = 10
    mask[-12:] = False                              # every span along the bottom judged
    kept = frame_line_keys(torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(mask)[None, None], 8, 6, 8)
    assert not kept.all()                           # the dark last row is found: its tokens are no sources
    assert close_uint8(fast.inpaint(image, mask), torch_engine.inpaint(image, mask))


def test_a_batch_judges_each_image_on_its_own(engines, framed, rng):
    """One framed and one plain image in a batch: each filled as alone."""
    plain = photo(256, 384)
    mask = random_mask(256, 384, rng)
    batch = engines[True].inpaint(np.stack([framed, plain]), mask)
    np.testing.assert_array_equal(batch[0], engines[True].inpaint(framed, mask))
    np.testing.assert_array_equal(batch[1], engines[True].inpaint(plain, mask))
