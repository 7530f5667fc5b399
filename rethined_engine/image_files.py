"""Photo and mask files for `rethined inpaint` and `rethined batch`: read as viewers show them, written back
with what the photo carried.

- A photo is turned by its EXIF orientation (as image viewers, editors and `cv2.imread` show it), so a mask drawn
  on the photo as shown fits it, and the output is upright. Its alpha channel (RGBA, LA, PA, or a palette with a
  transparent colour) is set aside and put back on the output; its EXIF (orientation reset to 1) and ICC profile are
  copied to the output. HEIC/HEIF photos (a phone's) are read where the pillow-heif plugin is installed. Of a file
  of several frames (an animation, a multi-page TIFF) the first is read, with a warning (`FirstFrameWarning`).
- A 16-bit photo (a PNG or TIFF from a raw developer, colour or grey, with or without alpha) is read at 16 bits
  (`Photo.rgb` uint16) where OpenCV is installed (`rethined_engine.deep_photos`; Pillow has no 48-bit mode), and
  written at 16 bits to a PNG or TIFF output, its known pixels bit for bit; a JPEG or WebP output holds 8. Without
  OpenCV, and for 32-bit and float greys, a photo of more than 8 bits per channel is read at 8, with a warning
  (`ReducedDepthWarning`: its known pixels lose their low bits).
- A mask fills where its pixels are nonzero (white = fill): colour masks through their luma. A mask with an alpha
  channel counts as drawn over black (luma x alpha), so strokes painted on a transparent layer are the hole
  whatever colour lies under its transparent pixels; where its colour channels hold one value everywhere and its
  alpha does not (a shape kept in the alpha channel alone), the alpha is the mask. A mask the size of the photo as
  stored, not as shown (drawn by a program that ignores EXIF orientation), is turned with the photo.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .deep_photos import DEEP_EXTRA, DEEP_FORMATS, encode, opencv, read_pixels, turn_upright
from .io import LEVEL_16_PER_8, UINT16_MAX, to_uint8

EXIF_ORIENTATION = 0x0112
UPRIGHT = 1                       # EXIF orientation: stored as shown
TURNED_SIDEWAYS = (5, 6, 7, 8)    # orientations that swap width and height
SIXTEEN_BIT_GREYS = ("I;16", "I;16B", "I;16L")
HIGH_DEPTH_MODES = (*SIXTEEN_BIT_GREYS, "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
DEEP_COLOUR_RAWMODE = ";16"       # in a Pillow tile's raw mode: 16 bits per colour sample (RGB;16B, RGBA;16N, ...)
OPAQUE = 255
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")   # output formats that hold an alpha channel
JPEG_QUALITY = 95                 # quality of the JPEG outputs of `rethined inpaint` and `batch`
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_METADATA_CHUNKS = (b"eXIf", b"iTXt", b"tEXt", b"zTXt")   # the chunks Pillow reads EXIF and XMP orientation from
HEIF_SUFFIXES = (".heic", ".heif", ".hif")   # read through the pillow-heif plugin where it is installed
HEIF_PLUGIN = "pillow-heif"      # tested: 1.8.1 on Pillow 12.3, 1.9.0 on Pillow 13.0


@dataclass(frozen=True)
class Kept:
    """What an output keeps of its photo: alpha (H, W) uint8 or None (opaque); exif (orientation 1) and icc bytes or
    None."""
    alpha: np.ndarray | None
    exif: bytes | None
    icc: bytes | None


@dataclass
class Photo:
    """rgb (H, W, 3) uint8, or uint16 for a 16-bit photo, as shown; kept: what the output keeps of it (a 16-bit
    photo's alpha is uint16 too); orientation: the EXIF orientation that was applied (1 = none); stored_size
    (height, width) in the file."""
    rgb: np.ndarray
    kept: Kept
    orientation: int
    stored_size: tuple[int, int]


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit or float grey image scaled to 8 bits (mode L); others unchanged."""
    if im.mode not in HIGH_DEPTH_MODES:
        return im
    values = np.asarray(im).astype(np.float64)
    top = 1.0 if im.mode == "F" else float(UINT16_MAX)
    return Image.fromarray(np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8))


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ALPHA_MODES or (im.mode == "P" and "transparency" in im.info)


def _png_metadata_after_pixels(path: str) -> bool:
    """Whether the PNG file at path holds a metadata chunk (PNG_METADATA_CHUNKS) after its first IDAT, from the
    chunks' headers only (their bodies are skipped); True where the file is not a whole PNG (Pillow decides)."""
    with open(path, "rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return True
        seen_pixels = False
        while len(header := f.read(8)) == 8:           # a chunk: length (4 bytes, big-endian), type (4), body, CRC (4)
            kind = header[4:]
            if kind == b"IEND":
                return False
            seen_pixels |= kind == b"IDAT"
            if seen_pixels and kind in PNG_METADATA_CHUNKS:
                return True
            f.seek(int.from_bytes(header[:4], "big") + 4, os.SEEK_CUR)
    return True


def header_exif(im: Image.Image) -> Image.Exif:
    """The opened image's EXIF (`Image.getexif`), without decoding its pixels where the file allows: Pillow's PNG
    reader decodes a whole PNG that has no eXIf chunk before its pixels, to look for one after them; where no
    metadata chunk follows the first IDAT, the chunks before it, already read, hold all there is."""
    filename = getattr(im, "filename", "")
    if im.format == "PNG" and "exif" not in im.info and filename and not _png_metadata_after_pixels(filename):
        return Image.Image.getexif(im)
    return im.getexif()


def shown_size(im: Image.Image) -> tuple[int, int]:
    """(height, width) of an opened image as shown, its EXIF orientation applied (`header_exif`: the pixels are not
    decoded but where a PNG's metadata follows them)."""
    sideways = header_exif(im).get(EXIF_ORIENTATION) in TURNED_SIDEWAYS
    return (im.width, im.height) if sideways else (im.height, im.width)


class ReducedDepthWarning(UserWarning):
    """A photo of more than 8 bits per channel was read at 8 (module docstring)."""


class FirstFrameWarning(UserWarning):
    """A file of several frames (an animated GIF, WebP or PNG, a multi-page TIFF) was read as its first frame."""


def _sixteen_bits(im: Image.Image) -> bool:
    """Whether the opened (not yet loaded) image stores 16-bit integer samples: a 16-bit grey, or 16 bits per colour
    sample (a 48- or 64-bit PNG or TIFF, which Pillow loads as 8-bit RGB)."""
    return im.mode in SIXTEEN_BIT_GREYS or any(DEEP_COLOUR_RAWMODE in str(tile.args) for tile in im.tile)


def _deeper_than_8_bits(im: Image.Image) -> bool:
    """Whether the opened (not yet loaded) image stores more than 8 bits per sample: `_sixteen_bits`, or a 32-bit or
    float grey."""
    return im.mode in HIGH_DEPTH_MODES or _sixteen_bits(im)


def _warn_reduced(path: Path, sixteen_bits: bool) -> None:
    how = f"to keep 16, install OpenCV ({DEEP_EXTRA})" if sixteen_bits else "only 16-bit integer photos keep it"
    warnings.warn(f"{path.name}: more than 8 bits per channel, read at 8, so the output's known pixels lose their "
                  f"low bits; {how}", ReducedDepthWarning, stacklevel=3)


def register_heif(path: Path) -> None:
    """For a HEIC/HEIF file (an iPhone's photos), Pillow's opener from the pillow-heif plugin; UnidentifiedImageError
    naming the plugin where it is not installed."""
    if path.suffix.lower() not in HEIF_SUFFIXES:
        return
    try:
        import pillow_heif
    except ImportError:
        raise UnidentifiedImageError(f"{path.name}: HEIC/HEIF photos need the pillow-heif plugin "
                                     f"(pip install {HEIF_PLUGIN}), or convert it to JPEG or PNG first") from None
    pillow_heif.register_heif_opener()


def _open(path: Path) -> Image.Image:
    """The loaded image."""
    register_heif(path)
    with Image.open(path) as im:
        im.load()
    return im


def _upright_exif(exif: Image.Exif) -> bytes | None:
    """An image's EXIF (Pillow's cached copy: the orientation is put back after) as bytes without its orientation
    (the output is stored upright), or None where it has none."""
    orientation = exif.pop(EXIF_ORIENTATION, None)
    upright = exif.tobytes() if len(exif) else None
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    return upright


def _opaque_or_none(alpha: np.ndarray | None, opaque: int) -> np.ndarray | None:
    return None if alpha is None or (alpha == opaque).all() else alpha


def read_photo(path: str | Path) -> Photo:
    """The photo in path, turned upright by its EXIF orientation (module docstring)."""
    path = Path(path)
    register_heif(path)
    with Image.open(path) as im:
        sixteen_bits, deep = _sixteen_bits(im), _deeper_than_8_bits(im)   # before any getexif, which may load a PNG
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            warnings.warn(f"{path.name}: {frames} frames, only the first is inpainted (`rethined video` takes every "
                          "frame of an animation)", FirstFrameWarning, stacklevel=2)
        stored = (im.height, im.width)
        tags = header_exif(im)
        orientation = int(tags.get(EXIF_ORIENTATION, UPRIGHT))
        icc, exif = im.info.get("icc_profile"), _upright_exif(tags)
        if sixteen_bits and opencv() is not None:
            pixels = turn_upright(read_pixels(path), orientation)
            alpha = _opaque_or_none(pixels[..., 3] if pixels.shape[-1] == 4 else None, UINT16_MAX)
            return Photo(np.ascontiguousarray(pixels[..., :3]), Kept(alpha, exif, icc), orientation, stored)
        im.load()
    if deep:
        _warn_reduced(path, sixteen_bits)
    im = _eight_bit(ImageOps.exif_transpose(im))
    alpha = _opaque_or_none(np.asarray(im.convert("RGBA"))[..., 3].copy() if _has_alpha(im) else None, OPAQUE)
    return Photo(np.asarray(im.convert("RGB")), Kept(alpha, exif, icc), orientation, stored)


def mask_values(im: Image.Image) -> np.ndarray:
    """(H, W) uint8 of a mask image, nonzero = fill (module docstring: luma, alpha)."""
    im = _eight_bit(im)
    if not _has_alpha(im):
        return np.asarray(im if im.mode in ("1", "L") else im.convert("L")).astype(np.uint8, copy=False)
    luma_alpha = np.asarray(im.convert("LA"))
    luma, alpha = luma_alpha[..., 0], luma_alpha[..., 1]
    if luma.min() == luma.max() and alpha.min() != alpha.max():   # one colour: the shape is in the alpha channel
        return alpha.copy()
    return ((luma.astype(np.uint16) * alpha + OPAQUE // 2) // OPAQUE).astype(np.uint8)


def read_mask(path: str | Path, photo: Photo | None = None, grow: int = 0) -> np.ndarray:
    """(H, W) uint8 mask of the file in path (turned by its own EXIF orientation), nonzero = fill; with photo,
    turned like it where the mask has the photo's stored size but not its shown one; grow > 0: its hole grown by
    that many px in every direction (`video.masks.dilate`), as 0 / 1."""
    im = ImageOps.exif_transpose(_open(Path(path)))    # a mask's own orientation, as for any image
    if photo is not None and photo.orientation in TURNED_SIDEWAYS and (im.height, im.width) == photo.stored_size:
        im.getexif()[EXIF_ORIENTATION] = photo.orientation
        im = ImageOps.exif_transpose(im)
    mask = mask_values(im)
    if not grow:
        return mask
    from .video.masks import dilate    # the video package only where a mask grows
    return dilate(mask != 0, grow).astype(np.uint8)


def output_format(path: str | Path, what: str = "output") -> str:
    """The PIL format of an output path by its suffix (OUTPUT_FORMATS); ValueError naming `what` otherwise."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{what}: expected a suffix in {tuple(OUTPUT_FORMATS)}, got {Path(path).name}")
    return fmt


def save_photo(path: str | Path, rgb: np.ndarray, kept: Kept | None, fmt: str | None = None,
               jpeg_quality: int = JPEG_QUALITY) -> None:
    """Write rgb (H, W, 3) uint8 or uint16 to path (format `output_format(path)`, or fmt: a temporary name), with
    what it keeps of its photo: alpha (PNG, WebP, TIFF: formats that hold one), EXIF and ICC profile. uint16 is
    written at 16 bits to a PNG or TIFF (`deep_photos.encode`), at 8 to the others. Only JPEG is lossy (at
    jpeg_quality)."""
    fmt = fmt or output_format(path)
    alpha = None if kept is None or fmt not in ALPHA_FORMATS else kept.alpha
    exif, icc = (None, None) if kept is None else (kept.exif, kept.icc)
    if rgb.dtype == np.uint16 and fmt in DEEP_FORMATS:
        if alpha is not None and alpha.dtype != np.uint16:
            alpha = alpha.astype(np.uint16) * LEVEL_16_PER_8
        Path(path).write_bytes(encode(rgb, alpha, fmt, exif, icc))
        return
    if rgb.dtype == np.uint16:
        rgb = to_uint8(rgb)
    if alpha is not None and alpha.dtype == np.uint16:
        alpha = to_uint8(alpha)
    im = Image.fromarray(rgb)
    options = {"quality": jpeg_quality} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    if alpha is not None:
        im.putalpha(Image.fromarray(alpha))
    if exif is not None:
        options["exif"] = exif
    if icc is not None:
        options["icc_profile"] = icc
    im.save(path, format=fmt, **options)
