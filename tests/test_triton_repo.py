"""`rethined export triton-repo`: the files it writes, config.pbtxt against Triton's ModelConfig protobuf, and
the Python-backend model.py run against a stand-in `triton_python_backend_utils` (it checks our model code:
request -> Engine -> response; tests/test_triton_server.py runs the real server)."""
import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from rethined_engine import Engine
from rethined_engine.cli import main as cli_main
from rethined_engine.deploy.triton_repo import (INPUT_EXCLUDE, INPUT_IMAGE, INPUT_MASK, MODEL_SOURCE, MODEL_VERSION,
                                                OUTPUT_IMAGE, PARAMETERS, WEIGHTS_FILE, TritonRepoConfig,
                                                engine_arguments, write_triton_repo)
from rethined_engine.weights import DEFAULT_WEIGHTS

from conftest import onnxruntime_pipeline


def test_writes_config_and_model(tmp_path):
    model_dir = write_triton_repo(tmp_path, TritonRepoConfig(style="smooth", instances=2))
    assert model_dir == tmp_path / "rethined"
    assert (model_dir / MODEL_VERSION / "model.py").read_bytes() == MODEL_SOURCE.read_bytes()
    text = (model_dir / "config.pbtxt").read_text()
    assert 'backend: "python"' in text and "max_batch_size: 0" in text and "count: 2 kind: KIND_CPU" in text
    assert 'key: "style" value: { string_value: "smooth" }' in text
    assert not (model_dir / MODEL_VERSION / WEIGHTS_FILE).exists()


def test_weights_copied_and_removed_again(tmp_path):
    (tmp_path / "other").mkdir()
    weights = DEFAULT_WEIGHTS
    write_triton_repo(tmp_path, TritonRepoConfig(weights=weights))
    copy = tmp_path / "rethined" / MODEL_VERSION / WEIGHTS_FILE
    assert copy.read_bytes() == weights.read_bytes()
    write_triton_repo(tmp_path)
    assert not copy.exists() and (tmp_path / "other").is_dir()   # other models in the repository stay


@pytest.mark.parametrize("field, value, message", [
    ("model_name", "a b", "model_name"), ("device", "gpu", "device"), ("instances", 0, "instances"),
    ("backend", "tensorrt", "backend"), ("style", "sharp", "style")])
def test_config_refuses(field, value, message):
    with pytest.raises(ValueError, match=message):
        TritonRepoConfig(**{field: value})


def test_config_refuses_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights"):
        TritonRepoConfig(weights=tmp_path / "none.safetensors")


@pytest.mark.parametrize("config", [TritonRepoConfig(), TritonRepoConfig(
    model_name="rethined_gpu", device="cuda", instances=3, backend="triton", style="realistic",
    weights=DEFAULT_WEIGHTS)])
def test_config_pbtxt_parses_as_model_config(tmp_path, config):
    model_config_pb2 = pytest.importorskip(
        "tritonclient.grpc.model_config_pb2",
        reason="tritonclient[grpc] is not in this environment (its protobuf pin conflicts with the main venv's); "
               "run in .venv-triton (docs/scale-out.md)")
    from google.protobuf import text_format

    model_dir = write_triton_repo(tmp_path, config)
    parsed = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (parsed.name, parsed.backend, parsed.max_batch_size) == (config.model_name, "python", 0)
    uint8 = model_config_pb2.DataType.TYPE_UINT8
    assert [(t.name, t.data_type, list(t.dims), t.optional) for t in parsed.input] == [
        (INPUT_IMAGE, uint8, [-1, -1, 3], False), (INPUT_MASK, uint8, [-1, -1], False),
        (INPUT_EXCLUDE, uint8, [-1, -1], True)]
    assert [(t.name, t.data_type, list(t.dims)) for t in parsed.output] == [(OUTPUT_IMAGE, uint8, [-1, -1, 3])]
    (group,) = parsed.instance_group
    kind = {"cpu": model_config_pb2.ModelInstanceGroup.KIND_CPU, "cuda": model_config_pb2.ModelInstanceGroup.KIND_GPU}
    assert (group.count, group.kind) == (config.instances, kind[config.device])
    parameters = {key: {"string_value": value.string_value} for key, value in parsed.parameters.items()}
    assert engine_arguments(parameters, model_dir / MODEL_VERSION) == {
        "backend": config.backend, "style": config.style,
        "weights": model_dir / MODEL_VERSION / WEIGHTS_FILE if config.weights else None}


def test_engine_arguments_refuses_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="parameters: unknown keys \\['stlye'\\]"):
        engine_arguments({"stlye": {"string_value": "smooth"}}, tmp_path)


# --- model.py against a stand-in of Triton's triton_python_backend_utils -------------------------------------


class FakeTensor:
    def __init__(self, name, array):
        self._name, self._array = name, array

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class FakeTritonError:
    INVALID_ARG = 3

    def __init__(self, message, code=None):
        self._message, self._code = message, code

    def message(self):
        return self._message

    def code(self):
        return self._code


class FakeResponse:
    def __init__(self, output_tensors=(), error=None):
        self.output_tensors, self.error = list(output_tensors), error


def fake_backend_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor, module.TritonError, module.InferenceResponse = FakeTensor, FakeTritonError, FakeResponse
    module.get_input_tensor_by_name = lambda request, name: next((t for t in request if t.name() == name), None)
    return module


@pytest.fixture
def model_module(tmp_path, monkeypatch):
    """The exported model.py, imported with the stand-in backend utilities."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_backend_utils())
    model_dir = write_triton_repo(tmp_path, TritonRepoConfig(style="smooth"))
    spec = importlib.util.spec_from_file_location("rethined_triton_model", model_dir / MODEL_VERSION / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, model_dir


def test_model_answers_like_engine_and_refuses_bad_requests(model_module):
    module, model_dir = model_module
    model = module.TritonPythonModel()
    parameters = {key: {"string_value": value}
                  for key, value in (("backend", ""), ("style", "smooth"), ("weights", ""))}
    assert set(parameters) == set(PARAMETERS)
    model.initialize({"model_config": json.dumps({"parameters": parameters}), "model_repository": str(model_dir),
                      "model_version": MODEL_VERSION, "model_instance_kind": "CPU", "model_instance_device_id": "0"})
    rng = np.random.default_rng()
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    mask = np.zeros((45, 70), np.uint8)
    mask[10:30, 20:45] = rng.integers(1, 256)
    good = [FakeTensor(INPUT_IMAGE, image), FakeTensor(INPUT_MASK, mask)]
    bad = [FakeTensor(INPUT_IMAGE, image), FakeTensor(INPUT_MASK, mask[:, :-1])]
    responses = model.execute([good, bad, good])
    assert len(responses) == 3
    expected = Engine(style="smooth").inpaint(image, mask)
    for response in (responses[0], responses[2]):
        assert response.error is None
        (tensor,) = response.output_tensors
        assert tensor.name() == OUTPUT_IMAGE and np.array_equal(tensor.as_numpy(), expected)
    assert responses[1].output_tensors == [] and responses[1].error.code() == FakeTritonError.INVALID_ARG
    assert responses[1].error.message().startswith("mask: shape (45, 69) does not match the image size 45x70")
    model.finalize()


def test_model_passes_the_optional_exclusion(model_module):
    """A request with EXCLUDE gets `Engine.inpaint(image, mask, exclude)`'s bytes (realistic: it copies, so the
    exclusion changes the fill); one of another size an error naming exclude."""
    module, model_dir = model_module
    model = module.TritonPythonModel()
    parameters = {key: {"string_value": ""} for key in PARAMETERS}
    model.initialize({"model_config": json.dumps({"parameters": parameters}), "model_repository": str(model_dir),
                      "model_version": MODEL_VERSION, "model_instance_kind": "CPU", "model_instance_device_id": "0"})
    rng = np.random.default_rng()
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[20:44, 30:66] = 255
    exclude = np.zeros_like(mask)
    exclude[:, :80] = 1     # all but the right 16 columns: the sources must change
    inputs = [FakeTensor(INPUT_IMAGE, image), FakeTensor(INPUT_MASK, mask)]
    with_exclude, plain, bad = model.execute([inputs + [FakeTensor(INPUT_EXCLUDE, exclude)], inputs,
                                              inputs + [FakeTensor(INPUT_EXCLUDE, exclude[1:])]])
    engine = Engine()
    expected = engine.inpaint(image, mask, exclude)
    assert np.array_equal(with_exclude.output_tensors[0].as_numpy(), expected)
    assert np.array_equal(plain.output_tensors[0].as_numpy(), engine.inpaint(image, mask))
    assert not np.array_equal(expected, engine.inpaint(image, mask))
    assert bad.error.code() == FakeTritonError.INVALID_ARG and bad.error.message().startswith("exclude:")
    model.finalize()


@pytest.mark.parametrize("kind, device_id, device", [("GPU", "1", "cuda:1"), ("CPU", "0", "cpu"),
                                                      ("MODEL", "0", None)])
def test_instance_device(model_module, kind, device_id, device):
    module, _ = model_module
    assert module.instance_device(kind, device_id) == device


def test_cli_export_triton_repo(tmp_path, capsys):
    assert cli_main(["export", "triton-repo", str(tmp_path), "--model-name", "fill", "--device", "cuda",
                     "--backend", "torch"]) == 0
    text = (tmp_path / "fill" / "config.pbtxt").read_text()
    assert 'name: "fill"' in text and "kind: KIND_GPU" in text and 'string_value: "torch"' in text
    assert "tritonserver --model-repository" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="apply to triton-repo only"):
        cli_main(["export", "torchscript", str(tmp_path / "m.pt"), "--instances", "2"])
    with pytest.raises(SystemExit, match="instances: expected an int >= 1"):
        cli_main(["export", "triton-repo", str(tmp_path), "--instances", "0"])


# --- the ensemble: prep -> LR network -> HR ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ensemble_repo(tmp_path_factory):
    """A repository with the ensemble, its LR step on onnxruntime in the Python backend."""
    pytest.importorskip("onnx")
    directory = tmp_path_factory.mktemp("ensemble")
    write_triton_repo(directory, TritonRepoConfig(ensemble=True, lr_platform="python"))
    return directory


ANY_LR_SIDE = 1 << 16   # the dynamic graph takes any LR size


def deployed_pipeline(onnx_path):
    """The torch-free pipeline over the same graph, in this process (the ensemble's reference)."""
    from rethined_engine.deploy.pipeline import LRSizeRange

    return onnxruntime_pipeline(onnx_path, LRSizeRange((1, 1), (ANY_LR_SIDE, ANY_LR_SIDE)))


def load_stage(directory, name, monkeypatch):
    """An ensemble step's model.py, imported with the stand-in backend utilities and initialised."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_backend_utils())
    spec = importlib.util.spec_from_file_location(f"stage_{name}", directory / name / MODEL_VERSION / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    stage = name.rsplit("_", 1)[1]
    model.initialize({"model_config": json.dumps({"parameters": {"stage": {"string_value": stage}}}),
                      "model_repository": str(directory / name), "model_version": MODEL_VERSION,
                      "model_instance_kind": "CPU", "model_instance_device_id": "0"})
    return model


def run_ensemble(models, image, mask, exclude=None):
    """prep -> lr -> hr as the ensemble's steps map their tensors (EXCLUDE only where given); the first error
    response ends the request."""
    tensors = {INPUT_IMAGE: image, INPUT_MASK: mask, **({} if exclude is None else {INPUT_EXCLUDE: exclude})}
    for model in models:
        (response,) = model.execute([[FakeTensor(name, array) for name, array in tensors.items()]])
        if response.error is not None:
            return response.error
        tensors.update({tensor.name(): tensor.as_numpy() for tensor in response.output_tensors})
    return tensors[OUTPUT_IMAGE]


def test_ensemble_steps_match_deployed_pipeline(ensemble_repo, monkeypatch):
    from rethined_engine.deploy.triton_ensemble import ONNX_FILE, stage_names

    names = stage_names(TritonRepoConfig.model_name)
    models = [load_stage(ensemble_repo, names[stage], monkeypatch) for stage in ("prep", "lr", "hr")]
    reference = deployed_pipeline(ensemble_repo / names["lr"] / MODEL_VERSION / ONNX_FILE)
    rng = np.random.default_rng()
    for height, width in ((37, 53), (333, 600)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4:height // 2, width // 3:width // 2] = rng.integers(1, 256)
        result = run_ensemble(models, image, mask)
        assert result.dtype == np.uint8 and np.array_equal(result, reference.inpaint(image, mask))
    assert np.array_equal(run_ensemble(models, image, np.zeros_like(mask)), image)
    error = run_ensemble(models, image, mask[:-1])
    assert error.code() == FakeTritonError.INVALID_ARG and error.message().startswith("mask: shape (332, 600)")
    exclude = np.zeros_like(mask)
    exclude[:, : 3 * width // 4] = 1            # all but the right quarter: the sources change
    excluded = run_ensemble(models, image, mask, exclude)
    assert np.array_equal(excluded, reference.inpaint(image, mask, exclude))
    assert not np.array_equal(excluded, reference.inpaint(image, mask))
    error = run_ensemble(models, image, mask, exclude[1:])
    assert error.code() == FakeTritonError.INVALID_ARG and error.message().startswith("exclude:")


def test_ensemble_configs_parse_and_connect(ensemble_repo):
    model_config_pb2 = pytest.importorskip(
        "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not in this environment (see above)")
    from google.protobuf import text_format

    import onnx

    from rethined_engine.deploy.triton_ensemble import stage_configs, stage_names

    def parse(text):
        return text_format.Parse(text, model_config_pb2.ModelConfig())

    names = stage_names(TritonRepoConfig.model_name)
    ensemble = parse((ensemble_repo / names["ensemble"] / "config.pbtxt").read_text())
    steps = {name: parse((ensemble_repo / name / "config.pbtxt").read_text()) for name in
             (names["prep"], names["lr"], names["hr"])}
    assert ensemble.platform == "ensemble" and [(t.name, t.optional) for t in ensemble.input] == [
        (INPUT_IMAGE, False), (INPUT_MASK, False), (INPUT_EXCLUDE, True)]
    assert [(t.name, t.optional) for t in steps[names["prep"]].input][-1] == (INPUT_EXCLUDE, True)
    available = {t.name for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:   # every step reads tensors that exist, writes its outputs
        model = steps[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}
        assert set(step.input_map.values()) <= available
        assert set(step.output_map) == {t.name for t in model.output}
        available |= set(step.output_map.values())
    assert [t.name for t in ensemble.output] == [OUTPUT_IMAGE] and OUTPUT_IMAGE in available
    graph = onnx.load(str(ensemble_repo / names["lr"] / MODEL_VERSION / "model.onnx"), load_external_data=False)
    lr = steps[names["lr"]]
    triton_type = {onnx.TensorProto.FLOAT: model_config_pb2.DataType.TYPE_FP32,
                   onnx.TensorProto.INT32: model_config_pb2.DataType.TYPE_INT32}
    for declared, in_graph in ((lr.input, graph.graph.input), (lr.output, graph.graph.output)):
        assert [(t.name, t.data_type, len(t.dims)) for t in declared] == [
            (t.name, triton_type[t.type.tensor_type.elem_type], len(t.type.tensor_type.shape.dim)) for t in in_graph]
    onnx_platform = parse(stage_configs(TritonRepoConfig(ensemble=True, device="cuda"))[names["lr"]])
    assert onnx_platform.platform == "onnxruntime_onnx" and not onnx_platform.backend
    assert onnx_platform.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU


def test_ensemble_refuses_style():
    with pytest.raises(ValueError, match="style: the ensemble runs the ONNX graph"):
        TritonRepoConfig(ensemble=True, style="smooth")
    with pytest.raises(ValueError, match="lr_platform"):
        TritonRepoConfig(ensemble=True, lr_platform="tensorrt_plan")
