"""Clips and masks for the video benchmark. Frames are (T, H, W, 3) uint8 RGB; masks (T, H, W) bool,
True = fill.

Real clips: `vtest.avi` (768x576, static camera, pedestrians), `box.mp4` and `cup.mp4`
(640x480, hand-held) from Debian's opencv-doc package, fetched into clips/ (not committed) by

    python -m bench.video_clips [--folder clips]

They have no ground truth behind a real object, so the benchmark's masks are synthetic and the truth is the
frame itself. Synthetic clips: a camera window moving over a training photo (static, pan, zoom with a slight
rotation), per-frame Gaussian noise and an x264 round trip; the truth is each frame before the mask, exact at
any size. The window starts on a copy of the photo resized to FIELD_WIDTH times the frame width (INTER_AREA
down, bicubic up: a 3840 px photo is upsampled 1.5x for a 4K clip).
"""
from __future__ import annotations

import argparse
import gzip
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLIPS_DIR = Path("clips")   # relative to the repository root, gitignored
OPENCV_DOC = "opencv-doc"
DOC_ROOT = Path("usr/share/doc/opencv-doc")
REAL_CLIPS = {   # name -> (path inside the package, camera)
    "vtest": (DOC_ROOT / "examples/data/vtest.avi", "static"),
    "box": (DOC_ROOT / "opencv4/html/box.mp4.gz", "hand-held"),
    "cup": (DOC_ROOT / "opencv4/html/cup.mp4.gz", "hand-held"),
}

FIELD_WIDTH = 1.5            # the photo is resized to this many frame widths before the window moves over it
PAN_SPEED = 0.008            # pan: frame widths per frame, left to right (content moves left)
PAN_WOBBLE = 0.01            # pan: vertical sine drift, frame heights of amplitude
PAN_WOBBLE_PERIOD = 24       # frames
ZOOM_PER_FRAME = 0.005       # zoom: magnification grows by this fraction per frame
ZOOM_MAX_ANGLE = 2.0         # zoom: degrees of rotation reached at the last frame
NOISE_SIGMA = 2.0            # per-frame Gaussian noise, uint8 levels
X264_CRF = 14               # keeps the per-frame noise (at 20, x264 skips static blocks: still frames come out identical)
X264_PRESET = "veryfast"
FPS = 24
MOTIONS = ("static", "pan", "zoom")

LOGO_BOX = (0.06, 0.80, 0.16, 0.12)      # logo: x, y, width, height, in frame widths / heights (bottom left)
LOGO_CORNER = 0.25                       # logo: corner radius, in box heights
WATERMARK_TEXT = "SAMPLE"
WATERMARK_HEIGHT = 0.14                  # watermark: text height, frame heights, centred
WATERMARK_STROKE = 0.012                 # watermark: stroke thickness, frame heights
BLOB_AXES = (0.12, 0.09)                 # blob: ellipse half-axes, frame heights (an object-sized hole)
BLOB_PATH_X = (0.2, 0.8)                 # blob: x from, to (frame widths) over the clip
BLOB_PATH_Y = (0.5, 0.15)                # blob: y centre and sine amplitude (frame heights)
MASKS = ("logo", "watermark", "blob")
STATIC_MASKS = ("logo", "watermark")


@dataclass(frozen=True)
class Clip:
    """A clip's true frames (T, H, W, 3) uint8 and how its camera moves ('static', 'pan', 'zoom', 'hand-held')."""
    name: str
    frames: np.ndarray
    camera: str


# --- real clips --------------------------------------------------------------------------------------------

def fetch_real_clips(folder: Path = CLIPS_DIR) -> dict[str, Path]:
    """Download opencv-doc with apt-get, unpack it and copy (gunzip) its three clips into `folder`; clips
    already there are kept. Returns name -> path."""
    paths = {name: folder / inner.name.removesuffix(".gz") for name, (inner, _) in REAL_CLIPS.items()}
    if all(path.is_file() for path in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", OPENCV_DOC], cwd=tmp, check=True)
        deb = next(Path(tmp).glob(f"{OPENCV_DOC}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")], check=True)
        for name, (inner, _) in REAL_CLIPS.items():
            source = Path(tmp) / "root" / inner
            opener = gzip.open if source.suffix == ".gz" else open
            with opener(source, "rb") as src, open(paths[name], "wb") as dst:
                shutil.copyfileobj(src, dst)
    return paths


def read_frames(path: Path, count: int, start: int = 0) -> np.ndarray:
    """Frames start .. start + count - 1 of a video file, decoded to RGB, (count, H, W, 3) uint8."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    if len(frames) < count:
        raise ValueError(f"count: {path} has {start + len(frames)} frames, fewer than start + count = {start + count}")
    return np.stack(frames)


def real_clip(name: str, count: int, folder: Path = CLIPS_DIR) -> Clip:
    """The first `count` frames of a real clip (fetched into `folder` if missing)."""
    if name not in REAL_CLIPS:
        raise ValueError(f"name: expected one of {sorted(REAL_CLIPS)}, got {name!r}")
    return Clip(name, read_frames(fetch_real_clips(folder)[name], count), REAL_CLIPS[name][1])


# --- synthetic clips ---------------------------------------------------------------------------------------

def camera_matrices(motion: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Per frame, the 2x3 affine map from frame pixels to field pixels (the photo resized to FIELD_WIDTH
    frame widths) for a camera that is static, pans or zooms in with a slight rotation; size = (H, W)."""
    if motion not in MOTIONS:
        raise ValueError(f"motion: expected one of {MOTIONS}, got {motion!r}")
    height, width = size
    field_w, field_h = FIELD_WIDTH * width, FIELD_WIDTH * height
    if motion == "pan" and PAN_SPEED * (count - 1) > FIELD_WIDTH - 1:
        raise ValueError(f"count: a pan of {count} frames leaves the photo; at most {int((FIELD_WIDTH - 1) / PAN_SPEED) + 1}")
    matrices = []
    for t in range(count):
        centre_x, centre_y, scale, angle = field_w / 2, field_h / 2, 1.0, 0.0
        if motion == "pan":
            centre_x = width / 2 + PAN_SPEED * width * t
            centre_y += PAN_WOBBLE * height * np.sin(2 * np.pi * t / PAN_WOBBLE_PERIOD)
        elif motion == "zoom":
            scale = 1.0 / (1.0 + ZOOM_PER_FRAME * t)
            angle = ZOOM_MAX_ANGLE * t / max(count - 1, 1)
        rad = np.deg2rad(angle)
        rotation = scale * np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]])
        offset = np.array([centre_x, centre_y]) - rotation @ np.array([width / 2, height / 2])
        matrices.append(np.hstack([rotation, offset[:, None]]))
    return matrices


def field(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo (h, w, 3) resized to FIELD_WIDTH frame widths (and at least FIELD_WIDTH frame heights)."""
    height, width = size
    factor = max(FIELD_WIDTH * width / photo.shape[1], FIELD_WIDTH * height / photo.shape[0])
    new_size = (int(np.ceil(photo.shape[1] * factor)), int(np.ceil(photo.shape[0] * factor)))
    return cv2.resize(photo, new_size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def x264_round_trip(frames: np.ndarray, crf: int = X264_CRF) -> np.ndarray:
    """Encode (T, H, W, 3) uint8 RGB with libx264 (yuv420p, crf, preset X264_PRESET) in memory and decode."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(crf), "preset": X264_PRESET}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def synthetic_clip(photo_path: Path, motion: str, count: int, size: tuple[int, int], seed: int = 0,
                   noise_sigma: float = NOISE_SIGMA, round_trip: bool = True) -> Clip:
    """A camera `motion` over the photo, `count` frames of size (H, W), Gaussian noise of noise_sigma levels
    per frame (seeded) and, with round_trip, an x264 round trip; the result is the truth."""
    from PIL import Image

    photo = field(np.asarray(Image.open(photo_path).convert("RGB")), size)
    height, width = size
    rng = np.random.default_rng(seed)
    frames = np.empty((count, height, width, 3), np.uint8)
    for t, matrix in enumerate(camera_matrices(motion, count, size)):
        window = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
        noisy = window.astype(np.float32) + rng.normal(0.0, noise_sigma, window.shape).astype(np.float32)
        frames[t] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if round_trip:
        frames = x264_round_trip(frames)
    return Clip(f"{photo_path.stem}-{motion}-{height}p", frames, motion)


# --- masks -------------------------------------------------------------------------------------------------

def logo_mask(size: tuple[int, int]) -> np.ndarray:
    """A static rounded-box logo near the bottom-left corner, (H, W) bool."""
    height, width = size
    x, y, w, h = (int(round(v * s)) for v, s in zip(LOGO_BOX, (width, height, width, height)))
    radius = max(1, int(LOGO_CORNER * h))
    mask = np.zeros(size, np.uint8)
    cv2.rectangle(mask, (x + radius, y), (x + w - radius, y + h), 1, -1)
    cv2.rectangle(mask, (x, y + radius), (x + w, y + h - radius), 1, -1)
    for cx in (x + radius, x + w - radius):
        for cy in (y + radius, y + h - radius):
            cv2.circle(mask, (cx, cy), radius, 1, -1)
    return mask.astype(bool)


def watermark_mask(size: tuple[int, int]) -> np.ndarray:
    """A static text watermark (WATERMARK_TEXT in thick strokes) centred in the frame, (H, W) bool."""
    height, width = size
    thickness = max(1, int(round(WATERMARK_STROKE * height)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), _ = cv2.getTextSize(WATERMARK_TEXT, font, 1.0, thickness)
    scale = WATERMARK_HEIGHT * height / text_h
    (text_w, text_h), _ = cv2.getTextSize(WATERMARK_TEXT, font, scale, thickness)
    mask = np.zeros(size, np.uint8)
    cv2.putText(mask, WATERMARK_TEXT, ((width - text_w) // 2, (height + text_h) // 2), font, scale, 1, thickness,
                cv2.LINE_8)
    return mask.astype(bool)


def blob_masks(size: tuple[int, int], count: int) -> np.ndarray:
    """An object-sized ellipse moving left to right on a sine path over `count` frames, (count, H, W) bool."""
    height, width = size
    axes = (int(round(BLOB_AXES[0] * height)), int(round(BLOB_AXES[1] * height)))
    masks = np.zeros((count, height, width), np.uint8)
    for t in range(count):
        progress = t / max(count - 1, 1)
        x = (BLOB_PATH_X[0] + (BLOB_PATH_X[1] - BLOB_PATH_X[0]) * progress) * width
        y = (BLOB_PATH_Y[0] + BLOB_PATH_Y[1] * np.sin(2 * np.pi * progress)) * height
        cv2.ellipse(masks[t], (int(round(x)), int(round(y))), axes, 0.0, 0.0, 360.0, 1, -1)
    return masks.astype(bool)


def clip_masks(kind: str, size: tuple[int, int], count: int) -> np.ndarray:
    """Masks of one kind ('logo', 'watermark': the same every frame; 'blob': moving), (count, H, W) bool."""
    if kind == "blob":
        return blob_masks(size, count)
    if kind not in STATIC_MASKS:
        raise ValueError(f"kind: expected one of {MASKS}, got {kind!r}")
    still = logo_mask(size) if kind == "logo" else watermark_mask(size)
    return np.broadcast_to(still, (count, *size))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch the real clips of the video benchmark from opencv-doc")
    parser.add_argument("--folder", type=Path, default=CLIPS_DIR)
    args = parser.parse_args(argv)
    for name, path in fetch_real_clips(args.folder).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
