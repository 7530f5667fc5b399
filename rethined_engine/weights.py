"""Shipped weights: re-parameterised (inference-form) state in fp16 safetensors + config metadata."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .config import INFERENCE_FIELDS, ModelConfig, style_settings
from .model import Rethined

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "rethined_v0.safetensors"
CONFIG_KEY = "model_config"


def save_inference_weights(model: Rethined, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Re-parameterise a copy-safe model in place and write its state as fp16 safetensors."""
    model.reparameterize()
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {CONFIG_KEY: model.cfg.to_json(), **(metadata or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def read_config(path: str | Path) -> ModelConfig:
    """The ModelConfig (architecture and inference defaults) stored in a weights file's metadata."""
    return ModelConfig.from_json(read_metadata(path)[CONFIG_KEY])


def load_model(path: str | Path | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, style: str | None = None, **overrides) -> Rethined:
    """Build the inference-form model from a weights file (default: the shipped weights).

    style: a named group of inference settings (`config.STYLES`: "realistic", "fast", "smooth"; None: the file's
    own); `overrides` replace single inference-time config fields on top (e.g. hr_topk=4, hf_transfer=False).
    """
    overrides = style_settings(style, overrides)
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    fixed = sorted(set(overrides) - set(INFERENCE_FIELDS))
    if fixed:
        raise TypeError(f"{', '.join(fixed)}: not an inference setting (the architecture comes from the weights "
                        f"file); settings that may be overridden: {', '.join(INFERENCE_FIELDS)}")
    cfg = read_config(path).replace(**overrides)
    model = Rethined(cfg).reparameterize()
    state = load_file(str(path))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(device=device, dtype=dtype).eval()
