"""The native CPU extension: each function vs its reference (odd sizes, 1 and several threads), and
the native backend end to end vs the torch backend."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from rethined_engine import Engine, ModelConfig
from rethined_engine.backends.native_backend import native_module
from rethined_engine.deploy.host import upscale_hr
from rethined_engine.geometry import pad_to, plan
from rethined_engine.model.upscale import downsample
from rethined_engine.train.masks import random_mask

from conftest import hr_key_tokens

native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="rethined_engine._native not built")
LR_ATOL = 1e-5      # float32 filters, different summation order
HR_FLOAT_ATOL = 1e-4  # bilinear source coordinates: x * (1/s) (as torch) here, x / s in numpy; << 1/255
TIE_FRACTION = 1e-3  # end to end: top-K near-ties may pick another, equally weighted source


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_extension_is_built_where_a_compiler_exists():
    assert native is not None, "pip install . should have built rethined_engine._native (see its build log)"


@needs_native
@pytest.mark.parametrize("h,w,lr_long", [(37, 53, 512), (187, 153, 64), (250, 64, 64), (333, 1000, 512), (1030, 2050, 512)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_prepare_lr_matches_torch(rng, threads, h, w, lr_long, dtype):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = image if dtype == np.uint8 else (image / 255.0).astype(np.float32)
    mask = random_mask(h, w, rng).astype(np.uint8)
    geom = plan(h, w, ModelConfig(lr_long_side=lr_long))
    lr, lr_mask = native.prepare_lr(image, mask, geom.scale, geom.grid_h, geom.grid_w, geom.patch)
    t_img = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    t_img = t_img / 255.0 if dtype == np.uint8 else t_img
    t_mask = torch.from_numpy(mask)[None, None].float()
    ref, ref_mask = downsample(pad_to(t_img * (1 - t_mask), geom.padded_size), pad_to(t_mask, geom.padded_size), geom.scale)
    np.testing.assert_allclose(lr, ref.numpy(), atol=LR_ATOL, rtol=0)
    np.testing.assert_array_equal(lr_mask, ref_mask.numpy())


@needs_native
@pytest.mark.parametrize("batch,c1,c2,h,w", [(1, 32, 4, 64, 48), (2, 48, 32, 16, 16), (1, 5, 3, 7, 9), (1, 3, 2, 1, 1)])
def test_upsample_cat_matches_torch(threads, batch, c1, c2, h, w):
    """The coarse CNN's decoder join: x upsampled 2x (bilinear, align_corners=False) then skip, channels-last."""
    g = torch.Generator().manual_seed(c1 * h + w)
    x = torch.rand(batch, c1, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    skip = torch.rand(batch, c2, 2 * h, 2 * w, generator=g).contiguous(memory_format=torch.channels_last)
    want = torch.cat([torch.nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False),
                      skip], dim=1)
    got = native.upsample_cat(x.permute(0, 2, 3, 1).numpy(), skip.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), atol=1e-6, rtol=0)


@needs_native
def test_upsample_cat_writes_into_the_given_buffer():
    x, skip = np.random.default_rng(0).random((1, 4, 6, 3), np.float32), np.zeros((1, 8, 12, 2), np.float32)
    out = np.full((1, 8, 12, 5), np.nan, np.float32)
    assert native.upsample_cat(x, skip, out) is out
    np.testing.assert_array_equal(out, native.upsample_cat(x, skip))
    with pytest.raises(ValueError, match="out: expected"):
        native.upsample_cat(x, skip, np.zeros((1, 8, 12, 4), np.float32))


@needs_native
def test_upsample_join_buffers_stay_bounded(rng):
    """The native join keeps its output buffers per shape, at most JOIN_BUFFERS of them over many image shapes."""
    from rethined_engine.backends.native_backend import JOIN_BUFFERS

    engine = Engine(backend="native")
    for h, w in [(64, 64), (64, 96), (96, 64), (64, 128), (128, 64)]:
        engine.inpaint(photo(h, w), random_mask(h, w, rng))
        assert len(engine._impl.model.coarse_net.join_kernel._buffers) <= JOIN_BUFFERS


@needs_native
def test_upsample_cat_refuses_mismatched_sizes():
    x = np.zeros((1, 8, 8, 4), np.float32)
    with pytest.raises(ValueError, match="skip: expected"):
        native.upsample_cat(x, np.zeros((1, 16, 15, 2), np.float32))
    with pytest.raises(ValueError, match="x, skip: expected"):
        native.upsample_cat(x[0], np.zeros((1, 16, 16, 2), np.float32))


@needs_native
def test_native_backend_joins_the_decoder_in_cpp(rng):
    """The native backend's CNN uses the C++ join; the engine's output stays that of the torch join to rounding."""
    engine = Engine(backend="native")
    coarse_net = engine._impl.model.coarse_net
    assert coarse_net.join_kernel is not None
    image, mask = photo(256, 384), random_mask(256, 384, rng)
    joined = engine.inpaint(image, mask)
    coarse_net.join_kernel = None
    diff = np.abs(joined.astype(np.int16) - engine.inpaint(image, mask).astype(np.int16))
    assert (diff > 1).mean() <= TIE_FRACTION and (diff > 0).mean() <= 2e-3


def valid_sources(geom, mask, rng, k=4):
    """Random top-K rows (weight, fine_weight, index) whose sources are known tokens inside the image, as the
    LR network emits them."""
    keys = hr_key_tokens(mask, geom)
    tokens = geom.grid_h * geom.grid_w
    if keys.size == 0:   # no known token: every row keeps itself, no mixing
        return np.zeros((tokens, k), np.float32), np.zeros((tokens, k), np.float32), np.zeros((tokens, k), np.int32)
    index = rng.choice(keys, (tokens, k)).astype(np.int32)
    weight = rng.random((tokens, k), dtype=np.float32)
    weight /= weight.sum(-1, keepdims=True)
    weight[::3, -1] = 0.0
    fine_weight = weight * rng.uniform(-0.5, 2.0, (tokens, 1)).astype(np.float32)   # f - g: either sign
    fine_weight[::4] = 0.0                                                         # one-band tokens
    return weight, fine_weight, index


@needs_native
@pytest.mark.parametrize("h,w", [(37, 53), (333, 1000), (1030, 2050), (700, 515)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_hr_upscale_matches_reference(rng, threads, h, w, dtype):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = image if dtype == np.uint8 else (image / 255.0).astype(np.float32)
    mask = random_mask(h, w, rng)
    geom = plan(h, w, ModelConfig())
    lr = rng.random((1, 3, *geom.lr_size), dtype=np.float32)
    weight, fine_weight, index = valid_sources(geom, mask, rng)
    out = native.hr_upscale(image, mask.astype(np.uint8), lr, weight, fine_weight, index, geom.scale, geom.patch,
                            geom.grid_h, geom.grid_w)
    ref = upscale_hr(image, mask, lr, weight, fine_weight, index, geom)
    assert out.dtype == image.dtype and out.shape == image.shape
    np.testing.assert_array_equal(out[~mask], image[~mask])
    if dtype == np.uint8:
        diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
    else:
        np.testing.assert_allclose(out, ref, atol=HR_FLOAT_ATOL, rtol=0)


@needs_native
def test_bad_arguments_raise_value_error(rng):
    image = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(ValueError, match="mask"):
        native.prepare_lr(image, np.zeros((20, 31), np.uint8), 1, 4, 4, 8)
    with pytest.raises(ValueError, match="grid"):
        native.prepare_lr(image, np.zeros((20, 30), np.uint8), 1, 1, 1, 8)
    with pytest.raises(ValueError, match="weight, fine_weight, index"):
        native.hr_upscale(image, np.zeros((20, 30), np.uint8), np.zeros((1, 3, 32, 32), np.float32),
                          np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32), np.zeros((3, 4), np.int32), 1, 8, 4, 4)
    with pytest.raises(ValueError, match="weight, fine_weight, index"):
        native.hr_upscale(image, np.zeros((20, 30), np.uint8), np.zeros((1, 3, 32, 32), np.float32),
                          np.zeros((16, 4), np.float32), np.zeros((16, 3), np.float32), np.zeros((16, 4), np.int32), 1, 8, 4, 4)
    partial = np.zeros((16, 1), np.int32)
    partial[0] = 8                            # token (2, 0): rows 16-23 of a 20-row image
    with pytest.raises(ValueError, match="wholly inside the image"):
        native.hr_upscale(image, np.ones((20, 30), np.uint8), np.zeros((1, 3, 32, 32), np.float32),
                          np.ones((16, 1), np.float32), np.zeros((16, 1), np.float32), partial, 1, 8, 4, 4)
    with pytest.raises(ValueError, match="n:"):
        native.set_num_threads(0)


@pytest.fixture(scope="module")
def engines():
    return Engine(backend="native"), Engine(backend="torch")


def photo(h, w):
    from rethined_engine.cli import SAMPLE_IMAGE
    return np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((w, h)))


@needs_native
@pytest.mark.parametrize("h,w", [(37, 53), (333, 1000), (1030, 2050)])
def test_native_backend_matches_torch_backend(engines, rng, h, w):
    fast, reference = engines
    image, mask = photo(h, w), random_mask(h, w, rng)
    out = fast.inpaint(image, mask)
    diff = np.abs(out.astype(np.int16) - reference.inpaint(image, mask).astype(np.int16))
    assert (diff > 1).mean() <= TIE_FRACTION and (diff > 0).mean() <= 2e-3
    np.testing.assert_array_equal(out[~mask], image[~mask])


@needs_native
def test_native_backend_matches_torch_backend_on_float32(engines, rng):
    """float32 in and out (the native backend returns the C++ stages' result without a join): the fill within the
    uint8 test's bounds at 1/255, the known pixels the input's bit for bit."""
    fast, reference = engines
    image, mask = (photo(333, 1000) / 255.0).astype(np.float32), random_mask(333, 1000, rng)
    image += rng.random(image.shape, dtype=np.float32) / 512          # values between 8-bit levels
    image = np.clip(image, 0.0, 1.0)
    out = fast.inpaint(image, mask)
    assert out.dtype == np.float32
    diff = np.abs(out - reference.inpaint(image, mask)) * 255
    assert (diff > 1).mean() <= TIE_FRACTION and (diff > 0.5).mean() <= 2e-3
    np.testing.assert_array_equal(out[~mask], image[~mask])


@needs_native
def test_native_backend_matches_torch_with_the_finest_band_only(rng):
    """hf_mid_gain=0 (finest band only) reaches the native HR kernel through the LR network's token gains."""
    settings = {"hf_decay": 1.0, "hf_fine_decay": 2.0, "hf_mid_gain": 0.0, "hr_feather": 0}
    image, mask = photo(333, 1000), random_mask(333, 1000, rng)
    out = Engine(backend="native", **settings).inpaint(image, mask)
    diff = np.abs(out.astype(np.int16) - Engine(backend="torch", **settings).inpaint(image, mask).astype(np.int16))
    assert (diff > 1).mean() <= TIE_FRACTION and (diff > 0).mean() <= 2e-3
    assert not np.array_equal(out, Engine(backend="native", hf_decay=1.0, hf_fine_decay=2.0, hr_feather=0).inpaint(image, mask))


@needs_native
def test_native_backend_matches_torch_with_the_edge_tokens_left_out(rng):
    """key_edge_tokens reaches the native backend's keys, while its feathered texture (hr_feather 2) still fades
    into the outermost tokens' own texture, as the torch reference does."""
    image, mask = photo(333, 1000), random_mask(333, 1000, rng)
    out = Engine(backend="native", key_edge_tokens=1).inpaint(image, mask)
    reference = Engine(backend="torch", key_edge_tokens=1).inpaint(image, mask)
    diff = np.abs(out.astype(np.int16) - reference.astype(np.int16))
    assert (diff > 1).mean() <= TIE_FRACTION and (diff > 0).mean() <= 2e-3
    assert not np.array_equal(out, Engine(backend="native").inpaint(image, mask))


@needs_native
def test_native_backend_input_types(engines, rng):
    fast, reference = engines
    image, mask = photo(90, 130), random_mask(90, 130, rng)
    as_float = image.astype(np.float64) / 255.0
    out = fast.inpaint(as_float, mask)
    assert out.dtype == np.float64 and np.array_equal(out[~mask], as_float[~mask])
    assert (np.abs(out - reference.inpaint(as_float, mask)) > 1e-4).mean() <= TIE_FRACTION
    chw = torch.from_numpy(image).permute(2, 0, 1)
    batch = torch.stack([chw, chw.flip(-1)])
    got = fast.inpaint(batch, torch.from_numpy(mask))
    assert got.shape == batch.shape and got.dtype == torch.uint8
    assert torch.equal(got[1], fast.inpaint(batch[1], torch.from_numpy(mask)))
    assert isinstance(fast.inpaint(Image.fromarray(image), Image.fromarray(mask.astype(np.uint8) * 255)), Image.Image)
    np.testing.assert_array_equal(fast.inpaint(image, np.zeros_like(mask)), image)


@needs_native
def test_default_backend_on_cpu_and_fallback(monkeypatch, weights_path):
    assert Engine(weights=weights_path, device="cpu").backend == "native"
    import rethined_engine.backends.native_backend as nb

    monkeypatch.setattr(nb, "native_module", lambda: None)
    with pytest.warns(RuntimeWarning, match="not built"):
        engine = Engine(weights=weights_path, device="cpu")
    assert engine.backend == "torch"
    with pytest.raises(ValueError, match="device"):
        Engine(weights=weights_path, backend="native", device="cuda")
