"""VapourSynth filter: `inpaint(clip, mask_clip, temporal="on", engine=None, config=None, exclude_clip=None)` -> a clip.

    import vapoursynth as vs
    from rethined_engine.integrations.vapoursynth import inpaint
    clip = inpaint(clip.resize.Bicubic(format=vs.RGB24, matrix_in_s="709"), mask_clip.resize.Point(format=vs.GRAY8))

Formats: `clip` RGB24, RGB48, RGBS or RGBH, returned in the same format, size and length. `mask_clip`: a one-plane
(GRAY) clip of the same size, one frame per frame of `clip` or a single frame for all; integer masks fill
where nonzero, float masks where >= 0.5. `exclude_clip` (optional, the same forms): pixels no fill may copy
(`VideoInpainter.push`'s exclude). 16-bit and float frames are quantised to uint8 for the engine and the inpainted
pixels written back as level x 257 or level / 255 (`video.known_pixels.put_back`): known pixels stay the input's
bit for bit.

Frame properties: `RethinedFilled` = 1 where the frame's mask had pixels to fill, else 0. A frame whose
`_SceneChangePrev` is set starts a new scene: the temporal state is forgotten before it.

Request order: VapourSynth asks for frames in any order and from several threads. The filter computes frame
n as a linear pass would: by processing the frames from the start of n's scene (frame 0 or the latest frame
at or before n seen with `_SceneChangePrev`) up to n, in order, with one `VideoInpainter`.
- n after the last frame processed: the frames between are fetched and processed, their outputs kept
  (the last `CACHE_FRAMES`), so a thread asking for n + 1 before n finds n done;
- n at or before it (a seek back) and not kept: the state is reset and the pass restarts at n's scene start,
  so a seek back costs up to a scene's worth of frames (with temporal="off" only frame n itself).
One lock serialises the passes; the engine computes one frame at a time in any case.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..video.stream import VideoConfig, VideoInpainter
from ..video.known_pixels import put_back, to_uint8
from .masks import binary_mask

FILLED_PROP = "RethinedFilled"
SCENE_CHANGE_PROP = "_SceneChangePrev"
CACHE_FRAMES = 8  # inpainted frames kept for requests that arrive after a later frame's


def _rgb(frame: Any) -> np.ndarray:
    """A VapourSynth RGB frame -> (H, W, 3) array of its sample type (uint8, uint16, float32 or float16)."""
    return np.stack([np.asarray(frame[plane]) for plane in range(3)], axis=-1)


class _ClipInpainter:
    """The frame function's state: the inpainter, the last index it processed, kept outputs, scene starts."""

    def __init__(self, clip: Any, mask_clips: list, inpainter: VideoInpainter, deep_input: bool):
        self.clip, self.mask_clips, self.inpainter = clip, mask_clips, inpainter   # the mask, the exclusion if any
        self.deep_input = deep_input  # RGB48/RGBS/RGBH: quantised for the inpainter, filled pixels written back in kind
        self.last: int | None = None
        self.kept: OrderedDict[int, np.ndarray] = OrderedDict()  # index -> (H, W, 3) uint8 output
        self.scene_starts = {0}
        self.lock = threading.Lock()

    def _step(self, index: int, frame: Any, masks: list[np.ndarray]) -> np.ndarray:
        """Process frame `index`, the next in order, with its masks (the mask, the exclusion if any): (H, W, 3)
        uint8 output, kept."""
        if frame.props.get(SCENE_CHANGE_PROP):
            self.scene_starts.add(index)
            self.inpainter.reset()
        rgb = _rgb(frame)
        output = self.inpainter.process(to_uint8(rgb) if self.deep_input else rgb, *masks)
        self.last = index
        self.kept[index] = output
        while len(self.kept) > CACHE_FRAMES:
            self.kept.popitem(last=False)
        return output

    def _masks(self, index: int) -> list[np.ndarray]:
        return [binary_mask(np.asarray(clip.get_frame(index)[0])) for clip in self.mask_clips]

    def output(self, index: int, frame: Any, masks: list[np.ndarray]) -> np.ndarray:
        """The (H, W, 3) uint8 output of frame `index` as a linear pass from its scene start gives it."""
        with self.lock:
            if index in self.kept:
                return self.kept[index]
            if self.inpainter.temporal == "off":
                start = index
            elif self.last is not None and index > self.last:
                start = self.last + 1
            else:
                start = max(s for s in self.scene_starts if s <= index)
                self.inpainter.reset()
            for i in range(start, index):
                self._step(i, self.clip.get_frame(i), self._masks(i))
            return self._step(index, frame, masks)

    def __call__(self, n: int, f: list) -> Any:
        frame, masks = f[0], [binary_mask(np.asarray(m[0])) for m in f[1:]]
        mask = masks[0]
        output = self.output(n, frame, masks)
        out = frame.copy()
        rgb = put_back(_rgb(frame), output, mask) if self.deep_input else output
        for plane in range(3):
            np.copyto(np.asarray(out[plane]), rgb[..., plane])
        out.props[FILLED_PROP] = int(mask.any())
        return out


def _checked_mask_clip(clip: Any, mask_clip: Any, name: str) -> Any:
    """mask_clip, a one-plane clip of clip's size with 1 frame (looped to clip's length) or clip's count;
    ValueError naming `name` otherwise."""
    if mask_clip.format is None or mask_clip.format.num_planes != 1:
        raise ValueError(f"{name}: expected a one-plane (GRAY) clip, got "
                         f"{mask_clip.format.name if mask_clip.format else 'variable'}")
    if (mask_clip.width, mask_clip.height) != (clip.width, clip.height):
        raise ValueError(f"{name}: expected {clip.width}x{clip.height} (the clip's size), "
                         f"got {mask_clip.width}x{mask_clip.height}")
    if mask_clip.num_frames == 1:
        mask_clip = mask_clip.std.Loop(clip.num_frames)
    if mask_clip.num_frames != clip.num_frames:
        raise ValueError(f"{name}: expected 1 or {clip.num_frames} frames (the clip's), got {mask_clip.num_frames}")
    return mask_clip


def inpaint(clip: Any, mask_clip: Any, temporal: str = "on", engine: Any = None,
            config: VideoConfig | None = None, exclude_clip: Any = None) -> Any:
    """Inpaint `clip` where `mask_clip` is set, copying nothing `exclude_clip` sets (see the module docstring);
    returns a clip of clip's format."""
    import vapoursynth as vs

    if clip.format is None or clip.format.id not in (vs.RGB24, vs.RGB48, vs.RGBS, vs.RGBH):
        raise ValueError(f"clip: expected RGB24, RGB48, RGBS or RGBH, got "
                         f"{clip.format.name if clip.format else 'variable'}"
                         "; convert first, e.g. clip.resize.Bicubic(format=vs.RGB24, matrix_in_s='709')")
    mask_clips = [_checked_mask_clip(clip, mask_clip, "mask_clip")]
    if exclude_clip is not None:
        mask_clips.append(_checked_mask_clip(clip, exclude_clip, "exclude_clip"))
    inpainter = VideoInpainter(engine, temporal, config)
    state = _ClipInpainter(clip, mask_clips, inpainter, clip.format.id != vs.RGB24)
    return clip.std.ModifyFrame(clips=[clip, *mask_clips], selector=state)
