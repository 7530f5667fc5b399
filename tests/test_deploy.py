"""Deployment path: ONNX export vs torch (onnxruntime), TensorRT static checks, the torch-free host
stages, the CUDA C HR kernel (nvcc compile here; run through CuPy where a GPU exists)."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rethined_engine import Engine, ModelConfig
from rethined_engine.cli import main as cli_main
from rethined_engine.deploy.host import blend_seams, known_tokens, prepare_lr, upscale_hr
from rethined_engine.deploy.onnx_export import INPUT_NAMES, LRNetwork, example_inputs, export_onnx
from rethined_engine.deploy.tensorrt_ops import check_graph
from rethined_engine.geometry import pad_to, plan, seam_taps
from rethined_engine.model.upscale import downsample, hf_band_gains
from rethined_engine.train.masks import random_mask
from rethined_engine.weights import load_model, save_inference_weights

from conftest import hr_key_tokens, make_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

CUDA_SOURCE = Path(__file__).resolve().parents[1] / "csrc" / "cuda" / "hr_upscale.cu"
SAMPLE = Path(__file__).resolve().parents[1] / "rethined_engine" / "assets" / "sample.jpg"
GRAPH_ATOL = 1e-5   # fp32 graph vs fp32 torch: same ops, different kernels
HR_MAX_LSB = 1      # uint8: float32 summation order may flip a rounding by one level ...
HR_MAX_FLIPPED = 2e-3
HR_MAX_TIE = 1e-3   # ... and end to end, a top-K near-tie may pick another, equally weighted source


def run_onnx(session, inputs):
    return session.run(None, {name: np.ascontiguousarray(x.numpy() if hasattr(x, "numpy") else x)
                              for name, x in zip(INPUT_NAMES, inputs)})


def assert_graph_matches(session, net, inputs):
    """LR result to GRAPH_ATOL; top-K: the same weights (both bands), at indices that are a valid top-K of
    the torch attention (near-equal keys may be picked in either order or swapped at the K-th place)."""
    with torch.no_grad():
        ref = [t.numpy() for t in net(*inputs)]
        out = net.model.forward_lr(inputs[0], inputs[1], inputs[2].flatten(1) > 0.5)
    got = run_onnx(session, inputs)       # lr_result, topk_weight, topk_fine_weight, topk_index
    assert got[0].shape == ref[0].shape and got[3].dtype == np.int32
    np.testing.assert_allclose(got[0], ref[0], atol=GRAPH_ATOL, rtol=0)
    for band in (1, 2):
        np.testing.assert_allclose(np.sort(got[band], -1), np.sort(ref[band], -1), atol=GRAPH_ATOL, rtol=0)
    index = torch.from_numpy(got[3]).long()
    row_sum = out.attn.topk(net.topk, dim=-1).values.sum(-1, keepdim=True)
    gates = out.key_ok.float().gather(1, index.flatten(1)).reshape(index.shape) * out.query_masked.float()[..., None]
    cfg = net.model.cfg
    gains = hf_band_gains(out.key_ok.reshape(inputs[2].shape), cfg.hf_decay, cfg.hf_fine_decay, cfg.hf_mid_gain)
    for band, gain in zip((1, 2), gains):
        expected = out.attn.gather(-1, index) / row_sum * gates * gain[..., None]
        np.testing.assert_allclose(got[band], expected.numpy(), atol=GRAPH_ATOL, rtol=0)


@pytest.fixture(scope="module")
def mid_gain_weights(tmp_path_factory):
    """Two HF bands with the coarser one scaled (hf_mid_gain < 1), as the shipped file has them: the graph's
    two weight outputs differ, and each carries its gain."""
    path = tmp_path_factory.mktemp("mid_gain") / "mid_gain.safetensors"
    save_inference_weights(make_model(cfg=ModelConfig(hf_decay=1.0, hf_fine_decay=0.0, hf_mid_gain=0.3)), path)
    return path


@pytest.fixture(scope="module")
def dynamic_graph(tmp_path_factory, weights_path):
    path, _ = export_onnx(tmp_path_factory.mktemp("onnx") / "lr_dynamic.onnx", 700, 1000, dynamic=True,
                          weights=weights_path)
    return path


@pytest.mark.parametrize("size", [(256, 256), (600, 1100)])
def test_static_graph_matches_torch(tmp_path, mid_gain_weights, size):
    path, geom = export_onnx(tmp_path / "lr.onnx", *size, weights=mid_gain_weights)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = load_model(mid_gain_weights)
    assert model.cfg.hf_mid_gain == 0.3
    net = LRNetwork(model, model.cfg.hr_topk).eval()
    assert_graph_matches(session, net, example_inputs(*geom.lr_size, geom.patch, seed=1))


@pytest.mark.parametrize("lr_size,batch", [((128, 96), 1), ((256, 384), 2), ((512, 512), 1)])
def test_dynamic_graph_matches_torch(dynamic_graph, weights_path, lr_size, batch):
    session = ort.InferenceSession(str(dynamic_graph), providers=["CPUExecutionProvider"])
    net = LRNetwork(load_model(weights_path), load_model(weights_path).cfg.hr_topk).eval()
    assert_graph_matches(session, net, example_inputs(*lr_size, 8, batch=batch, seed=2))


@pytest.mark.parametrize("settings", [dict(copy_base_feather=4), dict(copy_border_sigma=2.0, key_hole_clearance=1),
                                      dict(copy_border_sigma=2.0, colour_anchor=0.5),
                                      dict(colour_anchor=0.7, colour_anchor_flat=True),
                                      dict(colour_anchor=0.7, colour_anchor_flat=True, flat_fill_form="continued_flat"),
                                      dict(key_hole_clearance=1, key_hole_clearance_max_loss=0.15,
                                           copy_detail_weight=0.03, copy_detail_min_spread=0.15),
                                      dict(coarse_prefill="membrane", colour_anchor=0.7)])
def test_copy_variants_export_and_pass_tensorrt_checks(tmp_path, settings):
    """lr_texture="copy" with two bands (the blurred base cross-fades wide, the detail keeps its contrast), the
    border match (a membrane of the border mismatch), the colour anchor (jump flooding; and a membrane where the
    surroundings are flat, `model.flat`), the sources' clearance and detail term gated on the hole's spread, or the
    coarse CNN's membrane prefill: the graph parses for TensorRT and its LR result matches torch."""
    path = tmp_path / "copy_variant.safetensors"
    save_inference_weights(make_model(cfg=ModelConfig(lr_texture="copy", hr_topk=1, **settings)), path)
    graph, geom = export_onnx(tmp_path / "lr.onnx", 300, 500, weights=path)
    assert check_graph(graph) == []
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    model = load_model(path)
    net = LRNetwork(model, model.cfg.hr_topk).eval()
    inputs = example_inputs(*geom.lr_size, geom.patch, seed=3)
    with torch.no_grad():
        ref = net(*inputs)[0].numpy()
    np.testing.assert_allclose(run_onnx(session, inputs)[0], ref, atol=GRAPH_ATOL, rtol=0)


def test_exported_graphs_pass_tensorrt_checks(dynamic_graph):
    assert check_graph(dynamic_graph) == []


def test_tensorrt_check_flags_bad_graphs():
    from onnx import TensorProto, helper

    big = helper.make_tensor("big", TensorProto.FLOAT, [1], [1e5])
    tiny = helper.make_tensor("tiny", TensorProto.FLOAT, [1], [1e-12])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "big"], ["y"]), helper.make_node("Add", ["y", "tiny"], ["z"]),
         helper.make_node("NonZero", ["z"], ["out"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("out", TensorProto.INT64, [1, None])], initializer=[big, tiny])
    problems = " | ".join(check_graph(helper.make_model(graph)))
    assert "NonZero" in problems and "'big'" in problems and "'tiny'" in problems


def test_topk_zero_is_refused(weights_path):
    with pytest.raises(ValueError, match="topk"):
        LRNetwork(load_model(weights_path), 0)


@pytest.mark.parametrize("h,w,scale", [(53, 37, 1), (187, 153, 3), (250, 64, 4)])
def test_host_prepare_matches_torch_downsample(rng, h, w, scale):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = random_mask(h, w, rng).astype(bool)
    geom = plan(h, w, ModelConfig(lr_long_side=64))
    assert geom.scale == scale
    lr = prepare_lr(image, mask, geom)
    t_img = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    t_mask = torch.from_numpy(mask)[None, None].float()
    ref_img, ref_mask = downsample(pad_to(t_img * (1 - t_mask), geom.padded_size), pad_to(t_mask, geom.padded_size), scale)
    np.testing.assert_allclose(lr.image, ref_img.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(lr.mask, ref_mask.numpy())
    np.testing.assert_array_equal(lr.key_inside[0, 0], geom.key_inside_grid())


def torch_free_pipeline(session, image, mask, cfg):
    geom = plan(*image.shape[:2], cfg)
    result, weight, fine_weight, index = run_onnx(session, prepare_lr(image, mask, geom))
    out = upscale_hr(image, mask, result, weight[0], fine_weight[0], index[0], geom, cfg.hr_feather,
                     cfg.hr_fade_reflect)
    return blend_seams(image, mask, out, seam_taps(cfg.seam_sigma), cfg.seam_gain) if cfg.seam_sigma > 0 else out


@pytest.fixture(scope="module")
def shipped_lr_runtime(tmp_path_factory):
    """The shipped weights' LR network exported with dynamic sizes, loaded in onnxruntime."""
    path, _ = export_onnx(tmp_path_factory.mktemp("shipped") / "lr.onnx", 1024, 1024, dynamic=True)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("size", [(37, 53), (333, 1000), (720, 1280), (1030, 2050)])
def test_onnx_plus_host_matches_engine_on_a_photo(shipped_lr_runtime, rng, size):
    """The whole deployed pipeline (numpy prep -> ONNX LR network -> numpy HR stage and seam blend) with the shipped
    weights reproduces `Engine().inpaint` (torch backend, fp32) on a real photograph."""
    engine = Engine(device="cpu")
    image = np.asarray(Image.open(SAMPLE).convert("RGB").resize(size[::-1]))
    mask = random_mask(*size, rng).astype(bool)
    got = torch_free_pipeline(shipped_lr_runtime, image, mask, engine.config)
    ref = engine.inpaint(image, mask)
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert (diff > HR_MAX_LSB).mean() <= HR_MAX_TIE and (diff > 0).mean() <= HR_MAX_FLIPPED
    np.testing.assert_array_equal(got[~mask], image[~mask])


def test_cli_export(tmp_path, weights_path, capsys):
    out = tmp_path / "cli.onnx"
    assert cli_main(["export", "onnx", str(out), "--size", "300x500", "--dynamic", "--weights", str(weights_path)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "LR 320x512" in text and "every op supported" in text
    with pytest.raises(SystemExit, match="--size"):
        cli_main(["export", "onnx", str(out), "--size", "300"])


NVCC_ARCHS = ("sm_87", "sm_90")  # Jetson Orin, H100


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("arch", NVCC_ARCHS)
def test_cuda_kernel_compiles(tmp_path, arch):
    cmd = ["nvcc", "-c", f"-arch={arch}", "-Werror", "all-warnings", "-o", str(tmp_path / "hr.o"), str(CUDA_SOURCE)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("size", [(333, 1000), (2048, 2048), (2160, 3840)])
@pytest.mark.parametrize("feather", [0, 1, 2])
def test_cuda_kernel_matches_host(rng, size, feather):
    """K = 4 sources and both bands (feather 0), or one copied source per token and one band (feather > 0:
    the cross-faded texture, `host.feathered_texture`), against the numpy HR stage."""
    cp = pytest.importorskip("cupy")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from rethined_engine.deploy.cuda_kernels import launch_hr_upscale_cupy

    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = random_mask(h, w, rng).astype(bool)
    geom = plan(h, w, load_model().cfg)
    lr = rng.random((1, 3, *geom.lr_size), dtype=np.float32)
    tokens, k = geom.grid_h * geom.grid_w, 4 if feather == 0 else 1
    index = rng.choice(hr_key_tokens(mask, geom), (tokens, k)).astype(np.int32)   # the kernel reads sources unmasked
    weight = rng.random((tokens, k), dtype=np.float32)
    weight /= weight.sum(-1, keepdims=True)
    weight[::4, -1] = 0.0                                     # zero weights are skipped (no copy)
    fine_weight = weight * rng.uniform(-0.5, 2.0, (tokens, 1)).astype(np.float32)
    fine_weight[::3] = 0.0                                    # one-band tokens
    if feather > 0:
        weight *= rng.uniform(0.3, 1.0, (tokens, 1)).astype(np.float32)    # a texture gain
        fine_weight = np.zeros_like(weight)
    ref = upscale_hr(image, mask, lr, weight, fine_weight, index, geom, feather)
    out = cp.full((h, w, 3), 77, dtype=cp.uint8)              # poisoned
    launch_hr_upscale_cupy(cp.asarray(image), cp.asarray(mask.astype(np.uint8)), cp.asarray(lr), cp.asarray(weight),
                           cp.asarray(fine_weight), cp.asarray(index), cp.asarray(known_tokens(mask, geom)), out, geom,
                           feather)
    diff = np.abs(cp.asnumpy(out).astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= HR_MAX_LSB and (diff > 0).mean() <= HR_MAX_FLIPPED
