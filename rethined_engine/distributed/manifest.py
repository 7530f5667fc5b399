"""The work list of a batch run: one row per (image, mask, output), images paired with masks by file stem.

An image without a mask is kept as a row with `mask=None` (the run reports it as an error row); a mask
without an image is listed in `Manifest.unmatched_masks`. Nothing is dropped silently. Exclusions (known
pixels no fill may copy) are optional: paired the same way, an image without one excludes nothing, and an
exclusion without an image is listed in `Manifest.unmatched_excludes`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..image_files import HEIF_SUFFIXES, OUTPUT_FORMATS, register_heif, shown_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".avif", *HEIF_SUFFIXES)
OUTPUT_SUFFIXES = tuple(OUTPUT_FORMATS)
UNKNOWN_SIZE = (0, 0)   # (height, width) of an image whose header cannot be read: sorts first, fails in decode


@dataclass(frozen=True)
class ManifestRow:
    """One unit of work. image, mask, output: file paths as strings (mask None: no mask of that stem);
    height, width: the image's size in pixels from its header (UNKNOWN_SIZE when unreadable); exclude: the
    file of known pixels the fill must not copy (`Engine.inpaint`'s exclude), None for none."""
    image: str
    mask: str | None
    output: str
    height: int
    width: int
    exclude: str | None = None

    def as_dict(self) -> dict:
        return {"image": self.image, "mask": self.mask, "output": self.output,
                "height": self.height, "width": self.width, "exclude": self.exclude}


@dataclass(frozen=True)
class Manifest:
    """rows: sorted by image size (height, width), then file name, so that equal shapes run together (the
    triton backend keeps a CUDA graph per shape, for a few shapes). unmatched_masks, unmatched_excludes: mask
    and exclusion files whose stem names no image."""
    rows: tuple[ManifestRow, ...]
    unmatched_masks: tuple[str, ...]
    unmatched_excludes: tuple[str, ...] = ()

    @property
    def missing_masks(self) -> tuple[str, ...]:
        """Images without a mask of their stem."""
        return tuple(row.image for row in self.rows if row.mask is None)


def image_files(folder: Path, what: str) -> dict[str, Path]:
    """Image files directly in folder (suffix in IMAGE_SUFFIXES, hidden files left out) keyed by stem.
    Two files sharing a stem are an error: the stem names the output."""
    if not folder.is_dir():
        raise ValueError(f"{what}: expected a folder of images, got {folder}")
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        if path.stem in by_stem:
            raise ValueError(f"{what}: {by_stem[path.stem].name} and {path.name} share the stem {path.stem!r}; "
                             "expected one file per stem (the stem pairs images with masks and names the output)")
        by_stem[path.stem] = path
    return by_stem


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) as shown (EXIF orientation applied, as `image_files.read_photo` reads it) from the file's
    header only (no decode); UNKNOWN_SIZE when it cannot be read."""
    try:
        register_heif(path)
        with Image.open(path) as im:
            return shown_size(im)
    except (UnidentifiedImageError, OSError):
        return UNKNOWN_SIZE


def pair_by_stem(image_paths: dict[str, Path], masks: Path, what: str) -> tuple[dict[str, Path], tuple[str, ...]]:
    """The mask file of each image stem (masks: a folder of files named by stem, or one file for every image)
    and the files whose stem names no image. what: the argument, for errors."""
    masks = Path(masks)
    if masks.is_file():
        return {stem: masks for stem in image_paths}, ()
    mask_for = image_files(masks, what)
    return mask_for, tuple(str(path) for stem, path in mask_for.items() if stem not in image_paths)


def build_manifest(images: Path, masks: Path, out_dir: Path, out_suffix: str = ".png",
                   excludes: Path | None = None) -> Manifest:
    """Pair every image in the folder `images` with the mask of the same stem in the folder `masks`, or
    with the single mask file `masks` (a static mask for every image), and with its exclusion the same way
    when excludes (a folder or one file) is given. Output: out_dir / (stem + out_suffix); out_suffix one of
    OUTPUT_SUFFIXES (only JPEG is lossy, at the batch's jpeg_quality)."""
    if out_suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"out_suffix: expected one of {OUTPUT_SUFFIXES}, got {out_suffix!r}")
    image_paths = image_files(Path(images), "images")
    mask_for, unmatched = pair_by_stem(image_paths, masks, "masks")
    exclude_for, unmatched_excludes = ({}, ()) if excludes is None else pair_by_stem(image_paths, excludes, "excludes")
    rows = []
    for stem, path in image_paths.items():
        mask, exclude = mask_for.get(stem), exclude_for.get(stem)
        height, width = image_size(path)
        rows.append(ManifestRow(str(path), None if mask is None else str(mask),
                                str(Path(out_dir) / (stem + out_suffix)), height, width,
                                None if exclude is None else str(exclude)))
    rows.sort(key=lambda row: (row.height, row.width, Path(row.image).name))
    return Manifest(tuple(rows), unmatched, unmatched_excludes)
