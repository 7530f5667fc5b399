"""Build a TensorRT plan from the exported LR network (fp16, workspace limit, optimisation profile,
timing cache), or print the equivalent `trtexec` command.

    python -m rethined_engine.deploy.tensorrt_build lr.onnx lr.plan [--fp32] [--workspace-mb 1024]
        [--opt-size 2048x2048] [--max-batch 1] [--timing-cache timing.cache] [--print-trtexec]

The plan is specific to the GPU and TensorRT version that built it: build on the Jetson itself.
Next to it goes `<plan>.json` (ModelConfig, K, LR sizes the plan accepts), which the runtime reads.
"""
from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import ModelConfig
from ..geometry import plan
from .graph_spec import INPUT_NAMES, METADATA_CONFIG, METADATA_DYNAMIC, METADATA_LR_SIZE, read_metadata

SIDECAR_SUFFIX = ".json"
MIN_LR_SIDE = 32  # the CNN's stride: the smallest LR side any image maps to


@dataclass(frozen=True)
class BuildSettings:
    fp16: bool = True
    workspace_mb: int = 1024               # builder scratch memory limit (Orin Nano 8 GB: keep <= 1024)
    opt_size: tuple[int, int] = (2048, 2048)  # image size (HR px) the dynamic profile is tuned for
    max_batch: int = 1
    timing_cache: str | None = "timing.cache"


def lr_shapes(lr_h: int, lr_w: int, patch: int, batch: int) -> dict[str, tuple[int, ...]]:
    """Input shapes of the LR graph for one LR size."""
    return {"image": (batch, 3, lr_h, lr_w), "mask": (batch, 1, lr_h, lr_w),
            "key_inside": (batch, 1, lr_h // patch, lr_w // patch)}


def profile_shapes(cfg: ModelConfig, settings: BuildSettings) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) shape per input of a dynamic plan. Every image maps to an LR size with sides in
    [32, lr_long_side] (`geometry.plan`), so one profile serves every image size."""
    opt = plan(*settings.opt_size, cfg).lr_size
    low = lr_shapes(MIN_LR_SIDE, MIN_LR_SIDE, cfg.patch_size, 1)
    mid = lr_shapes(*opt, cfg.patch_size, 1)
    high = lr_shapes(cfg.lr_long_side, cfg.lr_long_side, cfg.patch_size, settings.max_batch)
    return {name: (low[name], mid[name], high[name]) for name in INPUT_NAMES}


def trtexec_command(onnx_path: str | Path, plan_path: str | Path, settings: BuildSettings,
                    cfg: ModelConfig, dynamic: bool) -> list[str]:
    """The `trtexec` (TensorRT >= 8.5) equivalent of `build_plan`."""
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan_path}",
           f"--memPoolSize=workspace:{settings.workspace_mb}M"]
    if settings.fp16:
        cmd.append("--fp16")
    if settings.timing_cache:
        cmd.append(f"--timingCacheFile={settings.timing_cache}")
    if dynamic:
        shapes = profile_shapes(cfg, settings)
        for flag, which in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            cmd.append(flag + "=" + ",".join(f"{name}:{'x'.join(map(str, shapes[name][which]))}" for name in INPUT_NAMES))
    return cmd


def sidecar_path(plan_path: str | Path) -> Path:
    return Path(str(plan_path) + SIDECAR_SUFFIX)


def plan_info(onnx_path: str | Path, settings: BuildSettings) -> dict:
    """What the runtime needs to know about a plan built from `onnx_path` (written to the sidecar)."""
    meta = read_metadata(onnx_path)
    missing = {METADATA_CONFIG, METADATA_DYNAMIC, METADATA_LR_SIZE} - set(meta)
    if missing:
        raise ValueError(f"onnx_path: {onnx_path} lacks {sorted(missing)}; export it with `rethined export onnx`")
    cfg = ModelConfig.from_json(meta[METADATA_CONFIG])
    dynamic = meta[METADATA_DYNAMIC] == "1"
    lr_size = [int(v) for v in meta[METADATA_LR_SIZE].split(",")]
    return {"model_config": json.loads(cfg.to_json()), "topk": cfg.hr_topk, "dynamic": dynamic,
            "lr_min": [MIN_LR_SIDE] * 2 if dynamic else lr_size,
            "lr_max": [cfg.lr_long_side] * 2 if dynamic else lr_size,
            "max_batch": settings.max_batch if dynamic else 1, "build": asdict(settings)}


def build_plan(onnx_path: str | Path, plan_path: str | Path, settings: BuildSettings = BuildSettings()) -> Path:
    """Parse, build and serialise with the TensorRT Python API (needs `tensorrt` and a GPU)."""
    import tensorrt as trt

    info = plan_info(onnx_path, settings)
    cfg = ModelConfig.from_json(json.dumps(info["model_config"]))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    fp16 = settings.fp16 and bool(builder.platform_has_fast_fp16)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    elif settings.fp16:
        warnings.warn("fp16: this GPU has no fast fp16 kernels; building an fp32 plan (pass --fp32 to ask for "
                      "one)", RuntimeWarning, stacklevel=2)
    info["build"]["fp16"] = fp16   # the sidecar records what the plan was built with, not what was asked for
    if info["dynamic"]:
        profile = builder.create_optimization_profile()
        for name, (low, mid, high) in profile_shapes(cfg, settings).items():
            profile.set_shape(name, low, mid, high)
        config.add_optimization_profile(profile)
    cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT build failed (see the log above)")
    plan_path = Path(plan_path)
    plan_path.write_bytes(bytes(serialized))
    if cache_path:
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    sidecar_path(plan_path).write_text(json.dumps(info, indent=1))
    return plan_path


def parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"size: expected HxW with positive integers (e.g. 2048x2048), got {text!r}")
    return int(parts[0]), int(parts[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--fp32", action="store_true", help="build without fp16 kernels")
    parser.add_argument("--workspace-mb", type=int, default=BuildSettings.workspace_mb)
    parser.add_argument("--opt-size", default="2048x2048", help="image size HxW the dynamic profile is tuned for")
    parser.add_argument("--max-batch", type=int, default=1)
    parser.add_argument("--timing-cache", default=BuildSettings.timing_cache)
    parser.add_argument("--print-trtexec", action="store_true", help="print the trtexec command and the sidecar; build nothing")
    args = parser.parse_args(argv)
    try:
        settings = BuildSettings(not args.fp32, args.workspace_mb, parse_size(args.opt_size), args.max_batch,
                                 args.timing_cache or None)
        info = plan_info(args.onnx, settings)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if args.print_trtexec:
        cfg = ModelConfig.from_json(json.dumps(info["model_config"]))
        print(" ".join(trtexec_command(args.onnx, args.plan, settings, cfg, info["dynamic"])))
        print(f"# then write the runtime's sidecar {sidecar_path(args.plan)}:")
        print(json.dumps(info))
        return
    print(f"wrote {build_plan(args.onnx, args.plan, settings)} and {sidecar_path(args.plan)}")


if __name__ == "__main__":
    main()
