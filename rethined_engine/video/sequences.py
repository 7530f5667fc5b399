"""Image sequences as video for `inpaint_video`: `inpaint_video("plates/shot.%04d.png", mask, "out/shot.%04d.png")`.

A path whose file name holds one printf counter (`%d`, or `%04d` for numbers padded to 4 digits) names an image
sequence: PNG, TIFF, DPX, BMP or JPEG files numbered in one folder. Reading goes through FFmpeg's image2 demuxer,
from the lowest number in the folder (VFX numbering starts at 1001 as often as at 0 or 1), at `input_fps` frames
per second (`SEQUENCE_FPS` by default: a sequence states no rate); a gap in the numbers is an error (the demuxer
would stop there). Frame i of the sequence is source frame i (a mask folder's i-th image masks it).

Writing a sequence goes through the image2 muxer with the encoder its suffix names (`IMAGE_ENCODERS`, when the
settings are `EncodeSettings()`'s defaults or `LOSSLESS`), numbered as the source's frames are: from the source
sequence's own numbers, or from the source frame index for a video file. A 16-bit PNG or TIFF and a 10- or 16-bit
DPX source keeps its depth (`known_pixels`). The files are written into a hidden folder beside the output and moved
into place at the end; an error or interruption removes that folder and leaves files already there untouched. EXR
is refused: it holds linear light, which the inpainter (display-referred 8-bit RGB) would treat as display values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

COUNTER = re.compile(r"%(0\d+)?d")
SEQUENCE_FPS = 24   # frames per second of a sequence read without input_fps
IMAGE_ENCODERS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".dpx": "dpx", ".bmp": "bmp", ".jpg": "mjpeg",
                  ".jpeg": "mjpeg"}
LOSSY_IMAGE_ENCODERS = ("mjpeg",)
REFUSED_SUFFIXES = {".exr": "EXR holds linear light, which the inpainter (display-referred 8-bit RGB) does not take; "
                            "convert it to 16-bit TIFF, PNG or DPX first"}


def is_sequence(path: Path) -> bool:
    """Whether the file name of `path` holds exactly one printf counter (%d, %04d)."""
    return len(COUNTER.findall(Path(path).name)) == 1


def sequence_numbers(path: Path) -> list[int]:
    """The numbers of the files in path's folder that its pattern names, ascending."""
    path = Path(path)
    match = COUNTER.search(path.name)
    width = int(match.group(1)) if match.group(1) else 1
    name = re.compile(re.escape(path.name[:match.start()]) + rf"(\d{{{width},}})" + re.escape(path.name[match.end():])
                      + "$")
    if not path.parent.is_dir():
        return []
    found = (name.match(entry.name) for entry in path.parent.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def check_suffix(path: Path, name: str) -> None:
    """ValueError naming `name` for a sequence suffix no encoder or decoder here takes (EXR)."""
    reason = REFUSED_SUFFIXES.get(Path(path).suffix.lower())
    if reason is not None:
        raise ValueError(f"{name}: {path}: {reason}")


@dataclass(frozen=True)
class VideoSource:
    """How to open the video `path` for reading: a video file, or an image sequence with the image2 demuxer's
    options (`options`), its first file number (`first_number`) and its number of files (`frames`; both None for a
    file)."""
    path: Path
    options: dict[str, str] = field(default_factory=dict)
    first_number: int | None = None
    frames: int | None = None

    @classmethod
    def of(cls, src: Path, input_fps: float | None = None) -> "VideoSource":
        """The source `src` (a file, or a sequence pattern); FileNotFoundError or ValueError naming src."""
        src = Path(src)
        if input_fps is not None and not input_fps > 0:
            raise ValueError(f"input_fps: expected frames per second > 0, got {input_fps}")
        if not is_sequence(src):
            if not src.is_file():
                raise FileNotFoundError(f"src: file not found: {src}")
            if input_fps is not None:
                raise ValueError(f"input_fps: sets the rate of an image sequence; {src} is a video file, read at "
                                 "its own rate")
            return cls(src)
        check_suffix(src, "src")
        numbers = sequence_numbers(src)
        if not numbers:
            raise FileNotFoundError(f"src: no file matches the sequence {src}")
        gaps = [n + 1 for n, m in zip(numbers, numbers[1:]) if m != n + 1]
        if gaps:
            raise ValueError(f"src: the sequence {src} has no frame {gaps[0]} (numbers {numbers[0]}-{numbers[-1]}, "
                             f"{len(numbers)} files); fill the gap or split the sequence there")
        rate = input_fps or SEQUENCE_FPS
        return cls(src, {"start_number": str(numbers[0]), "framerate": str(rate)}, numbers[0], len(numbers))

    def open(self):
        """A PyAV input container of the source."""
        import av

        if self.first_number is None:
            return av.open(str(self.path))
        return av.open(str(self.path), format="image2", options=dict(self.options))
