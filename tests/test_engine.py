"""The Engine contract: types, layouts, bit-exact known pixels, batches, bad inputs."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from rethined_engine import Engine


def stroke_mask(h, w, rng, frac=0.3):
    mask = np.zeros((h, w), bool)
    while mask.mean() < frac:
        y, x = rng.integers(0, h), rng.integers(0, w)
        mask[max(0, y - h // 8):y + h // 8, max(0, x - w // 8):x + w // 8] = True
    return mask


def assert_known_exact(out, img, mask):
    known = ~mask
    assert out.dtype == img.dtype and out.shape == img.shape
    assert np.array_equal(out[known], img[known])


@pytest.mark.parametrize("h,w", [(37, 53), (333, 1000), (1030, 2050)])
def test_known_pixels_bit_exact_uint8(engine, rng, h, w):
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = stroke_mask(h, w, rng)
    out = engine.inpaint(img, mask)
    assert_known_exact(out, img, mask)
    assert not np.array_equal(out[mask], img[mask])  # the holes were actually filled


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h,w", [(37, 53), (333, 1000), (1030, 2050)])
def test_known_pixels_bit_exact_float(engine, rng, h, w, dtype):
    img = rng.random((h, w, 3)).astype(dtype)
    mask = stroke_mask(h, w, rng)
    out = engine.inpaint(img, mask)
    assert_known_exact(out, img, mask)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("h,w", [(37, 53), (333, 1000)])
def test_known_pixels_bit_exact_uint16(engine, rng, h, w):
    """16-bit images come back as uint16 with every known sample unchanged; a 16-bit copy of an 8-bit picture (v x 257:
    the same values in [0, 1]) gets the 8-bit picture's fill, to within that fill's 8-bit rounding (128.5 levels)."""
    img8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = stroke_mask(h, w, rng)
    noisy = img8.astype(np.uint16) * 257 + rng.integers(0, 257, (h, w, 3), dtype=np.uint16)
    assert_known_exact(engine.inpaint(noisy, mask), noisy, mask)
    img = img8.astype(np.uint16) * 257
    out = engine.inpaint(img, mask)
    assert_known_exact(out, img, mask)
    out8 = engine.inpaint(img8, mask).astype(np.int32) * 257
    assert np.abs(out[mask].astype(np.int32) - out8[mask]).max() <= 129


def test_torch_uint16(engine, rng):
    img = torch.from_numpy(rng.integers(0, 65536, (3, 40, 48), dtype=np.uint16))
    mask = torch.zeros(40, 48, dtype=torch.bool)
    mask[10:30, 5:20] = True
    out = engine.inpaint(img, mask)
    assert out.dtype == torch.uint16 and out.shape == img.shape and torch.equal(out[:, ~mask], img[:, ~mask])
    as_numpy = engine.inpaint(img.permute(1, 2, 0).numpy(), mask.numpy())
    assert torch.equal(out, torch.from_numpy(as_numpy).permute(2, 0, 1))


def test_torch_chw_and_bchw(engine, rng):
    img = torch.from_numpy(rng.random((3, 45, 61)).astype(np.float32))
    mask = torch.from_numpy(stroke_mask(45, 61, rng))
    out = engine.inpaint(img, mask)
    assert isinstance(out, torch.Tensor) and out.shape == img.shape and out.dtype == img.dtype
    assert torch.equal(out[:, ~mask], img[:, ~mask])
    batch_out = engine.inpaint(img[None], mask[None, None])
    assert batch_out.shape == (1, 3, 45, 61)
    torch.testing.assert_close(batch_out[0], out, rtol=0, atol=0)


def test_torch_uint8_and_half(engine, rng):
    img = torch.from_numpy(rng.integers(0, 256, (3, 40, 40), dtype=np.uint8))
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[10:30, 5:20] = True
    out = engine.inpaint(img, mask)
    assert out.dtype == torch.uint8 and torch.equal(out[:, ~mask], img[:, ~mask])
    half = (img.float() / 255).half()
    out_h = engine.inpaint(half, mask)
    assert out_h.dtype == torch.float16 and torch.equal(out_h[:, ~mask], half[:, ~mask])


def test_pil_in_pil_out(engine, rng):
    arr = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    mask = stroke_mask(50, 70, rng)
    out = engine.inpaint(Image.fromarray(arr), Image.fromarray(mask.astype(np.uint8) * 255))
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (70, 50)
    assert_known_exact(np.asarray(out), arr, mask)
    # a mode "1" mask works too
    out1 = engine.inpaint(Image.fromarray(arr), Image.fromarray(mask))
    assert np.array_equal(np.asarray(out1), np.asarray(out))


def test_mask_forms_agree(engine, rng):
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = stroke_mask(40, 48, rng)
    ref = engine.inpaint(img, mask)
    for form in (mask.astype(np.uint8) * 255, mask[..., None], mask.astype(np.float32),
                 torch.from_numpy(mask)[None], mask.astype(np.float64) * 0.9 + 0.05):
        assert np.array_equal(engine.inpaint(img, form), ref)


def test_float_mask_threshold(engine, rng):
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    soft = np.full((32, 32), 0.49, np.float32)
    assert np.array_equal(engine.inpaint(img, soft), img)  # below 0.5: nothing to fill
    soft[8:16, 8:16] = 0.5
    out = engine.inpaint(img, soft)
    assert np.array_equal(out[soft < 0.5], img[soft < 0.5])


def test_batch_equals_single_calls(engine, rng):
    imgs = torch.from_numpy(rng.random((2, 3, 72, 90)).astype(np.float32))
    masks = torch.from_numpy(np.stack([stroke_mask(72, 90, rng), stroke_mask(72, 90, rng)]))
    batch = engine.inpaint(imgs, masks[:, None])
    for i in range(2):
        torch.testing.assert_close(batch[i], engine.inpaint(imgs[i], masks[i]), rtol=0, atol=1e-5)
    # a single HW mask is shared by the batch
    shared = engine.inpaint(imgs, masks[0])
    torch.testing.assert_close(shared[1], engine.inpaint(imgs[1], masks[0]), rtol=0, atol=1e-5)
    # numpy BHWC batches
    np_batch = engine.inpaint(imgs.permute(0, 2, 3, 1).numpy(), masks.numpy())
    torch.testing.assert_close(torch.from_numpy(np_batch).permute(0, 3, 1, 2), batch, rtol=0, atol=1e-5)


def test_deterministic(engine, rng):
    img = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    mask = stroke_mask(100, 150, rng)
    assert np.array_equal(engine.inpaint(img, mask), engine.inpaint(img, mask))
    assert np.array_equal(Engine(weights=engine.weights_path, device="cpu").inpaint(img, mask),
                          engine.inpaint(img, mask))


def test_empty_mask_returns_input(engine, rng):
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = engine.inpaint(img, np.zeros((20, 30), bool))
    assert np.array_equal(out, img) and out is not img


def test_full_mask_warns_and_returns_coarse(engine, rng):
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with pytest.warns(RuntimeWarning, match="whole image"):
        out = engine.inpaint(img, np.ones((64, 64), bool))
    assert out.shape == img.shape and out.dtype == np.uint8


def test_no_warning_for_normal_mask(engine, rng):
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.inpaint(img, stroke_mask(64, 64, rng))


GOOD = np.zeros((16, 16, 3), np.uint8)
MASK = np.zeros((16, 16), bool)
MASK[4:8, 4:8] = True


BAD_INPUT_CASES = [
    (np.zeros((16, 16), np.uint8), MASK, ValueError, "grayscale"),
    (np.zeros((16, 16, 4), np.uint8), MASK, ValueError, "RGBA"),
    (np.zeros((16, 16, 1), np.uint8), MASK, ValueError, "grayscale"),
    (np.zeros((3, 16, 16), np.uint8), MASK, ValueError, "CHW"),
    (torch.zeros(16, 16, 3), MASK, ValueError, "channels-last"),
    (torch.zeros(4, 16, 16), MASK, ValueError, "RGBA"),
    (torch.zeros(1, 1, 3, 16, 16), MASK, ValueError, "ndim"),
    (np.zeros((5, 16, 16, 3, 1), np.uint8), MASK, ValueError, "ndim"),
    (GOOD, np.zeros((16, 17), bool), ValueError, "does not match"),
    (GOOD, np.zeros((15, 16, 1), bool), ValueError, "does not match"),
    (GOOD, np.zeros((2, 16, 16), bool), ValueError, "batch of 1"),
    (GOOD, np.zeros((16,), bool), ValueError, "does not match"),
    (GOOD, np.zeros((16, 16, 3), bool), ValueError, r"a colour mask: pass one channel, e.g. mask\[\.\.\., 0\]"),
    (np.zeros((0, 16, 3), np.uint8), np.zeros((0, 16), bool), ValueError, "empty"),
    (np.full((16, 16, 3), np.nan, np.float32), MASK, ValueError, "NaN"),
    (np.full((16, 16, 3), np.inf, np.float32), MASK, ValueError, "NaN or infinite"),
    (np.full((16, 16, 3), 255.0, np.float32), MASK, ValueError, r"\[0, 1\].*divide by 255"),
    (np.full((16, 16, 3), -0.5, np.float32), MASK, ValueError, r"\[0, 1\]"),
    (np.zeros((16, 16, 3), np.int32), MASK, TypeError, "dtype"),
    (np.zeros((16, 16, 3), bool), MASK, TypeError, "dtype"),
    (torch.zeros(3, 16, 16, dtype=torch.int64), MASK, TypeError, "dtype"),
    ([[0, 0, 0]], MASK, TypeError, "img: expected"),
    ("image.png", MASK, TypeError, "img: expected"),
    (GOOD, [[1]], TypeError, "mask: expected"),
    (GOOD, np.full((16, 16), np.nan, np.float32), ValueError, "mask: contains NaN"),
    (GOOD, np.array([["a"] * 16] * 16), TypeError, "mask: unsupported"),
    (Image.new("RGBA", (16, 16)), MASK, ValueError, "RGBA"),
    (Image.new("L", (16, 16)), MASK, ValueError, "PIL mode 'L'"),
    (GOOD, Image.new("RGB", (16, 16)), ValueError, "mask: PIL mode 'RGB'"),
]


@pytest.mark.parametrize("img,mask,exc,match", BAD_INPUT_CASES)
def test_bad_inputs(engine, img, mask, exc, match):
    with pytest.raises(exc, match=match):
        engine.inpaint(img, mask)


@pytest.mark.parametrize("kwargs,match", [
    ({"backend": "cudnn"}, "unknown backend"),
    ({"dtype": "int8"}, "dtype"),
    ({"dtype": torch.int32}, "dtype"),
])
def test_bad_engine_arguments(weights_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Engine(weights=weights_path, device="cpu", **kwargs)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"patch_size": 4}, TypeError, "patch_size: not an inference setting"),
    ({"no_such_setting": 1}, TypeError, "no_such_setting: not an inference setting"),
    ({"hr_topk": -1}, ValueError, "hr_topk"),
    ({"hf_decay": -1.0}, ValueError, "hf_decay"),
    ({"float_mask_threshold": 0.0}, ValueError, "float_mask_threshold"),
    ({"key_edge_tokens": -1}, ValueError, "key_edge_tokens must be an int >= 0"),
    ({"key_edge_tokens": 1.0}, ValueError, "key_edge_tokens must be an int >= 0"),
    ({"key_hole_clearance": -1}, ValueError, "key_hole_clearance must be an int in 0..4"),
    ({"key_hole_clearance": 5}, ValueError, "key_hole_clearance must be an int in 0..4"),
])
def test_bad_inference_overrides(weights_path, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Engine(weights=weights_path, device="cpu", **kwargs)


def test_inference_overrides_apply(weights_path):
    engine = Engine(weights=weights_path, device="cpu", hr_topk=0, hf_transfer=False, lr_long_side=256, hf_decay=3.0)
    assert (engine.config.hr_topk, engine.config.hf_transfer, engine.config.lr_long_side) == (0, False, 256)
    assert engine.config.hf_decay == 3.0


def test_one_band_override_of_the_smooth_style():
    """The smooth style scales the coarser band (hf_mid_gain < 1); asking for one band still works and
    transfers the whole HF, as one band always did."""
    smooth = Engine(device="cpu", backend="torch", style="smooth")
    one_band = Engine(device="cpu", backend="torch", style="smooth", hf_fine_decay=None)
    assert smooth.config.hf_mid_gain < 1.0 and one_band.config.hf_fine_decay is None
    reference = Engine(device="cpu", backend="torch", style="smooth", hf_fine_decay=None, hf_mid_gain=1.0)
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (300, 700, 3), dtype=np.uint8)     # scale 2: an HR stage
    mask = np.zeros((300, 700), bool)
    mask[80:220, 200:500] = True
    np.testing.assert_array_equal(one_band.inpaint(image, mask), reference.inpaint(image, mask))


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights"):
        Engine(weights=tmp_path / "nope.safetensors", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda(weights_path):
    with pytest.raises(ValueError, match="device"):
        Engine(weights=weights_path, device="cuda")


def test_shipped_weights_load_and_inpaint(rng):
    engine = Engine(device="cpu")
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    mask = stroke_mask(64, 80, rng)
    out = engine.inpaint(img, mask)
    assert_known_exact(out, img, mask)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_on_cuda_host_and_device_inputs_agree(rng):
    """The shipped file (seam blend on) on the torch backend: a numpy input is uploaded once, worked on and
    blended on the GPU, and comes back equal to the same call on CUDA tensors."""
    engine = Engine(backend="torch", device="cuda")
    image = rng.integers(0, 256, (301, 517, 3), dtype=np.uint8)
    mask = stroke_mask(301, 517, rng)
    out = engine.inpaint(image, mask)
    assert_known_exact(out, image, mask)
    on_device = engine.inpaint(torch.from_numpy(image).permute(2, 0, 1).cuda(), torch.from_numpy(mask).cuda())
    assert on_device.is_cuda and torch.equal(on_device.permute(1, 2, 0).cpu(), torch.from_numpy(out))


def test_calls_from_threads_run_one_at_a_time(weights_path, rng):
    """Shared Engine: concurrent calls are serialised (per-shape buffers of the triton/TensorRT backends)
    and each thread gets its own image's result."""
    import threading
    import time

    engine = Engine(weights=weights_path, device="cpu", backend="torch")
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(4)]
    mask = stroke_mask(40, 56, rng)
    expected = [engine.inpaint(img, mask) for img in images]
    inner, running, most = engine._impl.inpaint, [0], [0]

    def counting_inpaint(img, m, exclude=None):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.02)
        try:
            return inner(img, m, exclude)
        finally:
            running[0] -= 1

    engine._impl.inpaint = counting_inpaint
    results = [None] * len(images)

    def work(i):
        results[i] = engine.inpaint(images[i], mask)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert all(np.array_equal(r, e) for r, e in zip(results, expected))


def test_default_backend_on_cuda_is_triton_when_installed(monkeypatch):
    import importlib.util

    from rethined_engine.engine import _default_backend

    pytest.importorskip("triton")
    assert _default_backend("cuda") == "triton" and _default_backend("cuda:1") == "triton"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a))
    assert _default_backend("cuda") == "torch"


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "L", "1"])
def test_single_channel_pil_masks(engine, rng, mode):
    """Every single-channel PIL mode is a mask (nonzero = fill; F: >= the threshold), 16-bit grey included."""
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = stroke_mask(40, 48, rng)
    values = {"I;16": mask.astype(np.uint16) * 1000, "I": mask.astype(np.int32) * 70000, "F": mask.astype(np.float32),
              "L": mask.astype(np.uint8) * 255, "1": mask}[mode]
    pil = Image.fromarray(values) if mode != "I" else Image.fromarray(values, mode="I")
    assert pil.mode == mode
    np.testing.assert_array_equal(engine.inpaint(img, pil), engine.inpaint(img, mask))


def test_multi_channel_pil_mask_is_refused(engine):
    with pytest.raises(ValueError, match=r"mask: PIL mode 'LA' has several channels; use mask.convert\('L'\)"):
        engine.inpaint(GOOD, Image.new("LA", (16, 16)))


def test_mask_memory_layouts(engine, rng):
    """Read-only, reversed and big-endian masks give the same result as a plain bool mask."""
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = stroke_mask(40, 48, rng)
    ref = engine.inpaint(img, mask)
    read_only = mask.copy()
    read_only.flags.writeable = False
    for form in (read_only, mask[::-1].copy()[::-1], mask.astype(">f4"), mask.astype(">u2"),
                 np.broadcast_to(mask, (1, 40, 48))):
        np.testing.assert_array_equal(engine.inpaint(img, form), ref)


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_fully_masked_image_in_a_batch_alone_takes_the_coarse_result(weights_path, rng, backend):
    """A batch where one image's mask covers all of it: that image gets the coarse result (with the
    warning, pointing at the caller), every other image the result it gets on its own."""
    from rethined_engine.backends.native_backend import native_module

    if backend == "native" and native_module() is None:
        pytest.skip("the native extension is not built")
    engine = Engine(weights=weights_path, device="cpu", backend=backend)
    images = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    masks = np.stack([stroke_mask(48, 64, rng), np.ones((48, 64), bool), stroke_mask(48, 64, rng)])
    alone = []
    for image, mask in zip(images, masks):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alone.append(engine.inpaint(image, mask))
    with pytest.warns(RuntimeWarning, match="whole image") as record:
        batch = engine.inpaint(images, masks)
    assert len(record) == 1 and record[0].filename == __file__
    tolerance = 1     # batched convolutions may round one value apart (native: the LR network runs once per batch)
    for got, want in zip(batch, alone):
        assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max() <= tolerance


def test_native_backend_runs_only_the_fully_masked_image_on_the_torch_path(weights_path, rng, monkeypatch):
    from rethined_engine.backends.native_backend import NativeBackend, native_module

    if native_module() is None:
        pytest.skip("the native extension is not built")
    backend = NativeBackend(weights_path)
    calls = []
    inner = backend._inpaint_known
    monkeypatch.setattr(backend, "_inpaint_known",
                        lambda images, masks, excludes: calls.extend(image.shape for image in images)
                        or inner(images, masks, excludes))
    images = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    masks = np.stack([stroke_mask(48, 64, rng), np.ones((48, 64), bool), stroke_mask(48, 64, rng)])
    with pytest.warns(RuntimeWarning, match="whole image"):
        backend.inpaint(images, masks)
    assert calls == [(48, 64, 3)] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        float_out = backend.inpaint(images[[0, 2]].astype(np.float32) / 255, masks[[0, 2]].astype(np.float32)[:, None])
    assert float_out.dtype == np.float32 and len(calls) == 4


def test_engine_exposes_read_only_properties_only(engine):
    """device, dtype, config, weights_path, backend (engine_path for TensorRT); the backend's internals are
    not reachable through the Engine."""
    assert engine.device == torch.device("cpu") and engine.dtype == torch.float32
    assert engine.config.hr_topk >= 0 and engine.weights_path.suffix == ".safetensors"
    assert engine.backend in ("native", "torch") and engine.engine_path is None
    for name in ("device", "dtype", "config", "weights_path", "backend", "engine_path"):
        with pytest.raises(AttributeError):
            setattr(engine, name, None)
    for internal in ("model", "native", "lr_network", "blend_seams"):
        assert not hasattr(engine, internal)


def test_torch_free_input_checks_agree_with_prepare():
    """The deployed pipeline's checks (numpy/PIL only, no torch) are the Engine's: same results, same errors."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from PIL import Image\n"
            "from rethined_engine.io import host_inputs\n"
            "img = np.zeros((2, 8, 10, 3), np.uint8)\n"
            "batch = host_inputs(img, np.eye(8, 10, dtype=np.float32)[None, ..., None], 0.5)\n"
            "assert batch.images.shape == (2, 8, 10, 3) and batch.masks.shape == (2, 8, 10)\n"
            "assert batch.masks.dtype == bool and batch.masks[1].sum() == 8\n"
            "pil = host_inputs(Image.new('RGB', (10, 8)), Image.new('I;16', (10, 8)), 0.5)\n"
            "assert isinstance(pil.restore(pil.images), Image.Image)\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("img,mask,exc,match", [c for c in BAD_INPUT_CASES if not isinstance(c[0], torch.Tensor)])
def test_bad_inputs_same_errors_without_torch(img, mask, exc, match):
    from rethined_engine.io import host_inputs

    with pytest.raises(exc, match=match):
        host_inputs(img, mask, 0.5)


@pytest.mark.parametrize("img,mask,match", [
    (torch.zeros(3, 16, 16), MASK, "img: this backend takes numpy arrays"),
    (GOOD, torch.from_numpy(MASK), "mask: this backend takes numpy arrays"),
    ([[0, 0, 0]], MASK, "img: expected a numpy array or PIL image, got list"),
])
def test_torch_free_input_checks_refuse_tensors(img, mask, match):
    from rethined_engine.io import host_inputs

    with pytest.raises(TypeError, match=match):
        host_inputs(img, mask, 0.5)


def test_every_16_bit_value_survives_the_float32_round_trip():
    from rethined_engine.io import as_float32

    values = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1).repeat(3, axis=-1)
    for img in (values, torch.from_numpy(values).permute(2, 0, 1)):
        image, as_uint16 = as_float32(img)
        assert image.dtype in (np.float32, torch.float32) and float(image.max()) == 1.0
        back = as_uint16(image.clone() if isinstance(image, torch.Tensor) else image.copy())
        assert back.dtype in (np.uint16, torch.uint16) and (back == img).all()
