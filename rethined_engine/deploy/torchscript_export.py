"""TorchScript export of the whole inpainting, for hosts that load TorchScript: Nuke's Inference node (Foundry's
CatFileCreator turns the .pt into a .cat; docs/integrations.md).

The exported module is `torch.jit.script` of the torch backend's path (`Rethined.forward` and the seam blend),
so it plans any H x W itself, runs on the device and in the float dtype it is moved to, and needs only torch:

    forward(x: (B, 4, H, W) or (B, 5, H, W) float) -> (B, 3, H, W) of x's dtype

x holds RGB in [0, 1] (values outside are clamped for the model) and the hole mask in alpha: a pixel is filled
where alpha >= `ModelConfig.float_mask_threshold` (0.5), as `Engine.inpaint` reads float masks. A fifth channel,
where given, is the exclusion (`Engine.inpaint`'s exclude): a known pixel where it is >= that threshold is never
copied. Known pixels are returned unchanged; without a hole the RGB is returned as it came.
"""
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..geometry import seam_taps
from ..model import Rethined
from ..model.upscale import blend_seams
from ..weights import load_model

INPUT_CHANNELS = (4, 5)  # RGB + the hole mask in alpha (+ the exclusion)
JIT_DEPRECATION = r"`torch\.jit\.script` is deprecated"   # torch >= 2.13, once per scripted function: the hosts
                                                          # this export serves read TorchScript only


class TorchScriptInpainter(nn.Module):
    """`Rethined.forward` plus the torch backend's seam blend behind one RGBA tensor (module docstring).

    model: the inference-form model (float32 on the CPU when exported; the host may move it);
    seam_taps: `geometry.seam_taps(seam_sigma)` as Python floats, empty for no seam blend (a list, not a buffer,
    so that `.half()` leaves the taps as the torch backend has them); seam_gain: `ModelConfig.seam_gain`;
    mask_threshold: alpha at or above which a pixel is filled.
    """

    seam_taps: list[float]

    def __init__(self, model: Rethined, seam_taps: list[float], seam_gain: float, mask_threshold: float):
        super().__init__()
        self.model = model
        self.input_channels = list(INPUT_CHANNELS)
        self.seam_taps = seam_taps
        self.seam_gain = seam_gain
        self.mask_threshold = mask_threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in self.input_channels:
            raise ValueError("x: expected (B, 4, H, W), RGB and the hole mask in alpha, or (B, 5, H, W) with the "
                             "exclusion fifth; got shape " + str(list(x.shape)))
        image = x[:, :3]
        mask = x[:, 3:4] >= self.mask_threshold
        if not bool(mask.any()):
            return image
        exclude: Optional[torch.Tensor] = None
        if x.shape[1] == 5:
            exclude = x[:, 4:5] >= self.mask_threshold
        filled = torch.where(mask, self.model(image.clamp(0.0, 1.0), mask, exclude), image)
        if len(self.seam_taps) == 0:
            return filled
        taps = torch.tensor(self.seam_taps, dtype=torch.float32, device=x.device)
        return blend_seams(image, mask, filled, taps, self.seam_gain)


def script_inpainter(weights: str | Path | None = None, style: str | None = None,
                     **overrides) -> torch.jit.ScriptModule:
    """The scripted `TorchScriptInpainter` of a weights file (default: shipped) on the CPU in float32, in eval
    mode. style: a `config.STYLES` name (None: the weights' own settings, as `Engine()`); overrides: single
    inference settings on top (`config.INFERENCE_FIELDS`)."""
    model = load_model(weights, "cpu", torch.float32, style=style, **overrides)
    cfg = model.cfg
    taps = seam_taps(cfg.seam_sigma).tolist() if cfg.seam_sigma > 0 else []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", JIT_DEPRECATION, DeprecationWarning)
        return torch.jit.script(TorchScriptInpainter(model, taps, cfg.seam_gain, cfg.float_mask_threshold).eval())


def export_torchscript(path: str | Path, weights: str | Path | None = None, style: str | None = None,
                       **overrides) -> Path:
    """Write `script_inpainter(weights, style, **overrides)` to `path` (a .pt file for `torch.jit.load` and
    Foundry's CatFileCreator). Returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".pt", ".pth"):
        raise ValueError(f"path: expected a .pt or .pth file name, got {path.name!r}")
    module = script_inpainter(weights, style, **overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.save(str(path))
    return path
