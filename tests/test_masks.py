"""Object-removal masks: one or two compact silhouettes at 5-20 % coverage."""
import numpy as np
import pytest

from rethined_engine.train.masks import MASK_FAMILIES, OBJECT_COVERAGE, object_mask, random_mask

ndimage = pytest.importorskip("scipy.ndimage")

SHAPES = [(256, 256), (192, 512), (512, 192), (43, 64), (100, 1000)]      # (height, width), small and extreme
SEEDS = range(100)


@pytest.mark.parametrize("shape", SHAPES)
def test_object_masks_cover_5_to_20_percent_in_one_or_two_pieces(shape):
    lo, hi = OBJECT_COVERAGE
    pieces = []
    for seed in SEEDS:
        mask = object_mask(*shape, np.random.default_rng(seed))
        assert mask.shape == shape and mask.dtype == bool
        assert lo <= mask.mean() <= hi, (seed, mask.mean())
        pieces.append(ndimage.label(mask)[1])             # 4-connected pieces
    assert set(pieces) == {1, 2}


def test_object_masks_are_deterministic_per_seed():
    for seed in range(5):
        a = object_mask(240, 320, np.random.default_rng(seed))
        assert np.array_equal(a, object_mask(240, 320, np.random.default_rng(seed)))
        assert not np.array_equal(a, object_mask(240, 320, np.random.default_rng(seed + 100)))


def test_object_masks_include_tall_and_wide_shapes():
    """People are taller than wide, cars wider than tall: both appear among the pieces' bounding boxes."""
    aspects = []
    for seed in SEEDS:
        labels, count = ndimage.label(object_mask(300, 300, np.random.default_rng(seed)))
        for rows, cols in ndimage.find_objects(labels):
            aspects.append((rows.stop - rows.start) / (cols.stop - cols.start))
    assert max(aspects) > 2.0 and min(aspects) < 0.5


def test_object_mask_coverage_range_is_honoured_and_checked():
    for seed in range(20):
        assert 0.02 <= object_mask(200, 300, np.random.default_rng(seed), (0.02, 0.04)).mean() <= 0.04
    with pytest.raises(ValueError, match="coverage"):
        object_mask(64, 64, np.random.default_rng(0), (0.3, 0.2))


def test_mask_families_name_the_generators():
    assert MASK_FAMILIES == {"strokes": random_mask, "objects": object_mask}
    strokes = MASK_FAMILIES["strokes"](128, 128, np.random.default_rng(0))
    assert 0.30 <= strokes.mean() <= 0.50
