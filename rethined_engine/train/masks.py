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


# --- Object-removal masks: one or two compact silhouettes ----------------------------------------------------
# What a user erases from a photo is usually a thing, not a scribble: a person, a sign, a car. These masks are
# one or two solid shapes of those proportions (a tall union of blobs with an irregular outline, a box that
# may be tilted and stand on a post, a wide two-blob body), together covering OBJECT_COVERAGE of the image.

OBJECT_COVERAGE = (0.05, 0.20)        # fraction of pixels covered by the objects together
OBJECT_KINDS = ("person", "sign", "car")
OBJECT_AREA_WEIGHT = {"person": 2.0, "sign": 1.0, "car": 3.0}   # relative areas when two objects share it
OBJECT_AREA_SPREAD = (0.7, 1.3)       # each weight times a factor from this range
OBJECT_FIT = 0.9                      # an object's box spans at most this fraction of the image height / width
OUTLINE_POINTS = 40                   # vertices of a blob's outline
OUTLINE_HARMONICS = (2, 3, 4, 5)      # angular frequencies of the outline's radial wobble
OUTLINE_JITTER = 0.06                 # amplitude of each harmonic, fraction of the blob's radius
PERSON_WIDTH = (0.30, 0.45)           # shoulder width / height
PERSON_LEAN = 0.06                    # largest sideways shift of the feet against the head, / height
CAR_WIDTH = (1.8, 2.6)                # length / height
SIGN_ASPECT = (0.6, 1.5)              # board height / width
SIGN_TILT_DEG = 20.0                  # largest tilt of the board
SIGN_POST = 0.5                       # probability that the board stands on a post
SIGN_POST_WIDTH = 0.08                # post width / board width
SIGN_POST_LENGTH = (0.5, 1.5)         # post length below the board / board height
SPINE_WIDTH = 0.25                    # line through the centres of a shape's parts, / the narrowest part's width
MIN_LINE_PX = 2                       # lines (spines, posts) are never thinner: small shapes stay one piece
REFERENCE_HEIGHT = 256                # px: shapes are drawn at this height once to measure their area
PLACEMENT_TRIES = 20                  # random positions tried for the second object before it may overlap

Point = tuple[float, float]


def _blob(cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator) -> list[Point]:
    """Outline of an ellipse (centre, radii) whose radius wobbles by a few random low harmonics."""
    theta = np.linspace(0.0, 2.0 * math.pi, OUTLINE_POINTS, endpoint=False)
    radius = np.ones_like(theta)
    for harmonic in OUTLINE_HARMONICS:
        radius += rng.uniform(-OUTLINE_JITTER, OUTLINE_JITTER) * np.cos(harmonic * theta + rng.uniform(0, 2 * math.pi))
    return list(zip((cx + rx * radius * np.cos(theta)).tolist(), (cy + ry * radius * np.sin(theta)).tolist()))


def _rotated_box(cx: float, cy: float, half_w: float, top: float, bottom: float, angle: float) -> list[Point]:
    """Corners of the box [cx - half_w, cx + half_w] x [cy + top, cy + bottom] rotated by angle (rad) about (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    corners = [(-half_w, top), (half_w, top), (half_w, bottom), (-half_w, bottom)]
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


class _Shape:
    """An object in its own units (isotropic, height about 1): filled polygons and lines (polyline, width in
    units), each line at least MIN_LINE_PX wide when drawn. A spine through the centres of overlapping parts
    keeps them one piece however small the shape is drawn."""

    def __init__(self, polygons: list[list[Point]], lines: list[tuple[list[Point], float]]):
        self.polygons, self.lines = polygons, lines
        points = [p for poly in polygons for p in poly] + [p for line, _ in lines for p in line]
        self.x0, self.y0 = min(x for x, _ in points), min(y for _, y in points)
        self.width = max(x for x, _ in points) - self.x0
        self.height = max(y for _, y in points) - self.y0

    def draw(self, sx: float, sy: float) -> np.ndarray:
        """Bool raster (rows, cols) of the shape scaled by sx, sy px per unit, its box at the origin."""
        cols, rows = math.ceil(self.width * sx) + 1, math.ceil(self.height * sy) + 1
        canvas = Image.new("L", (cols, rows), 0)
        draw = ImageDraw.Draw(canvas)

        def px(points: list[Point]) -> list[Point]:
            return [((x - self.x0) * sx, (y - self.y0) * sy) for x, y in points]

        for poly in self.polygons:
            draw.polygon(px(poly), fill=255)
        for line, line_width in self.lines:
            draw.line(px(line), fill=255, width=max(MIN_LINE_PX, round(line_width * min(sx, sy))))
        return np.asarray(canvas) > 0


def _person(rng: np.random.Generator) -> _Shape:
    """Head, torso and legs: three wobbly ellipses stacked, leaning a little."""
    width = rng.uniform(*PERSON_WIDTH)
    lean = rng.uniform(-PERSON_LEAN, PERSON_LEAN)
    head = (lean * 0.1, 0.1, 0.07, 0.09)
    torso = (lean * 0.4, 0.36, width / 2, 0.22)
    legs = (lean * 0.8, 0.72, width * 0.35, 0.28)
    parts = [head, torso, legs]
    return _Shape([_blob(*p, rng) for p in parts], [([p[:2] for p in parts], SPINE_WIDTH * 2 * head[2])])


def _car(rng: np.random.Generator) -> _Shape:
    """A wide body and a cabin on top of it, both wobbly ellipses."""
    length = rng.uniform(*CAR_WIDTH)
    body = (0.0, 0.65, length / 2, 0.35)
    cabin = (rng.uniform(-0.15, 0.15) * length, 0.32, rng.uniform(0.25, 0.35) * length, 0.3)
    return _Shape([_blob(*body, rng), _blob(*cabin, rng)], [([body[:2], cabin[:2]], SPINE_WIDTH * 2 * cabin[3])])


def _sign(rng: np.random.Generator) -> _Shape:
    """A board (box, width 1), tilted by up to SIGN_TILT_DEG, on a post below it with probability SIGN_POST."""
    angle = math.radians(rng.uniform(-SIGN_TILT_DEG, SIGN_TILT_DEG))
    half_h = rng.uniform(*SIGN_ASPECT) / 2
    board = _rotated_box(0.0, 0.0, 0.5, -half_h, half_h, angle)
    if rng.random() >= SIGN_POST:
        return _Shape([board], [])
    reach = half_h + rng.uniform(*SIGN_POST_LENGTH) * 2 * half_h          # post foot, from the board's centre
    foot = (-reach * math.sin(angle), reach * math.cos(angle))
    return _Shape([board], [([(0.0, 0.0), foot], SIGN_POST_WIDTH)])


OBJECT_SHAPES = {"person": _person, "sign": _sign, "car": _car}


def _object_raster(shape: _Shape, area: float, height: int, width: int) -> np.ndarray:
    """The shape drawn to cover about `area` px, its box inside OBJECT_FIT of the image; squeezed along one
    axis (area kept) where it would not fit, and smaller only where it fits along neither."""
    ref = REFERENCE_HEIGHT / shape.height
    fill = shape.draw(ref, ref).sum() / ref ** 2               # shape area in units^2, as drawn
    s = math.sqrt(area / max(fill, 1e-12))
    sx = sy = s
    limit_x, limit_y = OBJECT_FIT * width / shape.width, OBJECT_FIT * height / shape.height
    if sy > limit_y:
        sy, sx = limit_y, s * s / limit_y
    if sx > limit_x:
        sx, sy = limit_x, min(limit_y, s * s / limit_x)
    return shape.draw(sx, sy)


def _paste(mask: np.ndarray, part: np.ndarray, rng: np.random.Generator) -> None:
    """OR part into mask at a random position inside it, avoiding the pixels already set when one of
    PLACEMENT_TRIES positions allows."""
    rows, cols = min(part.shape[0], mask.shape[0]), min(part.shape[1], mask.shape[1])
    part = part[:rows, :cols]
    for _ in range(PLACEMENT_TRIES):
        y = int(rng.integers(0, mask.shape[0] - rows, endpoint=True))
        x = int(rng.integers(0, mask.shape[1] - cols, endpoint=True))
        if not (mask[y:y + rows, x:x + cols] & part).any():
            break
    mask[y:y + rows, x:x + cols] |= part


def object_mask(height: int, width: int, rng: np.random.Generator,
                coverage: tuple[float, float] = OBJECT_COVERAGE) -> np.ndarray:
    """(height, width) bool object-removal mask: one or two shapes drawn from OBJECT_KINDS (person-, sign- or
    car-like), covering a fraction in [lo, hi] of the image together (best effort after MAX_ATTEMPTS).
    Deterministic for a given numpy Generator; True = hole."""
    lo, hi = coverage
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"coverage must satisfy 0 < lo <= hi < 1, got {coverage}")
    best, best_miss = None, math.inf
    for _ in range(MAX_ATTEMPTS):
        target = rng.uniform(lo, hi)
        count = int(rng.integers(1, 2, endpoint=True))
        kinds = [OBJECT_KINDS[i] for i in rng.integers(len(OBJECT_KINDS), size=count)]
        weights = [OBJECT_AREA_WEIGHT[kind] * rng.uniform(*OBJECT_AREA_SPREAD) for kind in kinds]
        mask = np.zeros((height, width), bool)
        for kind, weight in zip(kinds, weights):
            shape = OBJECT_SHAPES[kind](rng)
            _paste(mask, _object_raster(shape, target * height * width * weight / sum(weights), height, width), rng)
        miss = max(lo - mask.mean(), mask.mean() - hi, 0.0)
        if miss == 0.0:
            return mask
        if miss < best_miss:
            best, best_miss = mask, miss
    return best


MASK_FAMILIES = {"strokes": random_mask, "objects": object_mask}   # name -> (height, width, rng) -> bool mask
