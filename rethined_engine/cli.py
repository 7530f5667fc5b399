"""Command line: `rethined inpaint IMAGE MASK -o OUT`, `rethined video IN MASK -o OUT` (or `- MASK -o - --raw WxH`
for raw frames through pipes), `rethined demo -o OUT`,
`rethined bench NAME ...`."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from PIL import UnidentifiedImageError

from .config import STYLES
from .deploy.triton_repo import INSTANCE_KINDS, LR_PLATFORMS, SERVED_BACKENDS, TritonRepoConfig, write_triton_repo
from .engine_options import add_engine_settings, engine_kwargs
from .image_files import JPEG_QUALITY, UPRIGHT, output_format, read_mask, read_photo, save_photo

ASSETS = Path(__file__).parent / "assets"
SAMPLE_IMAGE = ASSETS / "sample.jpg"
SAMPLE_MASK = ASSETS / "sample_mask.png"
TRITON_DEFAULTS = (TritonRepoConfig.model_name, None, TritonRepoConfig.instances, None, TritonRepoConfig.ensemble,
                   TritonRepoConfig.lr_platform)   # export's triton-repo-only options, unset
BENCHMARKS = ("quality", "detail_correlation", "latency", "native_stages", "kernels")  # modules of rethined_engine.bench (the repository's bench/)


def _read(reader, path: Path, what: str):
    """reader(path), with a missing or unreadable file as a one-line error naming `what`, and what it warns about
    (a depth read at 8 bits, an animation's first frame) as one line each on stderr."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = reader(path)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        return result
    except FileNotFoundError:
        raise SystemExit(f"error: {what} file not found: {path}")
    except (UnidentifiedImageError, OSError) as exc:
        raise SystemExit(f"error: cannot read {what} {path}: {exc}")


def run_inpaint(image_path: Path, mask_path: Path, out_path: Path, engine_options: dict,
                exclude_path: Path | None = None, dilate: int = 0) -> None:
    from .engine import Engine  # torch import is slow: only after the arguments parsed
    from .video.masks import check_radius

    try:
        output_format(out_path, "-o")
        check_radius(dilate)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    t0 = time.perf_counter()
    photo = _read(read_photo, image_path, "image")
    mask = _read(lambda path: read_mask(path, photo, dilate), mask_path, "mask")
    exclude = None if exclude_path is None else _read(lambda path: read_mask(path, photo), exclude_path, "exclude")
    height, width = photo.rgb.shape[:2]
    turned = "" if photo.orientation == UPRIGHT else f" (turned by its EXIF orientation {photo.orientation})"
    excluded = "" if exclude is None else f", {100 * float((exclude != 0).mean()):.1f}% excluded as sources"
    grew = f" (grown by {dilate} px)" if dilate else ""
    print(f"[1/3] read {image_path.name} {width}x{height}{turned}, mask covers "
          f"{100 * float((mask != 0).mean()):.1f}%{grew}{excluded} ({time.perf_counter() - t0:.2f}s)")
    t1 = time.perf_counter()
    try:
        engine = Engine(**engine_options)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"[2/3] loaded weights on {engine.device} ({engine.backend}, {engine.dtype}) "
          f"({time.perf_counter() - t1:.2f}s)")
    t2 = time.perf_counter()
    try:
        result = engine.inpaint(photo.rgb, mask, exclude)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"error: {exc}")
    t3 = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_photo(out_path, result, photo.kept, jpeg_quality=JPEG_QUALITY)
    print(f"[3/3] inpainted in {t3 - t2:.2f}s, wrote {out_path} (total {time.perf_counter() - t0:.2f}s)")


def run_export(out_path: Path, size: str, dynamic: bool, topk: int | None, weights: Path | None) -> None:
    from .deploy.onnx_export import export_onnx
    from .deploy.tensorrt_ops import check_graph

    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        raise SystemExit("error: ONNX export needs the onnx package: pip install 'rethined_engine[onnx]' "
                         "(or pip install onnx onnxruntime)")
    from .deploy.tensorrt_build import parse_size
    try:
        height, width = parse_size(size)
    except ValueError as exc:
        raise SystemExit(f"error: --{exc}")
    t0 = time.perf_counter()
    try:
        path, geom = export_onnx(out_path, height, width, dynamic=dynamic, weights=weights, topk=topk)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}")
    h, w = geom.lr_size
    print(f"wrote {path} ({time.perf_counter() - t0:.1f}s): image {height}x{width} -> LR {h}x{w}, scale "
          f"{geom.scale}, {geom.grid_h * geom.grid_w} tokens" + (", dynamic axes" if dynamic else ""))
    problems = check_graph(path)
    print("TensorRT check: " + ("every op supported, fp16-safe constants" if not problems else "; ".join(problems)))


def run_export_torchscript(out_path: Path, style: str | None, weights: Path | None) -> None:
    from .deploy.torchscript_export import export_torchscript

    t0 = time.perf_counter()
    try:
        path = export_torchscript(out_path, weights=weights, style=style)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}")
    print(f"wrote {path} ({time.perf_counter() - t0:.1f}s): TorchScript, input (1, 4, H, W) float RGB + hole "
          "mask in alpha (>= 0.5 = fill), output (1, 3, H, W), any H and W; style "
          f"{style or 'of the weights'} (docs/integrations.md: Nuke)")


def run_export_triton_repo(out_dir: Path, args: argparse.Namespace) -> None:
    import importlib.util

    if args.ensemble and importlib.util.find_spec("onnx") is None:
        raise SystemExit("error: --ensemble exports the LR network as ONNX and needs the onnx package: "
                         "pip install 'rethined_engine[onnx]'")
    try:
        config = TritonRepoConfig(model_name=args.model_name, device=args.device or "cpu", instances=args.instances,
                                  backend=args.backend, style=args.style, weights=args.weights,
                                  ensemble=args.ensemble, lr_platform=args.lr_platform)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}")
    model_dir = write_triton_repo(out_dir, config)
    ensemble = (f" and the ensemble {config.model_name}_ensemble (prep -> LR network on {config.lr_platform} -> HR)"
                if config.ensemble else "")
    print(f"wrote {model_dir} (config.pbtxt, 1/model.py): Triton Python-backend model {config.model_name!r}"
          f"{ensemble}, IMAGE uint8 HxWx3 + MASK uint8 HxW in, INPAINTED out; start it with tritonserver "
          f"--model-repository {out_dir} (docs/scale-out.md: Triton Inference Server)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rethined", description="RETHINED high-resolution image inpainting.")
    sub = parser.add_subparsers(dest="command", required=True)
    inp = sub.add_parser("inpaint", help="fill the masked pixels of an image (mask: white/nonzero = fill)")
    inp.add_argument("image", type=Path, help="input image (PNG/JPEG/...)")
    inp.add_argument("mask", type=Path, help="mask image of the same size; nonzero pixels are filled")
    inp.add_argument("-o", "--output", type=Path, required=True, help="output .png, .jpg, .webp or .tif (only .jpg is lossy)")
    inp.add_argument("--exclude", type=Path, default=None, help="mask image of the same size: nonzero pixels are "
                     "kept but never copied into the hole (another object, a person beside it)")
    inp.add_argument("--dilate", type=int, default=0, metavar="PX", help="grow the mask by this many pixels in "
                     "every direction (default 0): an object's halo, shadow edge or anti-aliased outline; not the "
                     "--exclude mask")
    demo = sub.add_parser("demo", help="inpaint the shipped sample image with its mask")
    demo.add_argument("-o", "--output", type=Path, default=Path("rethined_demo.png"),
                      help="output .png, .jpg, .webp or .tif (default %(default)s)")
    bench = sub.add_parser("bench", help=f"run a benchmark: {', '.join(BENCHMARKS)} (its own --help lists options)")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    export = sub.add_parser("export", help="export for deployment: onnx (the LR network, for TensorRT), "
                            "torchscript (the whole inpainting, for Nuke's Inference node), triton-repo (a Triton "
                            "Inference Server model repository)")
    export.add_argument("format", choices=("onnx", "torchscript", "triton-repo"))
    export.add_argument("output", type=Path, help="output .onnx file (onnx), .pt file (torchscript) or model "
                        "repository folder (triton-repo)")
    export.add_argument("--style", choices=sorted(STYLES), default=None, help="torchscript, triton-repo: inference "
                        "style (default: the weights' own, as Engine())")
    export.add_argument("--model-name", default=TritonRepoConfig.model_name, help="triton-repo: the model's name "
                        f"(default {TritonRepoConfig.model_name})")
    export.add_argument("--device", choices=sorted(INSTANCE_KINDS), default=None, help="triton-repo: instance kind, "
                        "KIND_CPU or KIND_GPU (default cpu)")
    export.add_argument("--instances", type=int, default=TritonRepoConfig.instances, help="triton-repo: Engine "
                        f"instances per device (default {TritonRepoConfig.instances})")
    export.add_argument("--backend", choices=SERVED_BACKENDS, default=None, help="triton-repo: "
                        "Engine backend (default: the Engine's for the device)")
    export.add_argument("--ensemble", action="store_true", help="triton-repo: also an ensemble, host preparation -> "
                        "ONNX LR network -> HR stage (needs onnx; the weights' own settings)")
    export.add_argument("--lr-platform", choices=LR_PLATFORMS, default=TritonRepoConfig.lr_platform,
                        help="triton-repo --ensemble: the LR network on Triton's onnxruntime backend (default) or "
                        "onnxruntime in the Python backend")
    export.add_argument("--size", default="2048x2048", help="image size HxW in pixels (default 2048x2048); "
                        "the graph takes the LR size it maps to")
    export.add_argument("--dynamic", action="store_true", help="free batch and LR height/width axes")
    export.add_argument("--topk", type=int, default=None, help="keys per hole token for the HR stage "
                        "(default: the weights' hr_topk)")
    export.add_argument("--weights", type=Path, default=None, help="a .safetensors file (default: shipped weights)")
    from .video.command import add_video_parser, run_video_command
    add_video_parser(sub)
    from .distributed.command import add_batch_parser, run_batch_command
    from .distributed.video_segments import add_segment_arguments, run_segments_command
    add_batch_parser(sub)
    add_segment_arguments(sub.choices["video"])
    sub.choices["video"].add_argument(
        "--raw", metavar="WxH", help="pipe mode: raw frames of this size on stdin (INPUT '-'), raw frames on stdout "
        "('-o -'); --pix-fmt then names their pixel format (rgb24, the default, or rgb48le)")
    for p in (inp, demo):
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
        p.add_argument("--weights", type=Path, default=None, help="a .safetensors file (default: shipped weights)")
    for p in (inp, demo, sub.choices["video"], sub.choices["batch"]):
        add_engine_settings(p)
    args = parser.parse_args(argv)
    if args.command == "bench":
        import importlib
        importlib.import_module(f"rethined_engine.bench.{args.name}").main(args.args)
    elif args.command == "export" and args.format == "triton-repo":
        if args.dynamic or args.topk is not None:
            raise SystemExit("error: --dynamic and --topk apply to onnx only (triton-repo serves the whole Engine)")
        run_export_triton_repo(args.output, args)
    elif args.command == "export" and (args.model_name, args.device, args.instances, args.backend, args.ensemble,
                                       args.lr_platform) != TRITON_DEFAULTS:
        raise SystemExit("error: --model-name, --device, --instances, --backend, --ensemble and --lr-platform apply "
                         "to triton-repo only")
    elif args.command == "export" and args.format == "torchscript":
        if args.dynamic or args.topk is not None:
            raise SystemExit("error: --dynamic and --topk apply to onnx only (torchscript takes any size)")
        run_export_torchscript(args.output, args.style, args.weights)
    elif args.command == "export":
        if args.style is not None:
            raise SystemExit("error: --style applies to torchscript and triton-repo only")
        run_export(args.output, args.size, args.dynamic, args.topk, args.weights)
    elif args.command == "video" and args.segments is not None:
        run_segments_command(args)
    elif args.command == "video" and args.raw:
        from .video.raw_pipe import run_raw_command
        run_raw_command(args)
    elif args.command == "video":
        run_video_command(args)
    elif args.command == "batch":
        return run_batch_command(args)
    elif args.command == "demo":
        run_inpaint(SAMPLE_IMAGE, SAMPLE_MASK, args.output, engine_kwargs(args))
    else:
        run_inpaint(args.image, args.mask, args.output, engine_kwargs(args), args.exclude, args.dilate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
