"""Write a Triton Inference Server model repository that serves `Engine.inpaint` (`rethined export triton-repo`).

Layout, for `TritonRepoConfig(model_name="rethined")`:

    DIR/rethined/config.pbtxt          backend "python", max_batch_size 0 (images of any size: no batching
                                       across requests); IMAGE uint8 [-1, -1, 3], MASK uint8 [-1, -1] and the
                                       optional EXCLUDE uint8 [-1, -1] in, INPAINTED uint8 [-1, -1, 3] out;
                                       instance group and Engine parameters
    DIR/rethined/1/model.py            a copy of rethined_engine/deploy/triton_model.py
    DIR/rethined/1/weights.safetensors only with `weights`: a copy of that file

The server's Python environment needs rethined_engine installed (model.py imports it). docs/scale-out.md
has the recipe.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

INPUT_IMAGE = "IMAGE"            # uint8 (H, W, 3) RGB
INPUT_MASK = "MASK"              # uint8 (H, W), nonzero = fill
INPUT_EXCLUDE = "EXCLUDE"        # optional uint8 (H, W), nonzero = never copied (`Engine.inpaint`'s exclude)
OUTPUT_IMAGE = "INPAINTED"       # uint8 (H, W, 3); not "IMAGE": an ensemble whose output reuses its input's name
                                 # loads in Triton 2.51 but its HTTP responses do not decode
MODEL_VERSION = "1"
WEIGHTS_FILE = "weights.safetensors"   # in the version folder, when the repository carries its own weights
PARAMETERS = ("backend", "style", "weights")   # config.pbtxt parameters model.py reads; "" = the Engine's default
INSTANCE_KINDS = {"cpu": "KIND_CPU", "cuda": "KIND_GPU"}
LR_PLATFORMS = ("onnxruntime_onnx", "python")   # the ensemble's LR runner; python: onnxruntime in the Python backend
SERVED_BACKENDS = ("torch", "native", "triton")  # Engine backends that load from weights (tensorrt needs a plan)
MODEL_SOURCE = Path(__file__).with_name("triton_model.py")


@dataclass(frozen=True)
class TritonRepoConfig:
    """What `write_triton_repo` writes.

    model_name: the model's folder and name in requests. device: "cpu" (KIND_CPU instances) or "cuda"
    (KIND_GPU: each instance's Engine on the GPU Triton assigns it). instances: Engine instances per device
    (each holds its own weights; Triton runs them concurrently). backend: an Engine backend (None: the
    Engine's default for the device). style: a `config.STYLES` name (None: the weights' own settings).
    weights: a .safetensors file copied into the repository (None: the weights shipped with the installed
    rethined_engine). ensemble: also write the ensemble prep -> ONNX LR network -> HR stage
    (`triton_ensemble`; the weights' own settings, so no style); lr_platform: its LR model's runner,
    "onnxruntime_onnx" (Triton's onnxruntime backend) or "python" (onnxruntime in the Python backend).
    """

    model_name: str = "rethined"
    device: str = "cpu"
    instances: int = 1
    backend: str | None = None
    style: str | None = None
    weights: Path | None = None
    ensemble: bool = False
    lr_platform: str = LR_PLATFORMS[0]

    def __post_init__(self) -> None:
        from ..config import STYLES

        if not self.model_name or not self.model_name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"model_name: expected letters, digits, '_' or '-', got {self.model_name!r}")
        if self.device not in INSTANCE_KINDS:
            raise ValueError(f"device: expected one of {sorted(INSTANCE_KINDS)}, got {self.device!r}")
        if not isinstance(self.instances, int) or self.instances < 1:
            raise ValueError(f"instances: expected an int >= 1, got {self.instances!r}")
        if self.backend is not None and self.backend not in SERVED_BACKENDS:
            raise ValueError(f"backend: expected one of {SERVED_BACKENDS} or None, got {self.backend!r}")
        if self.style is not None and self.style not in STYLES:
            raise ValueError(f"style: expected one of {sorted(STYLES)} or None, got {self.style!r}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise FileNotFoundError(f"weights: no such file: {self.weights}")
        if self.lr_platform not in LR_PLATFORMS:
            raise ValueError(f"lr_platform: expected one of {LR_PLATFORMS}, got {self.lr_platform!r}")
        if self.ensemble and self.style is not None:
            raise ValueError(f"style: the ensemble runs the ONNX graph of the weights' own settings; got style="
                             f"{self.style!r} with ensemble=True (export the weights of that style instead)")


def config_pbtxt(config: TritonRepoConfig) -> str:
    """The model's config.pbtxt text (protobuf text format of Triton's ModelConfig)."""
    values = {"backend": config.backend or "", "style": config.style or "",
              "weights": WEIGHTS_FILE if config.weights is not None else ""}
    parameters = "\n".join(f'parameters: {{ key: "{key}" value: {{ string_value: "{values[key]}" }} }}'
                           for key in PARAMETERS)
    return f"""name: "{config.model_name}"
backend: "python"
max_batch_size: 0
input [
  {{ name: "{INPUT_IMAGE}" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] }},
  {{ name: "{INPUT_MASK}" data_type: TYPE_UINT8 dims: [ -1, -1 ] }},
  {{ name: "{INPUT_EXCLUDE}" data_type: TYPE_UINT8 dims: [ -1, -1 ] optional: true }}
]
output [
  {{ name: "{OUTPUT_IMAGE}" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] }}
]
instance_group [ {{ count: {config.instances} kind: {INSTANCE_KINDS[config.device]} }} ]
{parameters}
"""


def engine_arguments(parameters: dict, version_dir: Path) -> dict:
    """config.pbtxt `parameters` as Triton hands them to model.py ({key: {"string_value": ...}}) -> the
    Engine's keyword arguments (backend, style, weights; "" or absent = the Engine's default). version_dir:
    the model's version folder, where a `weights` file name points."""
    values = {key: parameters.get(key, {}).get("string_value", "") for key in PARAMETERS}
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"parameters: unknown keys {unknown}; expected some of {PARAMETERS}")
    return {"backend": values["backend"] or None, "style": values["style"] or None,
            "weights": Path(version_dir) / values["weights"] if values["weights"] else None}


def write_triton_repo(directory: str | Path, config: TritonRepoConfig = TritonRepoConfig()) -> Path:
    """Write the model `config.model_name` (and with `config.ensemble` the ensemble `triton_ensemble` writes)
    into the model repository `directory` (created if missing; other models in it are left alone; these
    models' files are replaced). Returns the Python-backend model's folder."""
    model_dir = Path(directory) / config.model_name
    version_dir = model_dir / MODEL_VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(config_pbtxt(config), encoding="utf-8")
    shutil.copyfile(MODEL_SOURCE, version_dir / "model.py")
    weights_copy = version_dir / WEIGHTS_FILE
    if config.weights is not None:
        shutil.copyfile(config.weights, weights_copy)
    elif weights_copy.exists():
        weights_copy.unlink()
    if config.ensemble:
        from .triton_ensemble import write_ensemble
        write_ensemble(directory, config)
    return model_dir
