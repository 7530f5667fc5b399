"""`rethined video IN MASK -o OUT`: the subcommand's arguments (`add_video_parser`), its run (`run_video_command`:
`inpaint_video` with a progress line on stderr and a one-line summary on stdout) and the progress line itself."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from .files import FILE_LOOKAHEAD, LOSSLESS, EncodeSettings, inpaint_video, parse_position
from .stream import VideoConfig

PROGRESS_INTERVAL_S = 0.25  # the progress line is redrawn at most this often


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
copied, not re-encoded, with its language and disposition, and cut with --start/--end at packet boundaries (audio
without timestamps is dropped with a warning when cut). Default encoding: libx264 crf 18 preset medium (lossy;
.webm, .ogv and .gif, which cannot hold H.264, get their container's own encoder, GIF a palette of 256 colours per
frame; --codec alone drops the crf and preset an encoder lacks), in the source's pixel format when libx264 takes it
(yuv420p, yuv422p10le, ...), so that every sample outside the hole is the source's own, else yuv420p, or yuv420p10le
for a source of more than 8 bits per component, whose known pixels keep their depth (the fill has 8 bits of
precision). --lossless writes ffv1 in RGB (bgr0, or rgb48le for a deeper source), which keeps the RGB frames bit for
bit (use .mkv or .avi). The output is written to a temporary file next to OUT and renamed at the end: an error or
Ctrl-C leaves no partial file.
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
    settings = EncodeSettings(**chosen)
    try:
        return settings.for_encoder(settings.codec, named=tuple(chosen)) if "codec" in chosen else settings
    except ValueError as exc:                   # an encoder FFmpeg does not have
        raise SystemExit(f"error: --codec: {exc}") from None


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
