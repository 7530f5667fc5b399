"""Shared fixtures: a randomly initialised (but BN-randomised, hence non-trivial) weights file.

Without CUDA, Triton kernels run in the interpreter (TRITON_INTERPRET=1, set before triton loads)."""
import contextlib
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    with contextlib.suppress(ImportError, AttributeError, TypeError):   # another Triton: the check stays on
        import dataclasses

        from triton.runtime import interpreter
        # The interpreter widens every int32 add, sub and mul to int64 and asserts the result fits (~40 % of the
        # interpreted kernels' time). At the test shapes (a few hundred px) index arithmetic stays far inside int32;
        # RETHINED_INTERPRETER_OVERFLOW_CHECK=1 keeps the check.
        if os.environ.get("RETHINED_INTERPRETER_OVERFLOW_CHECK", "0") == "0":
            builder = interpreter.interpreter_builder
            builder.options = dataclasses.replace(builder.options, sanitize_overflow=False)

from rethined_engine import Engine, ModelConfig, Rethined
from rethined_engine.backends.native_backend import native_module
from rethined_engine.weights import save_inference_weights

# pytest-xdist's workers share the cores: torch's and the native extension's threads are split between them, so that
# the workers do not oversubscribe the cores (the `threads` fixture still sets 1 and 3 for its tests)
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if XDIST_WORKERS > 1:
    torch.set_num_threads(max(1, torch.get_num_threads() // XDIST_WORKERS))
    if (native := native_module()) is not None:
        native.set_num_threads(max(1, native.max_threads() // XDIST_WORKERS))


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BN layer non-trivial statistics so that folding them is actually tested."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


def make_model(seed: int = 0, cfg: ModelConfig = ModelConfig()) -> Rethined:
    torch.manual_seed(seed)
    model = Rethined(cfg)
    randomise_batchnorm(model, seed)
    # a non-zero coherence layer, so that the LR result is not just the mixed tokens
    torch.nn.init.normal_(model.patch_match.coherence[-1].weight, std=0.01)
    return model.eval()


FIXTURE_HF_DECAY = 1.0       # the fixture's weights fade HF with hole depth and keep its finest band at full
FIXTURE_HF_FINE_DECAY = 0.0  # strength, so every backend test covers `hf_band_gains` and the fine band


@pytest.fixture
def photo_dir(tmp_path):
    """A training folder: three small random photos of different shapes and a file that is not an image."""
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(96, 140), (200, 90), (130, 130)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random.safetensors"
    save_inference_weights(make_model(cfg=ModelConfig(hf_decay=FIXTURE_HF_DECAY,
                                                      hf_fine_decay=FIXTURE_HF_FINE_DECAY)), path)
    return path


@pytest.fixture(scope="session")
def engine(weights_path):
    return Engine(weights=weights_path, device="cpu")


@pytest.fixture(scope="session")
def onnx_path(tmp_path_factory):
    """The shipped weights' LR network as an ONNX graph with free batch and LR sizes (exported at 512 x 512), once per
    test run; skipped where onnxruntime, which every test of such a graph runs it with, is missing."""
    pytest.importorskip("onnxruntime")
    from rethined_engine.deploy.onnx_export import export_onnx

    path, _ = export_onnx(tmp_path_factory.mktemp("onnx") / "lr.onnx", 512, 512, dynamic=True)
    return path


def onnxruntime_pipeline(onnx_path, sizes):
    """The torch-free deployed pipeline (`DeployedPipeline`, the shipped weights' settings) with onnxruntime on the
    CPU running the LR graph at onnx_path, TensorRT's stand-in; sizes: the `LRSizeRange` it accepts."""
    ort = pytest.importorskip("onnxruntime")
    from rethined_engine.deploy.graph_spec import INPUT_NAMES
    from rethined_engine.deploy.pipeline import DeployedPipeline
    from rethined_engine.weights import load_model

    runtime = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    runner = lambda inputs: tuple(runtime.run(None, dict(zip(INPUT_NAMES, inputs))))  # noqa: E731
    return DeployedPipeline(load_model().cfg, runner, sizes)


@pytest.fixture(params=[1, 3], ids=["1thread", "3threads"])
def threads(request):
    """The native extension's OpenMP threads for one test, 1 and 3 (restored after it)."""
    native = native_module()
    if native is None:
        pytest.skip("rethined_engine._native not built")
    before = native.max_threads()
    native.set_num_threads(request.param)
    yield request.param
    native.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def hr_key_tokens(mask: np.ndarray, geom) -> np.ndarray:
    """Flat indices of the tokens an HR stage may copy HF from, as the LR network allows them: wholly
    inside the image and without a hole pixel. mask (H, W) bool, nonzero = hole."""
    span = geom.scale * geom.patch
    padded = np.pad(mask, ((0, geom.padded_size[0] - mask.shape[0]), (0, geom.padded_size[1] - mask.shape[1])))
    known = ~padded.reshape(geom.grid_h, span, geom.grid_w, span).any(axis=(1, 3)).reshape(-1)
    return np.flatnonzero(geom.key_inside_grid().reshape(-1) & known)


@contextlib.contextmanager
def fp32_convolutions():
    """cuDNN convolutions in true fp32 (by default torch runs them in TF32 on CUDA: 1 level off on
    0.15-0.17 % of values at 2K-4K, measured on an H200, against 3-5e-6 without)."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


CLIP_FPS, CLIP_SAMPLE_RATE, CLIP_AUDIO_FRAME = 12, 48000, 1024   # the tests' video clips


def write_video(path, frames: list[np.ndarray], codec: str = "ffv1", pix_fmt: str = "bgr0", audio: bool = True,
                rotation: int = 0, colour: dict | None = None, options: dict | None = None,
                tracks: list[tuple[str, str, dict, str | None]] | None = None, tags: dict | None = None,
                chapters: list[dict] | None = None) -> None:
    """A clip written with PyAV: `frames` ((H, W, 3) uint8 RGB, converted to pix_fmt with colour's colorspace)
    at CLIP_FPS, with `colour` set on the codec context, the encoder's `options` and a display rotation in
    degrees, plus audio tracks of the same length playing 440 Hz: `tracks` ((encoder, layout, tags, disposition
    name or None) each), by default with `audio` one mono AAC track; the container's `tags` and `chapters` (PyAV's
    chapter dicts)."""
    import av

    tracks = tracks if tracks is not None else [("aac", "mono", {}, None)] if audio else []
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        container.metadata.update(tags or {})
        if chapters:
            container.set_chapters(chapters)
        video = container.add_stream(codec, rate=CLIP_FPS)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.options = options or {}
        if rotation:
            video.set_display_rotation(rotation)
        for name, value in (colour or {}).items():
            setattr(video.codec_context, name, value)
        sounds = []
        for encoder, layout, track_tags, disposition in tracks:
            sound = container.add_stream(encoder, rate=CLIP_SAMPLE_RATE, layout=layout)
            sound.metadata.update(track_tags)
            if disposition:
                sound.disposition = getattr(av.stream.Disposition, disposition)
            sounds.append((sound, layout))
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=pix_fmt, dst_colorspace=(colour or {}).get("colorspace"))
            frame.pts, frame.time_base = i, Fraction(1, CLIP_FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        t = np.arange(CLIP_SAMPLE_RATE * len(frames) // CLIP_FPS) / CLIP_SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for sound, layout in sounds:
            samples = np.tile(tone, (1 if layout == "mono" else 2, 1))
            step = sound.codec_context.frame_size or CLIP_AUDIO_FRAME      # Opus takes 960 samples, AAC 1024
            for start in range(0, samples.shape[1], step):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + step]),
                                                   format="fltp", layout=layout)     # the encoder resamples
                chunk.sample_rate, chunk.pts, chunk.time_base = CLIP_SAMPLE_RATE, start, Fraction(1, CLIP_SAMPLE_RATE)
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))


def token_inputs(g: torch.Generator, batch: int, n: int, dim: int, hole_share: float = 0.5) -> tuple:
    """The copy steps' token tensors drawn from g, on the CPU: random unit q, k (batch, n, dim); about hole_share of
    the tokens holes; ~90 % of the known ones allowed keys -> (q, k, hole, key_ok)."""
    q = torch.nn.functional.normalize(torch.randn(batch, n, dim, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(batch, n, dim, generator=g), dim=-1)
    hole = torch.rand(batch, n, generator=g) < hole_share
    key_ok = ~hole & (torch.rand(batch, n, generator=g) < 0.9)
    return q, k, hole, key_ok


def propagation_inputs(batch: int, grid_h: int, grid_w: int, dim: int, candidates: int, colour_weight: float, seed: int,
                       device: str = "cpu", dtype: torch.dtype = torch.float32,
                       border_continuity: float = 0.0) -> tuple:
    """`patchmatch.propagate_sources`' arguments up to colour_weight: `token_inputs` (q, k in dtype); random
    candidates (some not allowed keys); random colours; the start from `patchmatch.start_sources`, with
    border_continuity > 0 the known tokens beside the hole set to their look-alikes (`border_lookalikes`). On
    random unit vectors no two options' scores lie within float rounding, so every implementation must choose
    the same sources."""
    from rethined_engine.model.patchmatch import border_lookalikes, start_sources

    g = torch.Generator().manual_seed(seed)
    n = grid_h * grid_w
    q, k, hole, key_ok = token_inputs(g, batch, n, dim)
    options = torch.randint(0, n, (batch, n, candidates), generator=g)
    colours, expected = torch.rand(batch, n, 3, generator=g), torch.rand(batch, n, 3, generator=g)
    q, k, hole, key_ok, options, colours, expected = (t.to(device) for t in (q, k, hole, key_ok, options, colours,
                                                                                expected))
    q, k = q.to(dtype), k.to(dtype)
    source, own_score, valid, has_key = start_sources(q, k, options, hole, key_ok, colours, expected, colour_weight)
    if border_continuity > 0.0:
        source = border_lookalikes(k, has_key, key_ok, source, grid_w)
    return q, k, options, own_score, valid, has_key, key_ok, source, grid_w, colours, expected, colour_weight


@pytest.fixture
def gpu_hr_tile(monkeypatch):
    """The HR kernel's GPU tile (1 x 32 px) also under the Triton interpreter, which otherwise runs 4 x 32 px tiles
    (`kernels.hr_upscale.TILE_PIXELS`: a quarter of the programs; same kernel and edge masks). No effect on CUDA."""
    from rethined_engine.kernels import hr_upscale
    monkeypatch.setattr(hr_upscale, "TILE_PIXELS", hr_upscale.TILE_PIXELS_GPU)


@pytest.fixture
def flows_close():
    """A check of two whole DIS flows (B, 2, h, w) computed with and without a Triton kernel: the search's early stop
    and its propagation take discrete decisions on SSDs summed in another order, so a near tie may go either way on
    a few patches; all but those agree to 1e-2 px."""
    def check(fused: torch.Tensor, plain: torch.Tensor) -> None:
        gap = (fused - plain).abs()
        far = (gap > 1e-2).float().mean().item()
        assert gap.median().item() < 1e-3 and far < 0.01, (gap.median().item(), far)
    return check
