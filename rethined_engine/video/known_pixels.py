"""How a video file's known pixels get through `inpaint_video`, whose inpainter works on 8-bit RGB: as the source's
own samples where the output has the source's pixel format, at the source's bit depth otherwise; and how frames of
more precision than 8 bits (uint16, float) go through the uint8 `VideoInpainter` (`to_uint8`, `put_back`: the raw
pipe's rgb48le, VapourSynth's and ComfyUI's float frames).

Every conversion between a format's samples and RGB rounds: an 8-bit yuv420p frame decoded to rgb24 and converted
back keeps 7 % of its luma codes, a 10-bit one none (`bench/results/video-known-pixels-cpu.json`). So where the
output's pixel format is the source's, the inpainted frame is converted to it and then every sample no hole pixel
reaches is replaced by the source's own (`keep_source_samples`): luma where the pixel is known, a chroma sample where
the whole block of pixels it covers is. The codec's own compression is all that changes them. Formats with one
component per plane take this (yuv420p, yuv422p10le, yuv444p12le, gbrp16le, gray, ...); interleaved ones (nv12,
p010le, bgr0, rgb24) are converted as the rest.

Bit depth: a source of more than 8 bits per component (10-bit HDR, ProRes, 16-bit RGB) written to another deep
format (LOSSLESS's rgb48le, a yuv422p10le source as yuv420p10le) has its frames decoded to 16-bit RGB (rgb48le, with
the frame's colour matrix and range), rounded to 8 bits for the inpainter, and each output put back at 16 bits: the
known pixels are the decoded 16-bit frame's, bit for bit, and the hole's are the 8-bit fill times 257 (8 bits of
precision). An output format of 8 bits reduces everything to 8 bits.

Which pixel format an encoder writes when none is asked for (`output_pixel_format`): the source's own when the
encoder takes it (so that the samples outside the hole are the source's: yuv420p from a phone, yuv422p10le from
ProRes); ffv1, a lossless codec, writes RGB, the frames bit for bit (bgr0 for an 8-bit source, rgb48le for a deeper
one); for a source format it lacks, every other encoder yuv420p or yuv420p10le, or, lacking those, the first format
it lists in colour that is deep enough.
"""
from __future__ import annotations

import numpy as np

from ..io import LEVEL_16_PER_8, UINT8_MAX, to_uint8
from .palette import PALETTE_PIX_FMT

RGB8_FORMAT = "rgb24"       # what the inpainter takes and gives: (H, W, 3) uint8
RGB16_FORMAT = "rgb48le"    # a deep source's frames: (H, W, 3) uint16
SHALLOW_BITS = 8            # bits per component of an 8-bit format; a source with more is deep
LOSSLESS_CODEC = "ffv1"
LOSSLESS_PIX_FMTS = ("bgr0", "rgb48le")     # ffv1's default for an 8-bit / a deep source: RGB kept bit for bit
DEFAULT_PIX_FMTS = ("yuv420p", "yuv420p10le")   # every other encoder's, for an 8-bit / a deep source
DEEP_OUTPUT_BITS = 10       # the least depth a fallback format for a deep source has


def component_bits(pix_fmt: str) -> int:
    """The most bits any component of the pixel format `pix_fmt` holds (yuv420p 8, yuv420p10le 10, rgb48le 16);
    0 for a format without components (a hardware surface such as cuda)."""
    import av

    return max((component.bits for component in av.VideoFormat(pix_fmt).components), default=0)


def is_deep(pix_fmt: str | None) -> bool:
    """Whether the pixel format holds more than 8 bits per component (None, an unknown format: no)."""
    return pix_fmt is not None and component_bits(pix_fmt) > SHALLOW_BITS


def output_pixel_format(codec: str, formats: list[str], source_pix_fmt: str | None) -> str:
    """The pixel format the encoder `codec` (which takes `formats`) writes when none is asked for, for a source in
    `source_pix_fmt` (None: unknown, taken as 8-bit): the source's own when the encoder takes it (but ffv1, which
    writes RGB), else the codec's default for the source's depth (module docstring), else the first of `formats` in
    colour (three colour components: no grey) with at least 8 bits per component (an 8-bit source) or 10 (a deep
    one), one without alpha first, else a palette of 256 colours per frame (`palette.PALETTE_PIX_FMT`: GIF, whose
    other formats hold 2-3 bits per component). ValueError naming encode.pix_fmt when none has."""
    import av

    if codec != LOSSLESS_CODEC and source_pix_fmt in formats:
        return source_pix_fmt
    deep = is_deep(source_pix_fmt)
    defaults = LOSSLESS_PIX_FMTS if codec == LOSSLESS_CODEC else DEFAULT_PIX_FMTS
    preferred = defaults[deep]
    if preferred in formats:
        return preferred
    least = DEEP_OUTPUT_BITS if deep else SHALLOW_BITS
    for alpha in (False, True):
        for name in formats:
            components = av.VideoFormat(name).components
            colour = [c for c in components if not c.is_alpha]
            if len(colour) >= 3 and (len(colour) < len(components)) == alpha and component_bits(name) >= least:
                return name
    if PALETTE_PIX_FMT in formats:
        return PALETTE_PIX_FMT
    raise ValueError(f"encode.pix_fmt: {codec} takes no format of {least} or more bits per component for this "
                     f"{source_pix_fmt} source ({', '.join(formats)}); name one")


def decode_frame(frame, deep: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A decoded PyAV video frame -> its (H, W, 3) uint8 RGB for the inpainter and, when deep, its (H, W, 3) uint16
    RGB (else None), both with the frame's own colour matrix and range."""
    if not deep:
        return frame.to_ndarray(format=RGB8_FORMAT, src_color_range=frame.color_range), None
    rgb16 = frame.to_ndarray(format=RGB16_FORMAT, src_color_range=frame.color_range)
    return to_uint8(rgb16), rgb16


def put_back(frame: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The inpainter's output filled (H, W, 3) uint8 for `frame` (H, W, 3) uint16 or float, at the frame's precision: a
    copy of frame whose pixels where mask (H, W) bool is set are filled's, times 257 (uint16) or divided by 255 (float,
    in the frame's dtype); the known pixels stay the frame's bit for bit."""
    out = np.array(frame, copy=True)
    if out.dtype == np.uint16:
        out[mask] = filled[mask].astype(np.uint16) * LEVEL_16_PER_8
    else:
        out[mask] = (filled[mask].astype(np.float32) / UINT8_MAX).astype(out.dtype)
    return out


def rgb_format(image: np.ndarray) -> str:
    """The PyAV format of an (H, W, 3) RGB array: rgb24 for uint8, rgb48le for uint16."""
    return RGB16_FORMAT if image.dtype == np.uint16 else RGB8_FORMAT


def one_component_per_plane(pix_fmt: str) -> bool:
    """Whether every component of the little-endian pixel format `pix_fmt` has a plane of its own (yuv420p,
    yuv422p10le, gbrp16le, gray: `keep_source_samples` takes it), not interleaved (nv12, p010le, bgr0, rgb24), nor
    palette indices (pal8: each frame has its own palette)."""
    import av

    if pix_fmt == PALETTE_PIX_FMT:
        return False
    fmt = av.VideoFormat(pix_fmt)
    planes = [component.plane for component in fmt.components]
    return bool(planes) and len(set(planes)) == len(planes) and not pix_fmt.endswith("be")


def plane_samples(frame, index: int) -> np.ndarray:
    """Plane `index` of a PyAV frame as a writable (height, width) view of its samples (uint8, or uint16 for a
    format of more than 8 bits)."""
    plane = frame.planes[index]
    dtype = np.dtype(np.uint16 if is_deep(frame.format.name) else np.uint8)
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
    return rows[:, :plane.width]


def _block_any(mask: np.ndarray, shape: tuple[int, int], block: tuple[int, int]) -> np.ndarray:
    """Whether any pixel of mask (h, w) bool lies in each of the `shape` (n, m) blocks of `block` (by, bx) pixels
    that cover it from its top-left corner (mask's last row and column repeat where the blocks reach past it)."""
    (n, m), (by, bx) = shape, block
    padded = np.pad(mask, ((0, n * by - mask.shape[0]), (0, m * bx - mask.shape[1])), mode="edge")
    return padded.reshape(n, by, m, bx).any(axis=(1, 3))


def keep_source_samples(frame, source, mask: np.ndarray) -> None:
    """Write the source frame's samples into `frame` (both PyAV frames of the same size and a pixel format with one
    component per plane) wherever no pixel of mask (H, W) bool, the hole, lies in the block a sample covers (a
    plane's blocks: ceil(H / its height) x ceil(W / its width) pixels); an alpha plane is the source's everywhere
    (the inpainter fills colour, not transparency)."""
    height, width = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    alpha = {component.plane for component in frame.format.components if component.is_alpha}
    for index in range(len(frame.planes)):
        out, src = plane_samples(frame, index), plane_samples(source, index)
        if not rows.size or index in alpha:
            np.copyto(out, src)
            continue
        by, bx = -(-height // out.shape[0]), -(-width // out.shape[1])
        y0, y1 = rows[0] // by, -(-(rows[-1] + 1) // by)        # the blocks over the hole's bounding box
        x0, x1 = cols[0] // bx, -(-(cols[-1] + 1) // bx)
        fill = out[y0:y1, x0:x1].copy()
        np.copyto(out, src)
        hole = _block_any(mask[y0 * by:y1 * by, x0 * bx:x1 * bx], (y1 - y0, x1 - x0), (by, bx))
        np.copyto(out[y0:y1, x0:x1], fill, where=hole)
