"""Video files in and out with PyAV: `inpaint_video(src, mask, dst)`.

Reading: any container and codec the bundled FFmpeg decodes; the first video stream is decoded frame by
frame to rgb24 (H, W, 3) uint8 with the source's colour matrix and range, inpainted by a `VideoInpainter`,
converted back to the output pixel format with the same matrix and range, and encoded. Where the output's pixel
format is the source's, the samples no hole pixel reaches are the source's own; a source of more than 8 bits per
component keeps its depth where its pixels are known (`rethined_engine.video.known_pixels`). The clip is never
buffered: at most `PIPELINE_DEPTH` frames wait between decoding, inpainting and encoding (plus the
encoder's own look-ahead, and the `VideoConfig.lookahead` frames the inpainter holds back). With
`overlap_io` (by default when the engine runs on CUDA) decoding and encoding run on two threads beside the
inpainting.

Writing (`EncodeSettings`): libx264, crf 18, preset medium by default, in the source's pixel format when libx264
takes it, else yuv420p for an 8-bit source and yuv420p10le for a deeper one (`known_pixels.output_pixel_format`), at
the source's frame rate and time base with the source's frame timestamps (shifted to start at 0 when a range cuts the
start). The colour tags (color_range, colorspace, primaries, trc), the rotation (display matrix) and the container's
and video stream's tags (title, language, ...) and the chapters are copied; every audio and subtitle stream is
copied packet for packet, not re-encoded, with its tags and disposition (`rethined_engine.video.stream_copy`).

Pixel formats (`rethined_engine.video.known_pixels`): the inpainting is 8-bit RGB, and rgb24 <-> yuv420p/yuv422p/
yuv444p is lossy (colour matrix rounding, and chroma subsampling for 420/422). Where the output's pixel format is
the source's and has one component per plane (yuv420p, yuv420p10le, yuv422p10le, gbrp16le, ...), every sample no
hole pixel reaches is written from the source frame, so only the codec changes the known pixels (a lossless one,
ffv1 or libx264 with qp 0 in that format, none). RGB pixel formats keep the RGB frames bit for bit: `LOSSLESS`
(ffv1 with bgr0, in .mkv/.avi/.nut), or libx264rgb with options={"qp": "0"} and rgb24/bgr24/bgr0 — for pipelines
that re-encode later. A source of more than 8 bits per component (10-bit HDR, ProRes, 16-bit RGB) written to
another format of more than 8 bits is decoded to 16-bit RGB and its known pixels are written from that, the
hole's from the 8-bit fill; LOSSLESS then writes ffv1 with rgb48le, which keeps those 16-bit frames bit for bit.
An output format of 8 bits reduces everything to 8 bits. The transfer and primaries tags are copied unchanged.

Frame ranges (`frames=(first, stop)` in source frame indices, `seconds=(t0, t1)` in presentation time;
stop and t1 excluded, None = open; both may be given and a frame is kept when it lies in both): frames
before the range are skipped, from the keyframe at or before its first frame on (`rethined_engine.video.seek`:
the frames before that keyframe are not decoded), decoding stops after it. The audio and subtitles are cut without
re-encoding at packet boundaries: packets starting in [time of the first kept frame, time of the first frame
after the range) are kept and shifted like the video, so the audio may start up to one packet (about 21 ms for
AAC at 48 kHz) late and stays in sync. Audio without timestamps cannot be cut and is dropped with a
warning when a range is given; a stream whose codec the output container cannot hold is dropped with a
warning too (`VideoSummary.audio` and `.subtitles` say what happened to each).

The output is written to a hidden temporary file in `dst`'s folder (same filesystem) and moved onto
`dst` with `os.replace` at the end; any exception or KeyboardInterrupt removes the temporary file, so
an existing `dst` is untouched and no truncated file is left.

Errors (each names the argument): `src` missing (FileNotFoundError), unreadable, without a video stream,
or without a frame in the selected range (ValueError); a frame whose size differs from the first frame's
(ValueError, the frame index and both sizes); masks as in `rethined_engine.video.masks` (size mismatch:
ValueError; a folder or mask video shorter than the video: `MaskTooShortError`, or the last mask held
with a warning when `hold_last_mask=True`; the same for `exclude`, named so); `dst` equal to `src`, in a
missing folder, with a suffix FFmpeg does not know, or a codec/pixel format/option the encoder or container
lacks (ValueError, raised before any frame is inpainted).
"""
from __future__ import annotations

import math
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .known_pixels import (decode_frame, is_deep, keep_source_samples, one_component_per_plane, output_pixel_format,
                           put_back, rgb_format)
from .masks import MaskSources, MaskTooShortError
from .seek import indexed_frames, seek_plan
from .sequences import IMAGE_ENCODERS, LOSSY_IMAGE_ENCODERS, VideoSource, check_suffix, is_sequence
from .stream import VideoConfig, VideoInpainter
from .stream_copy import StreamCopy, copied_chapters, copied_tags

Progress = Callable[[int, "int | None"], None]  # (frames done, total frames or None when unknown)
POSITION_PATTERN = re.compile(r"^(\d+(?:\.\d*)?)s$")  # "2.5s": seconds; a bare integer: a frame index
PROGRESS_INTERVAL_S = 0.25  # the progress line is redrawn at most this often
NEW_FILE_MODE = 0o666  # before the umask, as open() creates files
CHROMA_PROBE = 64  # a width divisible by every chroma subsampling factor, to read the factor off
PIPELINE_DEPTH = 4  # frames queued between the decoding thread, the inpainting (calling) thread and the encoding thread
PIPELINE_POLL_S = 0.1  # how often a blocked pipeline thread checks whether the other side stopped
COPY_OPTIONS = {"audio": "audio", "subtitle": "subtitles"}  # stream kind -> inpaint_video's option copying it
FILE_LOOKAHEAD = 16  # later frames each frame of a file also copies from (VideoConfig.lookahead; docs/video.md)


@dataclass(frozen=True)
class EncodeSettings:
    """How the output video stream is encoded.

    codec: an FFmpeg encoder name (libx264, libx265, libvpx-vp9, ffv1, ...); pix_fmt: the encoded pixel
    format (see the module docstring for which are lossless), None = the source's when the encoder takes it, else
    by its bit depth (`known_pixels.output_pixel_format`: yuv420p or yuv420p10le; ffv1 bgr0 or rgb48le); crf: constant
    rate factor
    (libx264: 0-51, lower = better, 18 = visually lossless; None = the codec's default or a codec without crf); preset:
    the encoder's speed/size trade-off (libx264: ultrafast ... veryslow; None = the codec's default);
    options: further encoder options, FFmpeg names and string values (e.g. {"tune": "film"}).
    """

    codec: str = "libx264"
    pix_fmt: str | None = None
    crf: int | None = 18
    preset: str | None = "medium"
    options: Mapping[str, str] = field(default_factory=dict)

    def codec_options(self) -> dict[str, str]:
        """The encoder options as FFmpeg takes them; ValueError when the codec lacks the pixel format or an option."""
        context = self._context()
        formats = [fmt.name for fmt in context.codec.video_formats or ()]
        if self.pix_fmt is not None and self.pix_fmt not in formats:
            raise ValueError(f"encode.pix_fmt: {self.codec} cannot encode {self.pix_fmt!r}; "
                             f"it takes {', '.join(formats)}")
        known = {opt.name for opt in context.supported_options.private} | {
            opt.name for opt in context.supported_options.generic}
        options = {"crf": self.crf, "preset": self.preset}
        for name, value in options.items():
            if value is not None and name not in known:
                raise ValueError(f"encode.{name}: the encoder {self.codec} has no {name} option; set {name}=None")
        options = {name: str(value) for name, value in options.items() if value is not None}
        for name, value in self.options.items():
            if name not in known:
                raise ValueError(f"encode.options: the encoder {self.codec} has no option {name!r}")
            options[name] = str(value)
        return options

    def pixel_format(self, source_pix_fmt: str | None) -> str:
        """The pixel format written for a source in `source_pix_fmt` (None: unknown): pix_fmt, or when it is None
        the encoder's default for the source's depth (`known_pixels.output_pixel_format`)."""
        if self.pix_fmt is not None:
            return self.pix_fmt
        formats = [fmt.name for fmt in self._context().codec.video_formats or ()]
        return output_pixel_format(self.codec, formats, source_pix_fmt)

    def _context(self):
        """A closed codec context of the encoder; ValueError naming encode.codec when FFmpeg has none."""
        import av

        try:
            return av.codec.CodecContext.create(self.codec, "w")
        except (ValueError, av.FFmpegError) as exc:
            raise ValueError(f"encode.codec: no FFmpeg encoder named {self.codec!r} ({exc})") from exc


LOSSLESS = EncodeSettings(codec="ffv1", crf=None, preset=None)  # bgr0 or rgb48le: the RGB frames kept bit for bit


@dataclass(frozen=True)
class VideoSummary:
    """What `inpaint_video` wrote: output path, frames written, wall-clock seconds, frames per second of
    processing (decode + inpaint + encode), the video's frame rate, and what happened to the source's audio and
    subtitle streams (`StreamCopy.fate`: "copied", "none", "dropped: <why>", or "copied K of N; dropped: ...")."""

    output: Path
    frames: int
    elapsed_s: float
    processing_fps: float
    video_fps: Fraction
    audio: str
    subtitles: str = "none"


def parse_position(text: str) -> tuple[int | None, float | None]:
    """A range end as the CLI takes it: "120" -> frame index 120, "2.5s" -> 2.5 seconds.
    Returns (frame index, None) or (None, seconds)."""
    if text.isdigit():
        return int(text), None
    match = POSITION_PATTERN.match(text)
    if match is None:
        raise ValueError(f"expected a frame index (e.g. 120) or a time in seconds (e.g. 2.5s), got {text!r}")
    return None, float(match.group(1))


@dataclass(frozen=True)
class FrameRange:
    """Which source frames to keep: index in [first, stop) and presentation time in [t0, t1) (None = open)."""

    first: int | None = None
    stop: int | None = None
    t0: float | None = None
    t1: float | None = None

    @classmethod
    def of(cls, frames: tuple[int | None, int | None] | None,
           seconds: tuple[float | None, float | None] | None) -> "FrameRange":
        first, stop = frames if frames is not None else (None, None)
        t0, t1 = seconds if seconds is not None else (None, None)
        for name, lo, hi in (("frames", first, stop), ("seconds", t0, t1)):
            if any(v is not None and v < 0 for v in (lo, hi)):
                raise ValueError(f"{name}: expected values >= 0 (or None), got ({lo}, {hi})")
            if hi is not None and hi <= (lo or 0):
                raise ValueError(f"{name}: the end ({hi}) must come after the start ({lo or 0}); the end is excluded")
        return cls(first, stop, t0, t1)

    @property
    def cuts(self) -> bool:
        """Whether any bound is set."""
        return any(v is not None for v in (self.first, self.stop, self.t0, self.t1))

    def before(self, index: int, t: float) -> bool:
        return (self.first is not None and index < self.first) or (self.t0 is not None and t < self.t0)

    def after(self, index: int, t: float) -> bool:
        return (self.stop is not None and index >= self.stop) or (self.t1 is not None and t >= self.t1)

    def end_time(self, fps: Fraction) -> float | None:
        """Where the range ends in seconds, as far as it is known before decoding (stop / fps and t1, the
        earlier; None: open)."""
        ends = [v for v in (None if self.stop is None else float(self.stop / fps), self.t1) if v is not None]
        return min(ends) if ends else None

    def expected_frames(self, count: int | None, fps: Fraction) -> int | None:
        """How many frames the range keeps of a `count`-frame video at `fps` (an estimate for time bounds;
        None when unknown)."""
        first = max(self.first or 0, math.ceil(self.t0 * fps) if self.t0 is not None else 0)
        stops = [v for v in (count, self.stop, math.ceil(self.t1 * fps) if self.t1 is not None else None)
                 if v is not None]
        return max(min(stops) - first, 0) if stops else None


def require_av() -> None:
    """ImportError with the install command when PyAV is missing."""
    import importlib.util

    if importlib.util.find_spec("av") is None:
        raise ImportError("video files need PyAV: pip install 'rethined_engine[video]' (or pip install 'av>=18,<19')")


def _open_source(source: VideoSource):
    """The source's input container; ValueError naming src when it cannot be read or holds no video stream."""
    import av

    try:
        container = source.open()
    except av.FFmpegError as exc:
        raise ValueError(f"src: cannot read {source.path} as a video: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise ValueError(f"src: {source.path} has no video stream")
    return container


def _sequence_encoding(dst: Path, encode: EncodeSettings) -> EncodeSettings:
    """The settings an image sequence dst is written with: its suffix's encoder (`IMAGE_ENCODERS`) when encode is
    `EncodeSettings()` or `LOSSLESS` (a lossless suffix), else encode; ValueError naming dst for a suffix no image
    encoder here takes, or a lossy one with LOSSLESS."""
    check_suffix(dst, "dst")
    codec = IMAGE_ENCODERS.get(dst.suffix.lower())
    if codec is None:
        raise ValueError(f"dst: an image sequence's suffix must be one of {', '.join(IMAGE_ENCODERS)}, got {dst.name}")
    if encode == LOSSLESS and codec in LOSSY_IMAGE_ENCODERS:
        raise ValueError(f"dst: {dst.suffix} files are lossy; a lossless sequence needs .png, .tif or .dpx")
    return EncodeSettings(codec=codec, crf=None, preset=None) if encode in (EncodeSettings(), LOSSLESS) else encode


class _Output:
    """Where the output is written until it is complete: a hidden temporary file beside dst, moved onto dst at the
    end (`commit`); for an image sequence, a hidden folder beside it whose files are moved beside dst at the end.
    `discard` removes what was written."""

    def __init__(self, dst: Path):
        self.dst = dst
        if is_sequence(dst):
            self.folder: Path | None = Path(tempfile.mkdtemp(dir=dst.parent, prefix=".", suffix=".partial"))
            self.path = self.folder / dst.name
        else:
            fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=f".partial{dst.suffix}")
            os.close(fd)
            self.folder, self.path = None, Path(name)
            os.chmod(self.path, NEW_FILE_MODE & ~_umask())  # mkstemp makes it private; dst gets the usual permissions

    def commit(self) -> None:
        if self.folder is None:
            os.replace(self.path, self.dst)
            return
        for written in sorted(self.folder.iterdir()):
            os.replace(written, self.dst.parent / written.name)
        self.folder.rmdir()

    def discard(self) -> None:
        if self.folder is None:
            self.path.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


def _frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise ValueError("src: the video stream states no frame rate")
    return Fraction(rate)


def _check_frame_size(pix_fmt: str, width: int, height: int) -> None:
    """Chroma-subsampled formats need a width/height divisible by the subsampling (yuv420p: 2 and 2)."""
    import av

    fmt = av.VideoFormat(pix_fmt)
    for name, size, chroma in (("width", width, fmt.chroma_width), ("height", height, fmt.chroma_height)):
        factor = CHROMA_PROBE // chroma(CHROMA_PROBE)
        if size % factor:
            raise ValueError(f"encode.pix_fmt: {pix_fmt} needs a {name} divisible by {factor}, the video is "
                             f"{width}x{height}; use pix_fmt='yuv444p' or LOSSLESS")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _KeptFrames:
    """The source's video frames in the range, as (source index, frame, presentation time in s, (H, W, 3) uint8 RGB,
    and (H, W, 3) uint16 RGB when `deep`, else None), decoded from the keyframe at or before the range's first frame
    (`seek.seek_plan`; open_source() opens a second reader of the source); after the iteration `end_time` is the
    time of the first frame past the range (None: the video ended)."""

    def __init__(self, source, open_source: Callable[[], Any], rng: FrameRange, fps: Fraction, deep: bool):
        self.video = source.streams.video[0]
        self.video.thread_type = "AUTO"
        self.source, self.open_source, self.rng, self.fps, self.deep = source, open_source, rng, fps, deep
        self.end_time: float | None = None

    def __iter__(self) -> Iterator[tuple[int, Any, float, np.ndarray, np.ndarray | None]]:
        plan = seek_plan(self.open_source, self.rng.first, self.rng.t0)
        for index, frame in indexed_frames(self.source, self.video, plan):
            t = float(frame.time) if frame.time is not None else float(index / self.fps)
            if self.rng.before(index, t):
                continue
            if self.rng.after(index, t):
                self.end_time = t
                return
            yield index, frame, t, *decode_frame(frame, self.deep)


class _Failure:
    """An exception raised on a pipeline thread, carried to the calling thread."""

    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()  # the end of a pipeline queue


class _Prefetch:
    """Iterate `items` on a background thread, at most `PIPELINE_DEPTH` items ahead of the consumer;
    an exception raised there is raised in the consumer. `close()` stops the thread early."""

    def __init__(self, items: Iterator):
        self._queue: queue.Queue = queue.Queue(PIPELINE_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), daemon=True)
        self._thread.start()

    def _produce(self, items: Iterator) -> None:
        try:
            for item in items:
                if not _put_unless(self._queue, item, self._stop):
                    return
            _put_unless(self._queue, _END, self._stop)
        except BaseException as exc:  # carried to the consumer, which raises it
            _put_unless(self._queue, _Failure(exc), self._stop)

    def __iter__(self) -> Iterator:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Drain:
    """Call `work(item)` on a background thread for every `put` item, at most `PIPELINE_DEPTH` queued;
    an exception raised there is raised by the next `put` or by `finish`."""

    def __init__(self, work: Callable[[Any], None]):
        self._queue: queue.Queue = queue.Queue(PIPELINE_DEPTH)
        self._failed = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, args=(work,), daemon=True)
        self._thread.start()

    def _consume(self, work: Callable[[Any], None]) -> None:
        while (item := self._queue.get()) is not _END:
            try:
                work(item)
            except BaseException as exc:  # raised in the producer by put/finish
                self._error = exc
                self._failed.set()
                return

    def put(self, item: Any) -> None:
        if not _put_unless(self._queue, item, self._failed):
            raise self._error

    def finish(self) -> None:
        """Wait until every item is done; raise the worker's exception if it failed."""
        if not _put_unless(self._queue, _END, self._failed):
            raise self._error
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop after the item in hand, dropping the queued ones."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        _put_unless(self._queue, _END, self._failed)
        self._thread.join()


class _InlineFetch:
    """`_Prefetch`'s interface, iterating in the caller's thread."""

    def __init__(self, items: Iterator):
        self._items = items

    def __iter__(self) -> Iterator:
        return self._items

    def close(self) -> None:
        """Nothing runs in the background."""


class _InlineDrain:
    """`_Drain`'s interface, calling `work` in the caller's thread."""

    def __init__(self, work: Callable[[Any], None]):
        self.put = work

    def finish(self) -> None:
        """Every item is done when `put` returns."""

    def abort(self) -> None:
        """Nothing is queued."""


def _inference_on_gpu(inpainter: VideoInpainter) -> bool:
    """Whether the engine computes on a CUDA device, leaving the CPU idle during inference."""
    return str(getattr(inpainter.engine, "device", "cpu")).startswith("cuda")


def _put_unless(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put `item`, waiting for room; False (not put) once `stop` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=PIPELINE_POLL_S)
            return True
        except queue.Full:
            continue
    return False


class _Writer:
    """The output container: the video stream encoded from RGB frames (the copied streams: `StreamCopy`)."""

    def __init__(self, path: Path, encode: EncodeSettings, pix_fmt: str, options: dict[str, str], src_video,
                 first_frame, fps: Fraction, pts_offset: int, first_number: int | None = None):
        """first_number: for an image sequence path, the number of its first file (image2's start_number)."""
        import av

        try:
            self.container = (av.open(str(path), "w") if first_number is None else
                              av.open(str(path), "w", format="image2", options={"start_number": str(first_number)}))
        except (ValueError, av.FFmpegError) as exc:
            raise ValueError(f"dst: FFmpeg knows no container for the suffix {path.suffix!r} "
                             f"(use .mp4, .mkv, .mov, .avi, ...): {exc}") from exc
        try:
            self._add_video(encode.codec, pix_fmt, options, src_video, first_frame, fps)
        except BaseException:
            self.container.close()
            raise
        self.pts_offset = pts_offset

    def _add_video(self, codec: str, pix_fmt: str, options: dict[str, str], src_video, first_frame,
                   fps: Fraction) -> None:
        """The video stream, its encoder opened now so that rejected settings fail before any inpainting."""
        import av

        if codec not in self.container.supported_codecs:
            raise ValueError(f"encode.codec: the {self.container.format.name} container cannot hold "
                             f"{codec}; choose another suffix for dst (e.g. .mkv)")
        _check_frame_size(pix_fmt, first_frame.width, first_frame.height)
        self.pix_fmt = pix_fmt
        self.is_rgb = av.VideoFormat(pix_fmt).is_rgb
        self.video = self.container.add_stream(codec, rate=fps, options=options)
        ctx = self.video.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = first_frame.width, first_frame.height, pix_fmt
        ctx.time_base = self.video.time_base = self.time_base = src_video.time_base
        ctx.color_primaries, ctx.color_trc = first_frame.color_primaries, first_frame.color_trc
        # the source's YUV matrix and range, for both conversions and the tags (they describe YUV only)
        self.colorspace, self.color_range = first_frame.colorspace, first_frame.color_range
        if not self.is_rgb:
            ctx.colorspace, ctx.color_range = self.colorspace, self.color_range
        if first_frame.rotation:
            self.video.set_display_rotation(first_frame.rotation)
        self.video.metadata.update(copied_tags(src_video.metadata))
        try:
            ctx.open()
        except av.FFmpegError as exc:
            raise ValueError(f"encode: the encoder {codec} rejects the options {options}: {exc}") from exc

    def write_frame(self, rgb: np.ndarray, pts: int, source=None, mask: np.ndarray | None = None) -> None:
        """Encode one (H, W, 3) RGB frame, uint8 or uint16, at source timestamp `pts` (source video time base); with
        `source`, a decoded frame in the output's pixel format, its samples where mask (H, W) bool (the hole) does
        not reach (`known_pixels.keep_source_samples`)."""
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format=rgb_format(rgb))
        if self.is_rgb:
            frame = frame.reformat(format=self.pix_fmt)
        else:
            frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.colorspace,
                                   dst_color_range=self.color_range)
        if source is not None:
            keep_source_samples(frame, source, mask)
        frame.pts, frame.time_base = pts - self.pts_offset, self.time_base
        self.container.mux(self.video.encode(frame))

    def finish(self) -> None:
        self.container.mux(self.video.encode(None))
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing a half-written file may fail; the file is removed anyway
            pass


def inpaint_video(src: str | Path, mask: Any, dst: str | Path, *, temporal: str = "on", engine: Any = None,
                  frames: tuple[int | None, int | None] | None = None,
                  seconds: tuple[float | None, float | None] | None = None,
                  encode: EncodeSettings = EncodeSettings(), dilate: int = 0, audio: bool = True,
                  hold_last_mask: bool = False, progress: Progress | None = None,
                  overlap_io: bool | None = None, config: VideoConfig | None = None,
                  exclude: Any = None, subtitles: bool = True, input_fps: float | None = None) -> VideoSummary:
    """Inpaint every frame of the video `src` where `mask` says, write the video `dst`; see the module docstring.
    src and dst may be image sequences (`shot.%04d.png`: `rethined_engine.video.sequences`); input_fps: a source
    sequence's frames per second (default `SEQUENCE_FPS`, 24; a ValueError for a video file, read at its own rate).

    mask: an image path, numpy (H, W) array or PIL image (one mask for every frame), a folder of images
    (one per frame), a mask video path (decoded in step), or a function `(source frame index, (H, W, 3)
    uint8 RGB frame) -> (H, W) mask`; nonzero/white fills (`rethined_engine.video.masks`).
    temporal: "on" (temporally consistent) or "off" (every frame `engine.inpaint` alone); engine: an
    `Engine` (default `Engine()`); config: the temporal mode's `VideoConfig` (default
    `VideoConfig(lookahead=FILE_LOOKAHEAD)`: each frame also copies what the next FILE_LOOKAHEAD frames show).
    frames / seconds: the range to keep (see the module docstring).
    encode: `EncodeSettings` (`LOSSLESS` for ffv1 in RGB, at the source's depth). dilate: grow every mask by this
    many pixels.
    audio / subtitles: copy every audio / subtitle stream, with its tags (`stream_copy`). hold_last_mask: when a
    mask folder/video ends before the video, hold its last mask (with a warning) instead of raising
    `MaskTooShortError`.
    exclude: None, or the pixels no fill may copy (a second logo, a presenter beside the hole), in any form `mask`
    takes (nonzero/white = excluded; not dilated): a frame gives none of them to other frames' holes and the
    engine copies none (`Engine.inpaint`'s exclude); a folder or video of them follows hold_last_mask too.
    progress: called after every frame with (frames done, expected total or None; an estimate when
    `seconds` is given). overlap_io: decode and encode on two threads, `PIPELINE_DEPTH` frames apart,
    while the calling thread inpaints (PyAV releases the GIL); None = when the engine runs on a CUDA device
    (with inference on the CPU, the threads compete with the engine's own for the cores).
    """
    require_av()
    src, dst = Path(src), Path(dst)
    rng = FrameRange.of(frames, seconds)
    source_spec = VideoSource.of(src, input_fps)
    if is_sequence(dst):
        encode = _sequence_encoding(dst, encode)
    options = encode.codec_options()
    if not dst.parent.is_dir():
        raise ValueError(f"dst: the folder {dst.parent} does not exist")
    if dst.is_dir():
        raise ValueError(f"dst: {dst} is a folder; give a file name such as {dst / 'inpainted.mp4'}")
    if dst.resolve() == src.resolve():
        raise ValueError(f"dst: {dst} is the input video; write to another file")
    inpainter = VideoInpainter(engine, temporal, config or VideoConfig(lookahead=FILE_LOOKAHEAD))
    source = _open_source(source_spec)
    try:
        sources = MaskSources(mask, exclude, dilate, hold_last_mask)
    except BaseException:
        source.close()
        raise
    try:
        overlap = _inference_on_gpu(inpainter) if overlap_io is None else overlap_io
        kinds = tuple(kind for kind, keep in zip(COPY_OPTIONS, (audio, subtitles)) if keep)
        return _run(source, source_spec, sources, dst, rng, encode, options, inpainter, kinds, progress, overlap)
    finally:
        sources.close()
        source.close()


def _check_mask_count(masks, rng: FrameRange, video_frames: int) -> None:
    """Before decoding: a folder or mask video known to be shorter than the frame range needs."""
    if not video_frames or masks.count is None or masks.hold_last or rng.t0 is not None or rng.t1 is not None:
        return
    needed = min(rng.stop, video_frames) if rng.stop is not None else video_frames
    if needed > masks.count:
        raise MaskTooShortError(f"{masks.name}: {masks.describe()} has {masks.count} masks, the video needs {needed}; "
                                "give one mask per frame, or hold the last mask (hold_last_mask=True / "
                                "--hold-last-mask)")


def _run(source, source_spec: VideoSource, sources: MaskSources, dst: Path, rng: FrameRange, encode: EncodeSettings,
         options: dict[str, str], inpainter: VideoInpainter, kinds: tuple[str, ...], progress: Progress | None,
         overlap: bool) -> VideoSummary:
    t_start = time.perf_counter()
    video = source.streams.video[0]
    fps = _frame_rate(video)
    count = video.frames or source_spec.frames     # 0 / None: the container does not say
    for masks in sources.all:
        _check_mask_count(masks, rng, count)
    total = rng.expected_frames(count or None, fps)
    source_format = video.codec_context.format
    source_pix_fmt = None if source_format is None else source_format.name
    pix_fmt = encode.pixel_format(source_pix_fmt)
    native = pix_fmt == source_pix_fmt and one_component_per_plane(pix_fmt)    # known samples from the source's
    kept = _KeptFrames(source, source_spec.open, rng, fps,
                       deep=is_deep(source_pix_fmt) and is_deep(pix_fmt) and not native)
    output = _Output(dst)
    writer: _Writer | None = None
    copies: StreamCopy | None = None
    encoding: _Drain | _InlineDrain | None = None
    decoding = (_Prefetch if overlap else _InlineFetch)(iter(kept))
    written, first_size = 0, None
    # (pts, seconds, the source frame to keep samples of or None, its 16-bit RGB or None, its mask) of the frames
    # whose outputs are still to come
    waiting: deque[tuple[int, float, Any, np.ndarray | None, np.ndarray]] = deque()

    def encode_frame(item: tuple[np.ndarray, int, float, Any, np.ndarray]) -> None:
        rgb, pts, t, kept_source, mask = item
        if copies is not None:
            copies.copy_until(writer.container, t)
        writer.write_frame(rgb, pts, kept_source, mask)

    def put(outputs: list[np.ndarray]) -> None:
        """Queue the inpainter's ready outputs for encoding with their frames' times (a deep source's at 16 bits)."""
        nonlocal written
        for output in outputs:
            pts, t, kept_source, rgb16, mask = waiting.popleft()
            encoding.put((output if rgb16 is None else put_back(rgb16, output, mask), pts, t, kept_source, mask))
            written += 1
            if progress is not None:
                progress(written, total)

    try:
        for index, frame, t, rgb, rgb16 in decoding:
            pts = frame.pts if frame.pts is not None else round(t / video.time_base)
            if first_size is None:
                first_size = rgb.shape[:2]
                for masks in sources.all:
                    masks.rotation = frame.rotation
                number = None if output.folder is None else (source_spec.first_number or 0) + index
                writer = _Writer(output.path, encode, pix_fmt, options, video, frame, fps, pts if rng.cuts else 0,
                                 number)
                writer.container.metadata.update(copied_tags(source.metadata))
                writer.container.set_chapters(copied_chapters(source.chapters(), t if rng.cuts else 0.0,
                                                              rng.end_time(fps)))
                copies = StreamCopy(source_spec.open, kinds, t if rng.cuts else None)
                copies.attach(writer.container)
                encoding = (_Drain if overlap else _InlineDrain)(encode_frame)
            elif rgb.shape[:2] != first_size:
                raise ValueError(f"src: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame "
                                 f"{first_size[1]}x{first_size[0]} (WxH); the size must not change mid-stream")
            masks = sources.at(index, rgb)
            waiting.append((pts, t, frame if native else None, rgb16, masks[0]))
            put(inpainter.push(rgb, *masks))
        if writer is None:
            raise ValueError(f"src: {source_spec.path} has no video frames"
                             + (" in the selected range" if rng.cuts else ""))
        put(inpainter.flush())
        encoding.finish()
        if copies is not None:
            copies.copy_until(writer.container, kept.end_time)
        writer.finish()
        output.commit()
    except BaseException:
        if encoding is not None:
            encoding.abort()
        if writer is not None:
            writer.abort()
        output.discard()
        raise
    finally:
        decoding.close()
        if copies is not None:
            copies.close()
    elapsed = time.perf_counter() - t_start
    audio_fate, subtitle_fate = (_fate(kind, kinds, copies, source) for kind in COPY_OPTIONS)
    return VideoSummary(dst, written, elapsed, written / elapsed if elapsed > 0 else 0.0, fps, audio_fate,
                        subtitle_fate)


def _fate(kind: str, kinds: tuple[str, ...], copies: StreamCopy, source) -> str:
    """What happened to the source's streams of `kind` (`StreamCopy.fate`, or "dropped: audio=False" when they
    were not asked for)."""
    if kind not in kinds:
        return f"dropped: {COPY_OPTIONS[kind]}=False" if any(s.type == kind for s in source.streams) else "none"
    return copies.fate(kind)


class ProgressLine:
    """A `progress` callback drawing one self-updating line on a text stream (stderr by default):
    frames done/total, percent, processing frames per second, and the ETA when the total is known."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.t_start = time.perf_counter()
        self.t_drawn = -math.inf
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - self.t_drawn < PROGRESS_INTERVAL_S and done != total:
            return
        self.t_drawn = now
        fps = done / (now - self.t_start) if now > self.t_start else 0.0
        line = f"frames {done}" + (f"/{total} ({100 * done / total:.0f}%)" if total else "") + f"  {fps:.1f} fps"
        if total and fps > 0:
            line += f"  ETA {_clock(max(total - done, 0) / fps)}"
        self.stream.write("\r" + line.ljust(60))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the line (call once after the run)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


VIDEO_HELP = """Inpaint a video file: every frame is filled where its mask is nonzero (white).

IN and OUT may be image sequences: a file name with one printf counter (shot.%04d.png; PNG, TIFF, DPX, BMP,
JPEG; EXR is refused), read from the folder's lowest number at --input-fps (24 by default) and written with the
source's numbers; 16-bit PNG/TIFF and 10/16-bit DPX keep their depth where the frame is known.

MASK is one image (the same mask for every frame), a folder of images (one per frame, in natural name
order), or a mask video (frame i masks frame i; luma >= 128 fills). A folder or mask video shorter than
the video is an error before anything is written (or, when its length shows only while decoding, the
run stops and the partial output is removed), unless --hold-last-mask repeats its last mask (with a
warning). Masks are indexed by source frame, also when --start cuts the video. --exclude takes the same
forms: pixels no fill may copy (a second logo, a presenter beside the hole); not dilated.

--temporal on (the default) copies into the hole what other frames show: past frames, and the next
--lookahead frames ({lookahead} by default; they wait in memory, so a frame is written once they have been read),
and keeps what it has to invent steady; --temporal off fills every frame alone.

The output keeps the frame rate, timestamps, colour tags, rotation and tags; every audio and subtitle stream is
copied, not re-encoded, with its language and disposition, and cut with --start/--end at packet boundaries
(audio without timestamps is dropped with a warning when cut). Default encoding: libx264 crf 18 preset medium
(lossy), in the source's pixel format when libx264 takes it (yuv420p, yuv422p10le, ...), so that every sample
outside the hole is the source's own, else yuv420p, or yuv420p10le for a source of more than 8 bits per component,
whose known pixels keep their depth (the fill has 8 bits of precision). --lossless writes ffv1 in RGB (bgr0, or
rgb48le for a deeper source), which keeps the RGB frames bit for bit (use .mkv or .avi). The output is written to a
temporary file next to OUT and renamed at the end: an error or Ctrl-C leaves no partial file.
""".format(lookahead=FILE_LOOKAHEAD)


def add_video_parser(subparsers) -> None:
    """The `rethined video` subcommand's arguments (run by `run_video_command`)."""
    import argparse

    defaults = EncodeSettings()
    cmd = subparsers.add_parser("video", help="inpaint a video file (mask: image, folder of images, or video)",
                                description=VIDEO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("input", type=Path, help="input video (any container FFmpeg reads), or an image sequence "
                     "(shot.%%04d.png: PNG, TIFF, DPX, BMP, JPEG)")
    cmd.add_argument("--input-fps", type=float, default=None, metavar="FPS",
                     help="frames per second of an input image sequence (default 24)")
    cmd.add_argument("mask", help="mask image, folder of mask images, or mask video; nonzero/white = fill")
    cmd.add_argument("-o", "--output", type=Path, required=True, help="output video; the suffix picks the "
                     "container (.mp4, .mkv, .mov, .avi), or an image sequence (out.%%04d.png, .tif, .dpx)")
    cmd.add_argument("--temporal", choices=("on", "off"), default="on",
                     help="on: temporally consistent fill (default); off: every frame inpainted alone")
    cmd.add_argument("--lookahead", type=int, default=None, metavar="N",
                     help="temporal on: each frame also copies what the next N frames show (they are held in "
                          f"memory; default {FILE_LOOKAHEAD}, 0 for none)")
    cmd.add_argument("--start", help="first frame kept: a frame index (120) or a time in seconds (4.5s)")
    cmd.add_argument("--end", help="end of the range, excluded: a frame index or a time in seconds (9s)")
    cmd.add_argument("--codec", help=f"FFmpeg encoder (default {defaults.codec})")
    cmd.add_argument("--pix-fmt", help="encoded pixel format (default: the source's when the encoder takes it, "
                     "else yuv420p, or yuv420p10le for a source of more than 8 bits per component)")
    cmd.add_argument("--crf", type=int, help=f"constant rate factor, lower = better (default {defaults.crf})")
    cmd.add_argument("--preset", help=f"encoder preset (default {defaults.preset})")
    cmd.add_argument("--lossless", action="store_true",
                     help="ffv1 with bgr0 (rgb48le for a source of more than 8 bits): the RGB frames bit for bit "
                          "(not with --codec/--pix-fmt/--crf/--preset)")
    cmd.add_argument("--dilate", type=int, default=0, help="grow every mask by this many pixels (default 0)")
    cmd.add_argument("--no-audio", action="store_true", help="leave the audio streams out")
    cmd.add_argument("--no-subtitles", action="store_true", help="leave the subtitle streams out")
    cmd.add_argument("--hold-last-mask", action="store_true",
                     help="when the mask folder/video ends first, repeat its last mask instead of failing")
    cmd.add_argument("--exclude", default=None, metavar="EXCLUDE",
                     help="mask image, folder or mask video of pixels never copied into the hole (nonzero/white)")
    cmd.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    cmd.add_argument("--weights", type=Path, default=None, help="a .safetensors file (default: shipped weights)")


def _range_args(start: str | None, end: str | None) -> tuple[tuple | None, tuple | None]:
    """--start/--end -> (frames, seconds) for `inpaint_video`; SystemExit on a malformed value."""
    bounds = {}
    for name, text in (("start", start), ("end", end)):
        try:
            bounds[name] = parse_position(text) if text is not None else (None, None)
        except ValueError as exc:
            raise SystemExit(f"error: --{name}: {exc}") from None
    frames = (bounds["start"][0], bounds["end"][0])
    seconds = (bounds["start"][1], bounds["end"][1])
    return (frames if frames != (None, None) else None), (seconds if seconds != (None, None) else None)


def _encode_args(args) -> EncodeSettings:
    chosen = {name: getattr(args, name) for name in ("codec", "pix_fmt", "crf", "preset")
              if getattr(args, name) is not None}
    if args.lossless:
        if chosen:
            flags = ", ".join("--" + name.replace("_", "-") for name in chosen)
            raise SystemExit(f"error: --lossless sets the codec and pixel format; leave out {flags}")
        return LOSSLESS
    return EncodeSettings(**chosen)


def run_video_command(args) -> None:
    """`rethined video`: `inpaint_video` with a progress line on stderr and a one-line summary on stdout."""
    from ..engine import Engine  # torch import is slow: only after the arguments parsed

    frames, seconds = _range_args(args.start, args.end)
    encode = _encode_args(args)
    lookahead = FILE_LOOKAHEAD if args.lookahead is None else args.lookahead
    if lookahead < 0:
        raise SystemExit(f"error: --lookahead: expected >= 0, got {lookahead}")
    from ..engine_options import engine_kwargs

    try:
        engine = Engine(**engine_kwargs(args))
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    progress = ProgressLine()
    try:
        summary = inpaint_video(args.input, args.mask, args.output, temporal=args.temporal, engine=engine,
                                frames=frames, seconds=seconds, encode=encode, dilate=args.dilate,
                                audio=not args.no_audio, subtitles=not args.no_subtitles,
                                hold_last_mask=args.hold_last_mask, progress=progress,
                                config=VideoConfig(lookahead=lookahead), exclude=args.exclude,
                                input_fps=args.input_fps)
    except (ValueError, FileNotFoundError, NotImplementedError, ImportError) as exc:
        progress.close()
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        progress.close()
        raise SystemExit(f"interrupted: {args.output} was not written") from None
    progress.close()
    print(f"wrote {summary.output}: {summary.frames} frames at {float(summary.video_fps):.3g} fps in "
          f"{summary.elapsed_s:.1f}s ({summary.processing_fps:.1f} frames/s on {engine.device}), "
          f"audio {summary.audio}" + (f", subtitles {summary.subtitles}" if summary.subtitles != "none" else ""))
