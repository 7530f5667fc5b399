"""ONNX export of the LR network: coarse CNN + NeuralPatchMatch + coherence, inference form.

Graph inputs (float32; h, w multiples of 32, gh = h / P, gw = w / P, N = gh * gw):
    image (B, 3, h, w) in [0, 1], hole pixels ignored;  mask (B, 1, h, w), 1 = hole;
    key_inside (B, 1, gh, gw), 1 = token may be a source (its HR patch lies inside the image).
Graph outputs:
    lr_result (B, 3, h, w) float32, the composited LR inpainting;
    topk_weight, topk_fine_weight (B, N, K) float32 and topk_index (B, N, K) int32: token i at HR becomes
    up_i + sum_k (topk_weight[i, k] * HF_j + topk_fine_weight[i, k] * fine_j), j = topk_index[i, k]
    (`model.upscale`: HF = y - up, fine = the finest band). Both weights are the attention row's K
    largest entries renormalised to sum 1, scaled by the token's band gains (`hf_band_gains`), then
    zeroed where the row is a known token or the source is not a key, so the HR stage needs no other
    mask (`attention_upscale` with topk = K, exactly).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch
from torch import nn

from ..geometry import Geometry, plan
from ..model import Rethined
from ..model.patchmatch import pad_rows
from ..model.upscale import hf_band_gains
from ..weights import load_model
from .graph_spec import INPUT_NAMES, METADATA_CONFIG, METADATA_DYNAMIC, METADATA_LR_SIZE, OPSET, OUTPUT_NAMES


class LRNetwork(nn.Module):
    """The exported graph: `Rethined.forward_lr` plus the top-K selection the HR stage consumes.

    compact=True computes the same outputs over hole rows x allowed keys only (`masked_attention_topk`):
    faster eager inference, but data-dependent shapes, so not for export.
    """

    def __init__(self, model: Rethined, topk: int, compact: bool = False):
        super().__init__()
        if topk < 1:
            raise ValueError(f"topk: the exported graph mixes the K strongest keys, K >= 1; got {topk} "
                             "(dense rows, hr_topk=0, are not exported)")
        self.model, self.topk, self.compact = model, topk, compact

    def forward(self, image: torch.Tensor, mask: torch.Tensor, key_inside: torch.Tensor):
        if self.compact or self.model.cfg.lr_texture == "copy":
            topk = self.topk if self.compact else None
            out = self.model.forward_lr(image, mask, key_inside.flatten(1) > 0.5, topk=topk)
            weight, index = pad_rows(out.attn, self.topk)   # already zero on known rows and past the allowed keys
        else:
            out = self.model.forward_lr(image, mask, key_inside.flatten(1) > 0.5)
            weight, index = out.attn.topk(self.topk, dim=-1)
            source_ok = torch.gather(out.key_ok.float(), 1, index.flatten(1)).reshape(index.shape)
            weight = weight / weight.sum(dim=-1, keepdim=True) * source_ok * out.query_masked.float()[..., None]
        cfg = self.model.cfg
        gain, fine_gain = hf_band_gains(out.key_ok.reshape(key_inside.shape), cfg.hf_decay, cfg.hf_fine_decay,
                                        cfg.hf_mid_gain)
        return out.result, weight * gain[..., None], weight * fine_gain[..., None], index.to(torch.int32)


def example_inputs(height: int, width: int, patch: int, batch: int = 1, seed: int = 0):
    """Random LR inputs of the graph's shapes (scattered hole tokens plus a block of them, whose inner
    tokens lie deeper than 1 token from known content), for tracing and tests."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=g)
    grid_h, grid_w = height // patch, width // patch
    mask = (torch.rand(batch, 1, grid_h, grid_w, generator=g) < 0.2).float()
    mask[..., grid_h // 4:grid_h // 2, grid_w // 4:grid_w // 2] = 1.0
    mask = torch.nn.functional.interpolate(mask, scale_factor=patch, mode="nearest")
    key_inside = torch.ones(batch, 1, height // patch, width // patch)
    return image, mask, key_inside


def export_onnx(path: str | Path, height: int = 2048, width: int = 2048, dynamic: bool = False,
                weights: str | Path | None = None, topk: int | None = None) -> tuple[Path, Geometry]:
    """Write the LR network for images of height x width (HR pixels) as ONNX, opset 17.

    The graph's LR size follows from the image size by `geometry.plan` (e.g. 2048x2048 -> 512x512, scale
    4). dynamic: batch and the LR height/width become free axes (the image size only picks the example).
    topk: default the weights' hr_topk. Returns (path, geometry of the example size).
    """
    if height < 1 or width < 1:
        raise ValueError(f"height, width: expected positive image sizes, got {height}x{width}")
    model = load_model(weights, "cpu", torch.float32).eval()
    geom = plan(height, width, model.cfg)
    net = LRNetwork(model, model.cfg.hr_topk if topk is None else topk).eval()
    inputs = example_inputs(*geom.lr_size, model.cfg.patch_size)
    dynamic_axes = None
    if dynamic:
        lr_axes = {0: "batch", 2: "lr_height", 3: "lr_width"}
        token_axes = {0: "batch", 1: "tokens"}
        dynamic_axes = {"image": lr_axes, "mask": lr_axes, "lr_result": lr_axes,
                        "key_inside": {0: "batch", 2: "grid_h", 3: "grid_w"},
                        "topk_weight": token_axes, "topk_fine_weight": token_axes, "topk_index": token_axes}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes: sizes stay symbolic
        torch.onnx.export(net, inputs, str(path), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          opset_version=OPSET, dynamic_axes=dynamic_axes, dynamo=False)
    _add_metadata(path, {METADATA_CONFIG: dataclasses.replace(model.cfg, hr_topk=net.topk).to_json(),
                         METADATA_DYNAMIC: "1" if dynamic else "0",
                         METADATA_LR_SIZE: ",".join(map(str, geom.lr_size))})
    return path, geom


def _add_metadata(path: Path, entries: dict[str, str]) -> None:
    """Store what the TensorRT builder and runtime need inside the ONNX file (metadata_props)."""
    import onnx

    model = onnx.load(str(path))
    for key, value in entries.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(model, str(path))

