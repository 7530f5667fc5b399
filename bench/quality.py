"""Hole-region quality of ours and peers on fixed masks, at several resolutions.

    python -m bench.quality --images PHOTOS/heldout --resolutions 1024 2048 4096 [--seed 0]
    python -m bench.quality --images PHOTOS/heldout --resolutions 4096 --methods ours opencv_ns_r3 --merge
    python -m bench.quality --images PHOTOS/heldout --resolutions 2048 --mask-family objects
    python -m bench.quality --images PHOTOS/pilot --resolutions 1024 --methods ours --grid-offsets 4

Each photo is Lanczos-resized to every long side in --resolutions (the ground truth at that size; a
row says `upsampled` when the photo was smaller). Masks (--mask-family): `strokes` (default), free-form
strokes + boxes, 30-50 % coverage (`rethined_engine.train.masks.random_mask`), or `objects`, one or two
person-, sign- or car-like silhouettes covering 5-20 % (`object_mask`: what a user erases); drawn once per
photo at the smallest resolution with seed (seed, photo index), saved as PNG under OUT/masks-<dataset>/
(objects: OUT/masks-<dataset>-objects/) and reused by later runs (nearest-resized to the other
resolutions), so every method and every run sees identical holes.

Methods: `ours` (shipped weights, default settings), `ours_no_hf` (HF transfer off), `ours_NAME` for each
`--ours NAME=key:value,...` (ours with those inference settings or Engine arguments, e.g. `hf_mid_gain:0`, `dtype:bfloat16`), `coarse_bicubic`
(our coarse LR fill, bicubic-upsampled), OpenCV `cv2.inpaint` Telea and Navier-Stokes at radius 3 and
at a radius scaled with resolution (3 px per 1024 px of long side), PatchMatch (PyPatchMatch, 7x7
patches; slow: ~8 s per 1K image, minutes at 4K on 2 cores) and scikit-image's biharmonic
interpolation (`biharmonic_lr`: solved at our LR size, long side 512, from the known pixels only, then
bicubic-upsampled, ~1 s per image: the smooth-fill peer of `coarse_bicubic`). All outputs are uint8 before
scoring. Metrics over hole pixels: PSNR (dB), SSIM, L1, sharpness (Laplacian energy / ground truth's),
sharpness_inner (the same over hole pixels off the hole's border ring and off our token-grid lines: seams
are Laplacian energy but not detail; see `rethined_engine.metrics.hole_sharpness_inner`), seam_ratio (how
much more the fill steps across our token-grid lines than elsewhere: 1 = no staircase;
`rethined_engine.metrics.grid_seam_ratio`) and texture realism
swd_l0 .. swd_l3, swd_mean (x 10^3, lower is better: sliced Wasserstein distance between the fill's and the
truth's 7x7 neighbourhoods per Laplacian pyramid level, level 0 finest, level 3 local colour; see
`rethined_engine.metrics.realism_swd`).

Grid offsets (--grid-offsets N): which source each hole token of ours copies depends on where the token grid
falls on the photo, and a few pixels' shift changes a photo's scores by far more than most settings do. With
N > 1 every photo is also scored with its first d rows and columns cropped off (image and mask), for N values
of d spread evenly over one of our tokens at that size (`grid_offsets`), every method alike; the tables average
over them, and a further table gives the range of the per-offset means of PSNR, SWD mean and L3, the noise a
difference between settings has to clear.

Writes OUT/quality-<dataset>.json ({"commit", "dirty", "device", "python", "torch", "triton", "numpy",
"rethined_engine", "threads", "dataset", "mask_family", "grid_offsets", "runs": [...], "rows": [...] (each with
its "offset"), "summary": [...], "offset_spread": [...]}: the
top level says where the latest run ran (`bench.env.run_environment`: HEAD of the checkout the code runs
from, `dirty` when tracked files differ from it), each entry of `runs` the same for the run that made its
methods and resolutions (entries merged from files written before runs carried it may lack some); each row
names its mask_family), OUT/quality-<dataset>.md (the tables) and
OUT/quality-<dataset>-grid.jpg (first photo, largest size); with --mask-family objects the same files are
named quality-<dataset>-objects.json, .md and -grid.jpg, beside the strokes ones.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from rethined_engine import Engine
from rethined_engine.geometry import plan
from rethined_engine.metrics import SWD_LEVELS, hole_metrics, realism_swd
from rethined_engine.train.data import list_images, load_rgb
from rethined_engine.train.evaluate import coarse_bicubic
from rethined_engine.train.masks import MASK_FAMILIES
from rethined_engine.weights import DEFAULT_WEIGHTS, load_model, read_config

from .grid import masked_input, picture_grid
from .env import RESULTS, run_environment

OPENCV_RADIUS = 3                 # px: cv2.inpaint's neighbourhood, the common default
OPENCV_RADIUS_PER_1024 = 3        # the scaled variant: radius grows with the long side
PATCHMATCH_RADIUS = 3             # PyPatchMatch patch_size: patches of (2 * 3 + 1)^2 px
PATCHMATCH_SEED = 0
BIHARMONIC_LONG_SIDE = 512        # px: where the biharmonic fill is solved (our LR working size)
SWD_KEYS = tuple(f"swd_l{level}" for level in range(SWD_LEVELS)) + ("swd_mean",)
METRICS = ("psnr", "ssim", "l1", "sharpness", "sharpness_inner", "seam_ratio", *SWD_KEYS, "seconds")

MEANS_SPREAD = ("psnr", "swd_mean", "swd_l3")   # metrics whose range over grid offsets the spread table gives

Method = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (image HWC uint8, mask HW bool, long side) -> HWC uint8


def _opencv(flag_name: str, scaled: bool) -> Method:
    import cv2

    flag = getattr(cv2, flag_name)

    def run(image: np.ndarray, mask: np.ndarray, long_side: int) -> np.ndarray:
        radius = max(OPENCV_RADIUS, round(OPENCV_RADIUS_PER_1024 * long_side / 1024)) if scaled else OPENCV_RADIUS
        return cv2.inpaint(image, mask.astype(np.uint8) * 255, radius, flag)
    return run


def _patchmatch() -> Method:
    """PatchMatch (Barnes et al. 2009) texture synthesis, PyPatchMatch's prebuilt library, fixed seed."""
    try:
        import patchmatch
    except ImportError as exc:
        raise SystemExit("error: method patchmatch needs PyPatchMatch (Python >= 3.11): pip install '.[bench]'") from exc

    def run(image: np.ndarray, mask: np.ndarray, long_side: int) -> np.ndarray:
        patchmatch.set_random_seed(PATCHMATCH_SEED)
        return patchmatch.inpaint(image, mask=mask.astype(np.uint8) * 255, patch_size=PATCHMATCH_RADIUS)
    return run


def _biharmonic() -> Method:
    """scikit-image's biharmonic fill at BIHARMONIC_LONG_SIDE, bicubic-upsampled; known pixels kept.

    The small image is an area average of known pixels only (hole pixels never enter) and a small pixel is
    a hole when any of its pixels is, the same rule as our own LR input."""
    try:
        from skimage.restoration import inpaint_biharmonic
    except ImportError as exc:
        raise SystemExit("error: method biharmonic_lr needs scikit-image: pip install '.[bench]'") from exc

    def run(image: np.ndarray, mask: np.ndarray, long_side: int) -> np.ndarray:
        h, w = mask.shape
        f = min(1.0, BIHARMONIC_LONG_SIDE / max(h, w))
        small = (max(1, round(w * f)), max(1, round(h * f)))

        def area(x: np.ndarray) -> np.ndarray:
            return np.asarray(Image.fromarray(x.astype(np.float32)).resize(small, Image.BOX))

        known = (~mask).astype(np.float32)
        weight = area(known)
        low = np.stack([area(image[..., c] * known) for c in range(3)], axis=-1) / np.maximum(weight, 1e-6)[..., None]
        filled = inpaint_biharmonic(low / 255.0, weight < 1.0 - 1e-6, channel_axis=-1)
        up = np.stack([np.asarray(Image.fromarray(filled[..., c].astype(np.float32)).resize((w, h), Image.BICUBIC))
                       for c in range(3)], axis=-1)
        out = (up * 255.0).round().clip(0, 255).astype(np.uint8)
        return np.where(mask[..., None], out, image)
    return run


def _coarse_bicubic(engine: Engine) -> Method:
    model = load_model(engine.weights_path, "cpu")   # the engine's weights, on the CPU like the inputs

    def run(image: np.ndarray, mask: np.ndarray, long_side: int) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            out = coarse_bicubic(model, t, torch.from_numpy(mask)[None, None].float())
        return (out[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return run


def parse_variant(spec: str) -> tuple[str, dict]:
    """'NAME=key:value,key:value' -> ("ours_NAME", Engine arguments); values: numbers, true/false, none, else
    words (e.g. dtype:bfloat16)."""
    name, sep, body = spec.partition("=")
    if not sep or not name.isidentifier():
        raise SystemExit(f"error: --ours: expected NAME=key:value,..., got {spec!r}")
    settings = {}
    for item in filter(None, body.split(",")):
        key, colon, value = item.partition(":")
        if not colon:
            raise SystemExit(f"error: --ours {spec!r}: expected key:value, got {item!r}")
        settings[key] = setting_value(value)
    return f"ours_{name}", settings


SETTING_WORDS = {"true": True, "false": False, "none": None}


def setting_value(text: str) -> bool | None | int | float | str:
    """A setting's value from the command line: true/false/none (any case), an int, a float, else the word."""
    if text.lower() in SETTING_WORDS:
        return SETTING_WORDS[text.lower()]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def build_methods(names: list[str] | None, device: str | None, variants: list[str] = ()) -> dict[str, Method]:
    """The named methods (default: all), plus `ours` under each --ours variant's inference settings (always scored;
    `names` may list only variants, ours_NAME, to score nothing else)."""
    ours = Engine(device=device)
    no_hf = Engine(device=device, hf_transfer=False)
    makers: dict[str, Callable[[], Method]] = {
        "ours": lambda: lambda img, m, _: ours.inpaint(img, m),
        "ours_no_hf": lambda: lambda img, m, _: no_hf.inpaint(img, m),
        "coarse_bicubic": lambda: _coarse_bicubic(ours),
        "opencv_telea_r3": lambda: _opencv("INPAINT_TELEA", scaled=False),
        "opencv_ns_r3": lambda: _opencv("INPAINT_NS", scaled=False),
        "opencv_telea_scaled": lambda: _opencv("INPAINT_TELEA", scaled=True),
        "opencv_ns_scaled": lambda: _opencv("INPAINT_NS", scaled=True),
        "patchmatch": _patchmatch,
        "biharmonic_lr": _biharmonic,
    }
    variants = [parse_variant(text) for text in variants]
    names = names or list(makers)
    unknown = sorted(set(names) - set(makers) - {name for name, _ in variants})
    if unknown:
        raise SystemExit(f"error: --methods: unknown {unknown}; known: {list(makers)} and the --ours variants")
    methods = {name: makers[name]() for name in names if name in makers}
    for name, settings in variants:
        engine = Engine(device=device, **settings)
        methods[name] = lambda img, m, _, engine=engine: engine.inpaint(img, m)
    return methods


DEFAULT_MASK_FAMILY = "strokes"


def run_name(dataset: str, mask_family: str = DEFAULT_MASK_FAMILY) -> str:
    """Stem of a run's files and of its mask folder's suffix: the dataset, then -<family> unless strokes."""
    if mask_family not in MASK_FAMILIES:
        raise SystemExit(f"error: unknown mask family {mask_family!r}; known: {list(MASK_FAMILIES)}")
    return dataset if mask_family == DEFAULT_MASK_FAMILY else f"{dataset}-{mask_family}"


def fixed_mask(mask_dir: Path, photo: Path, index: int, shape: tuple[int, int], seed: int,
               mask_family: str = DEFAULT_MASK_FAMILY) -> np.ndarray:
    """The photo's saved mask (drawn from MASK_FAMILIES[mask_family] and saved on first use), nearest-resized
    to shape (H, W)."""
    path = mask_dir / f"{photo.stem}.png"
    if not path.exists():
        mask_dir.mkdir(parents=True, exist_ok=True)
        mask = MASK_FAMILIES[mask_family](shape[0], shape[1], np.random.default_rng([seed, index]))
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    mask = Image.open(path).convert("L")
    if mask.size != (shape[1], shape[0]):
        mask = mask.resize((shape[1], shape[0]), Image.NEAREST)
    return np.asarray(mask) > 0


def resized(path: Path, long_side: int) -> tuple[np.ndarray, bool]:
    """(image (H, W, 3) uint8 at this long side, whether it had to be upsampled)."""
    with Image.open(path) as im:
        native = max(im.size)
    if native >= long_side:
        return load_rgb(path, long_side), False
    image = Image.fromarray(load_rgb(path))
    f = long_side / native
    return np.array(image.resize((round(image.width * f), round(image.height * f)), Image.LANCZOS)), True


def grid_offsets(token_span: int, count: int) -> list[int]:
    """count crops d (px: the first d rows and columns of the photo and mask are cut off), spread evenly over one
    token of token_span px: round(j * token_span / count) for j < count; count in 1..token_span."""
    if not 1 <= count <= token_span:
        raise ValueError(f"grid offsets: expected a count in 1..{token_span} (the token's span in px), got {count}")
    return [round(j * token_span / count) for j in range(count)]


def _means(rows: list[dict]) -> dict[str, float | None]:
    """Each METRICS key's mean over rows; None where a row lacks it (an older run) or has none."""
    values = {k: [r.get(k) for r in rows] for k in METRICS}
    return {k: None if None in v else float(np.mean(v)) for k, v in values.items()}


def summarise(rows: list[dict]) -> list[dict]:
    """Per (method, resolution) means over photos and grid offsets (rows without an offset: offset 0), with the
    number of photos and of offsets."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        for res in sorted({r["resolution"] for r in rows}):
            sel = [r for r in rows if r["method"] == method and r["resolution"] == res]
            if sel:
                out.append({"method": method, "resolution": res, "images": len({r["image"] for r in sel}),
                            "offsets": len({r.get("offset", 0) for r in sel}), **_means(sel)})
    return out


def offset_spread(rows: list[dict]) -> list[dict]:
    """Per (method, resolution) scored at more than one grid offset: the lowest and highest over offsets of the
    photos' mean of each MEANS_SPREAD metric ({"method", "resolution", "offsets", "<metric>": [low, high]})."""
    out = []
    for s in summarise(rows):
        if s["offsets"] < 2:
            continue
        sel = [r for r in rows if r["method"] == s["method"] and r["resolution"] == s["resolution"]]
        per_offset = [_means([r for r in sel if r.get("offset", 0) == d])
                      for d in sorted({r.get("offset", 0) for r in sel})]
        out.append({"method": s["method"], "resolution": s["resolution"], "offsets": s["offsets"],
                    **{k: None if any(m[k] is None for m in per_offset) else
                       [min(m[k] for m in per_offset), max(m[k] for m in per_offset)] for k in MEANS_SPREAD}})
    return out


def spread_table(spread: list[dict]) -> str:
    """Markdown: per (method, resolution), the range over grid offsets of the photos' mean PSNR, SWD mean and L3."""
    lines = ["| method | long side | grid offsets | PSNR (dB), lowest - highest | SWD mean | SWD L3 |",
             "|---|---:|---:|---|---|---|"]
    for s in spread:
        cells = [("-" if s[k] is None else f"{s[k][0]:{fmt}} - {s[k][1]:{fmt}}")
                 for k, fmt in zip(MEANS_SPREAD, (".2f", ".1f", ".1f"))]
        lines.append(f"| {s['method']} | {s['resolution']} | {s['offsets']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def resolution_table(summary: list[dict]) -> str:
    """Compact markdown: one row per method, PSNR / SSIM / sharpness / sharpness_inner / SWD mean across
    resolutions ("-": not run, or not measured by the run that made the row)."""
    resolutions = sorted({s["resolution"] for s in summary})
    cell = {(s["method"], s["resolution"]): s for s in summary}
    span = " / ".join(f"{r // 1024}K" if r % 1024 == 0 else str(r) for r in resolutions)
    lines = [f"| method | PSNR (dB) {span} | SSIM {span} | sharpness {span} | sharpness, seams excluded {span} "
             f"| SWD mean x10^3 {span} |",
             "|---|---|---|---|---|---|"]
    for method in dict.fromkeys(s["method"] for s in summary):
        def series(key: str, fmt: str) -> str:
            return " / ".join(_fmt(cell[method, r][key], fmt) if (method, r) in cell else "-" for r in resolutions)
        lines.append(f"| {method} | {series('psnr', '.2f')} | {series('ssim', '.4f')} | {series('sharpness', '.3f')} "
                     f"| {series('sharpness_inner', '.3f')} | {series('swd_mean', '.1f')} |")
    return "\n".join(lines) + "\n"


def markdown_table(summary: list[dict]) -> str:
    """One row per (method, resolution); SWD columns x 10^3 per pyramid level (L0 finest, L3 colour) and mean."""
    swd_heads = " | ".join([f"SWD L{level}" for level in range(SWD_LEVELS)] + ["SWD mean"])
    lines = [f"| method | long side | PSNR (dB) | SSIM | L1 | sharpness | sharpness, seams excluded | seam ratio "
             f"| {swd_heads} | seconds/image |",
             "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(SWD_KEYS) + "---:|"]
    for s in summary:
        swd = " | ".join(_fmt(s.get(k), ".1f") for k in SWD_KEYS)
        lines.append(f"| {s['method']} | {s['resolution']} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['l1']:.4f} "
                     f"| {s['sharpness']:.3f} | {_fmt(s['sharpness_inner'], '.3f')} | {_fmt(s.get('seam_ratio'), '.3f')} "
                     f"| {swd} | {s['seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def merged_rows(previous: dict, rows: list[dict], images: list[str], seed: int,
                mask_family: str = DEFAULT_MASK_FAMILY, offsets: int = 1) -> list[dict]:
    """previous run's rows for (method, resolution) pairs this run did not score, then this run's rows.
    Files written before mask families existed hold strokes rows; files written before grid offsets, one offset."""
    if previous["images"] != images or previous.get("seed") != seed:
        raise SystemExit(f"error: --merge needs the same photos and seed as the saved run (saved: "
                         f"{len(previous['images'])} photos, seed {previous.get('seed')}; now {len(images)}, seed {seed})")
    if previous.get("grid_offsets", 1) != offsets:
        raise SystemExit(f"error: --merge: the saved run used {previous.get('grid_offsets', 1)} grid offsets, "
                         f"this one {offsets}")
    saved_family = previous.get("mask_family", DEFAULT_MASK_FAMILY)
    if saved_family != mask_family:
        raise SystemExit(f"error: --merge: the saved run used {saved_family} masks, this one {mask_family}")
    fresh = {(r["method"], r["resolution"]) for r in rows}
    kept = [{**r, "mask_family": r.get("mask_family", saved_family)} for r in previous["rows"]
            if (r["method"], r["resolution"]) not in fresh]
    return kept + rows


ENV_KEYS = ("device", "commit", "dirty", "python", "torch", "triton", "numpy", "rethined_engine", "threads")


def previous_runs(previous: dict) -> list[dict]:
    """A saved file's `runs`; for a file written before it had them, one run: the file's commit, device and
    versions (those it has) and resolutions."""
    if "runs" in previous:
        return previous["runs"]
    return [{key: previous[key] for key in ENV_KEYS if key in previous} | {"resolutions": previous["resolutions"]}]


def commit_label(run_entry: dict) -> str:
    """A run's commit for the table's caption, marked when the tree had uncommitted changes to tracked files."""
    return (run_entry.get("commit") or "unknown") + (" (uncommitted changes)" if run_entry.get("dirty") else "")


def run(images: Path, resolutions: list[int], seed: int, out: Path, methods: dict[str, Method],
        limit: int | None = None, device: str = "cpu", merge: bool = False,
        mask_family: str = DEFAULT_MASK_FAMILY, offsets: int = 1) -> dict:
    """Score every method on every photo at every resolution; write JSON, table and grid under out.
    merge: keep the saved JSON's rows for (method, resolution) pairs this run does not score.
    mask_family: a MASK_FAMILIES name; other than strokes, its masks and files carry the name (`run_name`).
    offsets: grid offsets per photo and resolution (`grid_offsets`; 1: the photo as it is)."""
    env = run_environment(device)     # before any scoring: exits if the commit is unknown
    dataset = images.name
    name = run_name(dataset, mask_family)
    photos = list_images(images)[:limit]
    mask_dir = out / f"masks-{name}"
    resolutions = sorted(resolutions)
    config = read_config(DEFAULT_WEIGHTS)

    def token_span(shape: tuple[int, ...]) -> int:     # HR px per token of ours on an image of this shape
        return plan(*shape, config).scale * config.patch_size

    rows, grid_panels = [], None
    for index, photo in enumerate(photos):
        for res in resolutions:
            whole, upsampled = resized(photo, res)
            whole_mask = fixed_mask(mask_dir, photo, index, whole.shape[:2], seed, mask_family)
            for offset in grid_offsets(token_span(whole_mask.shape), offsets):
                image = np.ascontiguousarray(whole[offset:, offset:])
                mask = np.ascontiguousarray(whole_mask[offset:, offset:])
                target = torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255
                hole = torch.from_numpy(mask)[None, None].double()
                span = token_span(mask.shape)
                panels = [("masked input", masked_input(image, mask))]
                for method_name, method in methods.items():
                    t0 = time.perf_counter()
                    pred = method(image, mask, res)
                    seconds = time.perf_counter() - t0
                    pred_t = torch.from_numpy(pred).permute(2, 0, 1)[None].double() / 255
                    scores = hole_metrics(pred_t, target, hole, grid_span=span) | realism_swd(pred_t, target, hole)
                    scores = {k: None if math.isnan(v) else v for k, v in scores.items()}
                    rows.append({"method": method_name, "resolution": res, "image": photo.name, "offset": offset,
                                 "size": list(image.shape[:2]), "upsampled": upsampled, "mask_family": mask_family,
                                 "coverage": float(mask.mean()), "seconds": seconds, **scores})
                    panels.append((method_name, pred))
                    print(f"{photo.name[:40]:40s} {res:5d} +{offset:<3d} {method_name:20s} psnr {scores['psnr']:6.2f} "
                          f"ssim {scores['ssim']:.4f} l1 {scores['l1']:.4f} sharp {scores['sharpness']:.3f} "
                          f"inner {_fmt(scores['sharpness_inner'], '.3f')} seam {_fmt(scores['seam_ratio'], '.3f')} "
                          f"swd {_fmt(scores['swd_mean'], '.1f')} {seconds:7.2f}s", flush=True)
                if index == 0 and res == resolutions[-1] and offset == 0:
                    grid_panels = (panels + [("ground truth", image)], mask)
    names = [p.name for p in photos]
    runs = [env | {"resolutions": resolutions, "methods": list(methods)}]
    saved = out / f"quality-{name}.json"
    if merge and saved.is_file():
        previous = json.loads(saved.read_text())
        rows = merged_rows(previous, rows, names, seed, mask_family, offsets)
        runs = previous_runs(previous) + runs
        resolutions = sorted({r["resolution"] for r in rows})
    result = env | {"dataset": dataset, "mask_family": mask_family, "seed": seed, "grid_offsets": offsets,
                    "resolutions": resolutions, "images": names, "runs": runs, "rows": rows,
                    "summary": summarise(rows), "offset_spread": offset_spread(rows)}
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(result, indent=1) + "\n")
    commits = ", ".join(dict.fromkeys(commit_label(r) for r in runs))
    offsets_note = f", each at {offsets} grid offsets" if offsets > 1 else ""
    (out / f"quality-{name}.md").write_text(
        f"Hole-region quality on `{dataset}` ({len(photos)} photos{offsets_note}, {mask_family} masks, seed {seed}, "
        f"commit {commits}, {result['device']}).\n\n" + markdown_table(result["summary"]) + "\n"
        + resolution_table(result["summary"])
        + ("\nRange over the grid offsets of the photos' means:\n\n" + spread_table(result["offset_spread"])
           if result["offset_spread"] else ""))
    grid = out / f"quality-{name}-grid.jpg"
    if merge and grid.is_file():
        print(f"kept {grid} (--merge: this run's methods are only part of it; to redraw it for every method run "
              f"--limit 1 --resolutions R --out SCRATCH with the saved masks copied there)")
    elif grid_panels is not None:
        picture_grid(*grid_panels).save(grid, quality=90)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of photographs (the ground truth)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[1024, 2048, 4096], help="long sides, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--methods", nargs="+", default=None, help="subset of methods (default: all); --ours variants are always scored")
    parser.add_argument("--limit", type=int, default=None, help="use the first N photos only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ours", nargs="+", default=[], metavar="NAME=key:value,...",
                        help="also score ours with these inference settings, as method ours_NAME (e.g. "
                             "fine_only=hf_fine_decay:0,hf_mid_gain:0)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the saved results of (method, resolution) pairs this run does not score")
    parser.add_argument("--mask-family", choices=list(MASK_FAMILIES), default=DEFAULT_MASK_FAMILY,
                        help="strokes: free-form strokes and boxes, 30-50 %% (default); objects: one or two "
                             "person/sign/car silhouettes, 5-20 %%; objects runs write *-objects files and masks")
    parser.add_argument("--grid-offsets", type=int, default=1, metavar="N",
                        help="score every photo at N crops of its first rows and columns spread over one token of "
                             "ours (default 1: as it is); the tables average over them and give their range")
    args = parser.parse_args(argv)
    if min(args.resolutions) < 64:
        parser.error(f"--resolutions must be >= 64 px, got {args.resolutions}")
    if args.grid_offsets < 1:
        parser.error(f"--grid-offsets must be >= 1, got {args.grid_offsets}")
    with torch.inference_mode():
        result = run(args.images, args.resolutions, args.seed, args.out, build_methods(args.methods, args.device, args.ours),
                     args.limit, args.device, args.merge, args.mask_family, args.grid_offsets)
    print("\n" + markdown_table(result["summary"]))


if __name__ == "__main__":
    main()
