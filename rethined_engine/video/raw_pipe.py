"""Raw frames through pipes: `rethined video - MASK -o - --raw WxH --pix-fmt rgb24`.

For shell pipelines with the ffmpeg binary, which decodes and encodes while this process only inpaints:

    ffmpeg -i in.mp4 -f rawvideo -pix_fmt rgb24 - \\
      | rethined video - mask.png -o - --raw 1280x720 --pix-fmt rgb24 \\
      | ffmpeg -f rawvideo -pix_fmt rgb24 -s 1280x720 -r 25 -i - -i in.mp4 -map 0:v -map 1:a? -c:a copy out.mp4

The input stream holds frames of W*H*3 bytes (rgb24: R, G, B per pixel, rows top to bottom, no padding),
or W*H*6 (rgb48le: the same with 16-bit little-endian levels, for sources of more than 8 bits: the frame is
inpainted at 8 bits and its known pixels written back at 16, bit for bit, `known_pixels.put_back`), one after the
other; the output stream gets one frame of the same layout per input frame, written and flushed as soon as it
is inpainted. At most one frame is held in memory besides the inpainter's state:
the clip is never buffered. Masks come from the sources of `rethined_engine.video.masks` (a still image,
a folder of images, or a mask video, which needs PyAV; frame i of the pipe gets mask i; `--exclude` the same
for the pixels no fill may copy). Nothing but
frames is written to the output stream; messages go to stderr.

Ends: the input ending on a frame boundary ends the run; a partial last frame raises `ShortReadError`;
an output stream closed by its reader (BrokenPipeError, the EPIPE that SIGPIPE-ignoring Python gets)
raises `OutputClosedError`. The command turns each into a one-line message and a non-zero exit.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .known_pixels import put_back, to_uint8
from .stream import VideoInpainter

RAW_PIXEL_FORMATS = {"rgb24": np.dtype(np.uint8), "rgb48le": np.dtype("<u2")}  # raw pixel format -> sample type
RAW_CHANNELS = 3
RAW_SIZE_PATTERN = re.compile(r"^([1-9]\d*)x([1-9]\d*)$")
PIPE_NAME = "-"  # the input/output name that means stdin/stdout
FILE_ONLY_OPTIONS = ("start", "end", "codec", "crf", "preset", "lossless", "no_audio", "no_subtitles")  # files only


class ShortReadError(ValueError):
    """The input stream ended inside a frame."""


class OutputClosedError(OSError):
    """The reader of the output stream went away before every frame was written."""


@dataclass(frozen=True)
class RawFormat:
    """The raw frame layout: width and height in pixels, pixel format (a key of `RAW_PIXEL_FORMATS`)."""

    width: int
    height: int
    pix_fmt: str = "rgb24"

    def __post_init__(self):
        if self.pix_fmt not in RAW_PIXEL_FORMATS:
            raise ValueError(f"pix_fmt: expected one of {tuple(RAW_PIXEL_FORMATS)}, got {self.pix_fmt!r}")
        for name in ("width", "height"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1 pixel, got {getattr(self, name)}")

    @classmethod
    def parse(cls, size: str, pix_fmt: str = "rgb24") -> RawFormat:
        """"1280x720" (width x height, as ffmpeg's -s) -> RawFormat; ValueError naming --raw otherwise."""
        match = RAW_SIZE_PATTERN.match(size)
        if match is None:
            raise ValueError(f"raw: expected WIDTHxHEIGHT in pixels such as 1280x720, got {size!r}")
        return cls(int(match.group(1)), int(match.group(2)), pix_fmt)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame."""
        return self.width * self.height * RAW_CHANNELS * RAW_PIXEL_FORMATS[self.pix_fmt].itemsize


def read_frame(stream: BinaryIO, raw: RawFormat, index: int) -> np.ndarray | None:
    """The next frame of `stream` as (H, W, 3) uint8 (rgb24) or uint16 (rgb48le), or None when the stream ends
    before its first byte.
    ShortReadError when it ends inside the frame."""
    buffer = bytearray(raw.frame_bytes)
    view, filled = memoryview(buffer), 0
    while filled < len(buffer):
        got = stream.readinto(view[filled:])
        if not got:
            break
        filled += got
    if filled == 0:
        return None
    if filled < len(buffer):
        raise ShortReadError(f"input: frame {index} is cut short: {filled} of {len(buffer)} bytes "
                             f"({raw.width}x{raw.height} {raw.pix_fmt}); check --raw and --pix-fmt against "
                             "the producer's size and pixel format")
    return np.frombuffer(buffer, RAW_PIXEL_FORMATS[raw.pix_fmt]).reshape(raw.height, raw.width, RAW_CHANNELS)


def write_frame(stream: BinaryIO, frame: np.ndarray, index: int) -> None:
    """Write one (H, W, 3) frame (uint8, or uint16 little-endian) and flush; OutputClosedError when the reader went
    away."""
    try:
        stream.write(np.ascontiguousarray(frame).data)
        stream.flush()
    except BrokenPipeError:
        raise OutputClosedError(f"output: the reader closed the pipe; frame {index} and later were not "
                                "written") from None


def pipe_frames(inpainter: VideoInpainter, masks: Any, raw: RawFormat, src: BinaryIO, dst: BinaryIO,
                progress: Callable[[int, None], None] | None = None, excludes: Any = None) -> int:
    """Inpaint every frame of `src` with the mask `masks.mask_at(i, frame)` (and the exclusion
    `excludes.mask_at(i, frame)`, when given; an rgb48le frame: its 8-bit rounding) and write it to `dst`; returns
    the number of frames written. ValueError when `src` holds no frame at all."""
    index = 0
    while (frame := read_frame(src, raw, index)) is not None:
        rgb = to_uint8(frame)
        mask = masks.mask_at(index, rgb)
        exclude = None if excludes is None else excludes.mask_at(index, rgb)
        output = inpainter.process(rgb, mask, exclude)
        write_frame(dst, output if rgb is frame else put_back(frame, output, mask), index)
        index += 1
        if progress is not None:
            progress(index, None)
    if index == 0:
        raise ValueError(f"input: no frame ({raw.frame_bytes} bytes each at {raw.width}x{raw.height} "
                         f"{raw.pix_fmt}) arrived before the end of the stream")
    return index


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's final flush of a closed pipe does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run_raw_command(args) -> None:
    """`rethined video - MASK -o - --raw WxH`: `pipe_frames` between stdin and stdout, messages on stderr."""
    from .command import ProgressLine
    from .masks import MaskSources

    if str(args.input) != PIPE_NAME or str(args.output) != PIPE_NAME:
        raise SystemExit(f"error: --raw reads stdin and writes stdout: give '-' as INPUT and '-o -', got "
                         f"{str(args.input)!r} and {str(args.output)!r}")
    chosen = ["--" + name.replace("_", "-") for name in FILE_ONLY_OPTIONS if getattr(args, name) not in (None, False)]
    if chosen:
        raise SystemExit(f"error: {', '.join(chosen)} apply to video files, not to --raw pipes")
    try:
        raw = RawFormat.parse(args.raw, args.pix_fmt or "rgb24")
    except ValueError as exc:
        raise SystemExit(f"error: --{exc}") from None
    from ..engine import Engine  # torch import is slow: only after the arguments were checked
    from ..engine_options import engine_kwargs

    sources = None
    try:
        sources = MaskSources(args.mask, args.exclude, args.dilate, args.hold_last_mask)
        engine = Engine(**engine_kwargs(args))
    except (ValueError, FileNotFoundError, ImportError) as exc:
        if sources is not None:
            sources.close()
        raise SystemExit(f"error: {exc}") from None
    progress = ProgressLine()
    try:
        count = pipe_frames(VideoInpainter(engine, args.temporal), sources.mask, raw, sys.stdin.buffer,
                            sys.stdout.buffer, progress, sources.exclude)
    except OutputClosedError as exc:
        progress.close()
        _silence_stdout()
        raise SystemExit(f"error: {exc}") from None
    except ValueError as exc:  # masks of the wrong size, too few masks (MaskTooShortError), a short read
        progress.close()
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        progress.close()
        raise SystemExit("interrupted: the output ends after the last frame written") from None
    finally:
        sources.close()
    progress.close()
    print(f"wrote {count} frames {raw.width}x{raw.height} {raw.pix_fmt} to stdout on {engine.device}",
          file=sys.stderr)
