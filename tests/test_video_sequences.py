"""Image sequences in and out of `inpaint_video`: numbered PNG, TIFF and DPX files written here with OpenCV and
PyAV (64 x 96, 6 frames, numbered from 1001 as VFX plates are), 8- and 16-bit."""
import os
import warnings

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from conftest import write_video  # noqa: E402
from rethined_engine import Engine  # noqa: E402
from rethined_engine.cli import main  # noqa: E402
from rethined_engine.video import LOSSLESS, inpaint_video  # noqa: E402
from rethined_engine.video.known_pixels import LEVEL_16_PER_8  # noqa: E402
from rethined_engine.video.sequences import VideoSource, is_sequence, sequence_numbers  # noqa: E402

HEIGHT, WIDTH, FRAMES, FIRST = 64, 96, 6, 1001


@pytest.fixture(scope="module")
def engine():
    return Engine(device="cpu")


def hole():
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[20:44, 30:66] = True
    return mask


def plates(depth=np.uint8):
    """FRAMES gradients that move each frame, (H, W, 3) RGB of `depth` (uint16: every low bit in use)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    if depth == np.uint8:
        return [np.stack([(x * 2 + 3 * i) % 256, y * 3, (x + y + 7 * i) % 256], -1).astype(np.uint8)
                for i in range(FRAMES)]
    return [np.stack([x * 601 + y * 17 + i * 311, y * 977 + i * 97, (x + y) * 331 + i * 301], -1).astype(np.uint16)
            for i in range(FRAMES)]


def write_sequence(folder, frames, suffix=".png", first=FIRST):
    folder.mkdir(exist_ok=True)
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"plate.{first + i:04d}{suffix}"), rgb[..., ::-1])
    return folder / f"plate.%04d{suffix}"


def read_sequence(pattern, first=FIRST, count=FRAMES):
    return [cv2.imread(str(pattern).replace("%04d", f"{first + i:04d}"), cv2.IMREAD_UNCHANGED)[..., ::-1]
            for i in range(count)]


def test_patterns_and_numbers(tmp_path):
    assert is_sequence(tmp_path / "a.%04d.png") and is_sequence(tmp_path / "a_%d.tif")
    assert not is_sequence(tmp_path / "a.png") and not is_sequence(tmp_path / "a.%04d.%04d.png")
    pattern = write_sequence(tmp_path / "seq", plates()[:3], first=998)       # 0998, 0999, 1000: wider numbers too
    assert sequence_numbers(pattern) == [998, 999, 1000]
    with pytest.raises(FileNotFoundError, match="src: no file matches the sequence"):
        VideoSource.of(tmp_path / "seq" / "other.%04d.png")
    os.remove(tmp_path / "seq" / "plate.0999.png")
    with pytest.raises(ValueError, match="src: the sequence .* has no frame 999"):
        VideoSource.of(pattern)
    with pytest.raises(ValueError, match="src: .*EXR holds linear light"):
        VideoSource.of(tmp_path / "seq" / "plate.%04d.exr")
    with pytest.raises(ValueError, match="input_fps: expected frames per second > 0"):
        VideoSource.of(pattern, input_fps=0)
    (tmp_path / "clip.mkv").write_bytes(b"")
    with pytest.raises(ValueError, match="input_fps: sets the rate of an image sequence"):
        VideoSource.of(tmp_path / "clip.mkv", input_fps=25)


def test_a_png_sequence_in_and_out_keeps_its_numbers_and_known_pixels(engine, tmp_path):
    frames = plates()
    src = write_sequence(tmp_path / "in", frames)
    out = tmp_path / "out" / "clean.%04d.png"
    out.parent.mkdir()
    summary = inpaint_video(src, hole() * 255, out, temporal="off", engine=engine, input_fps=25)
    assert summary.frames == FRAMES and summary.video_fps == 25 and summary.audio == "none"
    assert sorted(os.listdir(out.parent)) == [f"clean.{FIRST + i:04d}.png" for i in range(FRAMES)]   # nothing else
    for frame, got in zip(frames, read_sequence(out)):
        assert np.array_equal(got, engine.inpaint(frame, hole()))


def test_a_16bit_tiff_range_into_dpx_keeps_depth_and_numbers(engine, tmp_path):
    frames = plates(np.uint16)
    src = write_sequence(tmp_path / "in", frames, ".tif")
    out = tmp_path / "out.%04d.dpx"
    with pytest.raises(ValueError, match="dst: .jpg files are lossy"):
        inpaint_video(src, hole(), tmp_path / "out.%04d.jpg", engine=engine, encode=LOSSLESS)
    inpaint_video(src, hole(), out, temporal="on", engine=engine, frames=(2, 5), encode=LOSSLESS)
    with av.open(str(out), format="image2", options={"start_number": str(FIRST + 2)}) as container:
        got = [f.to_ndarray(format="rgb48le") for f in container.decode(video=0)]
        assert container.streams.video[0].codec_context.pix_fmt.startswith("rgb48")
    assert len(got) == 3
    for frame, result in zip(frames[2:5], got):
        assert np.array_equal(result[~hole()], frame[~hole()])               # 16 bits, bit for bit
        assert np.all(result[hole()] % LEVEL_16_PER_8 == 0)                  # the 8-bit fill
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".dpx") == [
        f"out.{FIRST + i:04d}.dpx" for i in (2, 3, 4)]


def test_a_video_file_into_a_sequence_and_a_failure_leaves_nothing(engine, tmp_path):
    clip = tmp_path / "clip.mkv"
    write_video(clip, plates(), "ffv1", "bgr0", audio=True)                  # with an AAC track
    out = tmp_path / "frames" / "f%03d.png"
    out.parent.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                        # no warning about the audio
        summary = inpaint_video(clip, hole(), out, temporal="off", engine=engine, frames=(1, 3))
    assert summary.audio == "dropped: an image sequence holds none"
    assert sorted(os.listdir(out.parent)) == ["f001.png", "f002.png"]          # source frame indices
    (out.parent / "f001.png").write_bytes(b"keep")

    def failing(index, frame):
        if index == 2:
            raise RuntimeError("mask failed")
        return hole()

    with pytest.raises(RuntimeError, match="mask failed"):
        inpaint_video(clip, failing, out, temporal="off", engine=engine)
    assert sorted(os.listdir(out.parent)) == ["f001.png", "f002.png"]          # no partial sequence, no folder
    assert (out.parent / "f001.png").read_bytes() == b"keep"                   # an existing file untouched


def test_cli_reads_a_sequence_at_its_rate(tmp_path, capsys):
    src = write_sequence(tmp_path / "in", plates())
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), hole().astype(np.uint8) * 255)
    out = tmp_path / "out.mkv"
    assert main(["video", str(src), str(mask), "-o", str(out), "--input-fps", "24", "--temporal", "off",
                 "--lossless", "--device", "cpu"]) == 0
    assert "6 frames at 24 fps" in capsys.readouterr().out
    with av.open(str(out)) as container:
        got = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(got) == FRAMES and np.array_equal(got[0][~hole()], plates()[0][~hole()])
