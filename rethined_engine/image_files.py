"""Photo and mask files for `rethined inpaint` and `rethined batch`: read as viewers show them, written back
with what the photo carried.

- A photo is turned by its EXIF orientation (as image viewers, editors and `cv2.imread` show it), so a mask drawn
  on the photo as shown fits it, and the output is upright. Its alpha channel (RGBA, LA, PA, or a palette with a
  transparent colour) is set aside and put back on the output; its EXIF (orientation reset to 1) and ICC profile are
  copied to the output. A photo of more than 8 bits per channel is read at 8, with a warning
  (`ReducedDepthWarning`: its known pixels lose their low bits): 16-bit and float greys are scaled to 8 bits, and
  Pillow, which has no 48-bit mode, reads 16-bit colour (a PNG or TIFF from a raw developer) at 8. Video files and
  image sequences keep 16 bits (`rethined video`, `rethined_engine.video.known_pixels`).
- A mask fills where its pixels are nonzero (white = fill): colour masks through their luma. A mask with an alpha
  channel counts as drawn over black (luma x alpha), so strokes painted on a transparent layer are the hole
  whatever colour lies under its transparent pixels; where its colour channels hold one value everywhere and its
  alpha does not (a shape kept in the alpha channel alone), the alpha is the mask. A mask the size of the photo as stored, not as
  shown (drawn by a program that ignores EXIF orientation), is turned with the photo.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112
UPRIGHT = 1                       # EXIF orientation: stored as shown
TURNED_SIDEWAYS = (5, 6, 7, 8)    # orientations that swap width and height
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
DEEP_COLOUR_RAWMODE = ";16"       # in a Pillow tile's raw mode: 16 bits per colour sample (RGB;16B, RGBA;16N, ...)
OPAQUE = 255
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")   # output formats that hold an alpha channel
JPEG_QUALITY = 95                 # quality of the JPEG outputs of `rethined inpaint` and `batch`


@dataclass(frozen=True)
class Kept:
    """What an output keeps of its photo: alpha (H, W) uint8 or None (opaque); exif (orientation 1) and icc bytes or
    None."""
    alpha: np.ndarray | None
    exif: bytes | None
    icc: bytes | None


@dataclass
class Photo:
    """rgb (H, W, 3) uint8 as shown; kept: what the output keeps of it; orientation: the EXIF orientation that was
    applied (1 = none); stored_size (height, width) in the file."""
    rgb: np.ndarray
    kept: Kept
    orientation: int
    stored_size: tuple[int, int]


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit or float grey image scaled to 8 bits (mode L); others unchanged."""
    if im.mode not in HIGH_DEPTH_MODES:
        return im
    values = np.asarray(im).astype(np.float64)
    top = 1.0 if im.mode == "F" else 65535.0
    return Image.fromarray(np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8))


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ALPHA_MODES or (im.mode == "P" and "transparency" in im.info)


def shown_size(im: Image.Image) -> tuple[int, int]:
    """(height, width) of an opened image as shown, its EXIF orientation applied (read from the header only)."""
    sideways = im.getexif().get(EXIF_ORIENTATION) in TURNED_SIDEWAYS
    return (im.width, im.height) if sideways else (im.height, im.width)


class ReducedDepthWarning(UserWarning):
    """A photo of more than 8 bits per channel was read at 8 (module docstring)."""


def _deeper_than_8_bits(im: Image.Image) -> bool:
    """Whether the opened (not yet loaded) image stores more than 8 bits per sample: a 16-bit or float grey, or 16 bits
    per colour sample (a 48- or 64-bit PNG or TIFF, which Pillow loads as 8-bit RGB)."""
    return im.mode in HIGH_DEPTH_MODES or any(DEEP_COLOUR_RAWMODE in str(tile.args) for tile in im.tile)


def _open(path: Path, photo: bool = False) -> Image.Image:
    """The loaded image; for a photo (photo=True) deeper than 8 bits, a `ReducedDepthWarning`."""
    with Image.open(path) as im:
        deep = photo and _deeper_than_8_bits(im)
        im.load()
    if deep:
        warnings.warn(f"{path.name}: more than 8 bits per channel, read at 8, so the output's known pixels lose their "
                      "low bits; to keep 16, name it as a one-frame sequence (photo.0001.tif) and run "
                      "`rethined video 'photo.%04d.tif' MASK -o 'out.%04d.tif'`", ReducedDepthWarning, stacklevel=3)
    return im


def read_photo(path: str | Path) -> Photo:
    """The photo in path, turned upright by its EXIF orientation (module docstring)."""
    im = _open(Path(path), photo=True)
    stored = (im.height, im.width)
    orientation = int(im.getexif().get(EXIF_ORIENTATION, UPRIGHT))
    icc = im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)          # also sets the EXIF orientation to 1
    exif = im.getexif()
    exif_bytes = exif.tobytes() if len(exif) else None
    im = _eight_bit(im)
    alpha = np.asarray(im.convert("RGBA"))[..., 3].copy() if _has_alpha(im) else None
    if alpha is not None and (alpha == OPAQUE).all():
        alpha = None
    return Photo(np.asarray(im.convert("RGB")), Kept(alpha, exif_bytes, icc), orientation, stored)


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


def read_mask(path: str | Path, photo: Photo | None = None) -> np.ndarray:
    """(H, W) uint8 mask of the file in path (turned by its own EXIF orientation), nonzero = fill; with photo,
    turned like it where the mask has the photo's stored size but not its shown one."""
    im = ImageOps.exif_transpose(_open(Path(path)))    # a mask's own orientation, as for any image
    if photo is not None and photo.orientation in TURNED_SIDEWAYS and (im.height, im.width) == photo.stored_size:
        im.getexif()[EXIF_ORIENTATION] = photo.orientation
        im = ImageOps.exif_transpose(im)
    return mask_values(im)


def output_format(path: str | Path, what: str = "output") -> str:
    """The PIL format of an output path by its suffix (OUTPUT_FORMATS); ValueError naming `what` otherwise."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{what}: expected a suffix in {tuple(OUTPUT_FORMATS)}, got {Path(path).name}")
    return fmt


def save_photo(path: str | Path, rgb: np.ndarray, kept: Kept | None, fmt: str | None = None,
               jpeg_quality: int = JPEG_QUALITY) -> None:
    """Write rgb (H, W, 3) uint8 to path (format `output_format(path)`, or fmt: a temporary name), with what it keeps
    of its photo: alpha (PNG, WebP, TIFF: formats that hold one), EXIF and ICC profile. Only JPEG is lossy (at
    jpeg_quality)."""
    im = Image.fromarray(rgb)
    fmt = fmt or output_format(path)
    options = {"quality": jpeg_quality} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    if kept is not None:
        if kept.alpha is not None and fmt in ALPHA_FORMATS:
            im.putalpha(Image.fromarray(kept.alpha))
        if kept.exif is not None:
            options["exif"] = kept.exif
        if kept.icc is not None:
            options["icc_profile"] = kept.icc
    im.save(path, format=fmt, **options)
