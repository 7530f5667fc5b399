"""Sources of more than 8 bits per component: the known pixels keep their depth, the hole carries the 8-bit fill.

Clips are written here with PyAV: 16-bit RGB (ffv1 rgb48le) and 10-bit YUV (ffv1 / libx264 yuv420p10le), 96x64,
smooth gradients whose low bits vary (what an 8-bit pipeline would lose)."""
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from rethined_engine import Engine  # noqa: E402
from rethined_engine.cli import main  # noqa: E402
from rethined_engine.distributed.video_segments import inpaint_video_segments  # noqa: E402
from rethined_engine.video import LOSSLESS, EncodeSettings, inpaint_video  # noqa: E402
from rethined_engine.video.known_pixels import (  # noqa: E402
    LEVEL_16_PER_8,
    _block_any,
    is_deep,
    keep_source_samples,
    one_component_per_plane,
    output_pixel_format,
    plane_samples,
    put_back,
    to_uint8,
)

WIDTH, HEIGHT, FRAMES, FPS = 96, 64, 6, 12
LUMA_TOLERANCE = 1     # 10-bit codes: YUV -> 16-bit RGB -> YUV with the same matrix (measured: 1, on 0.03 % of pixels)
EXACT_LUMA_SHARE = 0.99  # of the known pixels' luma codes returned unchanged (measured 0.9997)


def deep_frames(n=FRAMES):
    """(H, W, 3) uint16 gradients without an edge (what chroma subsampling keeps) that move each frame, every low bit
    in use."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    return [np.stack([x * 501 + y * 97 + i * 311, y * 901 + x * 53 + i * 97, (x + y) * 331 + i * 301], axis=-1)
            .astype(np.uint16) for i in range(n)]


def write_deep(path, frames, codec, pix_fmt):
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, pix_fmt
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le").reformat(format=pix_fmt)
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))


def decoded(path, format="rgb48le"):
    """Every frame of path as an array in `format`, and the stream's pixel format."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return ([f.to_ndarray(format=format, src_color_range=f.color_range) for f in frames],
                container.streams.video[0].codec_context.pix_fmt)


def planes(path):
    """Every frame of path as to_ndarray gives its planes (4:2:0: (H * 3 / 2, W), luma above chroma)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray() for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def engine():
    return Engine(device="cpu")


@pytest.fixture(scope="module")
def mask():
    hole = np.zeros((HEIGHT, WIDTH), bool)
    hole[20:44, 30:66] = True
    return hole


@pytest.fixture(scope="module")
def rgb16_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("deep") / "rgb16.mkv"
    write_deep(path, deep_frames(), "ffv1", "rgb48le")
    return path


@pytest.fixture(scope="module")
def yuv10_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("deep") / "yuv10.mkv"
    write_deep(path, deep_frames(), "ffv1", "yuv420p10le")
    return path


def test_default_pixel_formats_follow_the_source_depth():
    x264 = ["yuv420p", "yuv422p", "yuv420p10le", "yuv422p10le", "gray"]
    assert output_pixel_format("libx264", x264, "yuv420p") == "yuv420p"
    assert output_pixel_format("libx264", x264, None) == "yuv420p"
    assert output_pixel_format("libx264", x264, "yuv422p10le") == "yuv422p10le"    # the source's own, if taken
    assert output_pixel_format("libx264", x264, "gray") == "gray"
    assert output_pixel_format("libx264", x264, "yuv444p12le") == "yuv420p10le"
    assert output_pixel_format("libx264", x264, "bgr0") == "yuv420p"
    assert output_pixel_format("ffv1", ["bgr0", "rgb48le", "yuv420p"], "yuv420p") == "bgr0"       # ffv1: RGB
    assert output_pixel_format("ffv1", ["bgr0", "rgb48le", "yuv420p"], "gbrp16le") == "rgb48le"
    assert output_pixel_format("prores_ks", ["yuv422p10le", "yuv444p10le"], "yuv420p") == "yuv422p10le"
    assert output_pixel_format("x", ["cuda", "yuv444p", "yuv444p12le"], "p010le") == "yuv444p12le"
    assert output_pixel_format("dpx", ["gray", "rgba", "gray16le", "rgba64le", "rgb48le"], "rgb48be") == "rgb48le"
    assert output_pixel_format("bmp", ["bgra", "bgr24", "gray"], "yuv420p") == "bgr24"      # colour, no alpha first
    assert output_pixel_format("x", ["gray", "rgba"], "yuv420p") == "rgba"
    with pytest.raises(ValueError, match="encode.pix_fmt: libvpx-vp9 takes no format of 10 or more bits"):
        output_pixel_format("libvpx-vp9", ["yuv420p", "gbrp"], "yuv420p10le")
    assert [is_deep(f) for f in ("yuv420p", "nv12", "bgr0", "yuv420p10le", "p010le", "gbrp16le", None)] == [
        False, False, False, True, True, True, False]
    assert EncodeSettings().pixel_format("yuv420p10le") == "yuv420p10le"
    assert EncodeSettings(pix_fmt="yuv444p").pixel_format("yuv420p10le") == "yuv444p"
    assert LOSSLESS.pixel_format("yuv420p") == "bgr0" and LOSSLESS.pixel_format("yuv420p10le") == "rgb48le"


def test_plane_layouts_and_the_blocks_a_hole_reaches():
    assert [one_component_per_plane(f) for f in ("yuv420p", "yuv422p10le", "gbrp16le", "gray", "nv12", "p010le",
                                                 "bgr0", "rgb24", "yuv420p10be")] == [True] * 4 + [False] * 5
    hole = np.zeros((5, 7), bool)
    hole[2, 3] = hole[4, 6] = True
    assert np.array_equal(_block_any(hole, (5, 7), (1, 1)), hole)
    expected = np.zeros((3, 4), bool)
    expected[1, 1] = expected[2, 3] = True          # 2 x 2 blocks; the odd last row and column repeat
    assert np.array_equal(_block_any(hole, (3, 4), (2, 2)), expected)


@pytest.mark.parametrize("pix_fmt, size", [("yuv420p", (64, 96)), ("yuv444p", (63, 95)), ("yuv422p10le", (64, 95)),
                                           ("gbrp16le", (31, 47)), ("yuva420p", (64, 96))])
def test_keep_source_samples_replaces_exactly_the_samples_no_hole_pixel_reaches(pix_fmt, size):
    rng = np.random.default_rng(1)
    frame, source = av.VideoFrame(size[1], size[0], pix_fmt), av.VideoFrame(size[1], size[0], pix_fmt)
    for f in (frame, source):
        for i in range(len(f.planes)):
            samples = plane_samples(f, i)
            samples[:] = rng.integers(0, 1024, samples.shape)
    before = [plane_samples(frame, i).copy() for i in range(len(frame.planes))]
    hole = np.zeros(size, bool)
    hole[5:17, 9:30] = True
    hole[size[0] - 3:, size[1] - 2:] = True            # at the odd edge
    keep_source_samples(frame, source, hole)
    for i, old in enumerate(before):
        out, src = plane_samples(frame, i), plane_samples(source, i)
        if i == 3:                                       # yuva420p's alpha: the source's everywhere
            assert np.array_equal(out, src)
            continue
        block = (-(-size[0] // out.shape[0]), -(-size[1] // out.shape[1]))
        reached = np.array([[hole[y * block[0]:(y + 1) * block[0], x * block[1]:(x + 1) * block[1]].any()
                             for x in range(out.shape[1])] for y in range(out.shape[0])])
        assert np.array_equal(out[~reached], src[~reached]) and np.array_equal(out[reached], old[reached])
    empty = np.zeros(size, bool)
    keep_source_samples(frame, source, empty)
    assert all(np.array_equal(plane_samples(frame, i), plane_samples(source, i)) for i in range(len(frame.planes)))


def test_to_uint8_rounds_to_the_nearest_level_and_put_back_keeps_the_known_pixels():
    levels = np.arange(65536, dtype=np.uint16)
    assert np.array_equal(to_uint8(levels), np.round(levels / LEVEL_16_PER_8).astype(np.uint8))
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (8, 10, 3), dtype=np.uint16)
    output = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    hole = rng.random((8, 10)) < 0.4
    out = put_back(rgb16, output, hole)
    assert out.dtype == np.uint16 and np.array_equal(out[~hole], rgb16[~hole])
    assert np.array_equal(out[hole], output[hole].astype(np.uint16) * LEVEL_16_PER_8)
    for dtype in (np.float16, np.float32, np.float64):                   # VapourSynth's RGBH / RGBS, ComfyUI's IMAGE
        floats = rng.random((8, 10, 3)).astype(dtype)
        assert np.array_equal(to_uint8(floats), np.clip(np.rint(floats.astype(np.float32) * 255), 0, 255))
        out = put_back(floats, output, hole)
        assert out.dtype == dtype and np.array_equal(out[~hole], floats[~hole])
        assert np.array_equal(out[hole], (output[hole] / np.float32(255)).astype(dtype))
    assert to_uint8(output) is output


@pytest.mark.parametrize("temporal", ["off", "on"])
def test_a_16bit_source_keeps_its_known_pixels_bit_for_bit(rgb16_clip, engine, mask, tmp_path, temporal):
    out = tmp_path / "out.mkv"
    summary = inpaint_video(rgb16_clip, mask * 255, out, temporal=temporal, engine=engine, encode=LOSSLESS)
    source, _ = decoded(rgb16_clip)
    got, pix_fmt = decoded(out)
    assert summary.frames == FRAMES and len(got) == FRAMES and is_deep(pix_fmt)
    for frame, result in zip(source, got):
        assert np.array_equal(result[~mask], frame[~mask])
        assert np.all(result[mask] % LEVEL_16_PER_8 == 0)      # the fill: 8-bit levels at 16 bits
        if temporal == "off":
            expected = engine.inpaint(to_uint8(frame), mask)
            assert np.array_equal(result[mask], expected[mask].astype(np.uint16) * LEVEL_16_PER_8)


def known_chroma(mask):
    """The 4:2:0 chroma samples whose 2 x 2 pixels are all known."""
    return ~mask.reshape(HEIGHT // 2, 2, WIDTH // 2, 2).any(axis=(1, 3))


@pytest.mark.parametrize("source_format, overlap_io", [("yuv420p", False), ("yuv420p10le", False),
                                                       ("yuv420p10le", True)])
def test_the_source_format_keeps_every_known_sample(engine, mask, tmp_path, source_format, overlap_io):
    source, out = tmp_path / "source.mkv", tmp_path / "out.mkv"
    write_deep(source, deep_frames(), "ffv1", source_format)
    inpaint_video(source, mask, out, temporal="on", engine=engine, overlap_io=overlap_io,
                  encode=EncodeSettings(codec="ffv1", pix_fmt=source_format, crf=None, preset=None))
    chroma = known_chroma(mask)
    for before, after in zip(planes(source), planes(out)):
        assert np.array_equal(after[:HEIGHT][~mask], before[:HEIGHT][~mask])
        for plane in range(2):
            a, b = (x[HEIGHT:].reshape(2, HEIGHT // 2, WIDTH // 2)[plane] for x in (after, before))
            assert np.array_equal(a[chroma], b[chroma])
            assert not np.array_equal(a[~chroma], b[~chroma])     # the hole's are the fill's


def test_another_10bit_format_keeps_the_codes_within_a_step(yuv10_clip, engine, mask, tmp_path):
    deep, shallow = tmp_path / "deep.mkv", tmp_path / "shallow.mkv"
    inpaint_video(yuv10_clip, mask, deep, temporal="off", engine=engine,
                  encode=EncodeSettings(codec="ffv1", pix_fmt="yuv444p10le", crf=None, preset=None))
    inpaint_video(yuv10_clip, mask, shallow, temporal="off", engine=engine,
                  encode=EncodeSettings(codec="ffv1", pix_fmt="yuv444p", crf=None, preset=None))
    with av.open(str(deep)) as container:
        lumas = [plane_samples(f, 0) for f in container.decode(video=0)]    # 4:4:4 luma from the 16-bit RGB
    for source, result in zip(planes(yuv10_clip), lumas):
        luma = np.abs(source[:HEIGHT].astype(int) - result)[~mask]
        assert luma.max() <= LUMA_TOLERANCE and (luma == 0).mean() >= EXACT_LUMA_SHARE
    with av.open(str(shallow)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv444p"    # asked for 8 bits: 8 bits


@pytest.mark.parametrize("source_format, written", [("yuv420p10le", "yuv420p10le"), ("yuv422p10le", "yuv422p10le"),
                                                     ("gbrp10le", "yuv420p10le")])
def test_the_default_encoding_keeps_the_source_format_or_its_depth(engine, mask, tmp_path, source_format, written):
    source = tmp_path / "source.mkv"
    write_deep(source, deep_frames(2), "ffv1", source_format)
    inpaint_video(source, mask, tmp_path / "out.mp4", temporal="off", engine=engine,
                  encode=EncodeSettings(preset="ultrafast"))
    with av.open(str(tmp_path / "out.mp4")) as container:
        context = container.streams.video[0].codec_context
        assert context.name == "h264" and context.pix_fmt == written        # libx264 takes no gbrp10le


def test_segments_of_a_16bit_source_equal_the_sequential_run(rgb16_clip, mask, tmp_path):
    sequential, segmented = tmp_path / "sequential.mkv", tmp_path / "segmented.mkv"
    inpaint_video(rgb16_clip, mask, sequential, temporal="off", engine=Engine(device="cpu"), encode=LOSSLESS)
    inpaint_video_segments(rgb16_clip, mask, segmented, seconds=0.25, temporal="off", engine={"device": "cpu"})
    expected, _ = decoded(sequential)
    got, pix_fmt = decoded(segmented)
    assert is_deep(pix_fmt) and len(got) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_cli_lossless_keeps_a_16bit_source(rgb16_clip, mask, tmp_path, capsys):
    import PIL.Image

    mask_file = tmp_path / "mask.png"
    PIL.Image.fromarray((mask * 255).astype(np.uint8)).save(mask_file)
    out = tmp_path / "out.mkv"
    assert main(["video", str(rgb16_clip), str(mask_file), "-o", str(out), "--temporal", "off", "--lossless",
                 "--device", "cpu"]) == 0
    source, _ = decoded(rgb16_clip)
    got, pix_fmt = decoded(out)
    assert is_deep(pix_fmt) and all(np.array_equal(a[~mask], b[~mask]) for a, b in zip(got, source))
