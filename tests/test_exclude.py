"""`Engine.inpaint(img, mask, exclude=...)`: known pixels the fill must not copy. No token holding an excluded pixel
is a source on any backend; the excluded pixels themselves are kept."""
import numpy as np
import pytest
import torch
from PIL import Image

from rethined_engine import Engine
from rethined_engine.backends.native_backend import native_module
from rethined_engine.cli import SAMPLE_IMAGE
from rethined_engine.config import ModelConfig
from rethined_engine.geometry import plan
from rethined_engine.model.rethined import tokens_touching
from rethined_engine.train.masks import random_mask

from conftest import onnxruntime_pipeline  # noqa: E402

needs_native = pytest.mark.skipif(native_module() is None, reason="native extension not built")

TIE_FRACTION = 1e-3   # values off by more than one level (top-K near-ties), as the backends' other comparisons


def photo(h, w):
    return np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((w, h)))


def close_uint8(a, b):
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return (diff > 1).mean() <= TIE_FRACTION and (diff > 0).mean() <= 2e-3


@pytest.fixture(scope="module")
def reference():
    return Engine(backend="torch", device="cpu")


def chosen_sources(engine, image, mask, exclude=None):
    """The result and the LR network's (key_ok (N,), the source token of each hole token) of one torch-backend
    call."""
    model, seen = engine._impl.model, []
    forward_lr = model.forward_lr
    model.forward_lr = lambda *args, **kw: seen.append(forward_lr(*args, **kw)) or seen[-1]
    try:
        out = engine.inpaint(image, mask, exclude)
    finally:
        del model.forward_lr
    lr = seen[-1]
    return out, lr.key_ok[0], lr.attn.index[0, lr.query_masked[0], 0]


def token_pixels(tokens, geom):
    """(N,) bool token flags -> (H, W) bool: the pixels of those tokens' span x span HR squares."""
    span = geom.scale * geom.patch
    grid = tokens.reshape(geom.grid_h, geom.grid_w).numpy()
    return np.kron(grid, np.ones((span, span), bool))[:geom.height, :geom.width]


@pytest.mark.parametrize("h,w", [(37, 53), (333, 1000), (700, 515)])
def test_token_forms_agree(rng, h, w):
    """`Geometry.tokens_touching` (numpy, the deployed pipeline and the native backend) and
    `model.rethined.tokens_touching` (torch) flag the same tokens; tokens reaching past the image are never
    flagged."""
    geom = plan(h, w, ModelConfig())
    pixels = rng.random((2, h, w)) < 0.002
    pixels[1] = False
    pixels[1, h - 1, w - 1] = True                  # a last token that may reach past the image
    got = tokens_touching(torch.from_numpy(pixels)[:, None], geom.scale * geom.patch, geom.grid_h, geom.grid_w)
    for image in range(2):
        want = geom.tokens_touching(pixels[image])
        np.testing.assert_array_equal(got[image].numpy(), want.reshape(-1))
        assert not (want & ~geom.inside_grid()).any()
    assert got[0].any()


def test_excluded_sources_are_never_copied(reference, rng):
    """Exclude every token the fill copied: none is a key or a source any more, the fill changes, the known
    pixels (excluded ones too) stay exact."""
    h, w = 333, 500
    image, mask = photo(h, w), random_mask(h, w, rng)
    geom = plan(h, w, reference.config)
    before, _, sources = chosen_sources(reference, image, mask)
    copied = torch.zeros(geom.grid_h * geom.grid_w, dtype=torch.bool)
    copied[sources] = True
    exclude = token_pixels(copied, geom) & ~mask
    after, key_ok, sources_after = chosen_sources(reference, image, mask, exclude)
    touched = torch.from_numpy(geom.tokens_touching(exclude).reshape(-1))
    assert touched.any() and not (key_ok & touched).any()
    assert not touched[sources_after].any()
    assert (before != after).any(axis=2)[mask].mean() > 0.2
    np.testing.assert_array_equal(after[~mask], image[~mask])


def test_exclusion_reaches_a_batch_per_image(reference, rng):
    """A (B, H, W) exclusion applies image by image; a single one is shared by the batch; none excluded is the
    call without it."""
    h, w = 96, 160
    images = np.stack([photo(h, w), photo(h, w)[::-1].copy()])
    mask = random_mask(h, w, rng)
    exclude = np.zeros((2, h, w), bool)
    exclude[0, :, : w // 2] = True
    exclude &= ~mask
    batch = reference.inpaint(images, mask, exclude)
    for i in range(2):
        np.testing.assert_array_equal(batch[i], reference.inpaint(images[i], mask, exclude[i]))
    np.testing.assert_array_equal(batch[1], reference.inpaint(images[1], mask))
    none_excluded = reference.inpaint(images[0], mask, np.zeros((h, w)))
    np.testing.assert_array_equal(none_excluded, reference.inpaint(images[0], mask))
    shared = reference.inpaint(images, mask, exclude[0])
    np.testing.assert_array_equal(shared[0], batch[0])


def test_everything_excluded_still_fills(reference, rng):
    """No source left: the hole gets the coarse network's fill (no copy), the known pixels stay exact."""
    h, w = 120, 200
    image, mask = photo(h, w), random_mask(h, w, rng)
    out, key_ok, _ = chosen_sources(reference, image, mask, ~mask)
    assert not key_ok.any()
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert not np.array_equal(out, reference.inpaint(image, mask))


@needs_native
@pytest.mark.parametrize("h,w", [(37, 53), (333, 1000)])
def test_native_backend_matches_torch_with_exclusion(reference, rng, h, w):
    image, mask = photo(h, w), random_mask(h, w, rng)
    exclude = np.zeros((h, w), bool)
    exclude[:, : 2 * w // 3] = True
    exclude &= ~mask
    out = Engine(backend="native").inpaint(image, mask, exclude)
    assert close_uint8(out, reference.inpaint(image, mask, exclude))
    assert not np.array_equal(out, Engine(backend="native").inpaint(image, mask))


def test_deployed_pipeline_matches_torch_with_exclusion(reference, rng, onnx_path):
    """The TensorRT backend's pipeline (onnxruntime standing in for TensorRT, the numpy HR stage for the CUDA
    kernel): the exclusion reaches the graph's key_inside input."""
    from rethined_engine.deploy.pipeline import LRSizeRange

    deployed = onnxruntime_pipeline(onnx_path, LRSizeRange((32, 32), (512, 512)))
    h, w = 333, 1000
    image, mask = photo(h, w), random_mask(h, w, rng)
    exclude = np.zeros((h, w), bool)
    exclude[:, w // 2:] = True
    exclude &= ~mask
    out = deployed.inpaint(image, mask, exclude)
    assert close_uint8(out, reference.inpaint(image, mask, exclude))
    assert not np.array_equal(out, deployed.inpaint(image, mask))
    with pytest.raises(TypeError, match="exclude:"):
        deployed.inpaint(image, mask, torch.from_numpy(exclude))


def test_triton_backend_matches_torch_with_exclusion(rng):
    """The exclusion reaches the Triton pipeline's keys (interpreted on the CPU without CUDA)."""
    pytest.importorskip("triton")
    from rethined_engine.backends.triton_backend import TritonBackend
    from rethined_engine.config import STYLES

    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = {**STYLES["realistic"], "lr_long_side": 32, "seam_sigma": 0.0}
    fast = TritonBackend(device=device, dtype="float32", cuda_graphs=False, **settings)
    torch_engine = Engine(backend="torch", device=device, dtype="float32", **settings)
    image, mask = photo(48, 64), random_mask(48, 64, rng)
    mask[:, :32] = False
    exclude = np.zeros((48, 64), bool)
    exclude[:24, :32] = True
    got = fast.inpaint(image, mask, exclude)
    assert close_uint8(got, torch_engine.inpaint(image, mask, exclude))
    assert not np.array_equal(got, fast.inpaint(image, mask))


@pytest.mark.parametrize("exclude,error,match", [
    (np.zeros((10, 10), bool), ValueError, "exclude: shape"),
    (np.full((48, 64), np.nan), ValueError, "exclude: contains NaN"),
    ("left half", TypeError, "exclude: expected"),
    (np.zeros((48, 64), complex), TypeError, "exclude: unsupported"),
])
def test_bad_exclusion_names_the_argument(reference, exclude, error, match):
    with pytest.raises(error, match=match):
        reference.inpaint(photo(48, 64), np.ones((48, 64), bool), exclude)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exclusion_through_the_captured_graph(rng):
    """On CUDA the key grid is an input of the captured graph: calls with and without an exclusion replay one
    graph, each agreeing with eager launches, and the exclusion changes the fill."""
    from rethined_engine.backends.triton_backend import TritonBackend, uint8_images_agree

    graphed = TritonBackend(device="cuda")
    eager = TritonBackend(device="cuda", cuda_graphs=False)
    h, w = 600, 900
    image = torch.from_numpy(photo(h, w)).permute(2, 0, 1).contiguous().cuda()
    mask = torch.from_numpy(random_mask(h, w, rng)).cuda()
    exclude = torch.zeros(h, w, dtype=torch.bool, device="cuda")
    exclude[:, : w // 2] = True
    plain = graphed.inpaint(image, mask)
    excluded = graphed.inpaint(image, mask, exclude)
    assert uint8_images_agree(plain, eager.inpaint(image, mask))
    assert uint8_images_agree(excluded, eager.inpaint(image, mask, exclude))
    assert not torch.equal(plain, excluded)
    assert len(graphed._graphed.graphs) == 1
