"""Long videos at scale: split a video into keyframe-aligned segments, inpaint each segment on its own (in a
local loop, or as the rows of a Ray Data job with one Engine per actor) and join the parts without re-encoding.

    segments = plan_segments("clip.mp4", seconds=10, warmup=8)
    inpaint_video_segments("clip.mp4", "logo.png", "out.mkv", seconds=10, use_ray=True, workers=4)

A segment starts at a keyframe (the first one at or after each multiple of `seconds`), so its decoder starts
there after a seek and decodes nothing of the segments before it. With temporal mode on, a segment also
decodes and inpaints the `warmup` frames before its first frame (seeking to the keyframe at or before them)
to rebuild the temporal state, and drops their output, and the `lookahead` frames after its last frame, which the
frames before them copy from as in one sequential run: every frame is written once, by its own segment. The
parts are lossless FFV1 in RGB (bgr0, or rgb48le for a source of more than 8 bits per component, whose known
pixels keep their depth: `video.known_pixels`) in Matroska with the source's timestamps; `join_parts` remuxes
their packets into one file (FFV1 frames are all keyframes, so any part boundary is a clean cut), with the source's
audio and subtitle streams, tags and chapters copied in step (`video.stream_copy`). The output is that FFV1 file:
encode it to a delivery codec afterwards. Frames are indexed in presentation order, found from the packets'
timestamps (a container without packet timestamps is refused).
"""
from __future__ import annotations

import bisect
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..video.known_pixels import decode_frame, is_deep, put_back, rgb_format
from ..video.files import LOSSLESS, _frame_rate, _open_source, copied_kinds, require_av
from ..video.masks import MaskSources
from ..video.sequences import VideoSource
from ..video.stream_copy import StreamCopy, copied_chapters, copied_tags, packet_time

PART_SUFFIX = ".mkv"


@dataclass(frozen=True)
class Segment:
    """Frames [first, stop) of a video (presentation order), written by one task. warm: the first frame
    decoded (<= first; frames [warm, first) only warm the temporal state); end: the frame after the last one
    decoded (>= stop; frames [stop, end) are only copied from, the lookahead); seek_pts: the timestamp (video
    stream time base) of the keyframe at or before `warm`, where decoding starts."""

    index: int
    first: int
    stop: int
    warm: int
    end: int
    seek_pts: int

    def as_dict(self) -> dict:
        return {"index": self.index, "first": self.first, "stop": self.stop, "warm": self.warm, "end": self.end,
                "seek_pts": self.seek_pts}


class FrameTable(NamedTuple):
    """A video stream's frames in presentation order, read from its packets without decoding."""

    pts: list[int]          # every frame's timestamp (time_base units)
    keyframe: list[bool]    # whether the frame is a keyframe
    time_base: Fraction
    fps: Fraction


def part_path(folder: str | Path, index: int) -> Path:
    """Where segment `index` writes its FFV1 part in folder."""
    return Path(folder) / f"part{index:06d}{PART_SUFFIX}"


def frame_table(src: str | Path) -> FrameTable:
    """The `FrameTable` of src's first video stream."""
    require_av()
    with _open_source(VideoSource.of(Path(src))) as container:
        video = container.streams.video[0]
        frames = []
        for packet in container.demux(video):
            if packet.size == 0:   # the demuxer's flush packet
                continue
            if packet.pts is None:
                raise ValueError(f"src: {src} has video packets without timestamps; segments need a container "
                                 "that stores them (mp4, mkv, mov, ...)")
            frames.append((packet.pts, packet.is_keyframe))
        if not frames:
            raise ValueError(f"src: {src} has no video frames")
        frames.sort()
        return FrameTable([pts for pts, _ in frames], [key for _, key in frames], Fraction(video.time_base),
                          _frame_rate(video))


def plan_segments(src: str | Path, seconds: float, warmup: int = 0, table: FrameTable | None = None,
                  lookahead: int = 0) -> list[Segment]:
    """Keyframe-aligned segments of about `seconds` each covering every frame of src once; each decodes
    `warmup` frames before its first (temporal state) from the keyframe at or before them, and `lookahead`
    frames after its last (up to the video's end). table: src's `frame_table`, when already read."""
    if not seconds > 0:
        raise ValueError(f"seconds: expected a segment length > 0, got {seconds}")
    for name, value in (("warmup", warmup), ("lookahead", lookahead)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a whole number of frames >= 0, got {value!r}")
    pts, keyframe, time_base, _ = table or frame_table(src)
    keys = [i for i, key in enumerate(keyframe) if key]
    if not keys or keys[0] != 0:
        raise ValueError(f"src: {src} does not start with a keyframe")
    starts, boundary = [0], seconds
    for i in keys[1:]:
        if (pts[i] - pts[0]) * time_base >= boundary:
            starts.append(i)
            boundary = math.floor((pts[i] - pts[0]) * time_base / seconds + 1) * seconds
    segments = []
    for index, (first, stop) in enumerate(zip(starts, starts[1:] + [len(pts)])):
        warm = max(0, first - warmup)
        seek = keys[bisect.bisect_right(keys, warm) - 1]
        segments.append(Segment(index, first, stop, warm, min(len(pts), stop + lookahead), pts[seek]))
    return segments


def _segment_frames(src: Path, segment: Segment, pts: list[int]
                    ) -> Iterator[tuple[int, Any, np.ndarray, np.ndarray | None]]:
    """(source index, decoded frame, (H, W, 3) uint8 RGB, and (H, W, 3) uint16 RGB for a source of more than 8 bits
    per component, else None) of frames [warm, end), decoded from the seek point."""
    with _open_source(VideoSource.of(src)) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        deep = video.codec_context.format is not None and is_deep(video.codec_context.format.name)
        container.seek(segment.seek_pts, stream=video, backward=True, any_frame=False)
        index_of = {p: i for i, p in enumerate(pts)}
        expected = segment.warm
        for frame in container.decode(video):
            index = index_of.get(frame.pts)
            if index is None:
                raise ValueError(f"src: a decoded frame's timestamp {frame.pts} is not one of the packets'")
            if index < segment.warm:
                continue
            if index >= segment.end:
                return
            if index != expected:
                raise ValueError(f"src: frame {expected} could not be decoded after seeking to timestamp "
                                 f"{segment.seek_pts} (got frame {index})")
            expected += 1
            yield index, frame, *decode_frame(frame, deep)
    if expected < segment.end:
        raise ValueError(f"src: the video ended at frame {expected}, before frame {segment.end}")


def inpaint_segment(src: str | Path, mask: Any, segment: Segment, part: str | Path, *, inpainter,
                    dilate: int = 0, hold_last_mask: bool = False, table: FrameTable | None = None,
                    exclude: Any = None) -> int:
    """Inpaint one segment of src into the FFV1 file `part` (written under a temporary name, then renamed);
    returns the frames written (stop - first). inpainter: a `VideoInpainter`, reset first (its lookahead
    should be the segment's). table: src's `frame_table`, when already read (a long video's packets are then
    not read again per segment). exclude: the pixels no fill may copy, as `inpaint_video` takes them."""
    import av

    src, part = Path(src), Path(part)
    pts, _, time_base, fps = table or frame_table(src)
    sources = MaskSources(mask, exclude, dilate, hold_last_mask)
    inpainter.reset()
    temporary = part.with_name(f".{part.name}.{os.getpid()}.tmp{PART_SUFFIX}")
    written = 0
    # (source index, pts, 16-bit RGB and mask of a deep source or None) of the frames whose outputs are to come
    waiting: deque[tuple[int, int, tuple[np.ndarray, np.ndarray] | None]] = deque()
    pix_fmt = None
    try:
        with av.open(str(temporary), "w") as out:
            stream = None

            def write(outputs: list[np.ndarray]) -> None:
                nonlocal stream, written
                for filled in outputs:
                    index, frame_pts, deep = waiting.popleft()
                    if not segment.first <= index < segment.stop:
                        continue
                    if deep is not None:
                        filled = put_back(deep[0], filled, deep[1])
                    if stream is None:
                        stream = out.add_stream(LOSSLESS.codec, rate=fps)
                        stream.width, stream.height = filled.shape[1], filled.shape[0]
                        stream.pix_fmt, stream.time_base = pix_fmt, time_base
                    picture = av.VideoFrame.from_ndarray(filled, format=rgb_format(filled)).reformat(format=pix_fmt)
                    picture.pts, picture.time_base = frame_pts, time_base
                    out.mux(stream.encode(picture))
                    written += 1

            for index, frame, rgb, rgb16 in _segment_frames(src, segment, pts):
                if pix_fmt is None:
                    pix_fmt = LOSSLESS.pixel_format(frame.format.name)
                masks = sources.at(index, rgb)
                waiting.append((index, frame.pts, None if rgb16 is None else (rgb16, masks[0])))
                write(inpainter.push(rgb, *masks))
            write(inpainter.flush())
            if stream is not None:
                out.mux(stream.encode(None))
        os.replace(temporary, part)
    finally:
        sources.close()
        Path(temporary).unlink(missing_ok=True)
    return written


def join_parts(parts: list[str | Path], dst: str | Path, src: str | Path | None = None,
               kinds: tuple[str, ...] = ("audio", "subtitle")) -> None:
    """Remux the video packets of `parts` (FFV1 files from `inpaint_segment`, in order) into dst, without
    decoding; with `src`, the source video, also its streams of `kinds` (copied packet for packet, in step with the
    video), its tags and chapters (`video.stream_copy`). dst is written under a temporary name and renamed."""
    import av

    dst = Path(dst)
    temporary = dst.with_name(f".{dst.name}.{os.getpid()}.tmp{dst.suffix}")
    copies = None
    try:
        with av.open(str(temporary), "w") as out:
            stream = None
            for part in parts:
                with av.open(str(part)) as source:
                    video = source.streams.video[0]
                    if stream is None:
                        stream = out.add_stream_from_template(video)
                        if src is not None:
                            copies = _copy_source_streams(VideoSource.of(Path(src)), out, stream, kinds)
                    for packet in source.demux(video):
                        if packet.size == 0:
                            continue
                        if copies is not None:
                            copies.copy_until(out, packet_time(packet))
                        packet.stream = stream
                        out.mux(packet)
            if copies is not None:
                copies.copy_until(out, None)
        os.replace(temporary, dst)
    finally:
        if copies is not None:
            copies.close()
        temporary.unlink(missing_ok=True)


def _copy_source_streams(source: VideoSource, out, video, kinds: tuple[str, ...]) -> StreamCopy:
    """The source's container and video tags and chapters set on `out` (its video stream `video`), and its streams
    of `kinds` attached for copying."""
    with source.open() as container:
        out.metadata.update(copied_tags(container.metadata))
        video.metadata.update(copied_tags(container.streams.video[0].metadata))
        out.set_chapters(copied_chapters(container.chapters(), 0.0, None))
    copies = StreamCopy(source.open, kinds, None)
    copies.attach(out)
    return copies


class SegmentStage:
    """One `VideoInpainter` (its Engine loaded once) per process or Ray actor; inpaints segment rows."""

    def __init__(self, src: str, mask: Any, folder: str, temporal: str, engine: dict, dilate: int,
                 table: FrameTable, lookahead: int, exclude: Any = None):
        from ..engine import Engine
        from ..video.stream import VideoConfig, VideoInpainter

        self.src, self.mask, self.folder, self.dilate, self.table = src, mask, folder, dilate, table
        self.exclude = exclude
        self.inpainter = VideoInpainter(Engine(**engine), temporal, VideoConfig(lookahead=lookahead))

    def row(self, row: dict) -> dict:
        segment = Segment(**{key: int(row[key]) for key in ("index", "first", "stop", "warm", "end", "seek_pts")})
        frames = inpaint_segment(self.src, self.mask, segment, part_path(self.folder, segment.index),
                                 inpainter=self.inpainter, dilate=self.dilate, table=self.table,
                                 exclude=self.exclude)
        return {**row, "frames": frames}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [self.row({key: values[i] for key, values in batch.items()}) for i in range(len(batch["index"]))]
        return {key: [row[key] for row in rows] for key in rows[0]}


def inpaint_video_segments(src: str | Path, mask: Any, dst: str | Path, *, seconds: float, temporal: str = "on",
                           engine: dict | None = None, dilate: int = 0, use_ray: bool = False, workers: int = 1,
                           gpus_per_worker: float = 0.0, warmup: int | None = None,
                           lookahead: int | None = None, exclude: Any = None, audio: bool = True,
                           subtitles: bool = True) -> list[Segment]:
    """Inpaint src segment by segment into the FFV1 file dst (see the module docstring); returns the segments.
    mask: an image, array, folder, mask video or callable, as `inpaint_video`. engine: `Engine(**engine)`
    keyword arguments in every process. use_ray: segments are the rows of a Ray Data job with `workers` engine
    actors of `gpus_per_worker` GPUs (ray.init() first, or Ray starts a local one). warmup: frames decoded before
    each segment to rebuild the temporal state (default: `VideoConfig.memory_frames` with temporal on, 0 off).
    lookahead: later frames each frame copies from, decoded past each segment's end (default: `inpaint_video`'s,
    `FILE_LOOKAHEAD`, with temporal on; 0 off). exclude: the pixels no fill may copy, in the forms mask takes.
    audio / subtitles: copy the source's audio / subtitle streams into dst at the join (with its tags and chapters)."""
    from ..video.files import FILE_LOOKAHEAD
    from ..video.stream import VideoConfig

    if temporal not in ("on", "off"):
        raise ValueError(f"temporal: expected 'on' or 'off', got {temporal!r}")
    if warmup is None:
        warmup = VideoConfig().memory_frames if temporal == "on" else 0
    if lookahead is None:
        lookahead = FILE_LOOKAHEAD if temporal == "on" else 0
    src, dst = Path(src), Path(dst)
    if not dst.parent.is_dir():
        raise ValueError(f"dst: the folder {dst.parent} does not exist")
    for name, given in (("mask", mask), ("exclude", exclude)):
        if callable(given) and use_ray:
            raise ValueError(f"{name}: a function cannot be sent to Ray workers; give an image, a folder or a mask "
                             "video")
    table = frame_table(src)
    segments = plan_segments(src, seconds, warmup, table, lookahead)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.parts.") as folder:
        stage_args = (str(src), mask if not isinstance(mask, Path) else str(mask), folder, temporal, engine or {},
                      dilate, table, lookahead, exclude if not isinstance(exclude, Path) else str(exclude))
        rows = [segment.as_dict() for segment in segments]
        if use_ray:
            import ray.data

            dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
            dataset = dataset.map_batches(SegmentStage, fn_constructor_args=stage_args, batch_size=1,
                                          compute=ray.data.ActorPoolStrategy(size=workers,
                                                                             max_tasks_in_flight_per_actor=1),
                                          num_gpus=gpus_per_worker)
            done = dataset.take_all()
        else:
            stage = SegmentStage(*stage_args)
            done = [stage.row(row) for row in rows]
        missing = {row["index"] for row in rows} - {int(row["index"]) for row in done}
        if missing:
            raise RuntimeError(f"segments {sorted(missing)} were not written")
        join_parts([part_path(folder, segment.index) for segment in segments], dst, src,
                   copied_kinds(audio, subtitles))
    return segments


def add_segment_arguments(video) -> None:
    """`rethined video ... --segments SECONDS [--ray [ADDRESS]] [--workers N] [--gpus-per-worker G]`."""
    video.add_argument("--segments", type=float, metavar="SECONDS", default=None,
                       help="inpaint in keyframe-aligned segments of about SECONDS, locally or on Ray (--ray), and "
                       "join them into an FFV1 file (.mkv; no audio, no --start/--end or encoder options)")
    video.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="--segments on Ray Data: the cluster at ADDRESS, or RAY_ADDRESS's / a local one")
    video.add_argument("--workers", type=int, default=1, help="--ray: engine actors (default 1)")
    video.add_argument("--gpus-per-worker", type=float, default=0.0, help="--ray: GPUs per engine actor (default 0)")


def run_segments_command(args) -> None:
    """`rethined video IN MASK -o OUT --segments SECONDS`: `inpaint_video_segments` and a one-line summary."""
    refused = [flag for flag, value in (("--start", args.start), ("--end", args.end), ("--codec", args.codec),
                                        ("--pix-fmt", args.pix_fmt), ("--crf", args.crf), ("--preset", args.preset),
                                        ("--hold-last-mask", args.hold_last_mask)) if value]
    if refused:
        raise SystemExit(f"error: --segments writes the whole video as FFV1; leave out {', '.join(refused)}")
    if args.lookahead is not None and args.lookahead < 0:
        raise SystemExit(f"error: --lookahead: expected >= 0, got {args.lookahead}")
    use_ray = args.ray is not None
    if use_ray:
        from .command import connect_ray

        connect_ray(args.ray)
    from ..engine_options import engine_kwargs

    engine = engine_kwargs(args)
    try:
        segments = inpaint_video_segments(args.input, args.mask, args.output, seconds=args.segments,
                                          temporal=args.temporal, engine=engine, dilate=args.dilate, use_ray=use_ray,
                                          workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                                          lookahead=args.lookahead, exclude=args.exclude,
                                          audio=not args.no_audio, subtitles=not args.no_subtitles)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.output}: {segments[-1].stop} frames in {len(segments)} segments (FFV1)")
