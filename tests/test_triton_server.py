"""A real Triton Inference Server (the `tritonserver` of the nvidia-pytriton wheel) loads the repository
`rethined export triton-repo` writes and answers on 127.0.0.1 with the bytes of `Engine().inpaint`.

The ensemble (prep -> LR network -> HR) runs with its LR step on onnxruntime inside the Python backend: the
wheel has no onnxruntime backend, so the "onnxruntime_onnx" LR config is only parsed (test_triton_repo.py).

Marked `tritonserver`; skipped where nvidia-pytriton or tritonclient is not installed (the main venv: the wheel
pins numpy<2). docs/scale-out.md (Triton Inference Server) sets up .venv-triton and runs this file.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from rethined_engine import Engine
from rethined_engine.cli import SAMPLE_IMAGE, SAMPLE_MASK
from rethined_engine.deploy.triton_local import LocalTritonServer, find_pytriton_server
from rethined_engine.deploy.triton_ensemble import ONNX_FILE, stage_names
from rethined_engine.deploy.triton_repo import MODEL_VERSION, TritonRepoConfig, write_triton_repo
from rethined_engine.weights import DEFAULT_WEIGHTS

triton_http = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
if find_pytriton_server() is None:
    pytest.skip("nvidia-pytriton (tritonserver and a Python-backend stub for this CPython) is not installed",
                allow_module_level=True)
from tritonclient.utils import InferenceServerException  # noqa: E402

from rethined_engine.deploy.triton_client import inpaint_remote, main as client_main  # noqa: E402
from test_triton_repo import deployed_pipeline  # noqa: E402

pytestmark = pytest.mark.tritonserver
SAMPLE_WIDTH = 192          # the shipped photo and mask, resized to this width (aspect kept)
SMOOTH_MODEL = "rethined_smooth"
PAIR_MODEL, PAIR_INSTANCES = "rethined_pair", 2
ENSEMBLE = stage_names(TritonRepoConfig.model_name)
HTTP_BAD_REQUEST = "400"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = tmp_path_factory.mktemp("triton_repository")
    pytest.importorskip("onnx")
    write_triton_repo(repository, TritonRepoConfig(ensemble=True, lr_platform="python"))
    write_triton_repo(repository, TritonRepoConfig(model_name=SMOOTH_MODEL, style="smooth", weights=DEFAULT_WEIGHTS))
    write_triton_repo(repository, TritonRepoConfig(model_name=PAIR_MODEL, instances=PAIR_INSTANCES))
    with LocalTritonServer(repository) as running:
        yield running


@pytest.fixture
def client(server):
    connection = triton_http.InferenceServerClient(server.http_url)
    yield connection
    connection.close()   # an open connection would hold the server's shutdown


def sample_inputs() -> tuple[np.ndarray, np.ndarray]:
    """The shipped photo (RGB) and its mask (luma, nonzero = fill), resized to SAMPLE_WIDTH wide."""
    with Image.open(SAMPLE_IMAGE) as image, Image.open(SAMPLE_MASK) as mask:
        size = (SAMPLE_WIDTH, round(image.height * SAMPLE_WIDTH / image.width))
        return (np.asarray(image.convert("RGB").resize(size, Image.BILINEAR)),
                np.asarray(mask.convert("L").resize(size, Image.NEAREST)))


def random_inputs(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A fresh random image and a mask with one random rectangle of random nonzero values."""
    rng = np.random.default_rng()
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    mask[top:top + height // 3, left:left + width // 3] = rng.integers(1, 256, (height // 3, width // 3))
    return image, mask


def test_server_answers_with_engine_bytes(client):
    engine = Engine()
    for image, mask in (sample_inputs(), random_inputs(53, 75)):
        assert mask.any()
        result = inpaint_remote(client, image, mask)
        assert result.dtype == np.uint8 and np.array_equal(result, engine.inpaint(image, mask))


def test_style_and_weights_from_parameters(client):
    image, mask = random_inputs(61, 90)
    result = inpaint_remote(client, image, mask, SMOOTH_MODEL)
    assert np.array_equal(result, Engine(style="smooth").inpaint(image, mask))
    assert not np.array_equal(result, Engine(style="realistic").inpaint(image, mask))   # the parameter took effect


def test_bad_requests_get_errors_and_server_stays_ready(client):
    image, mask = random_inputs(40, 64)
    with pytest.raises(InferenceServerException) as mismatch:
        inpaint_remote(client, image, mask[:, :-8])
    assert mismatch.value.status() == HTTP_BAD_REQUEST
    assert "mask: shape (40, 56) does not match the image size 40x64" in mismatch.value.message()
    wrong_dtype = triton_http.InferInput("MASK", list(mask.shape), "FP32")
    wrong_dtype.set_data_from_numpy(mask.astype(np.float32))
    image_input = triton_http.InferInput("IMAGE", list(image.shape), "UINT8")
    image_input.set_data_from_numpy(image)
    with pytest.raises(InferenceServerException, match="MASK.*FP32.*UINT8"):
        client.infer(TritonRepoConfig.model_name, [image_input, wrong_dtype])
    assert client.is_server_ready() and client.is_model_ready(TritonRepoConfig.model_name)
    assert np.array_equal(inpaint_remote(client, image, mask), Engine().inpaint(image, mask))


def test_client_example(server, tmp_path, capsys):
    image, mask = random_inputs(48, 80)
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert client_main([str(tmp_path / "image.png"), str(tmp_path / "mask.png"), "-o", str(out),
                        "--url", server.http_url]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), Engine().inpaint(image, mask))
    assert client_main([str(tmp_path / "image.png"), str(SAMPLE_MASK), "-o", str(out), "--url", server.http_url]) == 1
    assert "refused the request: [400] mask: shape" in capsys.readouterr().err


def test_optional_exclusion(server, client, tmp_path):
    image, mask = sample_inputs()
    exclude = np.zeros_like(mask)
    exclude[:, :SAMPLE_WIDTH // 2] = 255
    want = Engine().inpaint(image, mask, exclude)
    assert not np.array_equal(want, Engine().inpaint(image, mask))
    assert np.array_equal(inpaint_remote(client, image, mask, exclude=exclude), want)
    for name, array in (("image", image), ("mask", mask), ("exclude", exclude)):
        Image.fromarray(array).save(tmp_path / f"{name}.png")
    out = tmp_path / "out.png"
    assert client_main([str(tmp_path / "image.png"), str(tmp_path / "mask.png"), "-o", str(out),
                        "--exclude", str(tmp_path / "exclude.png"), "--url", server.http_url]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), want)


def test_ensemble_answers_with_deployed_pipeline_bytes(server, client):
    reference = deployed_pipeline(server.repository / ENSEMBLE["lr"] / MODEL_VERSION / ONNX_FILE)
    for image, mask in (sample_inputs(), random_inputs(53, 75)):
        result = inpaint_remote(client, image, mask, ENSEMBLE["ensemble"])
        assert np.array_equal(result, reference.inpaint(image, mask))
    with pytest.raises(InferenceServerException) as mismatch:
        inpaint_remote(client, image, mask[:-1], ENSEMBLE["ensemble"])
    assert mismatch.value.status() == HTTP_BAD_REQUEST and "mask: shape (52, 75)" in mismatch.value.message()
    image, mask = sample_inputs()
    exclude = np.zeros_like(mask)
    exclude[:, :SAMPLE_WIDTH // 2] = 255
    excluded = inpaint_remote(client, image, mask, ENSEMBLE["ensemble"], exclude=exclude)
    assert np.array_equal(excluded, reference.inpaint(image, mask, exclude))
    assert not np.array_equal(excluded, reference.inpaint(image, mask))
    assert client.is_server_ready() and client.is_model_ready(ENSEMBLE["ensemble"])


def test_concurrent_requests_on_two_instances(server):
    inputs = [random_inputs(40 + 7 * i, 60 + 11 * i) for i in range(2 * PAIR_INSTANCES)]

    def request(pair):
        connection = triton_http.InferenceServerClient(server.http_url)
        try:
            return inpaint_remote(connection, *pair, PAIR_MODEL)
        finally:
            connection.close()

    with ThreadPoolExecutor(len(inputs)) as pool:
        results = list(pool.map(request, inputs))
    engine = Engine()
    assert all(np.array_equal(result, engine.inpaint(image, mask)) for result, (image, mask) in zip(results, inputs))
    with triton_http.InferenceServerClient(server.http_url) as connection:
        config = connection.get_model_config(PAIR_MODEL)
    assert config["instance_group"][0]["count"] == PAIR_INSTANCES


def test_grpc_requests(server, tmp_path):
    triton_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
    image, mask = random_inputs(44, 66)
    with triton_grpc.InferenceServerClient(server.grpc_url) as connection:
        assert np.array_equal(inpaint_remote(connection, image, mask), Engine().inpaint(image, mask))
        with pytest.raises(InferenceServerException) as mismatch:
            inpaint_remote(connection, image, mask[:-4])
        assert mismatch.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "mask: shape (40, 66) does not match the image size 44x66" in mismatch.value.message()
        assert connection.is_server_ready()
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert client_main([str(tmp_path / "image.png"), str(tmp_path / "mask.png"), "-o", str(tmp_path / "out.png"),
                        "--protocol", "grpc", "--url", server.grpc_url]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), Engine().inpaint(image, mask))
