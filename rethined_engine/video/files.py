"""Video files in and out with PyAV: `inpaint_video(src, mask, dst)`.

Reading: any container and codec the bundled FFmpeg decodes; the first video stream is decoded frame by
frame to rgb24 (H, W, 3) uint8 with the source's colour matrix and range, inpainted by a `VideoInpainter`,
converted back to the output pixel format with the same matrix and range, and encoded. Where the output's pixel
format is the source's, the samples no hole pixel reaches are the source's own; a source of more than 8 bits per
component keeps its depth where its pixels are known (`rethined_engine.video.known_pixels`). The clip is never
buffered: at most `pipeline_threads.PIPELINE_DEPTH` frames wait between decoding, inpainting and encoding (plus the
encoder's own look-ahead, and the `VideoConfig.lookahead` frames the inpainter holds back). With
`overlap_io` (by default when the engine runs on CUDA) decoding and encoding run on two threads beside the
inpainting.

Writing (`EncodeSettings`): libx264, crf 18, preset medium by default (in a container that cannot hold H.264, .webm,
.ogv or .gif, that container's own default encoder: VP9, VP8, GIF, at crf 18 where it takes one and with no bitrate
target), in the source's pixel format when libx264 takes it, else yuv420p for an 8-bit source and yuv420p10le for a
deeper one, GIF a palette of 256 colours chosen per frame (`known_pixels.output_pixel_format`, `palette`), at the
source's frame rate and time base with the source's frame timestamps (shifted to start at 0 when a range cuts the
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
import re
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .known_pixels import (decode_frame, is_deep, keep_source_samples, one_component_per_plane, output_pixel_format,
                           put_back, rgb_format)
from .masks import MaskSources, MaskTooShortError
from .palette import PALETTE_PIX_FMT, PaletteFrames
from .pipeline_threads import Drain, InlineDrain, InlineFetch, Prefetch
from .seek import indexed_frames, seek_plan
from .sequences import IMAGE_ENCODERS, LOSSY_IMAGE_ENCODERS, VideoSource, check_suffix, is_sequence
from .stream import VideoConfig, VideoInpainter
from .stream_copy import StreamCopy, copied_chapters, copied_tags

Progress = Callable[[int, "int | None"], None]  # (frames done, total frames or None when unknown)
POSITION_PATTERN = re.compile(r"^(\d+(?:\.\d*)?)s$")  # "2.5s": seconds; a bare integer: a frame index
NEW_FILE_MODE = 0o666  # before the umask, as open() creates files
CHROMA_PROBE = 64  # a width divisible by every chroma subsampling factor, to read the factor off
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

    def for_encoder(self, codec: str, named: tuple[str, ...] = ()) -> "EncodeSettings":
        """These settings with `codec` as the encoder, crf and preset dropped (None) where that encoder has no
        such option, unless they are `named` (set by the caller on purpose: `codec_options` then says so)."""
        settings = replace(self, codec=codec)
        known = {opt.name for opt in settings._context().supported_options.private}
        lacking = [name for name in ("crf", "preset") if name not in known and name not in named]
        return replace(settings, **dict.fromkeys(lacking))

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
CONSTANT_QUALITY = {"libvpx-vp9": {"b": "0"}, "libvpx": {"b": "0"}}   # no bitrate target: crf alone sets the quality


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


def copied_kinds(audio: bool, subtitles: bool) -> tuple[str, ...]:
    """The stream kinds ("audio", "subtitle") the options `audio` and `subtitles` ask to copy (`COPY_OPTIONS`)."""
    return tuple(kind for kind, keep in zip(COPY_OPTIONS, (audio, subtitles)) if keep)


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


PROBE_SIZE = 64   # px: the frame side of the empty stream `_probe_container` starts a container with


@dataclass(frozen=True)
class _ContainerProbe:
    """FFmpeg's answer for a suffix and a video encoder: known (FFmpeg has a container for the suffix), holds (a file
    of it starts with a stream of that encoder: added and the header written), default (its default video encoder,
    None where FFmpeg has none)."""
    known: bool
    holds: bool = False
    default: str | None = None


def _probe_container(dst: Path, codec: str) -> _ContainerProbe:
    """`_ContainerProbe` for dst's suffix and codec, from an empty file in a temporary folder."""
    import av

    with tempfile.TemporaryDirectory() as folder:
        try:
            probe = av.open(str(Path(folder) / f"probe{dst.suffix}"), "w")
        except (ValueError, av.FFmpegError):
            return _ContainerProbe(known=False)
        try:
            try:
                default = av.codec.Codec(probe.default_video_codec, "w").name
            except (ValueError, av.FFmpegError):
                default = None
            try:
                stream = probe.add_stream(codec, rate=25)
                stream.width = stream.height = PROBE_SIZE
                stream.pix_fmt = stream.codec_context.codec.video_formats[0].name
                probe.start_encoding()
            except (ValueError, av.FFmpegError):
                return _ContainerProbe(True, False, default)
            return _ContainerProbe(True, True, default)
        finally:
            try:
                probe.close()
            except av.FFmpegError:       # a container whose header failed
                pass


def _container_encoding(dst: Path, encode: EncodeSettings) -> EncodeSettings:
    """The settings a video file dst is written with: encode, or, where encode names the default encoder (libx264)
    and dst's container cannot hold it (.webm, .ogv, .gif), the container's own default encoder (VP9, VP8, GIF),
    with encode's crf and preset where it takes them and no bitrate target (`CONSTANT_QUALITY`). ValueError naming
    dst where the container holds neither; a suffix FFmpeg does not know is left to the writer, which names it."""
    if encode.codec != EncodeSettings.codec:
        return encode
    probe = _probe_container(dst, encode.codec)
    if not probe.known or probe.holds:
        return encode
    if probe.default is None or not _probe_container(dst, probe.default).holds:
        raise ValueError(f"dst: FFmpeg here cannot write video into a {dst.suffix} file with {encode.codec}"
                         + (f" or {probe.default}" if probe.default else "") + "; use .mp4, .mkv, .mov or .webm")
    settings = encode.for_encoder(probe.default)
    return replace(settings, options={**CONSTANT_QUALITY.get(probe.default, {}), **settings.options})


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


def _inference_on_gpu(inpainter: VideoInpainter) -> bool:
    """Whether the engine computes on a CUDA device, leaving the CPU idle during inference."""
    return str(getattr(inpainter.engine, "device", "cpu")).startswith("cuda")


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

        _check_frame_size(pix_fmt, first_frame.width, first_frame.height)
        self.pix_fmt = pix_fmt
        self.is_rgb = av.VideoFormat(pix_fmt).is_rgb
        try:
            self.video = self.container.add_stream(codec, rate=fps, options=options)
        except ValueError as exc:          # FFmpeg's answer for the container (mpegts takes any codec)
            raise ValueError(f"encode.codec: the {self.container.format.name} container cannot hold "
                             f"{codec}; choose another suffix for dst (e.g. .mkv)") from exc
        ctx = self.video.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = first_frame.width, first_frame.height, pix_fmt
        ctx.time_base = self.video.time_base = self.time_base = src_video.time_base
        self.palette = (PaletteFrames(first_frame.width, first_frame.height, self.time_base)
                        if pix_fmt == PALETTE_PIX_FMT else None)
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
        if self.palette is not None:
            frame.pts, frame.time_base = pts - self.pts_offset, self.time_base
            for indexed in self.palette.convert(frame):
                self.container.mux(self.video.encode(indexed))
            return
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
        if self.palette is not None:
            for indexed in self.palette.flush():
                self.container.mux(self.video.encode(indexed))
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
    `seconds` is given). overlap_io: decode and encode on two threads, `pipeline_threads.PIPELINE_DEPTH` frames apart,
    while the calling thread inpaints (PyAV releases the GIL); None = when the engine runs on a CUDA device
    (with inference on the CPU, the threads compete with the engine's own for the cores).
    """
    require_av()
    src, dst = Path(src), Path(dst)
    rng = FrameRange.of(frames, seconds)
    source_spec = VideoSource.of(src, input_fps)
    encode = _sequence_encoding(dst, encode) if is_sequence(dst) else _container_encoding(dst, encode)
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
        kinds = () if is_sequence(dst) else copied_kinds(audio, subtitles)
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
    encoding: Drain | InlineDrain | None = None
    decoding = (Prefetch if overlap else InlineFetch)(iter(kept))
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
                encoding = (Drain if overlap else InlineDrain)(encode_frame)
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
    audio_fate, subtitle_fate = (_fate(kind, kinds, copies, source, output.folder is not None) for kind in COPY_OPTIONS)
    return VideoSummary(dst, written, elapsed, written / elapsed if elapsed > 0 else 0.0, fps, audio_fate,
                        subtitle_fate)


def _fate(kind: str, kinds: tuple[str, ...], copies: StreamCopy, source, sequence: bool) -> str:
    """What happened to the source's streams of `kind` (`StreamCopy.fate`; "dropped: audio=False" when they were not
    asked for; "dropped: an image sequence holds none" for a `sequence` output)."""
    if kind in kinds:
        return copies.fate(kind)
    if not any(s.type == kind for s in source.streams):
        return "none"
    return "dropped: an image sequence holds none" if sequence else f"dropped: {COPY_OPTIONS[kind]}=False"
