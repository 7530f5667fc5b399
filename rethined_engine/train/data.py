"""Random multi-scale crops of a folder of photographs, with free-form or object masks."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .masks import DEFAULT_COVERAGE, object_mask, random_mask

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
CACHE_LONG_SIDE = 1024  # photos are held in memory at most this large, or at the largest long side asked for
PHOTO_LONG_SIDE = (512, 1024)  # default range of the long side (px) at which a crop sees its photo


def list_images(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return files


def load_rgb(path: str | Path, long_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8, optionally Lanczos-downscaled so that max(H, W) <= long_side."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if long_side is not None and max(im.size) > long_side:
            f = long_side / max(im.size)
            im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.LANCZOS)
        return np.asarray(im).copy()


class PhotoCrops:
    """Samples batches of (image (B, 3, c, c) float [0, 1], mask (B, 1, c, c) float {0, 1}).

    Each crop takes a random square window of side c / f from a photo held at long side
    <= max(1024, long_side[1]), with f drawn so that the photo appears at a long side uniform in
    `long_side` (px; multi-scale; inference sees every photo at long side 512, the LR working size),
    resized to c x c with anti-aliasing, randomly flipped. Each crop's mask is free-form strokes and boxes
    covering `coverage` (`random_mask`), or with probability `object_share` one or two object silhouettes
    (`object_mask`, 5-20 %: what a user erases).
    """

    def __init__(self, folder: str | Path, crop: int = 256, coverage: tuple[float, float] = DEFAULT_COVERAGE,
                 long_side: tuple[int, int] = PHOTO_LONG_SIDE, device: str | torch.device = "cpu",
                 object_share: float = 0.0):
        if not 0 < long_side[0] <= long_side[1]:
            raise ValueError(f"long_side must satisfy 0 < lo <= hi, got {long_side}")
        if not 0.0 <= object_share <= 1.0:
            raise ValueError(f"object_share must be in [0, 1] (a share of the crops), got {object_share}")
        self.crop, self.coverage, self.long_side, self.device = crop, coverage, long_side, torch.device(device)
        self.object_share = object_share
        self.cache_long_side = max(CACHE_LONG_SIDE, long_side[1])
        self.photos = [torch.from_numpy(load_rgb(p, self.cache_long_side)).permute(2, 0, 1).to(self.device)
                       for p in list_images(folder)]
        self.photos = [p for p in self.photos if min(p.shape[-2:]) >= crop // 2]
        if not self.photos:
            raise ValueError(f"no photo under {folder} has a short side >= {crop // 2}")

    def _crop(self, photo: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        h, w = photo.shape[-2:]
        long_side = rng.uniform(*self.long_side)
        f = min(1.0, long_side / max(h, w))            # target scale of the photo
        window = min(round(self.crop / f), h, w)        # window side in cached pixels
        y, x = rng.integers(0, h - window + 1), rng.integers(0, w - window + 1)
        patch = photo[:, y:y + window, x:x + window].float()[None] / 255.0
        patch = F.interpolate(patch, size=(self.crop, self.crop), mode="bilinear", antialias=True,
                              align_corners=False)[0]
        if rng.random() < 0.5:
            patch = patch.flip(-1)
        return patch.clamp(0.0, 1.0)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops and masks on the photos' device (crops are cut and resized there)."""
        images, masks = [], []
        for _ in range(batch):
            images.append(self._crop(self.photos[rng.integers(len(self.photos))], rng))
            masks.append(torch.from_numpy(self._mask(rng))[None].float())
        return torch.stack(images), torch.stack(masks).to(self.device)

    def _mask(self, rng: np.random.Generator) -> np.ndarray:
        """One crop's (c, c) bool mask. Without object masks no draw decides the family, so such runs see the
        batches they saw before object masks existed."""
        if self.object_share > 0.0 and rng.random() < self.object_share:
            return object_mask(self.crop, self.crop, rng)
        return random_mask(self.crop, self.crop, rng, self.coverage)


class Prefetcher:
    """Samples the next batch in a worker thread while the caller trains on the current one.

    `upcoming_state` is the generator's state from before the batch `next()` will return: a checkpoint
    that stores it resumes on exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, dataset: PhotoCrops, batch: int, rng: np.random.Generator):
        self.dataset, self.batch, self.rng = dataset, batch, rng
        self.pool = ThreadPoolExecutor(max_workers=1)
        self._submit()

    def _submit(self) -> None:
        self.upcoming_state = self.rng.bit_generator.state   # the worker is idle: no draw in flight
        self.pending = self.pool.submit(self.dataset.sample, self.batch, self.rng)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, mask) as `PhotoCrops.sample` returns them."""
        drawn = self.pending.result()
        self._submit()
        return drawn

    def close(self) -> None:
        self.pool.shutdown(wait=True)
