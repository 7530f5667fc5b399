"""What a frame range that starts late in a file costs `inpaint_video`, which decodes from the keyframe at or before
the range (`rethined_engine.video.seek`), against the same range at the file's start and against decoding every
frame before the range (how the range was reached before the seek).

The clip: a synthetic pan over a training photo (`video.SPEED_PHOTO`), 48 frames forwards and back, with noise of
2 levels, libx264 at its default
group of pictures (keyint 250), crf 23, preset veryfast; the still logo mask. Each round, alternated: the range
[late, late + length) and [0, length) through `inpaint_video` (temporal on, the files' lookahead, x264 output), and
PyAV decoding frames [0, late) (thread_type AUTO, as `inpaint_video` decodes). Medians over the rounds.

    python -m bench.video_range --photos PHOTOS/train [--height 720] [--frames 1500] [--late 1400] [--length 24]

Result: bench/results/video-range-cpu.json (run environment and one row).
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

NOISE_LEVELS = 2.0
PAN_FRAMES = 48         # frames of one sweep of the pan, played forwards and back


def write_clip(path: Path, photo_path: Path, height: int, frames: int) -> np.ndarray:
    """The pan, x264 at its default keyframe interval, to path; returns the logo mask (H, W) bool."""
    import av
    from PIL import Image

    size = (height, frame_width(height))
    photo = field(np.asarray(Image.open(photo_path).convert("RGB")), size)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        matrices = camera_matrices("pan", PAN_FRAMES, size)
        cycle = matrices + matrices[-2:0:-1]        # forwards and back: a pan of any length within the photo
        for t in range(frames):
            matrix = cycle[t % len(cycle)]
            window = cv2.warpAffine(photo, matrix, (size[1], size[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_REFLECT)
            noisy = np.clip(window + rng.normal(0, NOISE_LEVELS, window.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(noisy, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return clip_masks("logo", size, 1)[0]


def decode_seconds(path: Path, count: int) -> float:
    """Seconds to decode the first `count` frames of path."""
    import av

    t0 = time.perf_counter()
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        for index, _ in enumerate(container.decode(video)):
            if index + 1 >= count:
                break
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True, help="folder holding the training photos")
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--frames", type=int, default=1500, help="frames in the clip")
    parser.add_argument("--late", type=int, default=1400, help="first frame of the late range")
    parser.add_argument("--length", type=int, default=24, help="frames in each range")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "video-range-cpu.json")
    args = parser.parse_args(argv)
    from rethined_engine import Engine
    from rethined_engine.video.files import inpaint_video
    from rethined_engine.video.seek import seek_plan

    result = {**run_environment("cpu")}
    engine = Engine(device="cpu")
    times: dict[str, list[float]] = {"late": [], "early": [], "decode_before_late": []}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "pan.mp4"
        mask = write_clip(clip, args.photos / SPEED_PHOTO, args.height, args.frames)
        plan = seek_plan(clip, args.late, None)
        for _ in range(args.rounds):
            for name, first in (("late", args.late), ("early", 0)):
                t0 = time.perf_counter()
                summary = inpaint_video(clip, mask, Path(tmp) / "out.mp4", engine=engine, audio=False,
                                        frames=(first, first + args.length))
                times[name].append(time.perf_counter() - t0)
                assert summary.frames == args.length
            times["decode_before_late"].append(decode_seconds(clip, args.late))
    result["row"] = {"size": [args.height, frame_width(args.height)], "clip_frames": args.frames, "late": args.late,
                     "length": args.length, "keyframe_decoded_from": None if plan is None else plan.ranks[plan.pts],
                     "seconds": {name: statistics.median(v) for name, v in times.items()}, "rounds": times}
    print(json.dumps(result["row"]))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
