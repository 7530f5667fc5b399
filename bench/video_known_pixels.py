"""What `inpaint_video` keeps of a file's known pixels, against the conversions alone, and what keeping them costs.

The sources: a synthetic pan over a training photo (`video.SPEED_PHOTO`), rendered in float (cubic warps and
Gaussian noise of 2 8-bit levels, so a 10-bit source's codes below 8 bits carry real content), stored losslessly
(ffv1, BT.709, limited range) as 8-bit yuv420p and as 10-bit yuv420p10le, with the still logo mask. For each:

- fidelity: `inpaint_video` (temporal on, the files' lookahead) into ffv1 in the source's pixel format, so that no
  codec loss hides anything, against the conversions alone (each frame decoded to rgb24 and converted back to the
  source's format with its matrix and range, no inpainting: what the pipeline did to the known pixels before their
  samples were taken from the source); every frame's known luma and chroma samples against the source's, in the
  source's codes (`known_code_errors`); for the 10-bit source also into ffv1 yuv420p (an 8-bit output);
- cost: seconds per frame end to end with the default encoding (libx264 crf 18 preset medium: yuv420p, or
  yuv420p10le for the 10-bit source; alternated over rounds with pix_fmt yuv420p for the 10-bit source), and the
  median time of `keep_source_samples` on one frame.

    python -m bench.video_known_pixels --photos PHOTOS/train [--heights 720 1080] [--frames 12] [--rounds 2]

Result: bench/results/video-known-pixels-cpu.json (run environment, one row per source and height).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .env import RESULTS, run_environment
from .video import SPEED_PHOTO, frame_width
from .video_clips import FPS, camera_matrices, clip_masks, field

SOURCE_FORMATS = ("yuv420p", "yuv420p10le")
BT709, LIMITED = 1, 1           # FFmpeg's colorspace and color_range codes
NOISE_LEVELS = 2.0              # Gaussian noise sigma, 8-bit levels
CHROMA_REACH = 4                # px: how far the chroma conversion filters carry the hole's colours into known samples
TIMING_REPEATS = 9              # calls of keep_source_samples timed per row


def write_source(path: Path, photo_path: Path, height: int, frames: int, pix_fmt: str) -> np.ndarray:
    """A float-rendered pan of `frames` frames at `height` px, written losslessly in pix_fmt to path; returns the
    still logo mask (H, W) bool."""
    import av
    from PIL import Image

    size = (height, frame_width(height))
    photo = field(np.asarray(Image.open(photo_path).convert("RGB")), size).astype(np.float32)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], pix_fmt
        stream.codec_context.colorspace, stream.codec_context.color_range = BT709, LIMITED
        for t, matrix in enumerate(camera_matrices("pan", frames, size)):
            window = cv2.warpAffine(photo, matrix, (size[1], size[0]), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_REFLECT)
            window += rng.normal(0.0, NOISE_LEVELS, window.shape).astype(np.float32)
            rgb16 = np.clip(np.rint(window * 257), 0, 65535).astype(np.uint16)
            frame = av.VideoFrame.from_ndarray(rgb16, format="rgb48le").reformat(
                format=pix_fmt, dst_colorspace=BT709, dst_color_range=LIMITED)
            frame.pts, frame.time_base = t, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return clip_masks("logo", size, 1)[0]


def convert_only(source: Path, out: Path) -> None:
    """Each frame of source decoded to rgb24 and converted back to its pixel format, written losslessly (ffv1)."""
    import av

    with av.open(str(source)) as reader, av.open(str(out), "w") as writer:
        video = reader.streams.video[0]
        stream = writer.add_stream("ffv1", rate=FPS)
        context = video.codec_context
        stream.width, stream.height, stream.pix_fmt = context.width, context.height, context.pix_fmt
        for frame in reader.decode(video):
            rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range)
            back = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=context.pix_fmt, dst_colorspace=frame.colorspace, dst_color_range=frame.color_range)
            back.pts, back.time_base = frame.pts, frame.time_base
            writer.mux(stream.encode(back))
        writer.mux(stream.encode(None))


def planes(path: Path, bits: int) -> tuple[list[np.ndarray], str]:
    """Every frame of a planar 4:2:0 file as its (H * 3 / 2, W) planes in `bits`-bit codes (an 8-bit file's times 4
    for 10, as limited-range 8-bit codes map to 10-bit ones), and the stream's pixel format."""
    import av

    from rethined_engine.video.known_pixels import component_bits

    with av.open(str(path)) as container:
        frames = [f.to_ndarray().astype(np.int32) for f in container.decode(video=0)]
        pix_fmt = container.streams.video[0].codec_context.pix_fmt
    scale = 2 ** (bits - component_bits(pix_fmt))
    return [frame * scale for frame in frames], pix_fmt


def known_code_errors(source: Path, output: Path, mask: np.ndarray, bits: int) -> dict:
    """The output's known samples against the source's, per plane, in `bits`-bit codes: luma where the mask is not,
    chroma where no hole pixel lies within CHROMA_REACH px of the 2 x 2 pixels a sample covers (the conversion
    filters' reach): mean and max |difference| and the share returned unchanged."""
    from rethined_engine.video.masks import dilate

    height, width = mask.shape
    src, _ = planes(source, bits)
    out, pix_fmt = planes(output, bits)
    luma_known = ~mask
    chroma_known = ~dilate(mask, CHROMA_REACH).reshape(height // 2, 2, width // 2, 2).any(axis=(1, 3))
    row = {"pix_fmt": pix_fmt}
    for name, pick in (("luma", lambda f: f[:height][luma_known]),
                       ("chroma", lambda f: f[height:].reshape(2, height // 2, width // 2)[:, chroma_known])):
        diff = np.concatenate([np.abs(pick(a) - pick(b)).ravel() for a, b in zip(src, out)])
        row[name] = {"mean": float(diff.mean()), "max": int(diff.max()), "exact_share": float((diff == 0).mean())}
    return row


def compose_seconds(source: Path, mask: np.ndarray) -> float:
    """Median seconds of `keep_source_samples` writing the first frame of source into a new frame of its format."""
    import av

    from rethined_engine.video.known_pixels import keep_source_samples

    with av.open(str(source)) as container:
        frame = next(container.decode(video=0))
    target = av.VideoFrame(frame.width, frame.height, frame.format.name)
    times = []
    for _ in range(TIMING_REPEATS):
        t0 = time.perf_counter()
        keep_source_samples(target, frame, mask)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(photos: Path, height: int, frames: int, rounds: int, pix_fmt: str) -> dict:
    from rethined_engine import Engine
    from rethined_engine.video.files import EncodeSettings, inpaint_video
    from rethined_engine.video.known_pixels import component_bits

    engine = Engine(device="cpu")
    bits = component_bits(pix_fmt)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / f"pan-{height}p-{pix_fmt}.mkv"
        mask = write_source(source, photos / SPEED_PHOTO, height, frames, pix_fmt)
        convert_only(source, folder / "converted.mkv")
        fidelity = {"conversions_alone": known_code_errors(source, folder / "converted.mkv", mask, bits)}
        outputs = {"inpaint_video": pix_fmt} | ({"inpaint_video_8bit_output": "yuv420p"} if bits > 8 else {})
        for name, out_fmt in outputs.items():
            out = folder / f"{name}.mkv"
            inpaint_video(source, mask, out, engine=engine, audio=False,
                          encode=EncodeSettings(codec="ffv1", pix_fmt=out_fmt, crf=None, preset=None))
            fidelity[name] = known_code_errors(source, out, mask, bits)
        encodings = {"default": EncodeSettings()} | ({"yuv420p": EncodeSettings(pix_fmt="yuv420p")} if bits > 8 else {})
        seconds: dict[str, list[float]] = {name: [] for name in encodings}
        for _ in range(rounds):
            for name, encode in encodings.items():
                t0 = time.perf_counter()
                summary = inpaint_video(source, mask, folder / f"{name}.mp4", engine=engine, audio=False,
                                        encode=encode)
                seconds[name].append((time.perf_counter() - t0) / summary.frames)
        compose = compose_seconds(source, mask)
    return {"source": f"ffv1 {pix_fmt}", "size": [height, frame_width(height)], "frames": frames,
            "known_samples_lossless_output": fidelity,
            "x264_seconds_per_frame": {name: statistics.median(v) for name, v in seconds.items()},
            "x264_seconds_per_frame_rounds": seconds, "keep_source_samples_seconds": compose}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True, help="folder holding the training photos")
    parser.add_argument("--heights", type=int, nargs="+", default=[720, 1080])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "video-known-pixels-cpu.json")
    args = parser.parse_args(argv)
    result = {**run_environment("cpu"), "rows": []}
    for height in args.heights:
        for pix_fmt in SOURCE_FORMATS:
            row = measure(args.photos, height, args.frames, args.rounds, pix_fmt)
            result["rows"].append(row)
            print(json.dumps(row))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
