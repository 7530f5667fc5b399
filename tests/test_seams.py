"""The seam blend at the hole border (`model.upscale.blend_seams`, `ModelConfig.seam_sigma`): the torch
reference's behaviour, the native C++ and numpy host implementations against it, and the engines with it on."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from rethined_engine import Engine, ModelConfig
from rethined_engine.backends.native_backend import native_module
from rethined_engine.cli import SAMPLE_IMAGE
from rethined_engine.deploy.host import SEAM_TILE as HOST_SEAM_TILE
from rethined_engine.deploy.host import blend_seams as host_blend_seams
from rethined_engine.deploy.pipeline import DeployedPipeline, LRSizeRange
from rethined_engine.geometry import seam_taps
from rethined_engine.model.upscale import blend_seams
from rethined_engine.train.masks import random_mask
from rethined_engine.weights import load_model

SIGMA, GAIN = 2.0, 8.0
SHAPES = [(37, 53), (61, 130), (200, 150)]
MAX_FLIPPED = 1e-4       # float summation order may turn a value near .5 the other way: one uint8 level
FLOAT_ATOL = 1e-5
needs_native = pytest.mark.skipif(native_module() is None, reason="native extension not built")


def case(rng, h, w, dtype):
    """(image, mask, filled): random image, free-form mask, random fill in the hole."""
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = random_mask(h, w, rng).astype(bool)
    filled = np.where(mask[..., None], rng.integers(0, 256, (h, w, 3), dtype=np.uint8), image)
    if dtype == np.float32:
        image, filled = image.astype(np.float32) / 255.0, filled.astype(np.float32) / 255.0
    return image, mask, filled


def reference(image, mask, filled, sigma=SIGMA, gain=GAIN):
    to = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    out = blend_seams(to(image), torch.from_numpy(mask)[None, None], to(filled), torch.from_numpy(seam_taps(sigma)), gain)
    return out[0].permute(1, 2, 0).numpy()


def assert_matches(got, ref):
    assert got.dtype == ref.dtype and got.shape == ref.shape
    if got.dtype == np.uint8:
        diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() <= MAX_FLIPPED
    else:
        np.testing.assert_allclose(got, ref, atol=FLOAT_ATOL, rtol=0)


def test_taps():
    taps = seam_taps(SIGMA)
    assert taps.dtype == np.float32 and len(taps) == 2 * 6 + 1 and abs(float(taps.sum()) - 1.0) < 1e-6
    assert np.array_equal(taps, taps[::-1]) and taps.argmax() == 6


def test_reference_fades_from_the_border_into_the_fill():
    """Known grey 200 on the left, a black fill on the right: the first hole column takes the known value
    (gain D >= 1), the next ones fade to the fill, and beyond the taps' reach nothing changes."""
    h, w, border = 20, 40, 20
    image = np.full((h, w, 3), 200, np.uint8)
    mask = np.zeros((h, w), bool)
    mask[:, border:] = True
    filled = np.where(mask[..., None], 0, image).astype(np.uint8)
    out = reference(image, mask, filled)
    radius = len(seam_taps(SIGMA)) // 2
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert (out[:, border] == 200).all()
    assert (out[:, border + radius:] == 0).all()
    row = out[h // 2, border:border + radius + 1, 0].astype(int)
    assert (np.diff(row) <= 0).all() and row[-1] == 0 and row[2] < 200


def test_reference_leaves_a_hole_free_image_and_a_full_hole_alone(rng):
    image, _, filled = case(rng, 30, 40, np.uint8)
    for mask in (np.zeros((30, 40), bool), np.ones((30, 40), bool)):
        fill = np.where(mask[..., None], filled, image)
        np.testing.assert_array_equal(reference(image, mask, fill), fill)


@needs_native
@pytest.mark.parametrize("h,w", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float32"])
def test_native_matches_reference(rng, h, w, dtype):
    image, mask, filled = case(rng, h, w, dtype)
    got = native_module().blend_seams(image, mask.astype(np.uint8), filled, seam_taps(SIGMA), GAIN)
    assert_matches(got, reference(image, mask, filled))


@pytest.mark.parametrize("impl", ["native", "host"])
@pytest.mark.parametrize("side", ["left", "right", "above", "below"])
def test_tiled_blends_a_tile_whose_known_pixels_are_only_in_its_halo(rng, impl, side):
    """The C++ and numpy versions skip tiles without a hole pixel or without a known pixel within reach: a
    tile that is all hole, its only known pixels a line just outside it, must still be blended."""
    if impl == "native" and native_module() is None:
        pytest.skip("native extension not built")
    rows, cols = native_module().seam_tile if impl == "native" else HOST_SEAM_TILE
    blend = native_module().blend_seams if impl == "native" else host_blend_seams
    h, w = 3 * rows, 3 * cols
    mask = np.ones((h, w), bool)
    mask[{"left": np.s_[:, cols - 1], "right": np.s_[:, 2 * cols], "above": np.s_[rows - 1, :],
          "below": np.s_[2 * rows, :]}[side]] = False
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    filled = np.where(mask[..., None], 0, image).astype(np.uint8)
    got = blend(image, mask.astype(np.uint8) if impl == "native" else mask, filled, seam_taps(SIGMA), GAIN)
    assert_matches(got, reference(image, mask, filled))
    assert (got[rows:2 * rows, cols:2 * cols] != 0).any()        # the middle tile was blended


@needs_native
def test_native_rejects_bad_arguments(rng):
    image, mask, filled = case(rng, 20, 30, np.uint8)
    with pytest.raises(ValueError, match="filled"):
        native_module().blend_seams(image, mask.astype(np.uint8), filled[:10], seam_taps(SIGMA), GAIN)
    with pytest.raises(ValueError, match="taps"):
        native_module().blend_seams(image, mask.astype(np.uint8), filled, np.ones(4, np.float32), GAIN)
    with pytest.raises(ValueError, match="gain"):
        native_module().blend_seams(image, mask.astype(np.uint8), filled, seam_taps(SIGMA), 0.0)


@pytest.mark.parametrize("h,w", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float32"])
@pytest.mark.parametrize("sigma,gain", [(SIGMA, GAIN), (1.0, 2.0)])
def test_host_matches_reference(rng, h, w, dtype, sigma, gain):
    image, mask, filled = case(rng, h, w, dtype)
    assert_matches(host_blend_seams(image, mask, filled, seam_taps(sigma), gain),
                   reference(image, mask, filled, sigma, gain))


def test_config_checks():
    with pytest.raises(ValueError, match="seam_sigma"):
        ModelConfig(seam_sigma=-1.0)
    with pytest.raises(ValueError, match="seam_gain"):
        ModelConfig(seam_gain=0.0)


def photo(h, w):
    return np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB").resize((w, h)))


@needs_native
def test_backends_agree_with_seams_on(rng):
    """native and the deployed host pipeline against the torch backend with the blend on; the blend changes
    only hole pixels within the taps' reach of a known pixel."""
    h, w = 333, 500
    image, mask = photo(h, w), random_mask(h, w, rng).astype(bool)
    reference_engine = Engine(backend="torch", seam_sigma=SIGMA, seam_gain=GAIN)
    ref = reference_engine.inpaint(image, mask)
    plain = Engine(backend="torch", seam_sigma=0.0).inpaint(image, mask)
    net = load_model(seam_sigma=SIGMA, seam_gain=GAIN)   # the reference engine's model
    lr_runner = _torch_lr_runner(net)
    deployed = DeployedPipeline(reference_engine.config, lr_runner, LRSizeRange((32, 32), (512, 512)))
    for got in (Engine(backend="native", seam_sigma=SIGMA, seam_gain=GAIN).inpaint(image, mask),
                deployed.inpaint(image, mask)):
        diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
        assert (diff > 1).mean() <= 1e-3 and (diff > 0).mean() <= 2e-3
        np.testing.assert_array_equal(got[~mask], image[~mask])
    changed = (ref != plain).any(-1)
    radius = len(seam_taps(SIGMA)) // 2
    near = torch.nn.functional.max_pool2d(torch.from_numpy(~mask).float()[None, None], 2 * radius + 1, 1, radius)
    assert changed.any() and not (changed & ~(mask & (near[0, 0].numpy() > 0))).any()


def _torch_lr_runner(model):
    """The deployed pipeline's LR runner, served by the torch LR network (what the ONNX graph exports)."""
    from rethined_engine.deploy.onnx_export import LRNetwork

    net = LRNetwork(model, model.cfg.hr_topk)

    def run(inputs):
        with torch.inference_mode():
            outs = net(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        return tuple(o.numpy() for o in outs)
    return run


def test_seam_settings_are_inference_settings():
    from rethined_engine.config import INFERENCE_FIELDS

    assert {"seam_sigma", "seam_gain"} <= set(INFERENCE_FIELDS)
    cfg = dataclasses.replace(ModelConfig(), seam_sigma=SIGMA)
    assert ModelConfig.from_json(cfg.to_json()) == cfg


def test_evaluate_applies_the_files_seam_setting(rng):
    """`train.evaluate` records seam_sigma among the file's defaults, so its `ours` must apply it."""
    from rethined_engine.train.evaluate import with_file_seams
    from rethined_engine.weights import load_model

    h, w = 90, 130
    image = torch.from_numpy(photo(h, w).copy()).permute(2, 0, 1)[None].float() / 255.0
    mask = torch.from_numpy(random_mask(h, w, rng))[None, None].float()
    plain, seamed = load_model(seam_sigma=0.0), load_model(seam_sigma=SIGMA, seam_gain=GAIN)
    with torch.inference_mode():
        unblended = plain(image, mask)
        assert torch.equal(with_file_seams(plain, image, mask), unblended)
        want = blend_seams(image, mask > 0, seamed(image, mask), torch.from_numpy(seam_taps(SIGMA)), GAIN)
        got = with_file_seams(seamed, image, mask)
    assert torch.equal(got, want) and not torch.equal(got, unblended)
