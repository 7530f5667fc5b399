"""16-bit photos for `rethined inpaint` and `rethined batch`: pixels through OpenCV, metadata through Pillow.

Pillow has no 48- or 64-bit mode (it loads a 16-bit colour PNG or TIFF at 8 bits), so the pixels of a 16-bit
photo are decoded and encoded by OpenCV (`opencv-python-headless`, in the `video` extra), which keeps every bit;
the photo's header (EXIF, ICC profile, orientation) is still read by Pillow. OpenCV writes neither EXIF nor ICC,
so they are added to its output here, as the formats define them:

- PNG: an `iCCP` chunk (the profile, zlib-compressed) and an `eXIf` chunk (the EXIF's TIFF structure), right
  after `IHDR`, where Pillow puts them in an 8-bit PNG.
- TIFF: a new first IFD appended to OpenCV's file (its own entries, the EXIF's first-IFD tags it lacks, the
  ICC profile, the EXIF and GPS sub-IFDs, ExtraSamples for an alpha), the header pointed at it; the pixel strips
  stay where OpenCV wrote them.

Samples are 0..65535 (`io.UINT16_MAX`); `Engine.inpaint` takes and returns uint16 arrays.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

DEEP_FORMATS = ("PNG", "TIFF")        # output formats that hold 16 bits per sample
DEEP_EXTRA = "pip install opencv-python-headless, or the video extra"   # what installs OpenCV
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_ICC_NAME = b"ICC profile"         # an iCCP chunk's profile name (Pillow's)
EXIF_PREFIX = b"Exif\x00\x00"         # before the TIFF structure in Pillow's EXIF bytes (not in a PNG eXIf chunk)
TIFF_CLASSIC = 42                     # a TIFF header's magic number (BigTIFF: 43)
TAG_ORIENTATION, TAG_ICC, TAG_EXIF_IFD, TAG_GPS_IFD, TAG_EXTRA_SAMPLES = 0x0112, 34675, 0x8769, 0x8825, 338
UNASSOCIATED_ALPHA = 2                # ExtraSamples: a straight (not premultiplied) alpha
SUB_IFDS = (TAG_EXIF_IFD, TAG_GPS_IFD)
# First-IFD tags that describe the pixels as OpenCV stored them: never taken from the photo's EXIF.
TIFF_LAYOUT_TAGS = frozenset({254, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, TAG_EXTRA_SAMPLES, 339,
                              322, 323, 324, 325, TAG_ORIENTATION, TAG_ICC, *SUB_IFDS})
# EXIF orientation -> the turn that shows the stored pixels upright (as `PIL.ImageOps.exif_transpose`).
_TURNS = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.swapaxes(0, 1), 6: lambda a: a.swapaxes(0, 1)[:, ::-1],
          7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: a.swapaxes(0, 1)[::-1]}


def opencv():
    """The cv2 module, or None where OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def read_pixels(path: str) -> np.ndarray:
    """The 16-bit samples of an image file as stored: (H, W, 3) RGB or (H, W, 4) RGBA uint16 (a grey photo's one
    channel repeated, grey + alpha as RGBA). OSError where OpenCV cannot decode it or it is not 16-bit."""
    cv2 = opencv()
    if cv2 is None:
        raise OSError(f"{path}: reading 16-bit colour needs OpenCV ({DEEP_EXTRA})")
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16:
        found = "nothing" if pixels is None else f"{pixels.dtype} samples"
        raise OSError(f"{path}: OpenCV read {found}, expected 16-bit samples")
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=-1)
    order = cv2.COLOR_BGRA2RGBA if pixels.shape[-1] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(pixels, order)


def turn_upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, ...) as stored -> as shown under EXIF `orientation` (1-8; others leave it), contiguous."""
    turn = _TURNS.get(orientation)
    return np.ascontiguousarray(pixels if turn is None else turn(pixels))


def encode(rgb: np.ndarray, alpha: np.ndarray | None, fmt: str, exif: bytes | None, icc: bytes | None) -> bytes:
    """rgb (H, W, 3) uint16 (and alpha (H, W) uint16 or None) as a 16-bit `fmt` file ("PNG" or "TIFF") holding
    exif (Pillow's EXIF bytes) and icc, where given."""
    cv2 = opencv()
    if cv2 is None:
        raise OSError(f"writing 16-bit {fmt} needs OpenCV ({DEEP_EXTRA})")
    if fmt not in DEEP_FORMATS:
        raise ValueError(f"fmt: expected one of {DEEP_FORMATS}, got {fmt!r}")
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if alpha is None else \
        cv2.cvtColor(np.dstack([rgb, alpha]), cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(".png" if fmt == "PNG" else ".tiff", pixels)
    if not ok:
        raise OSError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} 16-bit {fmt}")
    data = data.tobytes()
    if fmt == "TIFF":
        return tiff_with_metadata(data, exif, icc, alpha=alpha is not None)
    return data if exif is None and icc is None else png_with_metadata(data, exif, icc)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_metadata(png: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """A PNG file's bytes with an iCCP chunk for icc and an eXIf chunk for exif inserted after its IHDR."""
    if png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise ValueError("png: expected a PNG file starting with its IHDR chunk")
    ihdr_end = 8 + 12 + struct.unpack(">I", png[8:12])[0]
    chunks = b""
    if icc is not None:
        chunks += _png_chunk(b"iCCP", PNG_ICC_NAME + b"\x00\x00" + zlib.compress(icc))
    if exif is not None:
        chunks += _png_chunk(b"eXIf", exif[len(EXIF_PREFIX):] if exif.startswith(EXIF_PREFIX) else exif)
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def _exif_directory(exif: bytes):
    """Pillow's `Image.Exif` of Pillow's EXIF bytes."""
    from PIL import Image

    parsed = Image.Exif()
    parsed.load(exif)
    return parsed


def tiff_with_metadata(tiff: bytes, exif: bytes | None, icc: bytes | None, alpha: bool = False) -> bytes:
    """A classic TIFF file's bytes with a new first IFD appended: the old one's entries as they are (its strips
    stay where they lie), plus icc (tag 34675) and the EXIF's first-IFD tags the old one lacks, other than those
    about the pixels' layout, with its EXIF and GPS sub-IFDs; with alpha, the fourth sample marked as unassociated
    alpha (ExtraSamples, which OpenCV leaves out). The added values are encoded by Pillow."""
    from PIL import TiffImagePlugin

    order = tiff[:2]
    endian = {b"II": "<", b"MM": ">"}.get(order)
    if endian is None or struct.unpack(endian + "H", tiff[2:4])[0] != TIFF_CLASSIC:
        raise ValueError("tiff: expected a classic TIFF file (II or MM, magic 42)")
    first = struct.unpack(endian + "I", tiff[4:8])[0]
    count = struct.unpack(endian + "H", tiff[first:first + 2])[0]
    entries = [tiff[first + 2 + 12 * i:first + 14 + 12 * i] for i in range(count)]
    following = tiff[first + 2 + 12 * count:first + 6 + 12 * count]     # the next IFD's offset, kept
    present = {struct.unpack(endian + "H", entry[:2])[0] for entry in entries}
    added = TiffImagePlugin.ImageFileDirectory_v2(prefix=order)
    if exif is not None:
        parsed = _exif_directory(exif)
        for tag, value in parsed.items():
            if tag not in TIFF_LAYOUT_TAGS and tag not in present:
                added[tag] = value
        for tag in SUB_IFDS:
            sub = parsed.get_ifd(tag)
            if sub:
                added[tag] = dict(sub)
    if icc is not None and TAG_ICC not in present:
        added[TAG_ICC] = icc
    if alpha and TAG_EXTRA_SAMPLES not in present:
        added[TAG_EXTRA_SAMPLES] = UNASSOCIATED_ALPHA
    if not len(added):
        return tiff
    start = len(tiff) + len(tiff) % 2            # IFDs and their values begin on a word boundary
    block = added.tobytes(start)                 # its own IFD, then the values it points at
    added_count = struct.unpack(endian + "H", block[:2])[0]
    entries += [block[2 + 12 * i:14 + 12 * i] for i in range(added_count)]
    entries.sort(key=lambda entry: struct.unpack(endian + "H", entry[:2])[0])
    directory = start + len(block) + len(block) % 2
    out = bytearray(tiff[:4] + struct.pack(endian + "I", directory) + tiff[8:])
    out += b"\x00" * (start - len(tiff)) + block + b"\x00" * (directory - start - len(block))
    out += struct.pack(endian + "H", len(entries)) + b"".join(entries) + following
    return bytes(out)
