"""The TorchScript export loaded as a host loads it: `torch.jit.load` in a fresh process where rethined_engine
cannot be imported, on crops/resizes of the sample photo with LaMa-style masks, against Engine(backend="torch");
and the integer planning it compiles against plain references."""
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from rethined_engine.cli import SAMPLE_IMAGE
from rethined_engine.config import ModelConfig
from rethined_engine.deploy.torchscript_export import export_torchscript, script_inpainter
from rethined_engine.engine import Engine
from rethined_engine.geometry import gaussian_taps, grid_plan, plan
from rethined_engine.model.rethined import key_inside_tokens
from rethined_engine.train.masks import random_mask

SIZES = ((256, 384), (512, 512), (720, 1280))  # H x W: aspect ratios 2:3, 1:1 and 9:16 of the sample photo
MASK_SEED = 11
FLOAT_TOLERANCE = 1e-5        # hole pixels, exported float32 module vs the float32 Engine on this CPU
HALF_HOLE_MEAN = 0.01        # the module moved to float16: mean |fp16 - fp32 Engine| over hole values (the copy
                             # style's source choices are discrete, so a few hole tokens copy another source)
HOST_SCRIPT = r"""
import sys

class NoEngine:  # the host has torch only
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] == "rethined_engine":
            raise ModuleNotFoundError(name)
        return None

sys.meta_path.insert(0, NoEngine)
import torch

module = torch.jit.load(sys.argv[1])
inputs = torch.load(sys.argv[2])
with torch.no_grad():
    outputs = [module(x) for x in inputs]
torch.save(outputs, sys.argv[3])
assert not [name for name in sys.modules if name.startswith("rethined_engine")]
"""


def photo(height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: the sample photo's largest centred crop of aspect W / H, resized."""
    with Image.open(SAMPLE_IMAGE) as im:
        im = im.convert("RGB")
        crop_w = min(im.width, round(im.height * width / height))
        crop_h = min(im.height, round(crop_w * height / width))
        left, top = (im.width - crop_w) // 2, (im.height - crop_h) // 2
        im = im.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255.0


def soft_alpha(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W) float32 alpha: a LaMa-style hole mask's holes in [0.5, 1], known pixels in [0, 0.5), so that
    the threshold is exercised on every pixel."""
    rng = np.random.default_rng(seed)
    hole = random_mask(height, width, rng)
    level = rng.random((height, width), dtype=np.float32) * 0.5
    return np.where(hole, 0.5 + level, np.minimum(level, np.float32(0.4999)))


def rgba(image: np.ndarray, alpha: np.ndarray) -> torch.Tensor:
    """(H, W, 3) and (H, W) -> (1, 4, H, W) float32, the host's input."""
    return torch.from_numpy(np.concatenate([image, alpha[..., None]], axis=-1)).permute(2, 0, 1)[None].contiguous()


def quantised_share(a: np.ndarray, b: np.ndarray, levels: int) -> float:
    """Share of values whose uint8 quantisations differ by at most `levels`."""
    qa, qb = (np.round(np.clip(x, 0, 1) * 255).astype(np.int16) for x in (a, b))
    return float((np.abs(qa - qb) <= levels).mean())


@pytest.fixture(scope="module")
def cases():
    return [(photo(h, w), soft_alpha(h, w, MASK_SEED + i)) for i, (h, w) in enumerate(SIZES)]


def test_loaded_in_a_torch_only_process_matches_the_torch_engine(tmp_path, cases):
    module_path = export_torchscript(tmp_path / "rethined.pt")
    torch.save([rgba(image, alpha) for image, alpha in cases], tmp_path / "inputs.pt")
    run = subprocess.run([sys.executable, "-I", "-c", HOST_SCRIPT, str(module_path), str(tmp_path / "inputs.pt"),
                          str(tmp_path / "outputs.pt")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    outputs = torch.load(tmp_path / "outputs.pt")
    engine = Engine(backend="torch", device="cpu")
    for (image, alpha), out in zip(cases, outputs):
        assert out.shape == (1, 3, *image.shape[:2]) and out.dtype == torch.float32
        got = out[0].permute(1, 2, 0).numpy()
        want = engine.inpaint(image, alpha)
        hole = alpha >= 0.5
        assert 0.2 < hole.mean() < 0.6
        np.testing.assert_array_equal(got[~hole], image[~hole])
        assert np.abs(got - want).max() <= FLOAT_TOLERANCE
        assert quantised_share(got, want, 1) >= 0.999
        assert np.abs(got[hole] - image[hole]).mean() > 0.01     # the holes were filled, not passed through


def test_style_option_matches_the_engine_with_that_style(cases):
    """...and scripting it warns of no `torch.jit.script` deprecation (torch >= 2.13; the export silences it)."""
    image, alpha = cases[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = script_inpainter(style="smooth")
    assert not [w for w in caught if "torch.jit.script" in str(w.message)]
    with torch.no_grad():
        got = module(rgba(image, alpha))[0].permute(1, 2, 0).numpy()
    want = Engine(backend="torch", device="cpu", style="smooth").inpaint(image, alpha)
    default = Engine(backend="torch", device="cpu").inpaint(image, alpha)
    assert np.abs(got - want).max() <= FLOAT_TOLERANCE
    assert np.abs(got - default).max() > 0.05     # the style changed the fill


def test_hr_feather_option_matches_the_engine_with_it(cases):
    """hr_feather = 1 (neighbouring copies' texture cross-faded at full resolution) scripts, and matches the engine."""
    image, alpha = max(cases, key=lambda case: case[0].shape[0] * case[0].shape[1])   # the largest: HR scale > 1
    module = script_inpainter(hr_feather=1)
    with torch.no_grad():
        got = module(rgba(image, alpha))[0].permute(1, 2, 0).numpy()
    want = Engine(backend="torch", device="cpu", hr_feather=1).inpaint(image, alpha)
    pasted = Engine(backend="torch", device="cpu", hr_feather=0).inpaint(image, alpha)
    assert np.abs(got - want).max() <= FLOAT_TOLERANCE
    assert np.abs(got - pasted).max() > 0.05     # the cross-fade changed the fill


def test_continued_flat_fill_matches_the_engine_with_it(cases):
    """flat_fill_form = "continued_flat" (the known slopes continued into the hole, weighted by their error on the
    left-out ring, times the flatness) scripts, and matches the engine."""
    image, alpha = max(cases, key=lambda case: case[0].shape[0] * case[0].shape[1])
    module = script_inpainter(flat_fill_form="continued_flat")
    with torch.no_grad():
        got = module(rgba(image, alpha))[0].permute(1, 2, 0).numpy()
    want = Engine(backend="torch", device="cpu", flat_fill_form="continued_flat").inpaint(image, alpha)
    assert np.abs(got - want).max() <= FLOAT_TOLERANCE


def test_half_precision_keeps_known_pixels_and_stays_close_to_float32(cases):
    image, soft = cases[1]
    alpha = (soft >= 0.5).astype(np.float32)     # 0.4999 rounds to 0.5 in float16: a hard alpha is the same mask
    module = script_inpainter().half()
    with torch.no_grad():
        got = module(rgba(image, alpha).half())
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    got = got[0].permute(1, 2, 0).float().numpy()
    want = Engine(backend="torch", device="cpu").inpaint(image, alpha)
    hole = alpha >= 0.5
    np.testing.assert_array_equal(got[~hole], image[~hole].astype(np.float16))
    assert np.abs(got[hole] - want[hole]).mean() <= HALF_HOLE_MEAN


def test_no_hole_returns_the_rgb_and_a_wrong_channel_count_is_refused(cases):
    image, alpha = cases[0]
    module = script_inpainter()
    x = rgba(image, np.minimum(alpha, 0.49))
    with torch.no_grad():
        assert torch.equal(module(x), x[:, :3])
        with pytest.raises(torch.jit.Error, match=r"x: expected \(B, 4, H, W\)"):
            module(x[:, :3])


def test_a_fifth_channel_is_the_exclusion(cases):
    """(B, 5, H, W): the fifth channel >= 0.5 marks known pixels never copied, as `Engine.inpaint`'s exclude."""
    image, alpha = cases[1]
    exclude = np.zeros(alpha.shape, np.float32)
    exclude[:, : alpha.shape[1] // 2] = 0.75
    module = script_inpainter()
    x = torch.cat([rgba(image, alpha), torch.from_numpy(exclude)[None, None]], dim=1)
    with torch.no_grad():
        got = module(x)[0].permute(1, 2, 0).numpy()
    engine = Engine(backend="torch", device="cpu")
    want = engine.inpaint(image, alpha, exclude >= 0.5)
    assert np.abs(got - want).max() <= FLOAT_TOLERANCE
    assert np.abs(got - engine.inpaint(image, alpha)).max() > 0.05     # the exclusion changed the fill


@pytest.mark.parametrize("height,width", [(1, 1), (37, 100), (512, 513), (720, 1280), (4000, 3000), (8191, 17)])
def test_grid_plan_and_key_inside_tokens_match_plain_references(height, width):
    cfg = ModelConfig()
    scale, grid_h, grid_w = grid_plan(height, width, cfg.lr_long_side, cfg.patch_size, cfg.grid_multiple)
    assert scale == max(1, math.ceil(max(height, width) / cfg.lr_long_side))
    span = scale * cfg.grid_multiple
    assert (grid_h, grid_w) == (math.ceil(height / span) * 4, math.ceil(width / span) * 4)
    token = scale * cfg.patch_size
    rows = [(i + 1) * token <= height for i in range(grid_h)]
    cols = [(j + 1) * token <= width for j in range(grid_w)]
    want = torch.tensor([[r and c for c in cols] for r in rows]).reshape(-1)
    assert torch.equal(key_inside_tokens(height, width, token, grid_h, grid_w, 0, torch.device("cpu")), want)
    assert np.array_equal(plan(height, width, cfg).key_inside_grid().reshape(-1), want.numpy())
    assert np.array_equal(plan(height, width, cfg).inside_grid().reshape(-1), want.numpy())


@pytest.mark.parametrize("edge", [1, 2])
@pytest.mark.parametrize("height,width", [(1, 1), (37, 100), (512, 513), (720, 1280), (4000, 3000), (8191, 17)])
def test_key_edge_tokens_leave_out_the_outermost_tokens_inside_the_image(height, width, edge):
    """key_edge_tokens = e: of the tokens wholly inside the image, the e first and e last along each side are
    no keys, unless that leaves none along that side (then all stay)."""
    cfg = ModelConfig(key_edge_tokens=edge)
    geom = plan(height, width, cfg)
    token = geom.scale * cfg.patch_size

    def along(extent, count):
        inside = [(i + 1) * token <= extent for i in range(count)]
        n = sum(inside)
        return [ok and (n <= 2 * edge or edge <= i < n - edge) for i, ok in enumerate(inside)]

    rows, cols = along(height, geom.grid_h), along(width, geom.grid_w)
    want = torch.tensor([[r and c for c in cols] for r in rows]).reshape(-1)
    got = key_inside_tokens(height, width, token, geom.grid_h, geom.grid_w, edge, torch.device("cpu"))
    assert torch.equal(got, want)
    assert np.array_equal(geom.key_inside_grid().reshape(-1), want.numpy())
    assert np.array_equal(geom.inside_grid(), plan(height, width, ModelConfig()).key_inside_grid())


@pytest.mark.parametrize("scale", [2, 3, 4, 7, 16])
def test_gaussian_taps_match_the_sampled_gaussian(scale):
    taps, radius = gaussian_taps(scale)
    sigma = (scale - 1) / 2
    offsets = np.arange(-radius, scale + radius) - sigma
    want = np.exp(-0.5 * (offsets / sigma) ** 2)
    assert radius == math.ceil(3 * sigma)
    np.testing.assert_allclose(taps, want / want.sum(), rtol=1e-14, atol=0)
