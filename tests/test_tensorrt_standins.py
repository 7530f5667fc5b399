"""The TensorRT backend's orchestration on the CPU: buffers, copies, stream, CUDA context per call, the
seam blend after the HR kernel, and plan building. Stand-in `tensorrt` and `pycuda` modules go into
sys.modules: device memory is host bytes behind integer addresses, a stand-in plan is the exported ONNX
graph behind a JSON header (the FP16 flag and optimisation profile the build set), its execution runs that
graph with onnxruntime on the bytes at the bound addresses, and the CUDA HR kernel is its numpy
equivalent (`deploy.host.upscale_hr`). Every stand-in driver call fails unless the calling thread has the
device's context current, as the CUDA driver does."""
import json
import sys
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rethined_engine import Engine
from rethined_engine.deploy.cuda_kernels import BLOCK, KERNEL_NAME, launch_grid
from rethined_engine.deploy.graph_spec import INPUT_NAMES
from rethined_engine.deploy.host import known_tokens, upscale_hr
from rethined_engine.deploy.tensorrt_build import BuildSettings, build_plan, sidecar_path
from rethined_engine.geometry import Geometry

ort = pytest.importorskip("onnxruntime")

ASSETS = Path(__file__).resolve().parents[1] / "rethined_engine" / "assets"
PLAN_MAGIC = b"stand-in TensorRT plan\n"
# TensorRT (stand-ins: onnxruntime + numpy HR stage) against Engine(backend="torch") on the 720x1280 sample
# photo with the shipped settings (seam_sigma=2): measured no value more than one level apart and 15 of
# 2,764,800 values (5e-6) one level apart (float32 summation order). Without the seam blend 2.1 % of the
# values differ, by up to 139 levels.
MAX_LEVELS = 1
MAX_OFF_FRACTION = 1e-4


class StandInCudaError(RuntimeError):
    pass


class StandInContext:
    def __init__(self, driver: "StandInDriver", device: int):
        self.driver, self.device = driver, device

    def push(self) -> None:
        self.driver.stack().append(self)
        self.driver.pushed_in.append(threading.current_thread().name)

    def pop(self) -> None:
        stack = self.driver.stack()
        if not stack or stack[-1] is not self:
            raise StandInCudaError("cuCtxPopCurrent failed: this context is not current in this thread")
        stack.pop()


class StandInDevice:
    def __init__(self, driver: "StandInDriver", index: int):
        self.driver, self.index = driver, index

    def retain_primary_context(self) -> StandInContext:
        return self.driver.contexts.setdefault(self.index, StandInContext(self.driver, self.index))


class StandInAllocation:
    """Device memory: `nbytes` host bytes behind an integer address."""

    def __init__(self, driver: "StandInDriver", nbytes: int):
        self.data = np.zeros(nbytes, np.uint8)
        self.address = driver.next_address
        driver.next_address += max(nbytes, 1) + 256
        driver.memory[self.address] = self

    def __int__(self) -> int:
        return self.address


class StandInStream:
    def __init__(self, driver: "StandInDriver"):
        self.driver, self.handle = driver, 0xC0DE

    def synchronize(self) -> None:
        self.driver.require_context("cuStreamSynchronize")


class StandInDriver(types.ModuleType):
    """`pycuda.driver`: the calls the runtime makes, on host memory."""

    def __init__(self):
        super().__init__("pycuda.driver")
        self.local = threading.local()
        self.contexts: dict[int, StandInContext] = {}
        self.memory: dict[int, StandInAllocation] = {}
        self.next_address = 0x10000
        self.device_allocations = self.pinned_allocations = 0
        self.pushed_in: list[str] = []       # thread names, one per push

    def stack(self) -> list:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def require_context(self, call: str) -> None:
        if not self.stack():
            raise StandInCudaError(f"{call} failed: invalid device context (none current in thread "
                                   f"{threading.current_thread().name})")

    def array(self, address, dtype, shape) -> np.ndarray:
        """A view of the device memory at `address` as an array (the bytes are shared)."""
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        data = self.memory[int(address)].data
        assert size <= data.nbytes, f"{size} bytes read from a {data.nbytes}-byte allocation"
        return data[:size].view(dtype).reshape(shape)

    # the pycuda.driver API used by the runtime
    def init(self) -> None:
        pass

    def Device(self, index: int) -> StandInDevice:  # noqa: N802 (pycuda's name)
        return StandInDevice(self, index)

    def Stream(self) -> StandInStream:  # noqa: N802
        self.require_context("cuStreamCreate")
        return StandInStream(self)

    def pagelocked_empty(self, shape, dtype) -> np.ndarray:
        self.require_context("cuMemHostAlloc")
        self.pinned_allocations += 1
        return np.empty(shape, dtype)

    def mem_alloc(self, nbytes: int) -> StandInAllocation:
        self.require_context("cuMemAlloc")
        self.device_allocations += 1
        return StandInAllocation(self, nbytes)

    def memcpy_htod_async(self, dest, src: np.ndarray, stream=None) -> None:
        self.require_context("cuMemcpyHtoDAsync")
        self.array(dest, np.uint8, (src.nbytes,))[:] = np.ascontiguousarray(src).reshape(-1).view(np.uint8)

    def memcpy_dtoh_async(self, dest: np.ndarray, src, stream=None) -> None:
        self.require_context("cuMemcpyDtoHAsync")
        assert dest.flags.c_contiguous
        dest.reshape(-1).view(np.uint8)[:] = self.array(src, np.uint8, (dest.nbytes,))

    def memset_d32_async(self, dest, value: int, count: int, stream=None) -> None:
        self.require_context("cuMemsetD32Async")
        self.array(dest, np.uint32, (count,))[:] = value


class StandInKernel:
    """`hr_upscale_u8` with pycuda's launch convention, computed by `deploy.host.upscale_hr`."""

    def __init__(self, driver: StandInDriver):
        self.driver = driver

    def __call__(self, *args, block, grid, stream=None) -> None:
        self.driver.require_context("cuLaunchKernel")
        image, mask, lr, weight, fine_weight, index, known, out = args[:8]
        height, width, scale, patch, grid_h, grid_w, topk, feather, reflect = (int(v) for v in args[8:])
        geom = Geometry(height, width, scale, patch, grid_h, grid_w)
        assert block == BLOCK and grid == launch_grid(geom) and feather % scale == 0
        tokens = (grid_h * grid_w, topk)
        arr = self.driver.array
        hole = arr(mask, np.uint8, (height, width)) != 0
        if feather > 0:   # the numpy stage finds the known tokens itself: check the uploaded ones
            assert np.array_equal(arr(known, np.uint8, tokens[:1]) != 0, known_tokens(hole, geom))
        arr(out, np.uint8, (height, width, 3))[:] = upscale_hr(
            arr(image, np.uint8, (height, width, 3)), hole,
            arr(lr, np.float32, (1, 3) + geom.lr_size), arr(weight, np.float32, tokens),
            arr(fine_weight, np.float32, tokens), arr(index, np.int32, tokens), geom, feather // scale, bool(reflect))


class StandInSourceModule:
    def __init__(self, driver: StandInDriver, source: str, no_extern_c: bool = False):
        driver.require_context("cuModuleLoadData")
        assert KERNEL_NAME in source and no_extern_c
        self.driver = driver

    def get_function(self, name: str) -> StandInKernel:
        assert name == KERNEL_NAME
        return StandInKernel(self.driver)


def stand_in_plan(onnx_bytes: bytes, fp16: bool, profile: dict) -> bytes:
    header = json.dumps({"fp16": fp16, "profile": {k: [list(s) for s in v] for k, v in profile.items()}})
    return PLAN_MAGIC + header.encode() + b"\n" + onnx_bytes


class StandInExecutionContext:
    def __init__(self, engine: "StandInEngine"):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name: str, shape) -> bool:
        low, _, high = self.engine.profile.get(name, (None, None, None))
        shape = tuple(shape)
        if low is None or len(shape) != len(low) or not all(a <= s <= b for a, s, b in zip(low, shape, high)):
            return False
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        driver = self.engine.driver
        driver.require_context("enqueueV3")
        self.engine.runs.append(threading.current_thread().name)
        if self.engine.fail_next:
            self.engine.fail_next = False
            return False
        if set(self.shapes) != set(INPUT_NAMES):
            return False   # TensorRT: input shapes not (validly) specified
        feeds = {name: driver.array(self.addresses[name], np.float32, self.shapes[name]) for name in INPUT_NAMES}
        outputs = self.engine.session.run(None, feeds)
        for meta, value in zip(self.engine.session.get_outputs(), outputs):
            value = np.ascontiguousarray(value)
            driver.array(self.addresses[meta.name], value.dtype, value.shape)[:] = value
        return True


class StandInEngine:
    def __init__(self, driver: StandInDriver, header: dict, onnx_bytes: bytes):
        driver.require_context("deserializeCudaEngine")
        self.driver, self.fp16 = driver, header["fp16"]
        self.profile = {k: tuple(tuple(s) for s in v) for k, v in header["profile"].items()}
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.names = [t.name for t in self.session.get_inputs()] + [t.name for t in self.session.get_outputs()]
        self.runs: list[str] = []     # thread name per execution
        self.fail_next = False

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_profile_shape(self, name: str, profile_index: int):
        return self.profile[name]

    def create_execution_context(self) -> StandInExecutionContext:
        self.driver.require_context("createExecutionContext")
        return StandInExecutionContext(self)


class StandInBuilderConfig:
    def __init__(self):
        self.flags, self.profiles, self.pool_limits, self.timing_cache = set(), [], {}, None

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.pool_limits[pool] = size

    def set_flag(self, flag) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes):
        return types.SimpleNamespace(serialize=lambda: b"stand-in timing cache")

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return self.timing_cache


class StandInTensorRT(types.ModuleType):
    """`tensorrt`: building writes a stand-in plan, loading one runs its ONNX graph with onnxruntime."""

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    class NetworkDefinitionCreationFlag:   # TensorRT 10: explicit batch is implicit
        pass

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class BuilderFlag:
        FP16 = "fp16"

    def __init__(self, driver: StandInDriver):
        super().__init__("tensorrt")
        self.driver = driver
        self.fast_fp16 = True           # what builders report as platform_has_fast_fp16
        self.engines: list[StandInEngine] = []
        trt = self

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data: bytes):
                if not data.startswith(PLAN_MAGIC):
                    return None
                header, onnx_bytes = data[len(PLAN_MAGIC):].split(b"\n", 1)
                engine = StandInEngine(trt.driver, json.loads(header), onnx_bytes)
                trt.engines.append(engine)
                return engine

        class Builder:
            def __init__(self, logger):
                self.platform_has_fast_fp16 = trt.fast_fp16

            def create_network(self, flags: int):
                return types.SimpleNamespace(onnx=None)

            def create_builder_config(self):
                return StandInBuilderConfig()

            def create_optimization_profile(self):
                shapes = {}
                return types.SimpleNamespace(shapes=shapes, set_shape=lambda name, *s: shapes.__setitem__(name, s))

            def build_serialized_network(self, network, config):
                profile = config.profiles[0].shapes if config.profiles else {}
                return stand_in_plan(network.onnx, trt.BuilderFlag.FP16 in config.flags, profile)

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse(self, data: bytes) -> bool:
                self.network.onnx = bytes(data)
                return True

        self.Runtime, self.Builder, self.OnnxParser = Runtime, Builder, OnnxParser


@pytest.fixture(scope="module")
def standins():
    driver = StandInDriver()
    compiler = types.ModuleType("pycuda.compiler")
    compiler.SourceModule = lambda source, no_extern_c=False: StandInSourceModule(driver, source, no_extern_c)
    package = types.ModuleType("pycuda")
    package.__path__ = []
    package.driver, package.compiler = driver, compiler
    trt = StandInTensorRT(driver)
    with pytest.MonkeyPatch.context() as patch:
        for name, module in (("pycuda", package), ("pycuda.driver", driver), ("pycuda.compiler", compiler),
                             ("tensorrt", trt)):
            patch.setitem(sys.modules, name, module)
        yield types.SimpleNamespace(driver=driver, trt=trt)


@pytest.fixture(scope="module")
def plan_path(standins, onnx_path):
    return build_plan(onnx_path, onnx_path.with_suffix(".plan"), BuildSettings(timing_cache=None))


@pytest.fixture(scope="module")
def tensorrt(standins, plan_path):
    return Engine(backend="tensorrt", engine_path=plan_path)


@pytest.fixture(scope="module")
def sample():
    image = np.asarray(Image.open(ASSETS / "sample.jpg").convert("RGB"))
    mask = np.asarray(Image.open(ASSETS / "sample_mask.png").convert("L")) > 127
    return image, mask


@pytest.fixture(scope="module")
def torch_result(sample):
    engine = Engine(backend="torch", device="cpu")
    assert engine.config.seam_sigma == 2.0   # the shipped setting, which the comparison covers
    return engine.inpaint(*sample)


def level_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_tensorrt_matches_torch_on_sample_photo_with_seam_blend(tensorrt, sample, torch_result):
    image, mask = sample
    out = tensorrt.inpaint(image, mask)
    assert out.dtype == np.uint8 and out.shape == image.shape
    diff = level_diff(out, torch_result)
    assert diff.max() <= MAX_LEVELS, f"max difference {diff.max()} levels"
    assert (diff > 0).mean() <= MAX_OFF_FRACTION, f"{(diff > 0).mean():.4%} of values differ"
    np.testing.assert_array_equal(out[~mask], image[~mask])


@pytest.mark.parametrize("settings", [{"seam_sigma": 0.0}, {"seam_sigma": 3.0, "seam_gain": 2.0}, {"hr_feather": 1}])
def test_tensorrt_seam_settings_are_applied(standins, plan_path, sample, settings):
    image, mask = (a[:360, :640] for a in sample)
    out = Engine(backend="tensorrt", engine_path=plan_path, **settings).inpaint(image, mask)
    reference = Engine(backend="torch", device="cpu", **settings).inpaint(image, mask)
    diff = level_diff(out, reference)
    assert diff.max() <= MAX_LEVELS and (diff > 0).mean() <= MAX_OFF_FRACTION


def test_context_is_current_only_during_calls_in_the_calling_thread(standins, tensorrt, sample):
    driver, engine = standins.driver, standins.trt.engines[0]
    assert driver.stack() == []   # construction leaves no context pushed on the constructing thread
    image, mask = (a[:200, :300] for a in sample)
    errors, stacks = [], []

    def work():
        try:
            tensorrt.inpaint(image, mask)                        # uint8: TensorRT + HR kernel
            tensorrt.inpaint(image.astype(np.float32) / 255, mask)   # float: TensorRT + numpy HR stage
            engine.fail_next = True
            with pytest.raises(RuntimeError, match="TensorRT execution failed"):
                tensorrt.inpaint(image, mask)
        except Exception as exc:  # reported in the main thread
            errors.append(exc)
        stacks.append(list(driver.stack()))

    pushes_before, runs_before = len(driver.pushed_in), len(engine.runs)
    worker = threading.Thread(target=work, name="second-thread")
    worker.start()
    worker.join()
    assert errors == [] and stacks == [[]]   # every call popped its context, the failed one too
    assert engine.runs[runs_before:] == ["second-thread"] * 3
    assert driver.pushed_in[pushes_before:] == ["second-thread"] * 3
    assert driver.stack() == []


def test_build_records_the_fp16_flag_actually_set(standins, onnx_path, tmp_path):
    def built(settings, fast_fp16):
        standins.trt.fast_fp16 = fast_fp16
        try:
            plan = build_plan(onnx_path, tmp_path / "lr.plan", settings)
        finally:
            standins.trt.fast_fp16 = True
        set_in_plan = json.loads(plan.read_bytes()[len(PLAN_MAGIC):].split(b"\n", 1)[0])["fp16"]
        return json.loads(sidecar_path(plan).read_text())["build"]["fp16"], set_in_plan

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert built(BuildSettings(fp16=True, timing_cache=None), fast_fp16=True) == (True, True)
        assert built(BuildSettings(fp16=False, timing_cache=None), fast_fp16=True) == (False, False)
    with pytest.warns(RuntimeWarning, match="fp16"):
        assert built(BuildSettings(fp16=True, timing_cache=None), fast_fp16=False) == (False, False)
    assert Engine(backend="tensorrt", engine_path=tmp_path / "lr.plan").dtype == "float32"


def test_input_shape_outside_the_plan_profile_names_input_and_shape(standins, onnx_path, plan_path, tmp_path, sample):
    narrow = {"image": ((1, 3, 32, 32), (1, 3, 128, 128), (1, 3, 256, 256)),
              "mask": ((1, 1, 32, 32), (1, 1, 128, 128), (1, 1, 256, 256)),
              "key_inside": ((1, 1, 4, 4), (1, 1, 16, 16), (1, 1, 32, 32))}
    plan = tmp_path / "narrow.plan"
    plan.write_bytes(stand_in_plan(onnx_path.read_bytes(), False, narrow))
    sidecar_path(plan).write_text(sidecar_path(plan_path).read_text())   # claims LR sizes up to 512
    engine = Engine(backend="tensorrt", engine_path=plan)
    with pytest.raises(ValueError, match=r"'image'.*\(1, 3, 256, 448\).*\(1, 3, 256, 256\)"):
        engine.inpaint(*sample)
    assert standins.driver.stack() == []
    small = engine.inpaint(*(a[:100, :150] for a in sample))   # LR 128x160, within the profile: runs
    assert small.shape == (100, 150, 3)


def test_buffers_are_reused_while_the_size_stays(standins, tensorrt, sample):
    driver = standins.driver
    image, mask = (a[:240, :320] for a in sample)
    as_float = image.astype(np.float32) / 255

    def allocations():
        return driver.device_allocations, driver.pinned_allocations

    tensorrt.inpaint(as_float, mask)
    tensorrt.inpaint(image, mask)
    before = allocations()
    for _ in range(2):
        float_out = tensorrt.inpaint(as_float, mask)
        uint8_out = tensorrt.inpaint(image, mask)
    assert allocations() == before
    assert np.abs(float_out * 255 - uint8_out).max() <= 2   # both paths read the same cached LR outputs
    tensorrt.inpaint(as_float[:200], mask[:200])
    assert allocations() != before   # another size gets buffers of its own
