"""Mask sources for `inpaint_video`: one mask per video frame, (H, W) bool, True = fill.

A source is asked for the masks of strictly increasing source frame indices (frames skipped by a frame
range are skipped here too, so a mask video or folder stays aligned with the full source video).

- `StillMask`: one image (path, numpy array or PIL image) for every frame.
- `FolderMasks`: a folder of images, sorted by name with digit runs compared as numbers
  (mask_2.png before mask_10.png); the i-th image is the mask of source frame i.
- `VideoMasks`: a mask video decoded in step with the source video; frame i masks source frame i.
- `CallableMasks`: a function `(index, frame) -> mask` (source frame index, the (H, W, 3) uint8 RGB frame).

Polarity: nonzero (white) = fill for images, arrays and callables; a mask video fills where its
luminance is >= `VIDEO_MASK_THRESHOLD` (lossy codecs turn pure black into small nonzero values).
Colour mask images are converted to one channel (luminance; an alpha channel as `image_files.mask_values`
reads it). Masks are the size of the frames as stored; where the video's display matrix turns its frames a quarter
(a phone's portrait video), a mask the size of the frames as players show them is turned back to them (a half turn
keeps the size, so its masks are taken as stored). `dilate` grows every mask by a number of pixels. A folder or mask video with fewer masks than the video has frames raises `MaskTooShortError`
unless `hold_last=True`, which repeats its last mask (with one warning).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .seek import indexed_frames, seek_plan

VIDEO_MASK_THRESHOLD = 128  # a mask video's luma (0..255) at or above this fills
MASK_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class MaskTooShortError(ValueError):
    """A folder or mask video holds fewer masks than the video has frames."""


def check_radius(radius: int) -> None:
    """The dilation radius must be a whole number of pixels >= 0."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"dilate: expected a whole number of pixels >= 0, got {radius!r}")


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a (H, W) bool mask by `radius` pixels in every direction: the maximum over a (2r+1)x(2r+1)
    square (Chebyshev distance <= radius), computed as two separable 1-D maxima. radius 0: the mask itself."""
    check_radius(radius)
    grown = mask
    for axis in range(2 if radius else 0):
        length = grown.shape[axis]
        out = np.zeros_like(grown)
        for shift in range(-radius, radius + 1):  # out[j] |= grown[j + shift] where j + shift is inside
            lo, hi = max(shift, 0), length + min(shift, 0)
            if lo >= hi:
                continue
            dst, src = [slice(None), slice(None)], [slice(None), slice(None)]
            dst[axis], src[axis] = slice(lo - shift, hi - shift), slice(lo, hi)
            out[tuple(dst)] |= grown[tuple(src)]
        grown = out
    return grown


def binary_mask(mask: Any, what: str) -> np.ndarray:
    """A mask given as numpy (H, W) or (H, W, 1) array or PIL image -> (H, W) bool, nonzero = fill.
    PIL images as `image_files.mask_values` reads them (colour through luminance, an alpha channel as drawn over
    black); `what` names the mask in errors."""
    if type(mask).__module__.startswith("PIL"):
        from ..image_files import mask_values

        mask = mask_values(mask)
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a single-channel (H, W) mask, got shape {arr.shape}; "
                         "convert colour masks to one channel, e.g. mask.max(axis=-1)")
    return arr != 0


def _read_mask_image(path: Path, name: str = "mask") -> np.ndarray:
    """The image file at path as a (H, W) bool mask; errors name it as name ("mask", "exclude")."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return binary_mask(im, f"{name} {path}")
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{name}: cannot read {path} as an image: {exc}") from exc


def _natural_key(path: Path) -> list:
    """Sort key: digit runs compared as numbers, so frame_2 comes before frame_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class _Source:
    """Shared by every source: dilation, the size check, the end-of-masks rule. name: the argument the masks
    came as ("mask", or "exclude" for the pixels no fill may copy), for errors."""

    def __init__(self, radius: int, hold_last: bool, name: str = "mask"):
        check_radius(radius)
        self.radius = radius
        self.hold_last = hold_last
        self.name = name
        self.rotation = 0     # degrees counterclockwise that the video's display matrix turns its frames (files.py)
        self._last: np.ndarray | None = None
        self._warned = False

    @property
    def count(self) -> int | None:
        """How many masks the source holds (None: unlimited or not known before decoding)."""
        return None

    def _raw(self, index: int, frame: np.ndarray) -> np.ndarray | None:
        """The undilated (H, W) bool mask of source frame `index`, or None past the source's last mask."""
        raise NotImplementedError

    def mask_at(self, index: int, frame: np.ndarray) -> np.ndarray:
        """The (H, W) bool mask of source frame `index` (increasing between calls) for `frame` (H, W, 3)."""
        raw = self._raw(index, frame)
        if raw is None:
            if not self.hold_last or self._last is None:
                raise MaskTooShortError(f"{self.name}: {self.describe()} has no mask for frame {index}; give one mask "
                                        "per frame, or hold the last mask (hold_last_mask=True / --hold-last-mask)")
            if not self._warned:
                warnings.warn(f"{self.name}: {self.describe()} ends before frame {index}; its last mask is held "
                              "for the remaining frames", stacklevel=2)
                self._warned = True
            return self._last
        raw = self._as_stored(raw, frame.shape[:2])
        if raw.shape != frame.shape[:2]:
            raise ValueError(f"{self.name}: {self.describe()} gives a {raw.shape[1]}x{raw.shape[0]} mask for frame "
                             f"{index}, the video is {frame.shape[1]}x{frame.shape[0]} (WxH); masks must match the "
                             "frames")
        self._last = self._grow(raw)
        return self._last

    def _as_stored(self, raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """A mask (H', W') the size of the frames as players show them, turned a quarter by the display rotation
        (a phone's portrait video), turned back to the frames as stored (size (H, W)); any other mask as it is.
        A half turn keeps the size, so such a mask is taken as stored."""
        quarters = round(self.rotation / 90) % 4
        if quarters % 2 == 1 and raw.shape == size[::-1]:
            return np.ascontiguousarray(np.rot90(raw, -quarters))
        return raw

    def _grow(self, raw: np.ndarray) -> np.ndarray:
        return dilate(raw, self.radius)

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release open files (mask videos)."""


class StillMask(_Source):
    """One mask for every frame: an image path, a numpy array or a PIL image (nonzero = fill)."""

    def __init__(self, mask: Any, radius: int = 0, name: str = "mask"):
        super().__init__(radius, hold_last=False, name=name)
        self.path = Path(mask) if isinstance(mask, (str, Path)) else None
        self.mask = _read_mask_image(self.path, name) if self.path else binary_mask(mask, name)
        self._stored: np.ndarray | None = None
        self._dilated: np.ndarray | None = None

    def _as_stored(self, raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if self._stored is None:   # one turn for the whole clip
            self._stored = super()._as_stored(raw, size)
        return self._stored

    def _grow(self, raw: np.ndarray) -> np.ndarray:
        if self._dilated is None:  # one dilation for the whole clip
            self._dilated = dilate(raw, self.radius)
        return self._dilated

    def _raw(self, index: int, frame: np.ndarray) -> np.ndarray:
        return self.mask

    def describe(self) -> str:
        return f"the image {self.path}" if self.path else "the mask array"


class FolderMasks(_Source):
    """A folder of mask images, one per source frame in natural name order (see the module docstring)."""

    def __init__(self, folder: Path, radius: int = 0, hold_last: bool = False, name: str = "mask"):
        super().__init__(radius, hold_last, name)
        self.folder = Path(folder)
        self.files = sorted((p for p in self.folder.iterdir() if p.suffix.lower() in MASK_IMAGE_SUFFIXES),
                            key=_natural_key)
        if not self.files:
            raise ValueError(f"{name}: the folder {self.folder} holds no mask images "
                             f"(expected files ending in {', '.join(MASK_IMAGE_SUFFIXES)})")

    @property
    def count(self) -> int:
        return len(self.files)

    def _raw(self, index: int, frame: np.ndarray) -> np.ndarray | None:
        return _read_mask_image(self.files[index], self.name) if index < len(self.files) else None

    def describe(self) -> str:
        return f"the folder {self.folder} ({len(self.files)} images)"


class VideoMasks(_Source):
    """A mask video, decoded in step with the source video (luma >= VIDEO_MASK_THRESHOLD fills)."""

    def __init__(self, path: Path, radius: int = 0, hold_last: bool = False, name: str = "mask"):
        import av

        super().__init__(radius, hold_last, name)
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except av.error.FFmpegError as exc:
            raise ValueError(f"{name}: cannot read {self.path} as an image or a video: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"{name}: {self.path} has no video stream")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._stream = stream
        self._frames = None     # (index, frame) from the keyframe before the first mask asked for (`seek`)
        self._next_index = 0
        self._count = stream.frames or None  # 0 when the container does not say

    @property
    def count(self) -> int | None:
        return self._count

    def _raw(self, index: int, frame: np.ndarray) -> np.ndarray | None:
        if self._frames is None:
            import av

            plan = seek_plan(lambda: av.open(str(self.path)), index, None)
            self._frames = indexed_frames(self._container, self._stream, plan)
        decoded = None
        while self._next_index <= index:
            item = next(self._frames, None)
            if item is None:
                return None
            self._next_index, decoded = item[0] + 1, item[1]
        luma = decoded.to_ndarray(format="gray", src_color_range=decoded.color_range)
        return luma >= VIDEO_MASK_THRESHOLD

    def describe(self) -> str:
        return f"the mask video {self.path}"

    def close(self) -> None:
        self._container.close()


class CallableMasks(_Source):
    """`fn(index, frame) -> mask`: index = source frame index, frame (H, W, 3) uint8 RGB; mask (H, W), nonzero fills."""

    def __init__(self, fn: Callable[[int, np.ndarray], Any], radius: int = 0, name: str = "mask"):
        super().__init__(radius, hold_last=False, name=name)
        self.fn = fn

    def _raw(self, index: int, frame: np.ndarray) -> np.ndarray:
        return binary_mask(self.fn(index, frame), f"{self.name} (returned by {self.describe()} for frame {index})")

    def describe(self) -> str:
        return f"the function {getattr(self.fn, '__name__', repr(self.fn))}"


def open_mask_source(mask: Any, radius: int = 0, hold_last: bool = False, name: str = "mask") -> _Source:
    """Pick the source for `mask`: a callable, a numpy array or PIL image, a folder, an image file or a video file.
    name: the argument it came as, for errors ("exclude" for the pixels no fill may copy)."""
    if callable(mask) and not isinstance(mask, (str, Path)):
        return CallableMasks(mask, radius, name)
    if not isinstance(mask, (str, Path)):
        return StillMask(mask, radius, name)
    path = Path(mask)
    if path.is_dir():
        return FolderMasks(path, radius, hold_last, name)
    if not path.exists():
        raise FileNotFoundError(f"{name}: file not found: {path}")
    if path.suffix.lower() in MASK_IMAGE_SUFFIXES:
        return StillMask(path, radius, name)
    return VideoMasks(path, radius, hold_last, name)


class MaskSources:
    """A stream's mask source and, when given, its exclusion's (`exclude`: the pixels no fill may copy, in any form
    a mask takes; not dilated, the same end-of-masks rule, errors naming exclude), opened together: when the
    exclusion cannot be opened, the mask source is closed before the error goes on."""

    def __init__(self, mask: Any, exclude: Any = None, radius: int = 0, hold_last: bool = False):
        self.mask = open_mask_source(mask, radius, hold_last)
        self.exclude: _Source | None = None
        if exclude is not None:
            try:
                self.exclude = open_mask_source(exclude, 0, hold_last, "exclude")
            except BaseException:
                self.mask.close()
                raise

    @property
    def all(self) -> list[_Source]:
        """The mask source, then the exclusion's when there is one."""
        return [self.mask] + ([] if self.exclude is None else [self.exclude])

    def at(self, index: int, frame: np.ndarray) -> list[np.ndarray]:
        """Source frame `index`'s mask, then its exclusion when there is one (`VideoInpainter.push`'s arguments
        after the frame)."""
        return [source.mask_at(index, frame) for source in self.all]

    def close(self) -> None:
        for source in self.all:
            source.close()
