"""Train RETHINED at LR on random crops; resumable.

    python -m rethined_engine.train.train --data PHOTOS/train --out runs/v0 --steps 4000
    python -m rethined_engine.train.train --out runs/v0 --export rethined_engine/weights/rethined_v0.safetensors

`--init-from` takes a training checkpoint (`runs/<run>/last.pt`) or an inference weights file
(`.safetensors`, e.g. the shipped weights). From a weights file the run fine-tunes the inference form
(MobileOne branches and BN already folded into plain convs with bias; the architecture comes from the
file), so training can go on later from what was committed, without the lost `runs/`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import INFERENCE_FIELDS, STYLES, ModelConfig, style_settings
from ..model import Rethined
from ..model.upscale import attention_upscale, downsample
from ..weights import load_model, read_config, save_inference_weights
from .adversarial import DOWNSAMPLE, Critic
from .data import PHOTO_LONG_SIDE, PhotoCrops, Prefetcher
from .losses import LossWeights, hr_loss, total_loss

CHECKPOINT = "last.pt"
LOG = "log.jsonl"
# the inference settings a model fine-tuned from a weights file trains with: the losses score the
# attention-mixed tokens, which only the "mix" LR texture makes (the copy styles' choices have no gradient)
TRAINING_STYLE = "smooth"
# inference settings that --export can write as the file's defaults: (type, unit for --help)
EXPORT_SETTINGS = {"hr_topk": (int, ""), "hf_decay": (float, " in tokens"), "hf_fine_decay": (float, " in tokens"),
                   "hf_mid_gain": (float, ""), "seam_sigma": (float, " in HR px"), "seam_gain": (float, "")}


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 4000
    batch: int = 8
    crop: int = 256              # LR training crop (the model is fully convolutional + attention)
    lr: float = 1e-3             # Adam, as in the paper
    warmup: int = 200            # linear warm-up steps, then cosine decay to 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    threads: int = 0             # torch CPU threads (0: torch's default)
    ssim_weight: float = 0.0     # LossWeights.hole_ssim (0 in runs v0-v2)
    photo_min: int = PHOTO_LONG_SIDE[0]   # px: long side range at which crops see their photo (at LR)
    photo_max: int = PHOTO_LONG_SIDE[1]
    hr_scale: int = 1            # > 1: crops are HR (crop * hr_scale px), downsampled like inference, and the
                                 # attention-upscaled result is scored too (hr_* weights); 1 in runs v0-v4
    hr_ssim_weight: float = 0.0       # LossWeights.hr_ssim
    hr_sharpness_weight: float = 0.0  # LossWeights.hr_sharpness
    retrieval_weight: float = LossWeights.retrieval   # LossWeights.retrieval (0.05 in runs v0-v8)
    copy_distance_weight: float = 0.0                 # LossWeights.copy_distance (0 in runs v0-v8)
    object_share: float = 0.0    # share of crops whose mask is object silhouettes instead of strokes (0 in runs v0-v8)
    coarse_swd_weight: float = 0.0   # LossWeights.coarse_swd (0 in runs v0-v8)
    coarse_prefill: str = ""     # a new run's ModelConfig.coarse_prefill ("zeros", "membrane"); "" keeps the
                                 # architecture's own (the file's with --init-from X.safetensors)
    adversarial_weight: float = 0.0  # the LR result's adversarial term (`adversarial.Critic`; 0 in runs v0-v8: none)
    discriminator_lr: float = 2e-4   # its discriminator's Adam learning rate (constant)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _is_fused(model: Rethined) -> bool:
    """True when the model is in inference form (MobileOne branches folded)."""
    return any(getattr(m, "fused", None) is not None for m in model.modules())


def _architecture(cfg: ModelConfig) -> ModelConfig:
    """cfg with the inference settings (INFERENCE_FIELDS, not learned) at their defaults."""
    defaults = ModelConfig()
    return dataclasses.replace(cfg, **{name: getattr(defaults, name) for name in INFERENCE_FIELDS})


def with_prefill(model: Rethined, prefill: str) -> Rethined:
    """model itself, or (prefill names another `ModelConfig.coarse_prefill`) a copy built for that prefill with the
    same tensors: the coarse CNN then learns to correct the new input."""
    if not prefill or prefill == model.cfg.coarse_prefill:
        return model
    device = next(model.parameters()).device
    rebuilt = _build(model.cfg.replace(coarse_prefill=prefill), _is_fused(model), str(device))
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def _build(mcfg: ModelConfig, fused: bool, device: str) -> Rethined:
    model = Rethined(mcfg)
    if fused:
        model.reparameterize()
    return model.to(device)


def _save(path: Path, model, opt, step: int, rng_state: dict, tcfg: TrainConfig, elapsed: float,
          critic: Critic | None) -> None:
    """rng_state: the data generator's state from before the next batch to train on; critic: the adversarial
    term's discriminator and optimiser, where the run has one."""
    tmp = path.with_suffix(".tmp")
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng_state,
             "torch_rng": torch.get_rng_state(), "model_config": model.cfg.to_json(), "fused": _is_fused(model),
             "train_config": dataclasses.asdict(tcfg), "elapsed_s": elapsed}
    if critic is not None:
        state["critic"] = critic.state_dict()
    torch.save(state, tmp)
    tmp.replace(path)


def warm_start(model: Rethined, checkpoint: Path, skip: tuple[str, ...]) -> list[str]:
    """Load another run's weights except parameters whose names start with one of `skip`; returns the
    names loaded."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if not k.startswith(skip) and k in own and own[k].shape == v.shape}
    model.load_state_dict(keep, strict=False)
    return sorted(keep)


def hr_forward(model: Rethined, image: torch.Tensor, mask: torch.Tensor, scale: int, key_inside: torch.Tensor):
    """An HR crop batch as inference sees it: image (B, 3, H, W), mask (B, 1, H, W) float at HR -> LR input by
    the engine's masked downsampling, the LR network, then attention upscaling with the engine's hr_topk
    mixing (differentiable in the kept weights). Returns (LROutput, LR ground truth, LR mask, HR result)."""
    known = 1.0 - mask
    lr_target, _ = downsample(image, torch.zeros_like(mask), scale)
    lr_input, lr_mask = downsample(image * known, mask, scale)
    lr_out = model.forward_lr(lr_input, lr_mask, key_inside)
    hr = attention_upscale(image * known, mask, lr_out.result, lr_out.attn, lr_out.query_masked, lr_out.key_ok,
                           scale, model.cfg.patch_size, model.cfg.hr_topk, hf_decay=model.cfg.hf_decay,
                           hf_fine_decay=model.cfg.hf_fine_decay, hf_mid_gain=model.cfg.hf_mid_gain)
    return lr_out, lr_target, lr_mask, hr


def _step_losses(model: Rethined, image: torch.Tensor, mask: torch.Tensor, scale: int, key_inside: torch.Tensor,
                 weights: LossWeights) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor,
                                                torch.Tensor]:
    """A batch's reconstruction losses: the LR losses (against the downsampled ground truth for HR crops, scale
    > 1) plus, for HR crops, the HR losses on the upscaled result. Returns (loss, parts for logging, the LR result,
    the LR ground truth, the LR mask): what the adversarial term judges."""
    if scale == 1:
        lr_out = model.forward_lr(image, mask, key_inside)
        loss, parts = total_loss(lr_out, image, mask, model.cfg.patch_size, weights)
        return loss, parts, lr_out.result, image, mask
    lr_out, lr_target, lr_mask, hr = hr_forward(model, image, mask, scale, key_inside)
    loss, parts = total_loss(lr_out, lr_target, lr_mask, model.cfg.patch_size, weights)
    hr_extra, hr_parts = hr_loss(hr, image, mask, weights)
    return loss + hr_extra, parts | hr_parts, lr_out.result, lr_target, lr_mask


def train(data: Path, out: Path, tcfg: TrainConfig, mcfg: ModelConfig = ModelConfig(),
          device: str = "cpu", init_from: Path | None = None, init_skip: tuple[str, ...] = ()) -> Path:
    """Run (or resume) training until tcfg.steps; returns the checkpoint path.

    init_from: a checkpoint whose weights (except names starting with init_skip) start a new run, or an
    inference weights file (.safetensors) whose inference-form model is fine-tuned (mcfg is then ignored:
    the architecture comes from the file).
    """
    if tcfg.hr_scale < 1:
        raise ValueError(f"hr_scale must be >= 1, got {tcfg.hr_scale}")
    if tcfg.adversarial_weight < 0 or tcfg.discriminator_lr <= 0:
        raise ValueError(f"adversarial_weight: expected >= 0 and discriminator_lr > 0, got {tcfg.adversarial_weight} "
                         f"and {tcfg.discriminator_lr}")
    if tcfg.adversarial_weight and tcfg.crop % DOWNSAMPLE:
        raise ValueError(f"crop: expected a multiple of {DOWNSAMPLE} (the discriminator's cell) with "
                         f"adversarial_weight > 0, got {tcfg.crop}")
    from_weights = init_from is not None and init_from.suffix == ".safetensors"
    if from_weights and init_skip:
        raise ValueError("--init-skip applies to a training checkpoint, not to a .safetensors weights file")
    out.mkdir(parents=True, exist_ok=True)
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    ckpt_path, step, elapsed = out / CHECKPOINT, 0, 0.0
    state = torch.load(ckpt_path, map_location=device, weights_only=False) if ckpt_path.exists() else None
    if state is not None:
        expected, saved = read_config(init_from) if from_weights else mcfg, ModelConfig.from_json(state["model_config"])
        if tcfg.coarse_prefill:
            expected = expected.replace(coarse_prefill=tcfg.coarse_prefill)
        if _architecture(saved) != _architecture(expected):
            raise ValueError(f"{ckpt_path} was trained with a different architecture (ModelConfig beyond the "
                             f"inference settings {INFERENCE_FIELDS})")
        model = _build(saved, state.get("fused", False), device)   # the run keeps its own inference settings
        model.load_state_dict(state["model"])
    elif from_weights:
        model = load_model(init_from, device, style=TRAINING_STYLE)   # inference form, architecture from the file
        print(f"fine-tuning the inference-form model of {init_from} with style={TRAINING_STYLE!r}")
        model = with_prefill(model, tcfg.coarse_prefill)
    else:
        model = _build(mcfg, False, device)
        if init_from is not None:
            loaded = warm_start(model, init_from, init_skip)
            print(f"warm start: {len(loaded)} tensors from {init_from} (re-initialised: {init_skip})")
        model = with_prefill(model, tcfg.coarse_prefill)
    mcfg = model.cfg
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    critic = Critic(tcfg.discriminator_lr, device) if tcfg.adversarial_weight else None
    if state is not None:
        opt.load_state_dict(state["opt"])
        if critic is not None and "critic" in state:
            critic.load_state_dict(state["critic"])
        step, elapsed = state["step"], state["elapsed_s"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {ckpt_path} at step {step}")
    scale = tcfg.hr_scale
    dataset = PhotoCrops(data, tcfg.crop * scale, long_side=(tcfg.photo_min * scale, tcfg.photo_max * scale),
                         device=device, object_share=tcfg.object_share)
    print(f"{len(dataset.photos)} photos, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params")
    model.train()
    key_inside = torch.ones(1, (tcfg.crop // mcfg.patch_size) ** 2, dtype=torch.bool, device=device)
    weights = LossWeights(hole_ssim=tcfg.ssim_weight, hr_ssim=tcfg.hr_ssim_weight,
                          hr_sharpness=tcfg.hr_sharpness_weight, retrieval=tcfg.retrieval_weight,
                          copy_distance=tcfg.copy_distance_weight, coarse_swd=tcfg.coarse_swd_weight)
    batches = Prefetcher(dataset, tcfg.batch, rng)   # owns rng from here on
    with open(out / LOG, "a") as log:
        while step < tcfg.steps:
            t0 = time.perf_counter()
            image, mask = batches.next()
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, tcfg)
            loss, parts, fake, real, hole = _step_losses(model, image, mask, scale, key_inside, weights)
            if critic is not None:
                adversarial = critic.generator_loss(fake, hole)
                loss = loss + tcfg.adversarial_weight * adversarial
                parts["adversarial"] = float(adversarial.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            opt.step()
            if critic is not None:
                parts["discriminator"] = critic.step(real, fake, hole)
            step += 1
            elapsed += time.perf_counter() - t0
            log.write(json.dumps({"step": step, "loss": float(loss.detach()), **parts, "lr": learning_rate(step - 1, tcfg),
                                  "logit_scale": float(model.patch_match.logit_scale().detach()), "elapsed_s": elapsed}) + "\n")
            if step % 10 == 0:
                log.flush()
                print(f"step {step} loss {float(loss.detach()):.4f} {parts} {elapsed:.0f}s", flush=True)
            if step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
                _save(ckpt_path, model, opt, step, batches.upcoming_state, tcfg, elapsed, critic)
    batches.close()
    return ckpt_path


def export(checkpoint: Path, weights: Path, extra: dict[str, str] | None = None, style: str | None = None,
           **inference) -> None:
    """Checkpoint -> shipped inference weights (re-parameterised, fp16).

    Inference settings (`INFERENCE_FIELDS`, not learned) take the current `ModelConfig` defaults, then the
    named `style`'s (`config.STYLES`, e.g. "realistic"), then the values given in `inference`; the
    architecture comes from the checkpoint.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    settings = style_settings(style, inference)
    cfg = _architecture(ModelConfig.from_json(state["model_config"])).replace(**settings)
    model = _build(cfg, state.get("fused", False), "cpu")
    model.load_state_dict(state["model"])
    meta = {"train_steps": str(state["step"]), "train_seconds": f"{state['elapsed_s']:.0f}",
            "train_config": json.dumps(state["train_config"]), **(extra or {})}
    save_inference_weights(model, weights, meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train RETHINED (resumes from OUT/last.pt).")
    parser.add_argument("--data", type=Path, help="folder of training photographs")
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint + log)")
    parser.add_argument("--export", type=Path, help="write inference weights from OUT/last.pt and exit")
    for name, (kind, unit) in EXPORT_SETTINGS.items():
        parser.add_argument(f"--export-{name.replace('_', '-')}", type=kind, default=None,
                            help=f"with --export: the file's default {name}{unit} (else the checkpoint's)")
    parser.add_argument("--export-style", choices=sorted(STYLES), default=None,
                        help="with --export: the file's default inference settings are this style's "
                             "(--export-* settings on top)")
    parser.add_argument("--export-lineage", default=None, help="with --export: the runs these weights descend from")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="warm-start a new run from this checkpoint, or fine-tune this .safetensors weights file")
    parser.add_argument("--init-skip", nargs="*", default=[], help="parameter-name prefixes not to warm-start")
    for field in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args(argv)
    if args.export:
        chosen = {name: getattr(args, f"export_{name}") for name in EXPORT_SETTINGS}
        settings = {name: value for name, value in chosen.items() if value is not None}
        extra = {} if args.export_lineage is None else {"lineage": args.export_lineage}
        export(args.out / CHECKPOINT, args.export, extra, args.export_style, **settings)
        print(f"wrote {args.export}")
        return
    if args.data is None:
        parser.error("--data is required for training")
    tcfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    train(args.data, args.out, tcfg, device=args.device, init_from=args.init_from, init_skip=tuple(args.init_skip))


if __name__ == "__main__":
    main()
