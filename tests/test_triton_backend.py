"""Engine(backend="triton") end to end vs the torch backend, and its LR network (Triton projection +
attention kernels around the torch CNN) vs the exported `LRNetwork`. CPU: the Triton interpreter."""
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

pytest.importorskip("triton")
from rethined_engine import ModelConfig  # noqa: E402
from rethined_engine.config import STYLES  # noqa: E402
from rethined_engine.geometry import plan  # noqa: E402
from rethined_engine.backends.triton_backend import TritonBackend, TritonLRNetwork, uint8_images_agree  # noqa: E402
from rethined_engine.bench.op_count import OpCounter  # noqa: E402
from rethined_engine.deploy.onnx_export import LRNetwork, example_inputs  # noqa: E402
from rethined_engine.train.masks import random_mask  # noqa: E402

from conftest import make_model  # noqa: E402


def assert_lr_outputs_match(got, want):
    """TritonLRNetwork's outputs against LRNetwork's: the LR result and both bands' weights everywhere, the
    top-K indices wherever a weight is live (a zero weight's index is never read)."""
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[2], want[2], rtol=0, atol=1e-5)
    live = want[1] != 0
    assert got[3].dtype == want[3].dtype == torch.int32
    assert torch.equal(got[3][live], want[3][live])             # random weights: no near-ties here


# two bands (hf_fine_decay set) and hf_mid_gain < 1: both weight outputs are nonzero and differ
@pytest.mark.parametrize("lr_size,hf_decay,hf_fine_decay,hf_mid_gain", [((64, 96), 0.0, 0.0, 0.3),
                                                                        ((96, 160), 0.7, 2.0, 0.25)])
def test_lr_network_matches_exported_graph(lr_size, hf_decay, hf_fine_decay, hf_mid_gain):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = ModelConfig(hf_decay=hf_decay, hf_fine_decay=hf_fine_decay, hf_mid_gain=hf_mid_gain)
    model = make_model(cfg=cfg).to(device)
    image, mask, key_inside = (t.to(device) for t in example_inputs(*lr_size, model.cfg.patch_size, seed=lr_size[0]))
    key_inside[..., -1] = 0                                     # a column of tokens outside the image
    with torch.inference_mode():
        got = TritonLRNetwork(model, 4)(image, mask, key_inside)
        want = LRNetwork(model, 4)(image, mask, key_inside)
    live = want[1] != 0
    assert live.any() and (want[2][live] != 0).all() and not torch.allclose(want[1], want[2])
    assert len(torch.unique(want[3][live])) > 1
    assert_lr_outputs_match(got, want)
    # the comparison reads the indices: one live index moved to another key is caught
    wrong = got[3].clone()
    row, k = live.nonzero()[0, 1:].tolist()
    wrong[0, row, k] = (wrong[0, row, k] + 1) % wrong.shape[1]
    with pytest.raises(AssertionError):
        assert_lr_outputs_match((*got[:3], wrong), want)


@pytest.fixture(scope="module")
def triton_and_torch():
    from rethined_engine import Engine

    device = "cuda" if torch.cuda.is_available() else "cpu"
    small = {"lr_long_side": 64}   # scale > 1 already at ~100 px: fast in the interpreter
    return (Engine(backend="triton", device=device, dtype="float32", **small),
            Engine(backend="torch", device=device, dtype="float32", **small))


@pytest.mark.parametrize("h,w", [(37, 53), pytest.param(90, 130, marks=pytest.mark.slow)])
def test_triton_backend_matches_torch_backend(triton_and_torch, rng, h, w):
    """End to end (interpreter on the CPU), HR scales 1 and 3: uint8 numpy HWC, and torch CHW at scale 1."""
    fast, reference = triton_and_torch
    from PIL import Image
    from rethined_engine.cli import SAMPLE_IMAGE

    image = np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((w, h)))
    mask = random_mask(h, w, rng)
    got, ref = fast.inpaint(image, mask), reference.inpaint(image, mask)
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert (diff > 1).mean() <= 1e-3 and (diff > 0).mean() <= 2e-3
    if (h, w) == (37, 53):                        # torch CHW in too (at scale 1: a second call at scale 3 costs 35 s)
        chw = torch.from_numpy(image).permute(2, 0, 1)
        assert torch.equal(fast.inpaint(chw, torch.from_numpy(mask)), torch.from_numpy(got).permute(2, 0, 1))


def test_triton_backend_seam_blend_matches_torch_backend(rng):
    """With `seam_sigma` on (`kernels/seam_blend.py` after the HR kernel), at HR scale 3."""
    from PIL import Image
    from rethined_engine import Engine
    from rethined_engine.cli import SAMPLE_IMAGE

    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = {"lr_long_side": 32, "seam_sigma": 2.0, "seam_gain": 8.0}
    fast = Engine(backend="triton", device=device, dtype="float32", **settings)
    reference = Engine(backend="torch", device=device, dtype="float32", **settings)
    image = np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((96, 64)))
    mask = random_mask(64, 96, rng)
    got, ref = fast.inpaint(image, mask), reference.inpaint(image, mask)
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert (diff > 1).mean() <= 1e-3 and (diff > 0).mean() <= 2e-3
    assert not np.array_equal(ref, Engine(backend="torch", device=device, dtype="float32", lr_long_side=32,
                                             seam_sigma=0.0).inpaint(image, mask))


@pytest.mark.parametrize("feather,key_edge,reflect", [pytest.param(1, 0, False, marks=pytest.mark.slow),
                                                      (2, 1, True)])
def test_triton_backend_feathered_texture_matches_torch_backend(rng, feather, key_edge, reflect):
    """hr_feather > 0 (copies, one band, hr_topk = 1) at HR scale 4: the HR kernel's cross-faded texture, not
    the torch path, against the torch backend; with key_edge_tokens the image's outermost tokens are no
    sources, but a copy beside them still fades into their own texture; with hr_fade_reflect the kernel's
    mirrored reads."""
    from PIL import Image
    from rethined_engine import Engine
    from rethined_engine.cli import SAMPLE_IMAGE
    from rethined_engine.config import STYLES

    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = {**STYLES["realistic"], "lr_long_side": 32, "seam_sigma": 0.0, "hr_feather": feather,
                "key_edge_tokens": key_edge, "hr_fade_reflect": reflect}
    fast = TritonBackend(device=device, dtype="float32", cuda_graphs=False, **settings)
    assert fast.lr_network is not None
    reference = Engine(backend="torch", device=device, dtype="float32", **settings)
    image = np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((128, 96)))
    mask = random_mask(96, 128, rng)
    mask[:, :64] = False              # known tokens to copy from
    got, ref = fast.inpaint(image, mask), reference.inpaint(image, mask)
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert (diff > 1).mean() <= 1e-3 and (diff > 0).mean() <= 2e-3, ((diff > 1).mean(), (diff > 0).mean())
    pasted = Engine(backend="torch", device=device, dtype="float32", **{**settings, "hr_feather": 0})
    assert not np.array_equal(ref, pasted.inpaint(image, mask))


def test_fully_masked_image_in_a_batch_alone_takes_the_torch_path(rng, monkeypatch):
    """A batch with one fully masked image: that image gets the coarse result (torch path, with the
    warning), the other goes to the Triton pipeline (here a stand-in that inverts the hole: the routing is under
    test, the pipeline is compared elsewhere); each equals its result on its own."""
    from PIL import Image
    from rethined_engine.cli import SAMPLE_IMAGE

    device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = TritonBackend(device=device, dtype="float32", cuda_graphs=False, lr_long_side=64)
    image = np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((53, 37)))
    images = np.stack([image, image[::-1]])
    masks = np.stack([random_mask(37, 53, rng), np.ones((37, 53), bool)])
    calls = []
    monkeypatch.setattr(backend, "_inpaint_one",
                        lambda img, hole, keys: calls.append(1) or torch.where(hole.bool(), 255 - img, img))
    with pytest.warns(RuntimeWarning, match="whole image"):
        batch = backend.inpaint(images, masks)
    assert len(calls) == 1
    np.testing.assert_array_equal(batch[0][masks[0]], 255 - images[0][masks[0]])   # the stand-in's fill
    np.testing.assert_array_equal(batch[0], backend.inpaint(images[0], masks[0]))
    with pytest.warns(RuntimeWarning, match="whole image"):
        np.testing.assert_array_equal(batch[1], backend.inpaint(images[1], masks[1]))
    assert len(calls) == 2


def test_triton_backend_needs_cuda_or_interpreter(monkeypatch, weights_path):
    from rethined_engine import Engine

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="CUDA"):
        Engine(weights=weights_path, backend="triton", device="cpu")


@pytest.mark.slow
def test_triton_backend_fp16_is_as_close_as_torch_fp16(triton_and_torch, rng):
    """fp16 (the CUDA default): the triton backend's error vs the fp32 torch backend is at most the torch
    backend's own fp16 error (x2 + 0.1 % of values), and never more than 2 uint8 levels."""
    from PIL import Image
    from rethined_engine import Engine
    from rethined_engine.cli import SAMPLE_IMAGE

    _, reference = triton_and_torch
    small = {"lr_long_side": 64}
    fast16 = Engine(backend="triton", device=reference.device, dtype="float16", **small)
    torch16 = Engine(backend="torch", device=reference.device, dtype="float16", **small)
    h, w = 90, 130
    image = np.array(Image.open(SAMPLE_IMAGE).convert("RGB").resize((w, h)))
    mask = random_mask(h, w, rng)
    want = reference.inpaint(image, mask).astype(np.int16)
    err_triton = np.abs(fast16.inpaint(image, mask).astype(np.int16) - want)
    err_torch = np.abs(torch16.inpaint(image, mask).astype(np.int16) - want)
    assert err_triton.max() <= 2
    assert (err_triton > 0).mean() <= 2 * (err_torch > 0).mean() + 1e-3


def test_cuda_graphs_argument(weights_path):
    from rethined_engine import Engine

    with pytest.raises(ValueError, match="cuda_graphs"):
        Engine(weights_path, backend="triton", cuda_graphs="yes")
    if not torch.cuda.is_available():
        assert TritonBackend(weights_path, device="cpu")._graphed is None   # interpreter: no graphs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("style", ["realistic", "fast", "smooth"])
def test_cuda_graph_replay_matches_eager(weights_path, rng, style):
    """Every style is captured (no host sync inside), graph replays equal eager launches on new inputs of a
    captured shape and on a second shape, and a returned image is not overwritten by the next call."""
    from rethined_engine import Engine

    graphed = TritonBackend(weights_path, device="cuda", **STYLES[style])
    eager = Engine(weights_path, backend="triton", device="cuda", cuda_graphs=False, style=style)
    first = None
    for h, w in [(600, 900), (600, 900), (1100, 700), (600, 900)]:
        image = torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)).cuda()
        mask = torch.from_numpy(random_mask(h, w, rng)).cuda()
        got = graphed.inpaint(image, mask)
        assert uint8_images_agree(got, eager.inpaint(image, mask))
        if first is None:
            first, kept = got, got.clone()
    assert torch.equal(first, kept)
    assert len(graphed._graphed.graphs) == 2 and all(g is not None for g in graphed._graphed.graphs.values())


HOST_SYNC_OPS = {"aten::nonzero", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::masked_select",
                 "aten::lift_fresh", "aten::unique", "aten::_unique2", "aten::unique_consecutive"}


class HostSyncSpy(TorchDispatchMode):
    """Records the ops that, on CUDA, wait for the device or copy from host memory (a tensor's value read on
    the host, a data-dependent size, a tensor made from Python data), which a captured CUDA graph cannot
    hold; indexing by a bool tensor counts too (it is a nonzero)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        bool_index = name.startswith("aten::index") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ())
        if name in HOST_SYNC_OPS or bool_index:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("style", ["realistic", pytest.param("fast", marks=pytest.mark.slow),
                                   pytest.param("smooth", marks=pytest.mark.slow)])
def test_graphed_pipeline_has_no_host_sync(weights_path, rng, style):
    """What a CUDA graph captures (`_inpaint_one` with the LR network a CUDA backend builds, compact=False)
    issues no host sync once the per-shape constants are cached (the graph's eager warm-up calls cache them),
    and gives the compact network's result. Without CUDA, the interpreter on the CPU stands in."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = TritonBackend(weights_path, device=device, dtype="float32", lr_long_side=64, cuda_graphs=False,
                            **STYLES[style])
    h, w = 40, 64                                                # HR scale 1: the HR kernel is slow interpreted
    image = torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)).to(device)
    hole = torch.from_numpy(random_mask(h, w, rng)).to(device)
    keys = backend._grids(plan(h, w, backend.config))[0]
    backend.lr_network = TritonLRNetwork(backend.model, backend.config.hr_topk, compact=True)
    want = backend._inpaint_one(image, hole, keys)
    backend.lr_network = TritonLRNetwork(backend.model, backend.config.hr_topk, compact=False)
    spy, reads = HostSyncSpy(), OpCounter()           # the interpreter's own copies to numpy are not counted
    with spy, reads.count_host_reads():                          # copies to the host (tolist, cpu) too
        got = backend._inpaint_one(image, hole, keys)
    assert spy.ops == [] and not reads.syncs
    assert torch.equal(got, want)
    # the spy sees the compact copy path's syncs
    lr_inputs = [t.to(device) for t in example_inputs(64, 96, backend.model.cfg.patch_size, seed=1)]
    with spy:
        TritonLRNetwork(backend.model, backend.config.hr_topk, compact=True)(*lr_inputs)
    assert ("aten::nonzero" in spy.ops) == (style != "smooth")


def test_uint8_images_agree():
    a = torch.zeros(3, 40, 50, dtype=torch.uint8)
    b = a.clone()
    assert uint8_images_agree(a, b)
    b[0, 0, 0] = 1                                      # one level in 1 of 6000 values
    assert uint8_images_agree(a, b)
    b[0, 0, 1] = 2                                      # two levels
    assert not uint8_images_agree(a, b)
    b = a.clone()
    b[0, :10] = 1                                       # one level in 500 of 6000 values
    assert not uint8_images_agree(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_that_disagrees_with_eager_is_not_used():
    """A function whose output depends on host state frozen at capture: the check catches it, with a warning."""
    from rethined_engine.backends.cuda_graph import GraphedFunction

    calls = []

    def host_dependent(x):
        calls.append(1)
        return x + len(calls)                           # the graph freezes the count seen at capture

    graphed = GraphedFunction(host_dependent)
    x = torch.zeros(4, device="cuda")
    with pytest.warns(RuntimeWarning, match="disagrees"):
        graphed(x)
    assert list(graphed.graphs.values()) == [None]
    assert torch.equal(graphed(x), x + len(calls))     # eager from now on
