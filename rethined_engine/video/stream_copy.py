"""The rest of the source in `inpaint_video`'s output: every audio and subtitle stream, copied packet for packet
(never re-encoded) and cut with the frame range, with its tags (language, title) and disposition (default, forced,
...); the tags of the source's container and video stream; and its chapters, cut and shifted with the range.

Packets are demuxed from a second reader of the source and copied up to the video's current time, so the muxer never
holds more than a moment of any stream. A range cuts at packet boundaries: the packets starting in [time of the first
kept frame, time of the first frame after the range) are kept and shifted like the video, so a stream may start up to
one packet late (about 21 ms for AAC at 48 kHz) and stays in sync. A stream is dropped, with a warning, when the output
container cannot hold its codec, or when a range is given and its first packet carries no timestamp (audio only: a
subtitle's packets are all timed, and its first may lie far into the file); `fate` says what happened to each kind.
Tags that describe the source file's own encode (ENCODER, DURATION, BPS, the NUMBER_OF_ and _STATISTICS_ counts that
Matroska writers add) are not copied, nor an old-style rotate tag (the display matrix carries the rotation).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping

NOT_COPIED_TAG_PREFIXES = ("ENCODER", "DURATION", "BPS", "NUMBER_OF_", "_STATISTICS_", "ROTATE")  # upper case
TIMESTAMP_CHECKED_KINDS = ("audio",)  # kinds whose first packet is checked for a timestamp when a range cuts them


def copied_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags worth copying to the output: all but those of NOT_COPIED_TAG_PREFIXES (any case)."""
    return {key: value for key, value in tags.items() if not key.upper().startswith(NOT_COPIED_TAG_PREFIXES)}


def packet_time(packet) -> float | None:
    """When a packet starts, in seconds (its pts, else its dts; None when it carries neither)."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    return float(stamp * packet.time_base) if stamp is not None else None


def copied_chapters(chapters: list[dict], start: float, end: float | None) -> list[dict]:
    """The source's chapters (PyAV's dicts: id, start, end, time_base, metadata) for an output that keeps the
    source's [start, end) seconds (end None: to its end), moved back by start: a chapter wholly outside is left out,
    one that crosses a bound is cut at it."""
    kept = []
    for chapter in chapters:
        base = chapter["time_base"]
        first, last = chapter["start"] * base, chapter["end"] * base
        if last <= start or (end is not None and first >= end):
            continue
        shift = round(start / base)
        stop = chapter["end"] if end is None else min(chapter["end"], round(end / base))
        kept.append({**chapter, "start": max(chapter["start"] - shift, 0), "end": stop - shift,
                     "metadata": dict(chapter["metadata"])})
    return kept


def _first_packet_timed(open_source: Callable[[], Any], index: int) -> bool:
    """Whether the first packet of stream `index` of the source carries a timestamp (True for a stream without
    packets)."""
    with open_source() as probe:
        first = next((p for p in probe.demux(probe.streams[index]) if p.size), None)
    return first is None or packet_time(first) is not None


def _label(stream) -> str:
    """'audio stream 2 (fra)': the stream's kind, index in the file and language tag."""
    language = stream.metadata.get("language")
    return f"{stream.type} stream {stream.index}" + (f" ({language})" if language else "")


class StreamCopy:
    """The source's streams of `kinds` ("audio", "subtitle"), read by a second reader of the source (`open_source()`
    opens one); `start_time`: the time of the first kept frame when a range cuts the video (packets before it are left
    out), else None. `attach` adds the output streams, `copy_until` copies, `fate` reports, `close` closes the
    reader."""

    def __init__(self, open_source: Callable[[], Any], kinds: tuple[str, ...], start_time: float | None):
        self.open_source, self.start_time = open_source, start_time
        self.container = open_source()
        self.streams = [s for s in self.container.streams if s.type in kinds]
        self.described = [(s.index, s.type, _label(s)) for s in self.streams]   # for `fate`, after `close`
        self.targets: dict[int, tuple[Any, int]] = {}   # source stream index -> (output stream, pts offset)
        self.dropped: dict[int, str] = {}               # source stream index -> why it was dropped
        self.packets = iter(())
        self.next = None

    def attach(self, output) -> None:
        """Add one output stream to the container `output` per stream it can hold (warning about the others)."""
        for stream in self.streams:
            name = stream.codec_context.name
            if name not in output.supported_codecs:
                self.dropped[stream.index] = f"the {output.format.name} container cannot hold {name}"
            elif (self.start_time is not None and stream.type in TIMESTAMP_CHECKED_KINDS
                  and not _first_packet_timed(self.open_source, stream.index)):
                self.dropped[stream.index] = "no timestamps to cut it by"
            else:
                target = output.add_stream_from_template(stream)
                target.metadata.update(copied_tags(stream.metadata))
                target.disposition = stream.disposition
                offset = 0 if self.start_time is None else round(self.start_time / stream.time_base)
                self.targets[stream.index] = (target, offset)
                continue
            warnings.warn(f"src: the {_label(stream)} is dropped ({self.dropped[stream.index]}; streams are copied, "
                          "never re-encoded)", stacklevel=5)
        kept = [s for s in self.streams if s.index in self.targets]
        if kept:
            self.packets = (p for p in self.container.demux(*kept) if p.size)   # size 0: end of stream
            self.next = next(self.packets, None)

    def copy_until(self, output, end_time: float | None) -> None:
        """Mux into `output` the packets starting before `end_time` seconds (None: all that are left), in file
        order; packets without timestamps (only when no range cuts the streams) are copied as they come."""
        while self.next is not None:
            packet, t = self.next, packet_time(self.next)
            if t is not None and end_time is not None and t >= end_time:
                return
            if self.start_time is None or (t is not None and t >= self.start_time):
                target, offset = self.targets[packet.stream.index]
                if packet.pts is not None:
                    packet.pts -= offset
                if packet.dts is not None:
                    packet.dts -= offset
                packet.stream = target
                output.mux(packet)
            self.next = next(self.packets, None)

    def fate(self, kind: str) -> str:
        """What happened to the source's streams of `kind`: "none" (it has none), "copied" (all), "dropped: <why>"
        (all dropped), or "copied K of N; dropped: <stream>: <why>, ..."."""
        streams = [(index, label) for index, type_, label in self.described if type_ == kind]
        dropped = [(label, self.dropped[index]) for index, label in streams if index in self.dropped]
        if not streams:
            return "none"
        if not dropped:
            return "copied"
        if len(dropped) == len(streams):
            return "dropped: " + "; ".join(sorted({why for _, why in dropped}))
        return (f"copied {len(streams) - len(dropped)} of {len(streams)}; dropped: "
                + ", ".join(f"{label}: {why}" for label, why in dropped))

    def close(self) -> None:
        self.container.close()
