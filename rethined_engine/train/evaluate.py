"""Held-out evaluation of weights against simple baselines, on fixed masks.

    python -m rethined_engine.train.evaluate PHOTOS/heldout --long-side 2048 --json out.json

Methods: `ours` (the weights file's inference defaults, recorded as `defaults`), `ours_topK` for K = 1, 4
(mixing the K strongest keys at HR, one band, HF not faded: hf_decay 0), `ours_dense` (the dense attention row, not
faded), `ours_no_hf` (LR result bilinear-upsampled, no HF transfer),
`coarse_bicubic` (our coarse CNN's LR fill, bicubic-upsampled), `untrained` (same architecture, random
init). Masks: free-form, 30-50 % coverage, seed = image index, so runs are comparable. The result (and the
--json file) records where it ran: device, commit (HEAD of the checkout the code runs from), `dirty`,
versions and threads (`bench.env.run_environment`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..bench.env import run_environment
from ..config import ModelConfig
from ..geometry import pad_to, plan, seam_taps
from ..metrics import hole_metrics
from ..model import Rethined
from ..model.upscale import blend_seams, downsample
from ..weights import load_model
from .data import list_images, load_rgb
from .masks import random_mask

DEFAULT_KEYS = ("hr_topk", "hf_decay", "hf_fine_decay", "hf_mid_gain", "seam_sigma", "seam_gain")   # the inference defaults a result records


def coarse_bicubic(model: Rethined, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The coarse CNN's LR fill, bicubic-upsampled to HR and composited (no attention, no HF)."""
    height, width = image.shape[-2:]
    geom = plan(height, width, model.cfg)
    padded = pad_to(image * (1 - mask), geom.padded_size)
    padded_mask = pad_to(mask, geom.padded_size)
    lr_image, lr_mask = downsample(padded, padded_mask, geom.scale)
    lr = model.forward_lr(lr_image, lr_mask, geom.key_inside())
    up = F.interpolate(lr.coarse, scale_factor=float(geom.scale), mode="bicubic", align_corners=False) \
        if geom.scale > 1 else lr.coarse
    return torch.where(mask > 0, up[..., :height, :width].clamp(0, 1), image)


def with_file_seams(model: Rethined, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`model`'s result with the seam blend its config asks for (`seam_sigma` > 0), as the engines apply it."""
    pred = model(image, mask)
    if model.cfg.seam_sigma <= 0:
        return pred
    taps = torch.from_numpy(seam_taps(model.cfg.seam_sigma))
    return blend_seams(image, mask > 0, pred, taps, model.cfg.seam_gain)


def evaluate(folder: Path, weights: Path | None, long_side: int, seed_offset: int = 0) -> dict:
    env = run_environment("cpu")     # the models run on the CPU; exits first if the commit is unknown
    ours = load_model(weights)
    methods = {
        "ours": lambda img, m: with_file_seams(ours, img, m),
        **{f"ours_top{k}": load_model(weights, hr_topk=k, hf_decay=0.0, hf_fine_decay=None) for k in (1, 4)},
        "ours_dense": load_model(weights, hr_topk=0, hf_decay=0.0, hf_fine_decay=None),
        "ours_no_hf": load_model(weights, hf_transfer=False),
        "coarse_bicubic": lambda img, m: coarse_bicubic(ours, img, m),
    }
    torch.manual_seed(0)
    methods["untrained"] = Rethined(ModelConfig()).reparameterize()
    rows = []
    for index, path in enumerate(list_images(folder)):
        image = torch.from_numpy(load_rgb(path, long_side)).permute(2, 0, 1)[None].float() / 255.0
        h, w = image.shape[-2:]
        mask = torch.from_numpy(random_mask(h, w, np.random.default_rng(seed_offset + index)))[None, None].float()
        for name, method in methods.items():
            t0 = time.perf_counter()
            with torch.inference_mode():
                pred = method(image, mask)
            seconds = time.perf_counter() - t0
            rows.append({"image": path.name, "method": name, "size": [h, w], "coverage": float(mask.mean()),
                         "seconds": seconds, **hole_metrics(pred, image, mask)})
            print(f"{path.name:55s} {name:15s} psnr {rows[-1]['psnr']:6.2f} ssim {rows[-1]['ssim']:.4f} "
                  f"l1 {rows[-1]['l1']:.4f} sharp {rows[-1]['sharpness']:.3f} {seconds:.2f}s", flush=True)
    summary = {}
    for name in methods:
        sel = [r for r in rows if r["method"] == name]
        summary[name] = {k: float(np.mean([r[k] for r in sel])) for k in ("psnr", "ssim", "l1", "sharpness", "seconds")}
    return env | {"folder": str(folder), "long_side": long_side,
                  "defaults": {key: getattr(ours.cfg, key) for key in DEFAULT_KEYS},
                  "images": len(rows) // len(methods), "summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hole-region PSNR/SSIM/L1/sharpness on a folder of photographs.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weights", type=Path, default=None, help="default: shipped weights")
    parser.add_argument("--long-side", type=int, default=2048, help="photos are resized to this long side")
    parser.add_argument("--json", type=Path, default=None, help="write all rows and the summary here")
    args = parser.parse_args(argv)
    result = evaluate(args.folder, args.weights, args.long_side)
    print("\nmethod           PSNR(dB)  SSIM    L1      sharpness")
    for name, s in result["summary"].items():
        print(f"{name:15s}  {s['psnr']:7.2f}  {s['ssim']:.4f}  {s['l1']:.4f}  {s['sharpness']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
