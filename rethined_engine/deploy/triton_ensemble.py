"""The ensemble `rethined export triton-repo --ensemble` adds next to the Python-backend model: host preparation ->
the exported ONNX LR network -> the HR stage, as four Triton models (for `TritonRepoConfig(model_name="rethined")`):

    DIR/rethined_ensemble/config.pbtxt   platform "ensemble": IMAGE, MASK and the optional EXCLUDE in, INPAINTED
                                         out (the model's interface)
    DIR/rethined_prep/1/model.py         Python backend, stage "prep": the checks of `Engine.inpaint`, then
                                         `host.prepare_lr` -> image, mask, key_inside (the LR graph's inputs;
                                         EXCLUDE reaches the fill only through key_inside)
    DIR/rethined_lr/1/model.onnx         `rethined export onnx --dynamic` (weights' own settings), on
                                         platform "onnxruntime_onnx"; or, with lr_platform "python",
                                         onnxruntime inside the Python backend (stage "lr"; model.py beside it)
    DIR/rethined_hr/1/model.py           Python backend, stage "hr": `host.upscale_hr` and the seam blend
    DIR/rethined_{prep,hr}/1/model_config.json   the graph's ModelConfig (its metadata), which prep and hr follow

The Python steps run rethined_engine/deploy/triton_stage_model.py. Results are `DeployedPipeline`'s with
onnxruntime (tests/test_deploy_runtime.py compares that to the Engine within its top-K tie tolerance).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .graph_spec import INPUT_NAMES, METADATA_CONFIG, OUTPUT_NAMES, read_metadata
from .triton_repo import (INPUT_EXCLUDE, INPUT_IMAGE, INPUT_MASK, INSTANCE_KINDS, MODEL_VERSION, OUTPUT_IMAGE,
                          TritonRepoConfig)

STAGES = ("prep", "lr", "hr")
STAGE_PARAMETER = "stage"
ONNX_FILE = "model.onnx"
CONFIG_FILE = "model_config.json"
STAGE_SOURCE = Path(__file__).with_name("triton_stage_model.py")
EXAMPLE_SIZE = (512, 512)   # the image size the dynamic ONNX graph is traced at (any LR size runs)
INSTANCE_KIND_CPU = INSTANCE_KINDS["cpu"]   # prep and hr are numpy on the host
LR_INPUT_DIMS = {"image": "-1, 3, -1, -1", "mask": "-1, 1, -1, -1", "key_inside": "-1, 1, -1, -1"}
LR_OUTPUTS = {"lr_result": ("TYPE_FP32", "-1, 3, -1, -1"), "topk_weight": ("TYPE_FP32", "-1, -1, -1"),
              "topk_fine_weight": ("TYPE_FP32", "-1, -1, -1"), "topk_index": ("TYPE_INT32", "-1, -1, -1")}
HR_INPUTS = {INPUT_IMAGE: ("TYPE_UINT8", "-1, -1, 3"), INPUT_MASK: ("TYPE_UINT8", "-1, -1"), **LR_OUTPUTS}
IMAGE_INPUTS = {name: HR_INPUTS[name] for name in (INPUT_IMAGE, INPUT_MASK)}
PREP_INPUTS = {**IMAGE_INPUTS, INPUT_EXCLUDE: HR_INPUTS[INPUT_MASK]}   # the ensemble's and prep's inputs
OPTIONAL_INPUTS = (INPUT_EXCLUDE,)
LR_INPUTS = {name: ("TYPE_FP32", dims) for name, dims in LR_INPUT_DIMS.items()}
ENSEMBLE_LR_INPUT = "lr_{}"   # the ensemble's tensor name for the LR graph's input {} (apart from IMAGE, MASK)


def stage_names(model_name: str) -> dict[str, str]:
    """The ensemble's model names: {"ensemble": "<name>_ensemble", "prep": "<name>_prep", ...}."""
    return {part: f"{model_name}_{part}" for part in ("ensemble", *STAGES)}


def _tensors(tensors: dict[str, tuple[str, str]]) -> str:
    """Config entries of tensors (name -> (data type, dims)); those in OPTIONAL_INPUTS marked optional."""
    return ",\n".join(f'  {{ name: "{name}" data_type: {dtype} dims: [ {dims} ]'
                      f'{" optional: true" if name in OPTIONAL_INPUTS else ""} }}'
                      for name, (dtype, dims) in tensors.items())


def _model_config(name: str, kind: str, instances: int, inputs: dict, outputs: dict, backend: str,
                  stage: str | None) -> str:
    """config.pbtxt of one step: `backend` is "python" or a platform ("onnxruntime_onnx")."""
    runner = f'backend: "{backend}"' if backend == "python" else f'platform: "{backend}"'
    stage_line = (f'parameters: {{ key: "{STAGE_PARAMETER}" value: {{ string_value: "{stage}" }} }}\n'
                  if backend == "python" else "")
    return (f'name: "{name}"\n{runner}\nmax_batch_size: 0\ninput [\n{_tensors(inputs)}\n]\n'
            f"output [\n{_tensors(outputs)}\n]\ninstance_group [ {{ count: {instances} kind: {kind} }} ]\n{stage_line}")


def _map(pairs: dict[str, str]) -> str:
    return ", ".join(f'{{ key: "{key}" value: "{value}" }}' for key, value in pairs.items())


def ensemble_pbtxt(config: TritonRepoConfig) -> str:
    """The ensemble model's config.pbtxt: IMAGE, MASK (, EXCLUDE) -> prep -> lr -> hr -> INPAINTED."""
    names = stage_names(config.model_name)
    lr_inputs = {name: ENSEMBLE_LR_INPUT.format(name) for name in INPUT_NAMES}
    lr_outputs = {name: name for name in OUTPUT_NAMES}
    images = {INPUT_IMAGE: INPUT_IMAGE, INPUT_MASK: INPUT_MASK}
    steps = [(names["prep"], {**images, INPUT_EXCLUDE: INPUT_EXCLUDE}, lr_inputs),
             (names["lr"], {name: lr_inputs[name] for name in INPUT_NAMES},
                                                  lr_outputs),
             (names["hr"], {**images, **lr_outputs}, {OUTPUT_IMAGE: OUTPUT_IMAGE})]
    step_text = ",\n".join(f'    {{ model_name: "{model}" model_version: -1\n      input_map [ {_map(inputs)} ]\n'
                           f"      output_map [ {_map(outputs)} ] }}" for model, inputs, outputs in steps)
    return (f'name: "{names["ensemble"]}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
            f"input [\n{_tensors(PREP_INPUTS)}\n]\noutput [\n{_tensors({OUTPUT_IMAGE: HR_INPUTS[INPUT_IMAGE]})}\n]\n"
            f"ensemble_scheduling {{\n  step [\n{step_text}\n  ]\n}}\n")


def stage_configs(config: TritonRepoConfig) -> dict[str, str]:
    """config.pbtxt text of the prep, lr and hr models, by model name."""
    names = stage_names(config.model_name)
    lr_kind = INSTANCE_KINDS[config.device]
    lr_outputs = {name: LR_OUTPUTS[name] for name in OUTPUT_NAMES}
    return {
        names["prep"]: _model_config(names["prep"], INSTANCE_KIND_CPU, config.instances, PREP_INPUTS, LR_INPUTS,
                                     "python", "prep"),
        names["lr"]: _model_config(names["lr"], lr_kind, config.instances, LR_INPUTS, lr_outputs,
                                   config.lr_platform, "lr"),
        names["hr"]: _model_config(names["hr"], INSTANCE_KIND_CPU, config.instances, HR_INPUTS,
                                   {OUTPUT_IMAGE: HR_INPUTS[INPUT_IMAGE]}, "python", "hr"),
    }


def write_ensemble(directory: str | Path, config: TritonRepoConfig) -> Path:
    """Write the ensemble and its three steps into the model repository `directory` (the ONNX graph exported
    from `config.weights`, default the shipped weights). Returns the ensemble model's folder."""
    from .onnx_export import export_onnx

    directory = Path(directory)
    names = stage_names(config.model_name)
    for name, text in stage_configs(config).items():
        version_dir = directory / name / MODEL_VERSION
        shutil.rmtree(version_dir, ignore_errors=True)
        version_dir.mkdir(parents=True)
        (directory / name / "config.pbtxt").write_text(text, encoding="utf-8")
    lr_dir = directory / names["lr"] / MODEL_VERSION
    onnx_path, _ = export_onnx(lr_dir / ONNX_FILE, *EXAMPLE_SIZE, dynamic=True, weights=config.weights)
    model_config = read_metadata(onnx_path)[METADATA_CONFIG]
    for stage in ("prep", "hr"):
        (directory / names[stage] / MODEL_VERSION / CONFIG_FILE).write_text(model_config, encoding="utf-8")
    for stage in ("prep", "hr") + (("lr",) if config.lr_platform == "python" else ()):
        shutil.copyfile(STAGE_SOURCE, directory / names[stage] / MODEL_VERSION / "model.py")
    ensemble_dir = directory / names["ensemble"]
    (ensemble_dir / MODEL_VERSION).mkdir(parents=True, exist_ok=True)   # an ensemble's version folder is empty
    (ensemble_dir / "config.pbtxt").write_text(ensemble_pbtxt(config), encoding="utf-8")
    return ensemble_dir
