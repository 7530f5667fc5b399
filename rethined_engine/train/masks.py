"""LaMa-style free-form masks: thick and medium brush strokes plus boxes, at a target coverage.

Deterministic for a given numpy Generator; True = hole.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

DEFAULT_COVERAGE = (0.30, 0.50)   # fraction of pixels in holes (the DF8K-Inpainting protocol)
STROKE_WIDTHS = {"thick": (0.06, 0.12), "medium": (0.03, 0.06)}  # brush width / short side
STROKE_VERTICES = (3, 8)
BOX_SIDE = (0.10, 0.40)           # box side / image side
MAX_ATTEMPTS = 20


def _stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int, kind: str) -> None:
    short = min(height, width)
    brush = max(1, int(rng.uniform(*STROKE_WIDTHS[kind]) * short))
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    points = [(x, y)]
    for _ in range(rng.integers(*STROKE_VERTICES, endpoint=True)):
        angle = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.1, 0.35) * short
        x = float(np.clip(x + length * math.cos(angle), 0, width - 1))
        y = float(np.clip(y + length * math.sin(angle), 0, height - 1))
        points.append((x, y))
    draw.line(points, fill=255, width=brush)
    r = brush / 2
    for px, py in points:  # round joints
        draw.ellipse((px - r, py - r, px + r, py + r), fill=255)


def _box(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int) -> None:
    bh, bw = rng.uniform(*BOX_SIDE) * height, rng.uniform(*BOX_SIDE) * width
    y0, x0 = rng.uniform(0, height - bh), rng.uniform(0, width - bw)
    draw.rectangle((x0, y0, x0 + bw, y0 + bh), fill=255)


def random_mask(height: int, width: int, rng: np.random.Generator,
                coverage: tuple[float, float] = DEFAULT_COVERAGE) -> np.ndarray:
    """(height, width) bool hole mask with coverage in [lo, hi] (best effort after MAX_ATTEMPTS)."""
    lo, hi = coverage
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"coverage must satisfy 0 <= lo <= hi <= 1, got {coverage}")
    best = None
    for _ in range(MAX_ATTEMPTS):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        target = rng.uniform(lo, hi)
        mask = np.zeros((height, width), bool)
        while mask.mean() < target:
            choice = rng.random()
            if choice < 0.4:
                _stroke(draw, rng, height, width, "thick")
            elif choice < 0.8:
                _stroke(draw, rng, height, width, "medium")
            else:
                _box(draw, rng, height, width)
            mask = np.asarray(canvas) > 0
        if mask.mean() <= hi:
            return mask
        best = mask if best is None or mask.mean() < best.mean() else best
    return best
