"""Triton Inference Server Python-backend model that serves `Engine.inpaint`: `rethined export triton-repo`
copies this file to `<repository>/<model>/<version>/model.py`.

One request: IMAGE uint8 (H, W, 3) RGB and MASK uint8 (H, W), nonzero = fill, of any H and W, and optionally
EXCLUDE uint8 (H, W), nonzero = never copied; one response: INPAINTED uint8 (H, W, 3), the bytes
`Engine().inpaint(image, mask, exclude)` returns. A request the Engine refuses (a
mask of another size, an empty image) gets an error response carrying the Engine's message; the model
stays loaded. The Engine's settings come from the `parameters` of config.pbtxt (`triton_repo.PARAMETERS`)
and its device from the instance group: KIND_GPU -> "cuda:<device id>", KIND_CPU -> "cpu", KIND_MODEL ->
the Engine's default.

Runs inside Triton's Python-backend stub, in an environment where rethined_engine is installed.
"""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from rethined_engine import Engine
from rethined_engine.deploy.triton_repo import INPUT_EXCLUDE, INPUT_IMAGE, INPUT_MASK, OUTPUT_IMAGE, engine_arguments


def instance_device(kind: str, device_id: str):
    """Triton's instance kind ("GPU", "CPU", "MODEL") and device id -> the Engine's `device` argument."""
    return {"GPU": f"cuda:{device_id}", "CPU": "cpu"}.get(kind)


class TritonPythonModel:
    """The Python backend's model: one `Engine` per model instance, loaded in `initialize`."""

    def initialize(self, args: dict) -> None:
        """args: Triton's strings; model_config (JSON), model_repository (this model's folder), model_version,
        model_instance_kind and model_instance_device_id."""
        parameters = json.loads(args["model_config"]).get("parameters", {})
        version_dir = Path(args["model_repository"]) / args["model_version"]
        device = instance_device(args["model_instance_kind"], args["model_instance_device_id"])
        self.engine = Engine(device=device, **engine_arguments(parameters, version_dir))

    def execute(self, requests: list) -> list:
        """One response per request, in order; a refused request gets an error response of its own."""
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        image = pb_utils.get_input_tensor_by_name(request, INPUT_IMAGE).as_numpy()
        mask = pb_utils.get_input_tensor_by_name(request, INPUT_MASK).as_numpy()
        exclude = pb_utils.get_input_tensor_by_name(request, INPUT_EXCLUDE)   # None: the request has none
        try:
            result = self.engine.inpaint(image, mask, None if exclude is None else exclude.as_numpy())
        except (ValueError, TypeError) as exc:
            error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)   # HTTP 400, gRPC INVALID_ARGUMENT
            return pb_utils.InferenceResponse(error=error)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT_IMAGE, np.ascontiguousarray(result))])

    def finalize(self) -> None:
        """Drop the Engine (its weights and buffers) when Triton unloads the model."""
        self.engine = None
