"""hr_feather: the full-resolution texture of neighbouring copies cross-fades across token edges (torch
reference `model.upscale.feathered_texture`, native `hr_upscale(..., feather)`), and the backends that do not
implement it refuse it or run the torch path."""
import numpy as np
import pytest
import torch

from rethined_engine import Engine, ModelConfig
from rethined_engine.cli import SAMPLE_IMAGE
from rethined_engine.config import STYLES
from rethined_engine.deploy.pipeline import DeployedPipeline, LRSizeRange
from rethined_engine.metrics import grid_seam_ratio
from rethined_engine.train.masks import random_mask

REALISTIC = {**STYLES["realistic"], "lr_long_side": 128}   # 512 px images: scale 4, 32 px HR tokens


def sample(h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((w, h)))


@pytest.fixture(scope="module")
def photo_and_mask():
    rng = np.random.default_rng(7)
    return sample(384, 512), random_mask(384, 512, rng)


@pytest.fixture(scope="module", params=["photo", "noise"])
def image_and_mask(request, photo_and_mask):
    """The sample photo, or fresh seeded noise (every copy's texture uncorrelated with its neighbours')."""
    if request.param == "photo":
        return photo_and_mask
    rng = np.random.default_rng(11)
    return rng.integers(0, 256, (300, 420, 3), dtype=np.uint8), random_mask(300, 420, rng)


@pytest.mark.parametrize("feather", [1, 2, 4])
def test_native_feathered_texture_matches_the_torch_reference(image_and_mask, feather):
    image, mask = image_and_mask
    torch_out = Engine(backend="torch", device="cpu", hr_feather=feather, **REALISTIC).inpaint(image, mask)
    native_out = Engine(backend="native", hr_feather=feather, **REALISTIC).inpaint(image, mask)
    diff = np.abs(torch_out.astype(np.int16) - native_out)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3          # float32 rounding at a .5 boundary only
    assert np.array_equal(native_out[~mask], image[~mask])
    float_image = image.astype(np.float32) / 255
    torch_float = Engine(backend="torch", device="cpu", hr_feather=feather, **REALISTIC).inpaint(float_image, mask)
    native_float = Engine(backend="native", hr_feather=feather, **REALISTIC).inpaint(float_image, mask)
    np.testing.assert_allclose(native_float, torch_float, rtol=0, atol=1e-5)


def test_feathering_lowers_the_step_across_token_edges(photo_and_mask):
    """The seam ratio over the 32-px HR token grid falls with the cross-fade, and the fill keeps its texture
    (its mean step between neighbouring hole pixels stays above half of the unfeathered one)."""
    image, mask = photo_and_mask
    hole = torch.from_numpy(mask)[None, None]
    ratios, steps = [], []
    for feather in (0, 2):
        out = Engine(backend="native", hr_feather=feather, **REALISTIC).inpaint(image, mask)
        pred = torch.from_numpy(out).permute(2, 0, 1)[None].float()
        ratios.append(float(grid_seam_ratio(pred, hole, 32)[0]))
        step = (pred[..., 1:] - pred[..., :-1]).abs().mean(dim=1, keepdim=True)
        steps.append(float(step[hole[..., 1:] & hole[..., :-1]].mean()))
    assert ratios[1] < ratios[0] - 0.1, ratios
    assert steps[1] > 0.5 * steps[0], steps


def test_feather_off_is_the_pasted_texture(photo_and_mask):
    image, mask = photo_and_mask
    default = Engine(backend="native", **REALISTIC).inpaint(image, mask)
    assert np.array_equal(Engine(backend="native", hr_feather=0, **REALISTIC).inpaint(image, mask), default)


@pytest.mark.parametrize("settings, match", [
    ({"lr_texture": "copy", "hr_feather": 5}, "hr_feather must be an int in 0..4"),
    ({"lr_texture": "mix", "hr_feather": 2}, "needs lr_texture='copy'"),
    ({"lr_texture": "copy", "hf_fine_decay": 0.0, "hr_feather": 2}, "hf_fine_decay=None"),
])
def test_bad_feather_settings_are_refused(settings, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**settings)


def test_deployed_pipeline_refuses_a_feathered_config():
    cfg = ModelConfig(lr_texture="copy", hr_feather=2)
    with pytest.raises(ValueError, match="hr_feather"):
        DeployedPipeline(cfg, lambda inputs: None, LRSizeRange((32, 32), (512, 512)))
