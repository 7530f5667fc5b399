"""hr_feather: the full-resolution texture of neighbouring copies cross-fades across token edges (torch
reference `model.upscale.feathered_texture`; native `hr_upscale(..., feather)`, the deployed pipeline's numpy
HR stage `deploy.host.upscale_hr(..., feather)`; the Triton kernel in test_kernel_hr_upscale.py, the CUDA C
kernel in test_deploy.py)."""
import dataclasses

import numpy as np
import pytest
import torch

from rethined_engine import Engine, ModelConfig
from rethined_engine.cli import SAMPLE_IMAGE
from rethined_engine.config import STYLES
from rethined_engine.deploy.host import known_tokens, upscale_hr
from rethined_engine.deploy.pipeline import DeployedPipeline, LRSizeRange
from rethined_engine.geometry import plan
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


@pytest.mark.parametrize("feather,reflect", [(1, False), (2, False), (4, False), (2, True)])
def test_native_feathered_texture_matches_the_torch_reference(image_and_mask, feather, reflect):
    image, mask = image_and_mask
    settings = {**REALISTIC, "hr_feather": feather, "hr_fade_reflect": reflect}
    torch_out = Engine(backend="torch", device="cpu", **settings).inpaint(image, mask)
    native_out = Engine(backend="native", **settings).inpaint(image, mask)
    diff = np.abs(torch_out.astype(np.int16) - native_out)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3          # float32 rounding at a .5 boundary only
    assert np.array_equal(native_out[~mask], image[~mask])
    float_image = image.astype(np.float32) / 255
    torch_float = Engine(backend="torch", device="cpu", **settings).inpaint(float_image, mask)
    native_float = Engine(backend="native", **settings).inpaint(float_image, mask)
    np.testing.assert_allclose(native_float, torch_float, rtol=0, atol=1e-5)


def test_feathering_lowers_the_step_across_token_edges(photo_and_mask):
    """The seam ratio over the 32-px HR token grid falls with the cross-fade, and the fill keeps its texture
    (its mean step between neighbouring hole pixels stays above half of the unfeathered one)."""
    image, mask = photo_and_mask
    hole = torch.from_numpy(mask)[None, None]
    ratios, steps = [], []
    for feather in (0, 2):
        out = Engine(backend="native", **{**REALISTIC, "hr_feather": feather}).inpaint(image, mask)
        pred = torch.from_numpy(out).permute(2, 0, 1)[None].float()
        ratios.append(float(grid_seam_ratio(pred, hole, 32)[0]))
        step = (pred[..., 1:] - pred[..., :-1]).abs().mean(dim=1, keepdim=True)
        steps.append(float(step[hole[..., 1:] & hole[..., :-1]].mean()))
    assert ratios[1] < ratios[0] - 0.1, ratios
    assert steps[1] > 0.5 * steps[0], steps


def test_mirrored_reads_lower_the_step_across_token_edges_further(photo_and_mask):
    """hr_fade_reflect: where a copy's fade would read a hole past its source's edge it reads the source's own
    texture mirrored, so fewer copies meet at a step: the seam ratio falls below the plain fade's."""
    image, mask = photo_and_mask
    hole = torch.from_numpy(mask)[None, None]
    ratios = []
    for reflect in (False, True):
        out = Engine(backend="native", **{**REALISTIC, "hr_fade_reflect": reflect}).inpaint(image, mask)
        ratios.append(float(grid_seam_ratio(torch.from_numpy(out).permute(2, 0, 1)[None].float(), hole, 32)[0]))
    assert ratios[1] < ratios[0] - 0.02, ratios


def test_feather_off_is_the_pasted_texture(photo_and_mask):
    """hr_feather = 0: native's pasted path against the torch reference's (`attention_upscale` without
    `feathered_texture`)."""
    image, mask = photo_and_mask
    settings = {**REALISTIC, "hr_feather": 0}
    native_out = Engine(backend="native", **settings).inpaint(image, mask)
    torch_out = Engine(backend="torch", device="cpu", **settings).inpaint(image, mask)
    diff = np.abs(torch_out.astype(np.int16) - native_out)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not np.array_equal(native_out, Engine(backend="native", **{**REALISTIC, "hr_feather": 1}).inpaint(image, mask))


@pytest.mark.parametrize("settings, match", [
    ({"lr_texture": "copy", "hr_feather": 5}, "hr_feather must be an int in 0..4"),
    ({"lr_texture": "mix", "hr_feather": 2}, "needs lr_texture='copy'"),
    ({"lr_texture": "copy", "hf_fine_decay": 0.0, "hr_feather": 2}, "hf_fine_decay=None"),
    ({"lr_texture": "copy", "hr_fade_reflect": 1}, "hr_fade_reflect must be a bool"),
])
def test_bad_feather_settings_are_refused(settings, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**settings)


def copy_case(rng, size, lr_long):
    """An HR stage's inputs as copies make them, on fresh seeded noise: (geom, image, mask, lr, weight, index,
    known) numpy, one source per token (a known token) with a gain in [0.3, 1] on hole tokens, every fourth
    token not copying (weight 0). The left half of the image is known, so that there are sources."""
    h, w = size
    geom = plan(h, w, ModelConfig(lr_long_side=lr_long))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = random_mask(h, w, rng)
    mask[:, :w // 2] = False
    known = known_tokens(mask, geom)
    tokens = geom.grid_h * geom.grid_w
    weight = rng.uniform(0.3, 1.0, (tokens, 1)).astype(np.float32) * ~known[:, None]
    weight[::4] = 0.0
    index = rng.choice(np.flatnonzero(known), (tokens, 1)).astype(np.int32)
    lr = rng.random((1, 3, *geom.lr_size), dtype=np.float32)
    return geom, image, mask, lr, weight, index, known


FEATHER_SHAPES = [((61, 130), 64), ((130, 517), 256), ((37, 53), 512)]   # (H, W), lr_long_side: scales 2, 3, 1


def levels_off(got: np.ndarray, exact: torch.Tensor) -> tuple[int, float]:
    """(largest difference in uint8 levels, fraction of values that differ) of got vs the float64 reference."""
    diff = np.abs(got.astype(np.int16) - exact.numpy().astype(np.int16))
    return int(diff.max()), float((diff > 0).mean())


@pytest.mark.parametrize("size,lr_long", FEATHER_SHAPES)
@pytest.mark.parametrize("feather,reflect", [(1, False), (2, False), (2, True)])
def test_host_feathered_stage_matches_the_torch_reference(size, lr_long, feather, reflect):
    """Numpy HR stage within one level of the float64 torch reference, as often off as the float32 one (reflect:
    `hr_fade_reflect`'s mirrored reads, which change the fill)."""
    hr_upscale_reference = pytest.importorskip("rethined_engine.kernels.hr_upscale").hr_upscale_reference
    geom, image, mask, lr, weight, index, known = copy_case(np.random.default_rng(feather), size, lr_long)
    got = upscale_hr(image, mask, lr, weight, np.zeros_like(weight), index, geom, feather, reflect)
    args = [torch.from_numpy(a) for a in (image, mask, lr, weight)] + [None, torch.from_numpy(index), geom]
    exact = hr_upscale_reference(*args, feather=feather, known=torch.from_numpy(known), compute_dtype=torch.float64,
                                 reflect=reflect)
    peer = hr_upscale_reference(*args, feather=feather, known=torch.from_numpy(known), reflect=reflect).numpy()
    if reflect and geom.scale > 1:
        assert not np.array_equal(got, upscale_hr(image, mask, lr, weight, np.zeros_like(weight), index, geom, feather))
    lsb, rate = levels_off(got, exact)
    assert lsb <= 1 and rate <= 2 * levels_off(peer, exact)[1] + 1e-4, (lsb, rate)
    assert np.array_equal(got[~mask], image[~mask])
    if geom.scale == 1:   # no HR stage: the LR result, whatever the feather
        assert np.array_equal(got, upscale_hr(image, mask, lr, weight, np.zeros_like(weight), index, geom))


@pytest.mark.parametrize("settings, match", [
    ({"feather": 5}, "feather: expected an int in 0..4"),
    ({"feather": 1, "weight": np.ones((24, 2), np.float32)}, "weight: feather > 0 needs one source"),
    ({"feather": 1, "fine_weight": np.ones((24, 1), np.float32)}, "fine_weight: feather > 0 needs one band"),
])
def test_host_stage_refuses_bad_feather_arguments(settings, match):
    geom = plan(64, 96, ModelConfig(lr_long_side=32))
    args = {"image": np.zeros((64, 96, 3), np.uint8), "mask": np.ones((64, 96), bool),
            "lr_result": np.zeros((1, 3, *geom.lr_size), np.float32), "weight": np.zeros((24, 1), np.float32),
            "fine_weight": np.zeros((24, 1), np.float32), "index": np.zeros((24, 1), np.int32), "geom": geom}
    with pytest.raises(ValueError, match=match):
        upscale_hr(**{**args, **settings})


def test_deployed_pipeline_feathers_as_the_torch_engine():
    """ONNX LR network (onnxruntime) + numpy HR stage with hr_feather=1 (and with hr_fade_reflect) reproduce
    Engine(backend="torch") with the same settings on the sample photo (shipped weights; scale 2), and differ from
    the pasted texture."""
    ort = pytest.importorskip("onnxruntime")
    import tempfile

    from rethined_engine.deploy.graph_spec import INPUT_NAMES
    from rethined_engine.deploy.onnx_export import export_onnx
    from rethined_engine.weights import load_model

    with tempfile.TemporaryDirectory() as folder:
        path, _ = export_onnx(f"{folder}/lr.onnx", 384, 1000, dynamic=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runner = lambda inputs: tuple(session.run(None, dict(zip(INPUT_NAMES, inputs))))
    cfg = dataclasses.replace(load_model().cfg, hr_feather=1, hr_fade_reflect=False)
    pipeline = DeployedPipeline(cfg, runner, LRSizeRange((192, 512), (192, 512)))
    image, mask = sample(384, 1000), random_mask(384, 1000, np.random.default_rng(5))
    got = pipeline.inpaint(image, mask)
    ref = Engine(backend="torch", device="cpu", hr_feather=1, hr_fade_reflect=False).inpaint(image, mask)
    diff = np.abs(got.astype(np.int16) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4     # measured: 1 of 1,152,000 values one level off
    pasted = DeployedPipeline(dataclasses.replace(cfg, hr_feather=0), runner, pipeline.sizes)
    assert not np.array_equal(got, pasted.inpaint(image, mask))
    assert np.array_equal(got[~mask], image[~mask])
    mirrored = DeployedPipeline(dataclasses.replace(cfg, hr_fade_reflect=True), runner, pipeline.sizes)
    got_mirrored = mirrored.inpaint(image, mask)        # hr_fade_reflect: the numpy stage's mirrored reads
    ref_mirrored = Engine(backend="torch", device="cpu", hr_feather=1, hr_fade_reflect=True).inpaint(image, mask)
    diff = np.abs(got_mirrored.astype(np.int16) - ref_mirrored)
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4
    assert not np.array_equal(got_mirrored, got)
