"""Frames for a palette encoder (GIF): 256 colours chosen for each frame by FFmpeg's own filters.

GIF stores 8-bit palette indices (`PALETTE_PIX_FMT`, pal8). GIF's other formats hold a fixed palette of 3-3-2 bits
(rgb8: a mean error of about 17 levels of 255 on a moving colour gradient); `PaletteFrames` runs each frame through
FFmpeg's `palettegen` (the 256 colours that frame uses most, stats_mode=single) and `paletteuse` (each pixel the
nearest of them, dithered; new=1: a new palette for every frame): about 5 levels on the same gradient
(tests/test_video_files.py).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Iterator

PALETTE_PIX_FMT = "pal8"
PALETTE_INPUT_FORMAT = "rgb24"
PALETTE_GEN_OPTIONS = "stats_mode=single"   # one palette per frame, from that frame's colours
PALETTE_USE_OPTIONS = "new=1"               # use each frame's own palette, not the first one


class PaletteFrames:
    """Converts PyAV video frames of one size to pal8 frames, each with its own palette; timestamps kept.

    Push frames with `convert` and encode what it yields; `flush` yields what the filters still hold at the end.
    """

    def __init__(self, width: int, height: int, time_base: Fraction):
        import av.filter

        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(width=width, height=height, format=PALETTE_INPUT_FORMAT, time_base=time_base)
        split = self.graph.add("split")
        palette = self.graph.add("palettegen", PALETTE_GEN_OPTIONS)
        use = self.graph.add("paletteuse", PALETTE_USE_OPTIONS)
        sink = self.graph.add("buffersink")
        source.link_to(split)
        split.link_to(palette, 0, 0)
        split.link_to(use, 1, 0)          # the frame itself, then its palette
        palette.link_to(use, 0, 1)
        use.link_to(sink)
        self.graph.configure()

    def convert(self, frame) -> Iterator:
        """Push one frame (any RGB format; pts and time_base set) and yield the pal8 frames ready so far."""
        if frame.format.name != PALETTE_INPUT_FORMAT:
            pts, time_base = frame.pts, frame.time_base
            frame = frame.reformat(format=PALETTE_INPUT_FORMAT)
            frame.pts, frame.time_base = pts, time_base
        self.graph.push(frame)
        yield from self._ready()

    def flush(self) -> Iterator:
        """Yield the frames the filters still hold once no more frames come."""
        self.graph.push(None)
        yield from self._ready()

    def _ready(self) -> Iterator:
        import av

        while True:
            try:
                yield self.graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
