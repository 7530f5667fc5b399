"""Photo and mask files (`rethined_engine.image_files`, `deep_photos`): EXIF orientation, alpha, 16-bit photos, masks
with an alpha channel, and what `rethined inpaint` and `rethined batch` write back (alpha, EXIF, ICC, 16 bits)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rethined_engine.cli import main
from rethined_engine.distributed.manifest import build_manifest
from rethined_engine import image_files
from rethined_engine.deep_photos import EXIF_PREFIX, encode
from rethined_engine.io import to_uint8
from rethined_engine.image_files import (EXIF_ORIENTATION, FirstFrameWarning, Kept, ReducedDepthWarning, mask_values,
                                         read_mask, read_photo, save_photo, shown_size)

MAKE = 0x010F                      # an EXIF tag the output must keep
EXIF_IFD, EXPOSURE_TIME = 0x8769, 0x829A   # and one in its EXIF sub-IFD
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


def srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation=None) -> bytes:
    exif = Image.Exif()
    exif[MAKE] = "rethined test camera"
    exif.get_ifd(EXIF_IFD)[EXPOSURE_TIME] = 0.004
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    return exif.tobytes()


def deep_samples(height, width, channels, seed=0):
    return np.random.default_rng(seed).integers(0, 65536, (height, width, channels)).astype(np.uint16)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    import zlib

    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def with_chunk_before_end(png: bytes, kind: bytes, body: bytes) -> bytes:
    """The PNG's bytes with one more chunk right before its IEND (after its pixels)."""
    end = png.rindex(b"IEND") - 4
    return png[:end] + png_chunk(kind, body) + png[end:]


def count_png_decodes(monkeypatch) -> list:
    from PIL import PngImagePlugin

    decodes = []
    load = PngImagePlugin.PngImageFile.load

    def counted(self):
        decodes.append(self.filename)
        return load(self)
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", counted)
    return decodes


def test_a_16_bit_png_is_decoded_once(tmp_path, monkeypatch):
    """OpenCV decodes its pixels; Pillow only reads its chunks' headers (no eXIf after the pixels to look for), also
    for the size a manifest takes (`shown_size`)."""
    cv2 = pytest.importorskip("cv2")
    samples = deep_samples(12, 16, 3)
    cv2.imwrite(str(tmp_path / "deep.png"), samples[..., ::-1])
    decodes = count_png_decodes(monkeypatch)
    photo = read_photo(tmp_path / "deep.png")
    assert np.array_equal(photo.rgb, samples) and photo.kept.exif is None and photo.orientation == 1
    with Image.open(tmp_path / "deep.png") as im:
        assert shown_size(im) == (12, 16)
    assert decodes == []


@pytest.mark.parametrize("deep", [False, True])
def test_exif_after_the_pixels_of_a_png_is_read(tmp_path, deep):
    """An eXIf chunk after IDAT (allowed by the PNG spec) still turns the photo and is kept."""
    if deep:
        pytest.importorskip("cv2")
    stored = deep_samples(12, 16, 3) if deep else photo_pixels(12, 16)
    plain = encode(stored, None, "PNG", None, None) if deep else None
    if not deep:
        Image.fromarray(stored).save(tmp_path / "plain.png")
        plain = (tmp_path / "plain.png").read_bytes()
    (tmp_path / "late.png").write_bytes(with_chunk_before_end(plain, b"eXIf", exif_bytes(SIDEWAYS)[len(EXIF_PREFIX):]))
    photo = read_photo(tmp_path / "late.png")
    assert photo.orientation == SIDEWAYS and np.array_equal(photo.rgb, np.rot90(stored, k=-1))
    kept = Image.Exif()
    kept.load(photo.kept.exif)
    assert kept[MAKE] == "rethined test camera" and EXIF_ORIENTATION not in kept
    with Image.open(tmp_path / "late.png") as im:
        assert shown_size(im) == (16, 12)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_a_16_bit_photo_is_read_at_16_bits(tmp_path, suffix, channels):
    import warnings

    cv2 = pytest.importorskip("cv2")
    samples = deep_samples(6, 8, channels)
    stored = samples[..., 0] if channels == 1 else samples[..., [2, 1, 0, 3][:channels]]     # OpenCV: BGR(A)
    cv2.imwrite(str(tmp_path / f"deep{suffix}"), stored)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        photo = read_photo(tmp_path / f"deep{suffix}")
    assert photo.rgb.dtype == np.uint16
    assert np.array_equal(photo.rgb, np.repeat(samples, 3, axis=-1) if channels == 1 else samples[..., :3])
    if channels == 4:
        assert np.array_equal(photo.kept.alpha, samples[..., 3])
    else:
        assert photo.kept.alpha is None


def test_without_opencv_a_16_bit_photo_is_read_at_8_bits_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(image_files, "opencv", lambda: None)
    grey = (np.arange(40 * 60).reshape(40, 60) * 27).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    with pytest.warns(ReducedDepthWarning, match="g16.png: more than 8 bits per channel, read at 8.*install OpenCV"):
        photo = read_photo(tmp_path / "g16.png")
    want = np.rint(grey / 257.0).astype(np.uint8)
    assert np.array_equal(photo.rgb, np.repeat(want[..., None], 3, axis=-1))


def test_a_float_grey_photo_is_read_at_8_bits_with_a_warning(tmp_path):
    Image.fromarray(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), "F").save(tmp_path / "f.tif")
    with pytest.warns(ReducedDepthWarning, match="f.tif: more than 8 bits per channel, read at 8"):
        photo = read_photo(tmp_path / "f.tif")
    assert photo.rgb.dtype == np.uint8 and photo.rgb[-1, -1, 0] == 255


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_photo_is_written_at_16_bits_with_its_metadata(tmp_path, suffix):
    pytest.importorskip("cv2")
    samples, icc = deep_samples(10, 14, 4, seed=1), srgb_profile()
    save_photo(tmp_path / f"out{suffix}", samples[..., :3], Kept(samples[..., 3], exif_bytes(), icc))
    back = read_photo(tmp_path / f"out{suffix}")
    assert np.array_equal(back.rgb, samples[..., :3]) and np.array_equal(back.kept.alpha, samples[..., 3])
    assert back.kept.icc == icc
    with Image.open(tmp_path / f"out{suffix}") as out:
        exif = out.getexif()
        assert out.mode == "RGBA" and out.info.get("icc_profile") == icc
        assert exif.get(MAKE) == "rethined test camera" and exif.get_ifd(EXIF_IFD).get(EXPOSURE_TIME) == 0.004
    save_photo(tmp_path / "out.webp", samples[..., :3], Kept(samples[..., 3], exif_bytes(), icc))   # 8 bits only
    with Image.open(tmp_path / "out.webp") as out:
        assert np.array_equal(np.asarray(out), to_uint8(samples)) and out.info.get("icc_profile") == icc


def test_cli_inpaints_a_16_bit_photo_at_16_bits(tmp_path, capsys):
    """A sideways 16-bit PNG with EXIF and ICC, written as a TIFF: the output is upright, 16-bit, its known samples the
    photo's, and keeps the EXIF and ICC."""
    cv2 = pytest.importorskip("cv2")
    stored, icc = deep_samples(96, 128, 3, seed=2), srgb_profile()
    (tmp_path / "p.png").write_bytes(encode(stored, None, "PNG", exif_bytes(SIDEWAYS), icc))
    Image.fromarray(box_mask(96, 128)).save(tmp_path / "m.png")              # drawn on the photo as stored
    args = ["inpaint", str(tmp_path / "p.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.tif")]
    assert main(args) in (0, None)
    assert "turned by its EXIF orientation 6" in capsys.readouterr().out
    shown, hole = np.rot90(stored, k=-1), np.rot90(box_mask(96, 128), k=-1) != 0
    result = cv2.imread(str(tmp_path / "o.tif"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert result.dtype == np.uint16 and result.shape == shown.shape
    assert np.array_equal(result[~hole], shown[~hole]) and not np.array_equal(result[hole], shown[hole])
    with Image.open(tmp_path / "o.tif") as out:
        assert out.info.get("icc_profile") == icc and out.getexif().get(MAKE) == "rethined test camera"
        assert out.getexif().get(EXIF_ORIENTATION, 1) == 1


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



def test_batch_keeps_16_bits(tmp_path):
    """`rethined batch` (local) writes a 16-bit photo's PNG output at 16 bits, its known samples the photo's."""
    cv2 = pytest.importorskip("cv2")
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir(), masks.mkdir()
    samples = deep_samples(64, 96, 3, seed=4)
    cv2.imwrite(str(images / "deep.tif"), samples[..., ::-1])
    Image.fromarray(box_mask(64, 96)).save(masks / "deep.png")
    assert main(["batch", str(images), str(masks), "-o", str(out), "--format", "png", "--device", "cpu"]) == 0
    result = cv2.imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    known = box_mask(64, 96) == 0
    assert result.dtype == np.uint16 and np.array_equal(result[known], samples[known])


def test_an_animation_is_read_as_its_first_frame_with_a_warning(tmp_path, capsys):
    frames = [Image.fromarray(photo_pixels(48, 80, seed=seed)) for seed in range(3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])      # an animated PNG
    with pytest.warns(FirstFrameWarning, match="anim.png: 3 frames, only the first is inpainted"):
        photo = read_photo(tmp_path / "anim.png")
    assert np.array_equal(photo.rgb, np.asarray(frames[0]))
    Image.fromarray(box_mask(48, 80)).save(tmp_path / "m.png")
    args = ["inpaint", str(tmp_path / "anim.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")]
    assert main(args) in (0, None)
    assert "warning: anim.png: 3 frames, only the first is inpainted" in capsys.readouterr().err


def test_dilate_grows_the_mask_of_inpaint_and_batch(tmp_path, capsys):
    """--dilate N fills the mask grown by N px (a square of side 2N + 1 about each mask pixel) in `rethined inpaint`
    and in `rethined batch`, and keeps every pixel beyond it."""
    from rethined_engine.video.masks import dilate

    pixels, mask = photo_pixels(64, 96, seed=5), box_mask(64, 96)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    grown = dilate(mask != 0, 3)
    args = ["inpaint", str(tmp_path / "p.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png"), "--dilate", "3"]
    assert main(args) in (0, None)
    assert "(grown by 3 px)" in capsys.readouterr().out
    result = np.asarray(Image.open(tmp_path / "o.png"))
    assert np.array_equal(result[~grown], pixels[~grown])
    ring = grown & (mask == 0)
    assert (result[ring] != pixels[ring]).any(axis=-1).mean() > 0.9          # the ring is filled too
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    Image.fromarray(pixels).save(images / "p.png")
    Image.fromarray(mask).save(masks / "p.png")
    batch = ["batch", str(images), str(masks), "-o", str(tmp_path / "out"), "--dilate", "3", "--device", "cpu"]
    assert main(batch) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "p.png")), result)
    with pytest.raises(SystemExit, match="dilate: expected a whole number of pixels >= 0, got -1"):
        main(args[:-1] + ["-1"])


def test_a_heic_photo_without_the_plugin_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "pillow_heif", None)            # as if pillow-heif were not installed
    (tmp_path / "p.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    Image.fromarray(box_mask(48, 80)).save(tmp_path / "m.png")
    with pytest.raises(SystemExit, match="p.heic: HEIC/HEIF photos need the pillow-heif plugin"):
        main(["inpaint", str(tmp_path / "p.heic"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")])


def test_a_heic_photo_is_read_through_pillow_heif(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    y, x = np.mgrid[0:48, 0:80]
    pixels = np.stack([x * 3, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)     # smooth: what HEVC keeps
    with_heif = Image.fromarray(pixels)
    exif = with_heif.getexif()
    exif[MAKE] = "rethined test camera"
    pillow_heif.from_pillow(with_heif).save(tmp_path / "p.heic", exif=exif.tobytes(), quality=95)
    photo = read_photo(tmp_path / "p.heic")
    assert photo.rgb.shape == pixels.shape and np.abs(photo.rgb.astype(int) - pixels).mean() < 3
    kept = Image.Exif()
    kept.load(photo.kept.exif)
    assert kept.get(MAKE) == "rethined test camera"
