"""The torch-free deployed pipeline (contract, planning, buffers) with onnxruntime standing in for
TensorRT and the numpy HR stage for the CUDA kernel; TensorRT itself where installed with a GPU."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rethined_engine import Engine
from rethined_engine.deploy.onnx_export import export_onnx
from rethined_engine.deploy.pipeline import DeployedPipeline, LRSizeRange
from rethined_engine.deploy.tensorrt_build import BuildSettings, plan_info, profile_shapes, sidecar_path, trtexec_command
from rethined_engine.deploy.tensorrt_runtime import buffer_plan, load_plan_info, parse_device
from rethined_engine.geometry import plan
from rethined_engine.train.masks import random_mask
from rethined_engine.weights import load_model

from conftest import onnxruntime_pipeline  # noqa: E402

ort = pytest.importorskip("onnxruntime")
TIE_FRACTION = 1e-3  # values off by more than one level (top-K near-ties), as in test_deploy


SAMPLE = Path(__file__).resolve().parents[1] / "rethined_engine" / "assets" / "sample.jpg"


@pytest.fixture(scope="module")
def deployed(onnx_path):
    """Shipped weights through onnxruntime (random weights on noise give near-uniform attention rows,
    whose top-K ties make any two implementations differ)."""
    return onnxruntime_pipeline(onnx_path, LRSizeRange((32, 32), (512, 512)))


@pytest.fixture(scope="module")
def shipped():
    return Engine(device="cpu")


def photo(h, w):
    return np.asarray(Image.open(SAMPLE).convert("RGB").resize((w, h)))


def close_uint8(a, b):
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return (diff > 1).mean() <= TIE_FRACTION


@pytest.mark.parametrize("h,w", [(37, 53), (333, 1000), (700, 515)])
def test_matches_torch_engine_uint8(deployed, shipped, rng, h, w):
    image = photo(h, w)
    mask = random_mask(h, w, rng)
    out = deployed.inpaint(image, mask)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert close_uint8(out, shipped.inpaint(image, mask))
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])


def test_float_input_batch_and_pil(deployed, shipped, rng):
    image = np.stack([photo(90, 130), photo(90, 130)[::-1]]).astype(np.float32) / 255.0
    mask = random_mask(90, 130, rng)
    out = deployed.inpaint(image, mask)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert (np.abs(out - shipped.inpaint(image, mask)) > 1e-4).mean() <= TIE_FRACTION
    np.testing.assert_array_equal(out[:, mask == 0], image[:, mask == 0])
    np.testing.assert_array_equal(out[1], deployed.inpaint(image[1], mask))
    pil = deployed.inpaint(Image.fromarray((image[0] * 255).astype(np.uint8)), Image.fromarray(mask.astype(np.uint8) * 255))
    assert isinstance(pil, Image.Image) and pil.size == (130, 90)


def test_contract_edges(deployed, rng):
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(deployed.inpaint(image, np.zeros((40, 60), bool)), image)
    with pytest.warns(RuntimeWarning, match="whole image"):
        deployed.inpaint(image, np.ones((40, 60), bool))
    with pytest.raises(TypeError, match="img: this backend takes numpy"):
        deployed.inpaint(torch.zeros(3, 40, 60), np.zeros((40, 60)))
    with pytest.raises(ValueError, match="mask: shape"):
        deployed.inpaint(image, np.zeros((41, 60)))
    with pytest.raises(ValueError, match="RGBA"):
        deployed.inpaint(np.zeros((40, 60, 4), np.uint8), np.zeros((40, 60)))
    with pytest.raises(ValueError, match="NaN"):
        deployed.inpaint(np.full((40, 60, 3), np.nan, np.float32), np.zeros((40, 60)))


def test_static_plan_refuses_other_sizes(deployed, rng):
    static = DeployedPipeline(deployed.config, deployed.lr_runner, LRSizeRange((512, 512), (512, 512)))
    image = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="--dynamic"):
        static.inpaint(image, random_mask(300, 200, rng))


def test_build_settings_profiles_and_trtexec(onnx_path):
    info = plan_info(onnx_path, BuildSettings())
    cfg = load_model().cfg
    assert info["dynamic"] and info["lr_min"] == [32, 32] and info["lr_max"] == [512, 512]
    assert info["topk"] == cfg.hr_topk  # the exported graph keeps the shipped file's top-K
    shapes = profile_shapes(cfg, BuildSettings(opt_size=(1080, 1920), max_batch=2))
    assert shapes["image"] == ((1, 3, 32, 32), (1, 3, 288, 480), (2, 3, 512, 512))
    assert shapes["key_inside"][2] == (2, 1, 64, 64)
    cmd = " ".join(trtexec_command(onnx_path, "lr.plan", BuildSettings(), cfg, dynamic=True))
    for flag in ("--fp16", "--saveEngine=lr.plan", "--memPoolSize=workspace:1024M", "--timingCacheFile=timing.cache",
                 "--minShapes=image:1x3x32x32,mask:1x1x32x32,key_inside:1x1x4x4",
                 "--maxShapes=image:1x3x512x512"):
        assert flag in cmd


def test_plan_info_needs_our_metadata(tmp_path):
    from onnx import TensorProto, helper, save

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="rethined export onnx"):
        plan_info(tmp_path / "other.onnx", BuildSettings())


def test_buffer_plan_and_device_parsing():
    geom = plan(1080, 1920, load_model().cfg)
    buffers = buffer_plan(geom, 4)
    assert buffers["image"][0] == (1, 3, 288, 480) and buffers["topk_index"] == ((1, 36 * 60, 4), np.int32)
    assert buffers["hr_out"] == ((1080, 1920, 3), np.uint8)
    assert [parse_device(d) for d in (None, "cuda", "cuda:1", 2)] == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="device"):
        parse_device("cpu")


def test_engine_tensorrt_arguments(tmp_path, onnx_path):
    with pytest.raises(ValueError, match="engine_path"):
        Engine(backend="tensorrt")
    with pytest.raises(ValueError, match="engine_path"):
        Engine(engine_path="x.plan")
    with pytest.raises(FileNotFoundError, match="not found"):
        Engine(backend="tensorrt", engine_path=tmp_path / "missing.plan")
    plan_file = tmp_path / "lr.plan"
    plan_file.write_bytes(b"not a plan")
    with pytest.raises(FileNotFoundError, match="json"):
        load_plan_info(plan_file)
    sidecar_path(plan_file).write_text(json.dumps(plan_info(onnx_path, BuildSettings())))
    with pytest.raises(TypeError, match="hr_topk: fixed when the TensorRT plan is built"):
        Engine(backend="tensorrt", engine_path=plan_file, hr_topk=1)
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None:
        for host_side in ({}, {"seam_sigma": 2.0, "seam_gain": 8.0, "float_mask_threshold": 0.3, "hr_feather": 1}):
            with pytest.raises(ImportError, match="pycuda"):
                Engine(backend="tensorrt", engine_path=plan_file, **host_side)


def test_runtime_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from rethined_engine import Engine, ModelConfig\n"
            "from rethined_engine.deploy import cuda_kernels, host, pipeline, tensorrt_build, tensorrt_runtime\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.gpu
def test_tensorrt_engine_matches_torch(tmp_path, rng):
    pytest.importorskip("tensorrt")
    pytest.importorskip("pycuda")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from rethined_engine.deploy.tensorrt_build import build_plan

    onnx_file, _ = export_onnx(tmp_path / "lr.onnx", 2048, 2048, dynamic=True)
    plan_file = build_plan(onnx_file, tmp_path / "lr.plan", BuildSettings(fp16=False, timing_cache=None))
    trt_engine = Engine(backend="tensorrt", engine_path=plan_file)
    reference = Engine(device="cpu")
    for h, w in ((333, 1000), (2048, 2048)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = random_mask(h, w, rng)
        assert close_uint8(trt_engine.inpaint(image, mask), reference.inpaint(image, mask))
