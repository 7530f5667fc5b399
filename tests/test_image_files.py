"""Photo and mask files (`rethined_engine.image_files`): EXIF orientation, alpha, 16-bit greys, masks with an alpha
channel, and what `rethined inpaint` and `rethined batch` write back (alpha, EXIF, ICC)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rethined_engine.cli import main
from rethined_engine.distributed.manifest import build_manifest
from rethined_engine.image_files import EXIF_ORIENTATION, mask_values, read_mask, read_photo, save_photo

MAKE = 0x010F                      # an EXIF tag the output must keep
ICC = b"\0\0\0\x18not a real profile, kept as bytes"
SIDEWAYS = 6                       # EXIF: turn 90 degrees clockwise to show


def photo_pixels(height=48, width=80, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, 3)) * 255).astype(np.uint8)


def save_with_exif(path, pixels, orientation=None, **options):
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[MAKE] = "rethined test camera"
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    im.save(path, exif=exif, **options)


def box_mask(height, width):
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: height // 2, width // 3: width // 2] = 255
    return mask


def test_a_sideways_photo_is_read_as_shown(tmp_path):
    stored = photo_pixels()
    save_with_exif(tmp_path / "p.png", stored, SIDEWAYS)
    photo = read_photo(tmp_path / "p.png")
    assert np.array_equal(photo.rgb, np.rot90(stored, k=-1))            # 90 degrees clockwise
    assert photo.orientation == SIDEWAYS and photo.stored_size == stored.shape[:2]
    kept = Image.Exif()
    kept.load(photo.kept.exif)
    assert kept.get(MAKE) == "rethined test camera" and kept.get(EXIF_ORIENTATION, 1) == 1


def test_a_mask_of_either_orientation_fits_a_sideways_photo(tmp_path):
    """A mask the size of the photo as stored is turned with it; one the size of the photo as shown is kept."""
    stored = photo_pixels()
    save_with_exif(tmp_path / "p.png", stored, SIDEWAYS)
    photo = read_photo(tmp_path / "p.png")
    on_stored = box_mask(*stored.shape[:2])
    Image.fromarray(on_stored).save(tmp_path / "stored.png")
    Image.fromarray(np.rot90(on_stored, k=-1).copy()).save(tmp_path / "shown.png")
    turned = read_mask(tmp_path / "stored.png", photo)
    assert turned.shape == photo.rgb.shape[:2]
    assert np.array_equal(turned, read_mask(tmp_path / "shown.png", photo))
    assert np.array_equal(read_mask(tmp_path / "stored.png"), on_stored)     # without a photo: as stored


def test_masks_with_an_alpha_channel():
    """Strokes painted on a transparent layer are the hole whatever colour lies under it; a shape kept in the alpha
    channel alone is the hole; an opaque RGBA mask is its luma."""
    height, width = 20, 30
    strokes = np.zeros((height, width), np.uint8)
    strokes[5:9, 3:25] = 255
    white_under = np.dstack([np.full((height, width, 3), 255, np.uint8), strokes])     # white RGB, alpha = strokes
    assert np.array_equal(mask_values(Image.fromarray(white_under, "RGBA")) != 0, strokes != 0)
    alpha_only = np.dstack([np.zeros((height, width, 3), np.uint8), strokes])          # black RGB, alpha = strokes
    assert np.array_equal(mask_values(Image.fromarray(alpha_only, "RGBA")) != 0, strokes != 0)
    opaque = np.dstack([np.repeat(strokes[..., None], 3, axis=-1), np.full((height, width), 255, np.uint8)])
    assert np.array_equal(mask_values(Image.fromarray(opaque, "RGBA")), strokes)
    painted_black = np.dstack([np.zeros((height, width, 3), np.uint8), np.full((height, width), 255, np.uint8)])
    painted_black[5:9, 3:25, :3] = 255                                                 # white on opaque black
    assert np.array_equal(mask_values(Image.fromarray(painted_black, "RGBA")) != 0, strokes != 0)
    empty = np.dstack([np.zeros((height, width, 3), np.uint8), np.full((height, width), 255, np.uint8)])
    assert not mask_values(Image.fromarray(empty, "RGBA")).any()                      # opaque black: nothing to fill


def test_a_16_bit_grey_photo_is_scaled_to_8_bits(tmp_path):
    grey = (np.arange(40 * 60).reshape(40, 60) * 27).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    with pytest.warns(UserWarning, match="g16.png: more than 8 bits per channel, read at 8"):
        photo = read_photo(tmp_path / "g16.png")
    want = np.rint(grey / 257.0).astype(np.uint8)
    assert np.array_equal(photo.rgb, np.repeat(want[..., None], 3, axis=-1))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_colour_photo_is_read_at_8_bits_with_a_warning(tmp_path, suffix):
    import warnings

    cv2 = pytest.importorskip("cv2")
    from rethined_engine.image_files import ReducedDepthWarning

    rgb16 = np.random.default_rng(0).integers(0, 65536, (6, 8, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / f"deep{suffix}"), rgb16[..., ::-1])
    with pytest.warns(ReducedDepthWarning, match=f"deep{suffix}: more than 8 bits per channel, read at 8"):
        photo = read_photo(tmp_path / f"deep{suffix}")
    assert photo.rgb.dtype == np.uint8 and photo.rgb.shape == (6, 8, 3)
    cv2.imwrite(str(tmp_path / f"shallow{suffix}"), (rgb16 >> 8).astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_photo(tmp_path / f"shallow{suffix}")                      # 8 bits: no warning


def test_save_keeps_alpha_exif_and_icc(tmp_path):
    rgba = np.dstack([photo_pixels(), np.tile(np.arange(80, dtype=np.uint8) * 3, (48, 1))])
    im = Image.fromarray(rgba, "RGBA")
    exif = im.getexif()
    exif[MAKE] = "rethined test camera"
    im.save(tmp_path / "in.png", exif=exif, icc_profile=ICC)
    photo = read_photo(tmp_path / "in.png")
    assert np.array_equal(photo.kept.alpha, rgba[..., 3]) and photo.kept.icc == ICC
    save_photo(tmp_path / "out.png", photo.rgb, photo.kept)
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA" and np.array_equal(np.asarray(out), rgba)
        assert out.info.get("icc_profile") == ICC and out.getexif().get(MAKE) == "rethined test camera"
    save_photo(tmp_path / "out.jpg", photo.rgb, photo.kept)                 # JPEG holds no alpha: RGB, EXIF and ICC
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.mode == "RGB" and out.info.get("icc_profile") == ICC


def test_cli_inpaints_a_sideways_photo_upright_and_keeps_its_metadata(tmp_path, capsys):
    stored = photo_pixels(96, 128)
    save_with_exif(tmp_path / "p.png", stored, SIDEWAYS, icc_profile=ICC)
    Image.fromarray(box_mask(96, 128)).save(tmp_path / "m.png")              # drawn on the photo as stored
    assert main(["inpaint", str(tmp_path / "p.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")]) in (0, None)
    assert "turned by its EXIF orientation 6" in capsys.readouterr().out
    shown, hole = np.rot90(stored, k=-1), np.rot90(box_mask(96, 128), k=-1) != 0
    with Image.open(tmp_path / "o.png") as out:
        result = np.asarray(out.convert("RGB"))
        assert out.info.get("icc_profile") == ICC and out.getexif().get(MAKE) == "rethined test camera"
        assert out.getexif().get(EXIF_ORIENTATION, 1) == 1
    assert result.shape == shown.shape
    assert np.array_equal(result[~hole], shown[~hole]) and not np.array_equal(result[hole], shown[hole])


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_batch_keeps_alpha_and_exif(tmp_path, fmt):
    """`rethined batch` (local) turns a sideways photo, writes it upright with its EXIF; a PNG output keeps the
    photo's alpha."""
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir(), masks.mkdir()
    stored = photo_pixels(64, 96, seed=1)
    save_with_exif(images / "side.png", stored, SIDEWAYS)
    Image.fromarray(box_mask(64, 96)).save(masks / "side.png")
    rgba = np.dstack([photo_pixels(64, 96, seed=2), np.full((64, 96), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(images / "glass.png")
    Image.fromarray(box_mask(64, 96)).save(masks / "glass.png")
    sizes = {Path(row.image).stem: (row.height, row.width) for row in build_manifest(images, masks, out).rows}
    assert sizes == {"side": (96, 64), "glass": (64, 96)}                   # as shown: the sideways photo turned
    assert main(["batch", str(images), str(masks), "-o", str(out), "--format", fmt, "--device", "cpu"]) == 0
    suffix = "." + fmt
    with Image.open(out / f"side{suffix}") as side:
        assert side.size == (64, 96) and side.getexif().get(MAKE) == "rethined test camera"
    with Image.open(out / f"glass{suffix}") as glass:
        assert glass.mode == ("RGBA" if suffix == ".png" else "RGB")
        if suffix == ".png":
            assert np.array_equal(np.asarray(glass)[..., 3], rgba[..., 3])


@pytest.mark.parametrize("suffix", [".webp", ".tif"])
def test_cli_writes_webp_and_tiff_losslessly(tmp_path, suffix):
    pixels = photo_pixels(64, 96, seed=3)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    Image.fromarray(box_mask(64, 96)).save(tmp_path / "m.png")
    assert main(["inpaint", str(tmp_path / "p.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / f"o{suffix}")]) in (0, None)
    known = box_mask(64, 96) == 0
    with Image.open(tmp_path / f"o{suffix}") as out:
        assert np.array_equal(np.asarray(out.convert("RGB"))[known], pixels[known])

