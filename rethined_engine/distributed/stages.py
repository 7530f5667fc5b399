"""The three stages of a batch run, on row dicts, shared by the local loop and Ray Data: `decode` (CPU),
`EngineStage` (one `Engine`, loaded once per process or actor), `encode` (CPU, atomic write).

A row carries the manifest's fields (image, mask, output, height, width, exclude), `status` ("pending" while
work remains, then "ok", "skipped" or "error"), `error` (a message, "" unless status is "error"), `worker`
("host:pid" of the process whose Engine took the row, "" when none did) and, between
decode and encode, `pixels` ((H, W, 3) uint8 RGB, turned by the photo's EXIF orientation), `hole` ((H, W) uint8,
nonzero = fill), `excluded` ((H, W) uint8, nonzero = never copied; NO_HOLE when the row has no exclusion) and
what the output keeps of the photo (`image_files`): `alpha` ((H, W) uint8, or NO_HOLE when opaque), `exif` and
`icc` (bytes, b"" when none). A failure in any stage turns that row into an error row; it never
stops the run.
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..image_files import JPEG_QUALITY, Kept, output_format, read_mask, read_photo, save_photo

PENDING, OK, SKIPPED, ERROR = "pending", "ok", "skipped", "error"
RESULT_FIELDS = ("image", "mask", "output", "status", "error", "worker")
NO_PIXELS = np.zeros((0, 0, 3), np.uint8)   # pixels of a row that has none (skipped, failed): same ndim
NO_HOLE = np.zeros((0, 0), np.uint8)


@dataclass(frozen=True)
class BatchConfig:
    """Settings of a batch run.

    skip_existing: a row whose output file exists is "skipped" (a restarted run resumes).
    jpeg_quality: quality of .jpg/.jpeg outputs (PNG outputs are lossless).
    engine: keyword arguments of `Engine(...)` in every process (device, backend, weights, ...).
    Ray only: workers: engine actors; gpus_per_worker, cpus_per_worker: resources each actor reserves;
    cpus_per_io_task: CPUs each decode/encode task reserves; rows_per_call: rows per engine call;
    actor_start_timeout_s: how long rows wait for every engine actor to start (a cluster without the
    resources for them fails after it with Ray's GetTimeoutError).
    """
    skip_existing: bool = True
    jpeg_quality: int = JPEG_QUALITY
    engine: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    cpus_per_io_task: float = 1.0
    rows_per_call: int = 1
    actor_start_timeout_s: int = 600
    dilate: int = 0              # px every mask grows by in every direction (`video.masks.dilate`); not the exclusions

    def __post_init__(self):
        from ..video.masks import check_radius

        check_radius(self.dilate)
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality: expected 1..100, got {self.jpeg_quality}")
        for name in ("workers", "rows_per_call", "actor_start_timeout_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        for name in ("gpus_per_worker", "cpus_per_worker", "cpus_per_io_task"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)}")


NO_META = {"alpha": NO_HOLE, "exif": b"", "icc": b""}   # what a row keeps of a photo that has none of it


def _failed(row: dict, stage: str, exc: BaseException) -> dict:
    return {**row, "status": ERROR, "error": f"{stage}: {type(exc).__name__}: {exc}",
            "pixels": NO_PIXELS, "hole": NO_HOLE, "excluded": NO_HOLE, **NO_META}


def _read(row: dict, dilate: int) -> dict:
    """The row's photo, mask (grown by `dilate` px) and exclusion (`image_files`: turned upright, alpha, EXIF and ICC
    kept aside)."""
    photo = read_photo(row["image"])
    kept = photo.kept
    excluded = NO_HOLE if row["exclude"] is None else read_mask(row["exclude"], photo)
    hole = read_mask(row["mask"], photo, dilate)
    return {"pixels": photo.rgb, "hole": hole, "excluded": excluded,
            "alpha": NO_HOLE if kept.alpha is None else kept.alpha, "exif": kept.exif or b"", "icc": kept.icc or b""}


def _kept(row: dict) -> Kept:
    """What the output keeps of the row's photo (its alpha, exif and icc columns), for `save_photo`."""
    alpha = row["alpha"]
    return Kept(alpha if alpha.size else None, row["exif"] or None, row["icc"] or None)


def decode(row: dict, config: BatchConfig) -> dict:
    """Manifest row -> row with pixels and hole (status pending), or a skipped or error row."""
    row = {**row, "status": PENDING, "error": "", "worker": "", "pixels": NO_PIXELS, "hole": NO_HOLE,
           "excluded": NO_HOLE, **NO_META}
    if config.skip_existing and os.path.exists(row["output"]):
        return {**row, "status": SKIPPED}
    if row["mask"] is None:
        return {**row, "status": ERROR, "error": f"mask: no mask file with the stem {Path(row['image']).stem!r}"}
    try:
        return {**row, **_read(row, config.dilate)}
    except Exception as exc:  # noqa: BLE001 - unreadable, truncated, not an image: this row fails, the run goes on
        return _failed(row, "decode", exc)


class EngineStage:
    """Holds one `Engine(**config.engine)`, created once; inpaints pending rows. A Ray Data callable class
    (`__call__` on a numpy batch) and, through `row`, the local loop's stage."""

    def __init__(self, config: BatchConfig):
        from ..engine import Engine

        self.engine = Engine(**config.engine)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def row(self, row: dict) -> dict:
        if row["status"] != PENDING:
            return row
        row = {**row, "worker": self.worker}
        try:
            excluded = row["excluded"] if row["excluded"].size else None
            return {**row, "pixels": self.engine.inpaint(row["pixels"], row["hole"], excluded), "hole": NO_HOLE,
                    "excluded": NO_HOLE}
        except Exception as exc:  # noqa: BLE001 - a size mismatch, an out-of-memory: this row fails, the run goes on
            return _failed(row, "inpaint", exc)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        """batch: column -> array of n values (pixels and hole: object arrays of per-row arrays)."""
        count = len(batch["status"])
        rows = [self.row({key: values[i] for key, values in batch.items()}) for i in range(count)]
        return {key: [row[key] for row in rows] for key in batch}


def write_atomically(path: Path, pixels: np.ndarray, jpeg_quality: int, kept: Kept | None = None) -> None:
    """Write (H, W, 3) uint8 pixels to path in the format of its suffix, with what it keeps of its photo
    (`image_files.save_photo`), through a hidden temporary file in the same folder renamed over path: a process
    killed while writing leaves no partial file at path."""
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        save_photo(temporary, pixels, kept, fmt, jpeg_quality)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def encode(row: dict, config: BatchConfig) -> dict:
    """Write a pending row's pixels to its output; returns the row's RESULT_FIELDS with status ok or error."""
    if row["status"] == PENDING:
        try:
            write_atomically(Path(row["output"]), row["pixels"], config.jpeg_quality, _kept(row))
            row = {**row, "status": OK}
        except Exception as exc:  # noqa: BLE001 - a full disk, a read-only folder: this row fails, the run goes on
            row = _failed(row, "encode", exc)
    return {key: row[key] for key in RESULT_FIELDS}
