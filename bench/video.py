"""Video inpainting benchmark: hole quality and temporal consistency per clip and temporal mode, end-to-end
speed and peak memory per frame size, memory over a long stream.

    python -m bench.video_clips                          # once: the real clips into clips/
    python -m bench.video                                # every part at default settings
    python -m bench.video --parts quality --cases vtest-logo pan-1080p-logo --modes off on --merge
    python -m bench.video --quick --out /tmp/video.json  # 3-frame clips, tiny sizes: the code paths only

quality: per case (a clip and a mask, bench.video_clips) and mode (`off`, `on`, or `on+FIELD=VALUE,...`:
temporal on with VideoConfig fields changed; by default off and on everywhere, and each boolean component
switched off on COMPONENT_CASES, one case per category), the mean over
frames of hole PSNR (dB) and SSIM against the true frames, and the warping error E_warp
(`rethined_engine.metrics.warping_error`: DIS flow on the true frames, forward-backward occlusion check) over
the hole and over the frame, beside the true footage's own E_warp. The engine runs on the frames as they are
(after the synthetic clips' x264 round trip); known pixels are the input's.
speed: `inpaint_video` on a synthetic pan (x264 source, a still logo mask, x264 output) in a fresh process per
size and mode: seconds per frame end to end (decode + inpaint + encode), the rise of peak resident memory
(ru_maxrss, CPU) or torch.cuda.max_memory_allocated (CUDA), and frames/s of `Engine.inpaint` alone on the
decoded frames.
throughput: frames/s of `VideoInpainter.process` alone (no decode or encode; frames in host memory, as a
pipeline hands them over) on a synthetic pan with a still logo mask, after THROUGHPUT_WARMUP frames (the CUDA
graph capture, the flow's set-up), in a fresh process per size and mode, beside `Engine.inpaint` alone on the
same frames; on CUDA also with the frames already on the GPU.
ops: torch operations per frame of temporal mode on the device path (`video.device_temporal`; the engine's own not
counted) on a synthetic pan with a still logo mask, after OPS_WARMUP frames, by the function that issues them: on a
GPU each is about one kernel launch, and at the flow's working size a launch costs a few microseconds whatever its
work, so their number bounds the path's time there. Counted on any device (TorchDispatchMode); DIS's patch search
and each of its propagation rounds count as one operation per call, as their Triton kernels (`kernels/dis_search.py`)
run them on CUDA.
memory: resident memory sampled every MEMORY_EVERY frames while one `VideoInpainter` streams a long clip (a
synthetic pan played forwards and backwards), and its slope in MiB per 1,000 frames after the first
MEMORY_WARMUP frames.

Results: bench/results/video-<cpu or GPU name>.json with the run environment (device, commit, dirty,
versions, threads) at the top level and on every row, and the load average around each row (other processes
on the CPU slow it). --merge keeps the saved rows this run does not measure.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .env import RESULTS, run_environment
from .quality import setting_value
from .video_clips import (FPS, Clip, clip_masks, read_frames, real_clip, synthetic_clip)

PHOTOS = Path("photos/train")
STATIC_STATIC = "static camera, static mask"
MOVING_STATIC = "moving camera, static mask"
MOVING_MASK = "moving mask, moving content"


@dataclass(frozen=True)
class Case:
    """A clip and a mask. clip: a REAL_CLIPS name, or (photo file name, motion, frame height) of a synthetic clip
    (16:9); mask: a bench.video_clips mask kind; category: which targets apply."""
    name: str
    clip: str | tuple[str, str, int]
    mask: str
    category: str


CASES = (
    Case("vtest-logo", "vtest", "logo", STATIC_STATIC),
    Case("static-1080p-logo", ("enlightenment-data__Lichen-Branches.png", "static", 1080), "logo", STATIC_STATIC),
    Case("box-logo", "box", "logo", MOVING_STATIC),
    Case("cup-watermark", "cup", "watermark", MOVING_STATIC),
    Case("pan-1080p-logo", ("enlightenment-data__Lichen-Branches.png", "pan", 1080), "logo", MOVING_STATIC),
    Case("zoom-1080p-watermark", ("enlightenment-data__Yellow-Flower.png", "zoom", 1080), "watermark", MOVING_STATIC),
    Case("pan-2160p-logo", ("enlightenment-data__Lichen-Branches.png", "pan", 2160), "logo", MOVING_STATIC),
    Case("vtest-blob", "vtest", "blob", MOVING_MASK),
    Case("cup-blob", "cup", "blob", MOVING_MASK),
    Case("pan-1080p-blob", ("enlightenment-data__Sunset-Hills.png", "pan", 1080), "blob", MOVING_MASK),
)
COMPONENT_CASES = ("vtest-logo", "pan-1080p-logo", "vtest-blob")   # one per category: every component measured
TARGETS = {   # category -> (min hole PSNR gain over off, dB; max E_warp / truth's; E_warp must not exceed off's)
    STATIC_STATIC: (0.0, 1.5, False),
    MOVING_STATIC: (3.0, 2.0, False),
    MOVING_MASK: (0.0, None, True),
}
FRAMES = 30                  # frames per quality clip
FRAMES_4K = 10               # frames per quality clip of 2160 px or more
SPEED_HEIGHTS = (720, 1080, 2160)
SPEED_FRAMES = 24
SPEED_FRAMES_4K = 8
SPEED_PHOTO = "enlightenment-data__Lichen-Branches.png"
THROUGHPUT_HEIGHTS = (1080, 2160)
THROUGHPUT_FRAMES = 48       # timed frames per size and mode
THROUGHPUT_WARMUP = 6        # frames before the clock starts
MEMORY_HEIGHT = 360
MEMORY_FRAMES = 1000
MEMORY_EVERY = 50            # frames between resident-memory samples
MEMORY_WARMUP = 100          # frames before the slope is fitted
MEMORY_LOOP = 48             # frames of the pan that the long stream plays forwards and backwards
LARGE_HEIGHT = 2160
QUICK_HEIGHT = 72            # --quick: synthetic and speed clips this high
QUICK_FRAMES = 3
QUICK_MEMORY = (12, 2, 4)    # --quick: memory frames, sample every, warm-up
OPS_HEIGHT = 1080
OPS_FRAMES = 5               # counted frames per mode
OPS_WARMUP = 3               # frames before counting (the memory of past frames fills up)
OFF, ON = "off", "on"
MODE_SEPARATOR = "+"         # on+FIELD=VALUE,FIELD=VALUE
ORACLE_LONG_SIDE = 480      # px: the oracle's flows on the truth are taken at this long side
ORACLE_WINDOW = 8            # past frames that temporal mode keeps (VideoConfig.memory_frames): the oracle's short memory
PICTURE_FRAMES = 3           # consecutive frames in a picture strip
PICTURE_MARGIN = 0.35        # window margin around the hole, in hole-box sizes per side
PICTURE_MAX_WIDTH = 1600     # px
PICTURE_QUALITY = 85         # JPEG


def frame_width(height: int) -> int:
    """The even width of a 16:9 frame `height` px high."""
    return 2 * round(height * 16 / 9 / 2)


# --- modes -------------------------------------------------------------------------------------------------

def parse_mode(mode: str) -> tuple[str, dict]:
    """'off', 'on' or 'on+FIELD=VALUE,...' -> (temporal, VideoConfig overrides)."""
    temporal, _, settings = mode.partition(MODE_SEPARATOR)
    if temporal not in (OFF, ON) or (settings and temporal != ON):
        raise ValueError(f"mode: expected 'off', 'on' or 'on{MODE_SEPARATOR}FIELD=VALUE,...', got {mode!r}")
    overrides = {}
    for item in filter(None, settings.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"mode: expected FIELD=VALUE after '{MODE_SEPARATOR}', got {item!r} in {mode!r}")
        overrides[key] = setting_value(value)
    return temporal, overrides


def component_modes() -> list[str]:
    """One mode per component of temporal mode: each boolean VideoConfig field that is on by default, off."""
    from rethined_engine.video.stream import VideoConfig

    return [f"{ON}{MODE_SEPARATOR}{f.name}=false" for f in dataclasses.fields(VideoConfig)
            if isinstance(f.default, bool) and f.default]


def mode_config(mode: str):
    """A mode's (temporal, its `VideoConfig`: the defaults with the mode's fields set), see parse_mode. "on" is
    `VideoConfig()` also where `inpaint_video` would default to another (its lookahead)."""
    from rethined_engine.video.stream import VideoConfig

    temporal, overrides = parse_mode(mode)
    return temporal, VideoConfig(**overrides)


def make_inpainter(mode: str, engine):
    """A `VideoInpainter` over `engine` for a mode (see parse_mode)."""
    from rethined_engine.video.stream import VideoInpainter

    return VideoInpainter(engine, *mode_config(mode))


# --- quality -----------------------------------------------------------------------------------------------

def load_case(case: Case, frames: int, photos: Path, height: int | None = None) -> tuple[Clip, np.ndarray]:
    """The case's true frames and masks (count, H, W); height replaces a synthetic clip's frame height."""
    if isinstance(case.clip, str):
        clip = real_clip(case.clip, frames)
    else:
        photo, motion, clip_height = case.clip
        clip_height = height or clip_height
        clip = synthetic_clip(photos / photo, motion, frames, (clip_height, frame_width(clip_height)))
    return clip, np.ascontiguousarray(clip_masks(case.mask, clip.frames.shape[1:3], frames))


def hole_scores(truth: np.ndarray, output: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Hole PSNR (dB) and SSIM of one frame (H, W, 3) uint8 against the truth; mask (H, W) bool."""
    import torch

    from rethined_engine.metrics import hole_psnr, hole_ssim

    def tensor(x):
        return torch.from_numpy(x).permute(2, 0, 1)[None].double() / 255

    hole = torch.from_numpy(mask)[None, None].double()
    return float(hole_psnr(tensor(output), tensor(truth), hole)), float(hole_ssim(tensor(output), tensor(truth), hole))


def warp_errors(truth: np.ndarray, outputs: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """E_warp of outputs (T, H, W, 3) uint8 by flow on the truth, over the hole and over the frame."""
    from rethined_engine.metrics import warping_error

    return dict(warping_error(truth, outputs, masks))


def ever_seen(truth: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The oracle of what propagation can copy: per frame t of truth (T, H, W, 3) uint8 and masks (T, H, W) bool,
    which hole pixels some past frame saw outside its own mask, following DIS flow (medium) on the true frames
    chained frame to frame at ORACLE_LONG_SIDE. Returns (ever, recent), both (T, H, W) bool: seen in any past
    frame, and in one of the last ORACLE_WINDOW frames."""
    from rethined_engine.video.flow import dis_flow
    from rethined_engine.video.temporal import working_size

    height, width = masks.shape[1:]
    h, w = working_size((height, width), ORACLE_LONG_SIDE)
    small = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in truth]
    holes = [cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0 for m in masks]
    back = [None] + [dis_flow(small[t], small[t - 1]) for t in range(1, len(small))]   # t -> t-1
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    ever, recent = np.zeros(masks.shape, bool), np.zeros(masks.shape, bool)
    for t in range(1, len(small)):
        pos, seen, seen_recent = grid.copy(), np.zeros((h, w), bool), np.zeros((h, w), bool)
        for s in range(t - 1, -1, -1):
            pos = pos + cv2.remap(back[s + 1], pos[..., 0], pos[..., 1], cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
            x, y = np.round(pos[..., 0]).astype(int), np.round(pos[..., 1]).astype(int)
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            visible = inside & ~holes[s][np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]
            seen |= visible
            if t - s <= ORACLE_WINDOW:
                seen_recent |= visible
        for out, small_seen in ((ever, seen), (recent, seen_recent)):
            out[t] = masks[t] & (cv2.resize(small_seen.astype(np.uint8), (width, height),
                                            interpolation=cv2.INTER_NEAREST) > 0)
    return ever, recent


def oracle_scores(truth: np.ndarray, off: np.ndarray, masks: np.ndarray) -> dict:
    """The ceiling of propagation from the per-frame outputs `off` (T, H, W, 3) uint8: the share of hole pixels
    some past frame saw (ever / within ORACLE_WINDOW frames, `ever_seen`) and the mean hole PSNR when those are
    copied perfectly (the truth) and the rest kept from `off`."""
    ever, recent = ever_seen(truth, masks)
    hole = masks.sum()
    row = {"oracle_seen": float(ever.sum() / hole), "oracle_seen_recent": float(recent.sum() / hole)}
    for key, seen in (("oracle_psnr", ever), ("oracle_psnr_recent", recent)):
        ceiling = np.where(seen[..., None], truth, off)
        row[key] = float(np.mean([hole_scores(t, c, m)[0] for t, c, m in zip(truth, ceiling, masks)]))
    return row


class ShapeRecorder:
    """An engine that records the (height, width) of every image it is asked to fill and otherwise is `engine`
    (a backend that captures one CUDA graph per image shape captures one per distinct shape)."""

    def __init__(self, engine):
        self.engine, self.shapes = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def inpaint(self, image, mask, exclude=None):
        self.shapes.append(tuple(mask.shape[-2:]))
        return self.engine.inpaint(image, mask, exclude)


def run_mode(mode: str, engine, frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, float, list]:
    """Stream the clip through a fresh inpainter: outputs (T, H, W, 3) uint8, mean seconds per frame and the
    shapes of the images the engine filled, in order."""
    recorder = ShapeRecorder(engine)
    inpainter = make_inpainter(mode, recorder)
    outputs = []
    t0 = time.perf_counter()
    for frame, mask in zip(frames, masks):
        outputs += inpainter.push(frame, mask)
    outputs += inpainter.flush()
    return np.stack(outputs), (time.perf_counter() - t0) / len(frames), recorder.shapes


def evaluate_case(case: Case, clip: Clip, masks: np.ndarray, modes: list[str], engine,
                  picture: Path | None = None) -> list[dict]:
    """Rows of one case: the truth's own E_warp and, per mode, hole PSNR/SSIM and E_warp; with `picture`,
    a strip of the hole over PICTURE_FRAMES frames: the truth and the first two modes."""
    truth = clip.frames
    truth_warp = warp_errors(truth, truth, masks)
    base = {"case": case.name, "clip": clip.name, "camera": clip.camera, "mask": case.mask,
            "category": case.category, "frames": len(truth), "size": list(truth.shape[1:3]),
            "coverage": float(masks.mean()), "truth_warp_hole": truth_warp["hole"],
            "truth_warp_frame": truth_warp["frame"]}
    rows, shown = [], {"truth": truth}
    for mode in modes:
        load_before = os.getloadavg()[0]
        outputs, seconds, shapes = run_mode(mode, engine, truth, masks)
        scores = np.array([hole_scores(t, o, m) for t, o, m in zip(truth, outputs, masks)])
        warp = warp_errors(truth, outputs, masks)
        rows.append(base | {"mode": mode, "psnr": float(scores[:, 0].mean()), "ssim": float(scores[:, 1].mean()),
                            "psnr_per_frame": scores[:, 0].tolist(), "warp_hole": warp["hole"],
                            "warp_frame": warp["frame"], "seconds_per_frame": seconds,
                            "engine_calls": len(shapes), "engine_shapes": len(set(shapes)),
                            "load_average": [load_before, os.getloadavg()[0]]})
        if mode == OFF:
            base |= oracle_scores(truth, outputs, masks)
            print(f"{case.name:22s} oracle: seen ever {base['oracle_seen']:.1%} (psnr {base['oracle_psnr']:.2f}), "
                  f"within {ORACLE_WINDOW} frames {base['oracle_seen_recent']:.1%} "
                  f"(psnr {base['oracle_psnr_recent']:.2f})", flush=True)
            rows[-1] |= base
        if len(shown) < 3:
            shown[mode] = outputs
        print(f"{case.name:22s} {mode:28s} psnr {rows[-1]['psnr']:6.2f} ssim {rows[-1]['ssim']:.4f} "
              f"E_warp hole {warp['hole']:.5f} (truth {truth_warp['hole']:.5f}) frame {warp['frame']:.5f} "
              f"{seconds * 1e3:7.1f} ms/frame", flush=True)
    if picture is not None:
        save_strip(picture, shown, masks)
    return rows


def hole_windows(masks: np.ndarray, margin: float) -> list[tuple[slice, slice]]:
    """Per frame of masks (T, H, W), a window of one size for all frames centred on that frame's hole:
    the largest hole box grown by `margin` box sizes on each side, clamped inside the frame."""
    boxes = [(ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) for ys, xs in (np.nonzero(m) for m in masks)]
    height, width = masks.shape[1:]
    win_h = min(height, round(max(b[1] - b[0] for b in boxes) * (1 + 2 * margin)))
    win_w = min(width, round(max(b[3] - b[2] for b in boxes) * (1 + 2 * margin)))
    windows = []
    for y0, y1, x0, x1 in boxes:
        top = int(np.clip((y0 + y1 - win_h) // 2, 0, height - win_h))
        left = int(np.clip((x0 + x1 - win_w) // 2, 0, width - win_w))
        windows.append((slice(top, top + win_h), slice(left, left + win_w)))
    return windows


def save_strip(path: Path, rows: dict[str, np.ndarray], masks: np.ndarray) -> None:
    """A JPEG of the hole's neighbourhood over PICTURE_FRAMES consecutive frames from the middle of the clip
    (each frame's window centred on its hole, `hole_windows`): one row per entry of `rows` (name -> frames
    (T, H, W, 3) uint8), labelled, the hole outlined in red in the first row's frames."""
    start = max(0, len(masks) // 2 - PICTURE_FRAMES // 2)
    shown = list(range(start, min(len(masks), start + PICTURE_FRAMES)))
    windows = hole_windows(masks[shown], PICTURE_MARGIN)
    lines = []
    for row, (name, frames) in enumerate(rows.items()):
        tiles = []
        for t, window in zip(shown, windows):
            tile = np.ascontiguousarray(frames[t][window])
            if row == 0:
                contours, _ = cv2.findContours(masks[t][window].astype(np.uint8), cv2.RETR_EXTERNAL,
                                               cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(tile, contours, -1, (255, 0, 0), 1)
            tiles.append(tile)
        line = np.hstack(tiles)
        cv2.putText(line, name, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        lines.append(line)
    strip = np.vstack(lines)
    if strip.shape[1] > PICTURE_MAX_WIDTH:
        scale = PICTURE_MAX_WIDTH / strip.shape[1]
        strip = cv2.resize(strip, (PICTURE_MAX_WIDTH, round(strip.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, PICTURE_QUALITY]):
        raise OSError(f"path: could not write {path}")


# --- speed and memory (each in a fresh process) ------------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_source(folder: Path, photos: Path, height: int, frames: int) -> tuple[Path, Path]:
    """A synthetic pan (x264, FPS) and a still logo mask (PNG) of `height` px under folder."""
    import av

    clip = synthetic_clip(photos / SPEED_PHOTO, "pan", frames, (height, frame_width(height)), round_trip=False)
    source, mask_path = folder / f"pan-{height}p.mp4", folder / f"logo-{height}p.png"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = clip.frames.shape[2], height, "yuv420p"
        for frame in clip.frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    cv2.imwrite(str(mask_path), clip_masks("logo", clip.frames.shape[1:3], 1)[0].astype(np.uint8) * 255)
    return source, mask_path


def measure_speed(source: Path, mask_path: Path, mode: str, device: str) -> dict:
    """In a fresh process: `inpaint_video` end to end, then `Engine.inpaint` alone on the decoded frames."""
    import torch

    from rethined_engine import Engine
    from rethined_engine.video.files import inpaint_video

    engine = Engine(device=device)
    cuda = engine.device.type == "cuda"
    base_rss = _rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        temporal, config = mode_config(mode)
        summary = inpaint_video(source, mask_path, Path(tmp) / "out.mp4", temporal=temporal, engine=engine,
                                config=config)
        seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mb() - base_rss
    frames = read_frames(source, summary.frames)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 0
    engine.inpaint(frames[0], mask)                               # warm-up
    t0 = time.perf_counter()
    for frame in frames:
        engine.inpaint(frame, mask)
    if cuda:
        torch.cuda.synchronize()
    engine_seconds = (time.perf_counter() - t0) / len(frames)
    return {"mode": mode, "size": list(frames.shape[1:3]), "frames": len(frames),
            "seconds_per_frame": seconds / len(frames), "fps": len(frames) / seconds,
            "peak_mem_mb": peak, "rss_before_mb": None if cuda else base_rss,
            "engine_fps": 1.0 / engine_seconds}


def measure_throughput(height: int, mode: str, frames: int, warmup: int, photos: Path, device: str) -> dict:
    """In a fresh process: frames/s of `VideoInpainter.push` over `frames` frames of a synthetic pan after
    `warmup` untimed ones (and as many more as the mode's lookahead), then of `Engine.inpaint` alone on the same frames (numpy in and out both); on CUDA the
    same again with the frames and the mask already on the GPU ((3, H, W) uint8 tensors in and out: the
    engine and temporal mode without the PCIe copies), with a fresh inpainter."""
    import torch

    from rethined_engine import Engine

    temporal, config = mode_config(mode)
    warmup += config.lookahead if temporal == ON else 0     # in the timed frames, each push gives one output
    clip = synthetic_clip(photos / SPEED_PHOTO, "pan", warmup + frames, (height, frame_width(height)),
                          round_trip=False)
    mask = clip_masks("logo", clip.frames.shape[1:3], 1)[0]
    engine = Engine(device=device)
    cuda = engine.device.type == "cuda"

    def frames_per_second(step, sequence) -> float:
        for frame in sequence[:warmup]:
            step(frame)
        t0 = time.perf_counter()
        for frame in sequence[warmup:]:
            step(frame)
        if cuda:
            torch.cuda.synchronize()
        return frames / (time.perf_counter() - t0)

    inpainter = make_inpainter(mode, engine)
    row = {"mode": mode, "size": list(clip.frames.shape[1:3]), "frames": frames, "warmup": warmup,
           "temporal_path": "device" if getattr(inpainter, "_device", None) is not None else "host",
           "fps": frames_per_second(lambda frame: inpainter.push(frame, mask), clip.frames),
           "engine_fps": frames_per_second(lambda frame: engine.inpaint(frame, mask), clip.frames),
           "mask_fraction": float(mask.mean())}
    if cuda:
        resident = [torch.from_numpy(frame).permute(2, 0, 1).contiguous().cuda() for frame in clip.frames]
        gpu_mask = torch.from_numpy(mask).cuda()
        inpainter = make_inpainter(mode, engine)
        row["fps_resident"] = frames_per_second(lambda frame: inpainter.push(frame, gpu_mask), resident)
        row["engine_fps_resident"] = frames_per_second(lambda frame: engine.inpaint(frame, gpu_mask), resident)
    return row


def measure_memory(height: int, mode: str, frames: int, every: int, warmup: int, photos: Path, device: str) -> dict:
    """In a fresh process: resident memory every `every` frames while one inpainter streams `frames` frames of
    a MEMORY_LOOP-frame pan played forwards and backwards; slope in MiB per 1,000 frames after `warmup`."""
    from rethined_engine import Engine

    loop = min(MEMORY_LOOP, frames)
    clip = synthetic_clip(photos / SPEED_PHOTO, "pan", loop, (height, frame_width(height)))
    masks = clip_masks("logo", clip.frames.shape[1:3], 1)
    order = np.concatenate([np.arange(loop), np.arange(loop - 2, 0, -1)]) if loop > 2 else np.arange(loop)
    inpainter = make_inpainter(mode, Engine(device=device))
    samples, t0 = [], time.perf_counter()
    for index in range(frames):
        inpainter.push(clip.frames[order[index % len(order)]], masks[0])
        if (index + 1) % every == 0:
            samples.append((index + 1, _rss_mb()))
    fitted = [(n, rss) for n, rss in samples if n > warmup]
    slope = float(np.polyfit(*zip(*fitted), 1)[0] * 1000) if len(fitted) >= 2 else None
    return {"mode": mode, "size": list(clip.frames.shape[1:3]), "frames": frames, "every": every,
            "warmup": warmup, "rss_mb": samples, "slope_mb_per_1000": slope, "peak_rss_mb": _peak_rss_mb(),
            "seconds_per_frame": (time.perf_counter() - t0) / frames}


def count_operations(height: int, mode: str, frames: int, warmup: int, photos: Path, device: str) -> dict:
    """Torch operations per frame of `mode`'s temporal mode on the device path over `frames` frames of a synthetic
    pan after `warmup` uncounted ones; the engine's operations are not counted, DIS's patch search counts as one
    launch, each of its propagation rounds as one, and its variational refinement as the launches its Triton kernels
    make on a GPU. Host syncs: the operations that make the host wait (`op_count.SYNC_OPS`) and the copies to the
    host (`op_count.HOST_READS`)."""
    import torch

    from rethined_engine import Engine
    from rethined_engine.kernels.flow_refinement import launches as refinement_launches
    from rethined_engine.video import dis_torch
    from rethined_engine.video.stream import VideoInpainter

    from .op_count import OpCounter

    temporal, config = mode_config(mode)
    if temporal != ON:
        raise ValueError(f"mode: the ops part counts temporal mode, got {mode!r}")
    clip = synthetic_clip(photos / SPEED_PHOTO, "pan", warmup + frames, (height, frame_width(height)),
                          round_trip=False)
    mask = torch.from_numpy(clip_masks("logo", clip.frames.shape[1:3], 1)[0]).to(device)
    engine = Engine(device=device)

    def temporal_step(stack: list[tuple[str, str]]) -> str | None:
        """The device path's step (_arrive, _emit) and the two calls under it; None (not counted) inside the
        engine, inside DIS's patch search and propagation and inside the variational refinement, its image
        derivatives included (each counted as its Triton launches below)."""
        if any(path.endswith("rethined_engine/engine.py") or name == "inverse_search"
               or (name == "propagate" and path.endswith("rethined_engine/video/dis_torch.py"))
               or (name == "refine" and path.endswith("rethined_engine/video/flow_refinement.py")) for path, name in stack):
            return None
        video = [name for path, name in stack if "rethined_engine/video/" in path]
        step = next((i for i, name in enumerate(video) if name in ("_arrive", "_emit")), len(video))
        return " > ".join(video[step:step + 3]) or "push"

    counting = OpCounter(temporal_step)

    def one_launch_each(picker, label):
        """picker (a `dis_torch` function picker), each function it picks counted as one launch per call."""
        def counted_picker(device_, size):
            inner = picker(device_, size)

            def counted(*args):
                counting.by_function[label] += 1
                return inner(*args)
            return counted
        return counted_picker

    search, spread = dis_torch.search_function, dis_torch.propagate_function
    refinement = dis_torch.refine_function

    def kernel_launches(device_):
        inner = refinement(device_)

        def fused(source, target, flow, params):
            counting.by_function["dis variational refinement (Triton launches)"] += refinement_launches(
                *flow.shape[-2:], params)
            return inner(source, target, flow, params)
        return fused

    dis_torch.search_function = one_launch_each(search, "dis patch search (one launch)")
    dis_torch.propagate_function = one_launch_each(spread, "dis propagation (one launch per round)")
    dis_torch.refine_function = kernel_launches
    try:
        inpainter = VideoInpainter(engine, config=dataclasses.replace(config, temporal_device="engine"))
        tensors = [torch.from_numpy(frame).permute(2, 0, 1).contiguous().to(device) for frame in clip.frames]
        for frame in tensors[:warmup]:
            inpainter.process(frame, mask)
        per_frame, syncs_per_frame = [], []
        for frame in tensors[warmup:]:
            before, syncs_before = sum(counting.by_function.values()), sum(counting.syncs.values())
            with counting, counting.count_host_reads():
                inpainter.process(frame, mask)
            per_frame.append(sum(counting.by_function.values()) - before)
            syncs_per_frame.append(sum(counting.syncs.values()) - syncs_before)
    finally:
        dis_torch.search_function = search
        dis_torch.propagate_function = spread
        dis_torch.refine_function = refinement
    return {"mode": mode, "size": list(clip.frames.shape[1:3]), "frames": frames, "warmup": warmup,
            "ops_per_frame": per_frame, "by_function": {k: v / frames for k, v in counting.by_function.most_common()},
            "syncs_per_frame": syncs_per_frame,
            "syncs_by_function": {k: v / frames for k, v in counting.syncs.most_common()}}


def run_child(args: list[str], threads: int | None) -> dict:
    """Run this module with --child ARGS in a fresh process; its last stdout line is the row."""
    cmd = [sys.executable, "-m", __spec__.name, "--child", *args] + ([] if threads is None else ["--threads", str(threads)])
    load_before = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"load_average": [load_before, os.getloadavg()[0]],
                                                               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def child(argv: list[str], photos: Path, device: str) -> dict:
    kind, *rest = argv
    if kind == "speed":
        return measure_speed(Path(rest[0]), Path(rest[1]), rest[2], device)
    if kind == "throughput":
        height, mode, frames, warmup = rest
        return measure_throughput(int(height), mode, int(frames), int(warmup), photos, device)
    height, mode, frames, every, warmup = rest
    return measure_memory(int(height), mode, int(frames), int(every), int(warmup), photos, device)


# --- results -----------------------------------------------------------------------------------------------

ROW_KEYS = {"quality": ("case", "mode", "frames"), "speed": ("size", "mode", "threads"),
            "throughput": ("size", "mode", "threads"), "ops": ("size", "mode", "frames"),
            "memory": ("size", "mode", "frames", "threads")}


def merged(saved: dict, fresh: dict) -> dict:
    """Each part's fresh rows plus the saved rows whose key (ROW_KEYS) this run did not measure."""
    result = {}
    for part, keys in ROW_KEYS.items():
        def key(row):
            return tuple(json.dumps(row.get(k)) for k in keys)
        measured = {key(row) for row in fresh.get(part, [])}
        result[part] = [row for row in saved.get(part, []) if key(row) not in measured] + fresh.get(part, [])
    return result


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def target_verdict(row: dict, off: dict | None) -> str:
    """Whether a temporal row meets its category's targets against the off row of its case."""
    if off is None or row["mode"] == OFF:
        return ""
    gain, ratio, below_off = TARGETS[row["category"]]
    checks = [row["psnr"] >= off["psnr"] + gain]
    if ratio is not None:
        checks.append(row["warp_hole"] <= ratio * row["truth_warp_hole"])
    if below_off:
        checks.append(row["warp_hole"] <= off["warp_hole"])
    return "yes" if all(checks) else "no"


def quality_table(rows: list[dict]) -> str:
    lines = ["| case | category | size | frames | mode | hole PSNR | Δ vs off | hole SSIM | hole E_warp (x10^3) | "
             "truth's (x10^3) | ratio | frame E_warp (x10^3) | ms/frame | targets met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    offs = {(r["case"], r["frames"]): r for r in rows if r["mode"] == OFF}
    for r in rows:
        off = offs.get((r["case"], r["frames"]))
        delta = None if off is None else r["psnr"] - off["psnr"]
        ratio = r["warp_hole"] / r["truth_warp_hole"] if r["truth_warp_hole"] else None
        lines.append(f"| {r['case']} | {r['category']} | {r['size'][1]}x{r['size'][0]} | {r['frames']} | {r['mode']} | "
                     f"{r['psnr']:.2f} | {_fmt(delta, '+.2f')} | {r['ssim']:.4f} | {r['warp_hole'] * 1e3:.3f} | "
                     f"{r['truth_warp_hole'] * 1e3:.3f} | {_fmt(ratio, '.2f')} | {r['warp_frame'] * 1e3:.3f} | "
                     f"{r['seconds_per_frame'] * 1e3:.0f} | {target_verdict(r, off)} |")
    return "\n".join(lines)


def speed_table(rows: list[dict]) -> str:
    lines = ["| size | mode | threads | frames | s/frame end to end | frames/s | peak memory (MiB) | "
             "engine alone (frames/s) | load average |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size'][1]}x{r['size'][0]} | {r['mode']} | {r['threads']} | {r['frames']} | "
                     f"{r['seconds_per_frame']:.3f} | {r['fps']:.2f} | {r['peak_mem_mb']:.0f} | {r['engine_fps']:.2f} | "
                     f"{r['load_average'][0]:.1f}-{r['load_average'][1]:.1f} |")
    return "\n".join(lines)


def throughput_table(rows: list[dict]) -> str:
    lines = ["| size | mode | temporal path | threads | timed frames | frames/s (`VideoInpainter.process`) | "
             "frames/s (`Engine.inpaint` alone) | the same, frames on the GPU | load average |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        resident = (f"{r['fps_resident']:.1f} / {r['engine_fps_resident']:.1f}" if "fps_resident" in r else "–")
        lines.append(f"| {r['size'][1]}x{r['size'][0]} | {r['mode']} | {r.get('temporal_path', 'host')} | "
                     f"{r['threads']} | {r['frames']} | {r['fps']:.1f} | {r['engine_fps']:.1f} | {resident} | "
                     f"{r['load_average'][0]:.1f}-{r['load_average'][1]:.1f} |")
    return "\n".join(lines)


def ops_table(rows: list[dict]) -> str:
    lines = ["| size | mode | frames | operations per frame (median) | the three largest issuers (per frame) | "
             "host syncs per frame (median) |", "|---|---|---|---|---|---|"]
    for r in rows:
        top = ", ".join(f"{name} {count:.0f}" for name, count in list(r["by_function"].items())[:3])
        syncs = f"{float(np.median(r['syncs_per_frame'])):.0f}" if "syncs_per_frame" in r else "-"
        lines.append(f"| {r['size'][1]}x{r['size'][0]} | {r['mode']} | {r['frames']} | "
                     f"{float(np.median(r['ops_per_frame'])):.0f} | {top} | {syncs} |")
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    lines = ["| size | mode | threads | frames | RSS first / last sample (MiB) | slope (MiB per 1,000 frames) | "
             "s/frame |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        first, last = r["rss_mb"][0][1], r["rss_mb"][-1][1]
        lines.append(f"| {r['size'][1]}x{r['size'][0]} | {r['mode']} | {r['threads']} | {r['frames']} | "
                     f"{first:.0f} / {last:.0f} | {_fmt(r['slope_mb_per_1000'], '+.1f')} | {r['seconds_per_frame']:.3f} |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The result file's tables, each headed by the commits and device of its rows."""
    tables = {"quality": quality_table, "speed": speed_table, "throughput": throughput_table,
              "ops": ops_table, "memory": memory_table}
    parts = []
    for part, table in tables.items():
        rows = result.get(part, [])
        if rows:
            commits = ", ".join(dict.fromkeys(r["commit"][:7] + (" (uncommitted changes)" if r["dirty"] else "")
                                              for r in rows))
            devices = ", ".join(dict.fromkeys(r["device"] for r in rows))
            threads = ", ".join(dict.fromkeys(str(r["threads"]) for r in rows))
            parts.append(f"{part}: commit {commits}, {devices}, {threads} thread(s)\n\n{table(rows)}\n")
    return "\n".join(parts)


# --- main --------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace, env: dict, save) -> dict:
    """Measure the chosen parts; rows carry env; save(fresh) after every case and row (a run cut short keeps
    what it measured)."""
    fresh = {part: [] for part in ROW_KEYS}
    quick_height = QUICK_HEIGHT if args.quick else None
    if "quality" in args.parts:
        from rethined_engine import Engine
        engine = Engine(device=args.device)
        components = component_modes()
        cases = [c for c in CASES if args.cases is None or c.name in args.cases]
        for case in cases:
            modes = args.modes or [OFF, ON, *(components if case.name in COMPONENT_CASES else [])]
            large = not isinstance(case.clip, str) and case.clip[2] >= LARGE_HEIGHT
            frames = QUICK_FRAMES if args.quick else args.frames_4k if large else args.frames
            clip, masks = load_case(case, frames, args.photos, quick_height)
            picture = args.out.parent / f"video-{case.name}.jpg" if args.pictures else None
            fresh["quality"] += [row | env for row in evaluate_case(case, clip, masks, modes, engine, picture)]
            save(fresh)
    speed_modes = args.modes or [OFF, ON]
    if "speed" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            for height in ([QUICK_HEIGHT] if args.quick else args.speed_heights):
                count = QUICK_FRAMES if args.quick else SPEED_FRAMES_4K if height >= LARGE_HEIGHT else SPEED_FRAMES
                source, mask_path = write_source(Path(tmp), args.photos, height, count)
                for mode in speed_modes:
                    row = run_child(["speed", str(source), str(mask_path), mode, "--device", args.device,
                                     "--photos", str(args.photos)], args.threads) | env
                    fresh["speed"].append(row)
                    save(fresh)
                    print(f"speed  {height:5d}p {mode:6s} {row['seconds_per_frame']:.3f} s/frame ({row['fps']:.2f} "
                          f"frames/s) peak +{row['peak_mem_mb']:.0f} MiB, engine alone {row['engine_fps']:.2f} frames/s",
                          flush=True)
    if "throughput" in args.parts:
        frames, warmup = (QUICK_FRAMES, 1) if args.quick else (args.throughput_frames, THROUGHPUT_WARMUP)
        for height in ([QUICK_HEIGHT] if args.quick else args.throughput_heights):
            for mode in speed_modes:
                row = run_child(["throughput", str(height), mode, str(frames), str(warmup), "--device", args.device,
                                 "--photos", str(args.photos)], args.threads) | env
                fresh["throughput"].append(row)
                save(fresh)
                print(f"throughput {height:5d}p {mode:6s} {row['fps']:.1f} frames/s, engine alone "
                      f"{row['engine_fps']:.1f} frames/s", flush=True)
    if "ops" in args.parts:
        frames, warmup = (1, 1) if args.quick else (OPS_FRAMES, OPS_WARMUP)
        for mode in [m for m in args.modes or [] if parse_mode(m)[0] == ON] or [ON]:    # temporal modes only
            row = count_operations(quick_height or OPS_HEIGHT, mode, frames, warmup, args.photos, args.device) | env
            fresh["ops"].append(row)
            save(fresh)
            print(f"ops {row['size'][0]:5d}p {mode} {float(np.median(row['ops_per_frame'])):.0f} operations per frame",
                  flush=True)
    if "memory" in args.parts:
        frames, every, warmup = QUICK_MEMORY if args.quick else (args.memory_frames, MEMORY_EVERY, MEMORY_WARMUP)
        height = quick_height or args.memory_height
        for mode in speed_modes:
            row = run_child(["memory", str(height), mode, str(frames), str(every), str(warmup), "--device",
                             args.device, "--photos", str(args.photos)], args.threads) | env
            fresh["memory"].append(row)
            save(fresh)
            print(f"memory {height:5d}p {mode:6s} {frames} frames: slope {_fmt(row['slope_mb_per_1000'], '+.1f')} "
                  f"MiB per 1,000 frames, peak {row['peak_rss_mb']:.0f} MiB", flush=True)
    return fresh


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(ROW_KEYS), default=list(ROW_KEYS))
    parser.add_argument("--cases", nargs="+", choices=[c.name for c in CASES], default=None, help="default: all")
    parser.add_argument("--modes", nargs="+", default=None,
                        help=f"off, on, on{MODE_SEPARATOR}FIELD=VALUE,... for every case (default: off and on, and on "
                             f"with each component off on {', '.join(COMPONENT_CASES)}; off and on for speed and memory)")
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--frames-4k", type=int, default=FRAMES_4K)
    parser.add_argument("--speed-heights", type=int, nargs="+", default=list(SPEED_HEIGHTS))
    parser.add_argument("--throughput-heights", type=int, nargs="+", default=list(THROUGHPUT_HEIGHTS))
    parser.add_argument("--throughput-frames", type=int, default=THROUGHPUT_FRAMES)
    parser.add_argument("--memory-frames", type=int, default=MEMORY_FRAMES)
    parser.add_argument("--memory-height", type=int, default=MEMORY_HEIGHT)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of the synthetic clips' photos")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--pictures", action="store_true", help="save a picture strip per quality case")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_FRAMES}-frame clips, synthetic and speed clips {QUICK_HEIGHT} px high, a short "
                             f"memory stream: the code paths only")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/video-<cpu or GPU name>.json")
    parser.add_argument("--merge", action="store_true", help="keep the saved rows this run does not measure")
    parser.add_argument("--tables", action="store_true", help="print the saved file's tables and exit")
    parser.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    if args.child is not None:
        print(json.dumps(child(args.child, args.photos, args.device)))
        return
    env = run_environment(args.device)     # before any measuring: exits if the commit is unknown
    tag = "cpu" if args.device == "cpu" else env["device"].replace(" ", "_")
    args.out = args.out or RESULTS / f"video-{tag}.json"
    if args.tables:
        print(markdown(json.loads(args.out.read_text())))
        return
    saved = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(fresh: dict) -> None:
        args.out.write_text(json.dumps(env | merged(saved, fresh), indent=1) + "\n")

    fresh = run(args, env, save)
    save(fresh)
    print(f"wrote {args.out}\n\n{markdown(env | merged(saved, fresh))}")


if __name__ == "__main__":
    main()
