"""How close each guess of a hole's colours comes to the truth, token by token, on training crops.

    python -m bench.coarse_colour --images PHOTOS/train --weights A.safetensors B.safetensors --out OUT.json

For `--crops` random 256 x 256 crops (the training sampler, `PhotoCrops`, photos seen at a long side of
512-768 px like inference's LR image; seeded), half with strokes masks and half with object masks, the RMS
colour error (RGB in [0, 1]) between the truth's 8 x 8 token means and each guess's, over the tokens that hold
a hole pixel (their known pixels are the truth's in every guess), averaged per mask family:

- `coarse[NAME]`: the coarse CNN's fill of each weights file (the composite the copy's queries are made from);
- `lr_result[NAME]`: the whole LR fill at the file's own inference settings (copies, colour anchor);
- `membrane`: `coarse.membrane_prefill` (the membrane through the known pixels' 4 px cell means);
- `navier_stokes`: OpenCV's Navier-Stokes inpainting (radius 3, 8-bit).

The JSON holds the run's environment (`bench.env.run_environment`), the settings and these means.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from rethined_engine.model.coarse import membrane_prefill
from rethined_engine.model.patchmatch import token_colours, token_mask
from rethined_engine.model.rethined import key_inside_tokens
from rethined_engine.train.data import PhotoCrops
from rethined_engine.train.masks import MASK_FAMILIES
from rethined_engine.weights import DEFAULT_WEIGHTS, load_model

from .env import run_environment

CROP = 256                  # LR px, as training's crops
PHOTO_LONG_SIDE = (512, 768)  # px: the shipped runs' --photo-min / --photo-max
NS_RADIUS = 3


def token_errors(guess: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor, patch: int) -> list[np.ndarray]:
    """guess, truth (B, 3, h, w), mask (B, 1, h, w) -> per image, the RMS colour error of each token that holds a
    hole pixel (its mean over the token's pixels against the truth's)."""
    error = (token_colours(guess, patch) - token_colours(truth, patch)).pow(2).mean(dim=1).sqrt().flatten(1)
    holes = token_mask(mask, patch)
    return [error[b][holes[b]].numpy() for b in range(guess.shape[0])]


def navier_stokes(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """OpenCV's Navier-Stokes fill of each image (B, 3, h, w) in [0, 1] over mask (B, 1, h, w)."""
    filled = []
    for rgb, hole in zip(image, mask):
        pixels = (rgb.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        out = cv2.inpaint(pixels, (hole[0].numpy() > 0).astype(np.uint8) * 255, NS_RADIUS, cv2.INPAINT_NS)
        filled.append(torch.from_numpy(out).permute(2, 0, 1).float() / 255.0)
    return torch.stack(filled)


def measure(images: Path, weights: dict[str, Path], crops: int, seed: int) -> dict:
    models = {name: load_model(path) for name, path in weights.items()}
    patch = next(iter(models.values())).cfg.patch_size
    grid = CROP // patch
    sampler = PhotoCrops(images, CROP, long_side=PHOTO_LONG_SIDE)
    rng = np.random.default_rng(seed)
    errors: dict[str, dict[str, list[np.ndarray]]] = {}

    def add(name: str, family: str, guess: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> None:
        errors.setdefault(name, {}).setdefault(family, []).extend(token_errors(guess, truth, mask, patch))

    keys = {name: key_inside_tokens(CROP, CROP, patch, grid, grid, model.key_edge_tokens, torch.device("cpu"))[None]
            for name, model in models.items()}
    for index in range(crops):
        family = list(MASK_FAMILIES)[index % len(MASK_FAMILIES)]
        truth, _ = sampler.sample(1, rng)
        mask = torch.from_numpy(MASK_FAMILIES[family](CROP, CROP, rng))[None, None].float()
        known = truth * (1.0 - mask)
        for name, model in models.items():
            out = model.forward_lr(known, mask, keys[name])
            add(f"coarse[{name}]", family, torch.where(mask > 0, out.coarse, known), truth, mask)
            add(f"lr_result[{name}]", family, out.result, truth, mask)
        add("membrane", family, membrane_prefill(known, mask), truth, mask)
        add("navier_stokes", family, torch.where(mask > 0, navier_stokes(known, mask), known), truth, mask)
    return {name: {family: float(np.concatenate(parts).mean()) for family, parts in by_family.items()}
            for name, by_family in errors.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of photographs (training photos)")
    parser.add_argument("--weights", type=Path, nargs="+", default=[DEFAULT_WEIGHTS],
                        help="weights files, named by their stems (default: the shipped file)")
    parser.add_argument("--crops", type=int, default=96, help="crops, alternately strokes and objects masks")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.crops < 2:
        parser.error(f"--crops must be >= 2 (one per mask family), got {args.crops}")
    names = [path.stem for path in args.weights]
    if len(set(names)) != len(names):
        parser.error(f"--weights: files need distinct names (stems), got {names}")
    env = run_environment("cpu")
    with torch.inference_mode():
        means = measure(args.images, dict(zip(names, args.weights)), args.crops, args.seed)
    result = {**env, "images": str(args.images), "crops": args.crops, "seed": args.seed, "crop": CROP,
              "photo_long_side": list(PHOTO_LONG_SIDE), "weights": {n: str(p) for n, p in zip(names, args.weights)},
              "token_colour_rms": means}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    width = max(map(len, means))
    for name, by_family in means.items():
        print(f"{name:<{width}}  " + "  ".join(f"{family} {value:.4f}" for family, value in by_family.items()))


if __name__ == "__main__":
    main()
