"""Where `inpaint_video` starts decoding a range that starts late in a file: at the keyframe at or before the range's
first frame, instead of decoding every frame before it.

Frames are indexed in presentation order (a mask folder's and mask video's frame i masks source frame i), so the
index of the first frame decoded after a seek must be known (a mask video seeks the same way to the first mask asked
for): `seek_plan` demuxes the video packets (no decoding) from
the file's start until it has seen `REORDER_MARGIN` packets past the range's first frame, ranks their timestamps
(presentation order), and picks the last keyframe at or before that frame. Frames decoded after the seek are counted
on from the rank of the first one. No plan (decode from the start, as before) when the range starts in the first
group of pictures, when a packet carries no timestamp, or when the video has no frame in the range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

REORDER_MARGIN = 64     # packets demuxed past the range's first frame: more than any decoder's reordering depth


@dataclass(frozen=True)
class SeekPlan:
    """Seek to `pts` (the video stream's time base; a keyframe); `ranks` maps the timestamps demuxed to their frame
    index; `first_kept`: the index of the range's first frame."""
    pts: int
    ranks: dict[int, int]
    first_kept: int


def seek_plan(open_video: Callable[[], Any], first: int | None, t0: float | None) -> SeekPlan | None:
    """The `SeekPlan` for a range of the first video stream of the container `open_video()` opens (a second reader
    of the source) that starts at frame index `first` and time `t0` seconds (either None: no bound; a frame is in the
    range when it satisfies both), or None (module docstring)."""
    if not first and not t0:
        return None
    with open_video() as container:
        video = container.streams.video[0]
        base = video.time_base

        def in_range(index: int, pts: int) -> bool:
            return index >= (first or 0) and (t0 is None or pts * base >= t0)

        packets, past = [], None
        for packet in container.demux(video):
            if packet.size == 0:
                continue
            if packet.pts is None:
                return None
            packets.append((packet.pts, packet.is_keyframe))
            if past is None and in_range(len(packets) - 1, packet.pts):    # decode order: ranked after the scan
                past = 0
            elif past is not None:
                past += 1
                if past >= REORDER_MARGIN:
                    break
    packets.sort()
    first_kept = next((i for i, (pts, _) in enumerate(packets) if in_range(i, pts)), None)
    if first_kept is None:
        return None
    key = max((i for i in range(first_kept + 1) if packets[i][1]), default=0)
    if key == 0:
        return None
    return SeekPlan(packets[key][0], {pts: i for i, (pts, _) in enumerate(packets)}, first_kept)


def indexed_frames(container, stream, plan: SeekPlan | None) -> Iterator[tuple[int, Any]]:
    """(frame index, frame) of the video `stream` of an open `container`, decoded from the plan's keyframe, or from
    the start when plan is None or the seek landed past its first kept frame."""
    if plan is not None:
        container.seek(plan.pts, stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        first = next(frames, None)
        start = None if first is None else plan.ranks.get(first.pts)
        if start is not None and start <= plan.first_kept:
            yield start, first
            yield from enumerate(frames, start + 1)
            return
        container.seek(min(plan.ranks), stream=stream, backward=True, any_frame=False)
    yield from enumerate(container.decode(stream))
