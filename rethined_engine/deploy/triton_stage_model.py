"""Triton Python-backend model of one step of the ensemble `rethined export triton-repo --ensemble` writes
(`triton_ensemble`); the config.pbtxt parameter "stage" picks the step:

    prep: IMAGE uint8 (H, W, 3), MASK uint8 (H, W) (nonzero = fill), optionally EXCLUDE uint8 (H, W) (nonzero =
          never copied) -> the LR graph's inputs image (1, 3, h, w), mask (1, 1, h, w), key_inside (1, 1, gh, gw)
          float32 (`host.prepare_lr`)
    lr:   those -> lr_result (1, 3, h, w), topk_weight, topk_fine_weight (1, N, K) float32, topk_index
          (1, N, K) int32, by onnxruntime on model.onnx (lr_platform "python" only)
    hr:   IMAGE, MASK and the LR outputs -> INPAINTED uint8 (H, W, 3) (`host.upscale_hr`, seam blend)

prep and hr follow model_config.json in their version folder (the graph's ModelConfig). A request
`Engine.inpaint` would refuse (a mask of another size, an empty image) gets an error response with its
message from prep, which ends the ensemble's request there.
"""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from rethined_engine.config import ModelConfig
from rethined_engine.deploy.graph_spec import INPUT_NAMES, OUTPUT_NAMES
from rethined_engine.deploy.host import prepare_lr, upscale_hr
from rethined_engine.deploy.pipeline import DeployedPipeline
from rethined_engine.deploy.triton_ensemble import CONFIG_FILE, ONNX_FILE, STAGE_PARAMETER, STAGES
from rethined_engine.deploy.triton_repo import INPUT_EXCLUDE, INPUT_IMAGE, INPUT_MASK, OUTPUT_IMAGE
from rethined_engine.geometry import plan
from rethined_engine.io import host_inputs


class TritonPythonModel:
    """One ensemble step; `initialize` loads what its stage needs (ModelConfig, or an onnxruntime session)."""

    def initialize(self, args: dict) -> None:
        """args: Triton's strings; model_config (JSON), model_repository, model_version, model_instance_kind,
        model_instance_device_id."""
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.stage = parameters.get(STAGE_PARAMETER, {}).get("string_value")
        if self.stage not in STAGES:
            raise ValueError(f"parameters: {STAGE_PARAMETER!r} must be one of {STAGES}, got {self.stage!r}")
        version_dir = Path(args["model_repository"]) / args["model_version"]
        if self.stage == "lr":
            import onnxruntime

            providers = (["CPUExecutionProvider"] if args["model_instance_kind"] != "GPU" else
                         [("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])})])
            self.session = onnxruntime.InferenceSession(str(version_dir / ONNX_FILE), providers=providers)
        else:   # the host halves of the deployed pipeline; its LR network runs in the ensemble's lr model
            config = ModelConfig.from_json((version_dir / CONFIG_FILE).read_text(encoding="utf-8"))
            self.pipeline = DeployedPipeline(config, lr_runner=None, sizes=None)

    def execute(self, requests: list) -> list:
        """One response per request, in order; a refused request gets an error response of its own."""
        step = {"prep": self.prepare, "lr": self.run_lr, "hr": self.upscale}[self.stage]
        responses = []
        for request in requests:
            def tensor(name, request=request):
                """The request's input `name` as numpy; None for an optional input it does not carry."""
                given = pb_utils.get_input_tensor_by_name(request, name)
                return None if given is None else given.as_numpy()
            try:
                outputs = step(tensor)
            except (ValueError, TypeError) as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in outputs.items()]))
        return responses

    def _checked(self, tensor, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """IMAGE, MASK (and exclude) -> (H, W, 3) uint8, (H, W) bool and (H, W) bool or None, checked as
        `Engine.inpaint` checks them."""
        batch = host_inputs(tensor(INPUT_IMAGE), tensor(INPUT_MASK), self.pipeline.threshold, exclude)
        return batch.images[0], batch.masks[0], None if batch.excludes is None else batch.excludes[0]

    def prepare(self, tensor) -> dict[str, np.ndarray]:
        image, mask, exclude = self._checked(tensor, tensor(INPUT_EXCLUDE))
        geom = plan(image.shape[0], image.shape[1], self.pipeline.config)
        return dict(zip(INPUT_NAMES, prepare_lr(image, mask, geom, exclude)))

    def run_lr(self, tensor) -> dict[str, np.ndarray]:
        return dict(zip(OUTPUT_NAMES, self.session.run(None, {name: tensor(name) for name in INPUT_NAMES})))

    def upscale(self, tensor) -> dict[str, np.ndarray]:
        """`DeployedPipeline.inpaint_one` after its LR network call."""
        image, mask, _ = self._checked(tensor)
        if not mask.any():
            return {OUTPUT_IMAGE: image}
        lr_result, weight, fine_weight, index = (tensor(name) for name in OUTPUT_NAMES)
        if not self.pipeline.config.hf_transfer:
            weight, fine_weight = np.zeros_like(weight), np.zeros_like(fine_weight)
        geom = plan(image.shape[0], image.shape[1], self.pipeline.config)
        filled = upscale_hr(image, mask, lr_result, weight[0], fine_weight[0], index[0], geom,
                            self.pipeline.config.hr_feather, self.pipeline.config.hr_fade_reflect)
        return {OUTPUT_IMAGE: self.pipeline.blend_seams(image, mask, filled)}

    def finalize(self) -> None:
        """Drop the session or pipeline when Triton unloads the model."""
        self.session = self.pipeline = None
