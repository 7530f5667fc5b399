"""`rethined video - MASK -o - --raw WxH --pix-fmt rgb24` between two ffmpeg processes (imageio-ffmpeg's binary).

The clip: 8 frames at 96x64 panning over the shipped photo, ffv1 bgr0 (lossless RGB) with a 440 Hz AAC track,
written with PyAV. The reference: `VideoInpainter(temporal=...)` on the frames as PyAV decodes them; the
pipeline's ffv1 output must equal it bit for bit, and carry the source's audio packets unchanged."""
import io
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CLIP_FPS as FPS, write_video
from rethined_engine.cli import SAMPLE_IMAGE, main
from rethined_engine.video.raw_pipe import RawFormat, ShortReadError, read_frame

av = pytest.importorskip("av")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

WIDTH, HEIGHT, FRAMES = 96, 64, 8
PAN_STEP = (2, 3)  # px per frame, down and right
CLI = f"{sys.executable} -m rethined_engine.cli"
X264_KNOWN_PIXEL_TOLERANCE = 4.0  # mean |difference| (of 255) of known pixels, in.mp4 against out.mp4 (one x264
# encode at its default crf 23; measured 1.72 on the photo pan)
REPO = Path(__file__).resolve().parents[1]


def photo_pan() -> list[np.ndarray]:
    """FRAMES crops of the shipped photo, the window moving PAN_STEP per frame: (HEIGHT, WIDTH, 3) uint8 each."""
    photo = np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB"))
    return [np.ascontiguousarray(photo[200 + i * PAN_STEP[0]:200 + i * PAN_STEP[0] + HEIGHT,
                                       400 + i * PAN_STEP[1]:400 + i * PAN_STEP[1] + WIDTH]) for i in range(FRAMES)]


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def moving_masks() -> list[np.ndarray]:
    """A 20x28 box moving 3 px right per frame: (HEIGHT, WIDTH) bool each."""
    masks = []
    for i in range(FRAMES):
        mask = np.zeros((HEIGHT, WIDTH), bool)
        mask[22:42, 20 + 3 * i:48 + 3 * i] = True
        masks.append(mask)
    return masks


def run_shell(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", "set -o pipefail\n" + script], cwd=cwd, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipe") / "clip.mkv"
    write_video(path, photo_pan())
    return path


@pytest.mark.parametrize("temporal, mask_kind", [("on", "still"), ("off", "video")])
def test_ffmpeg_pipeline_equals_the_video_inpainter_bit_for_bit(engine, ffmpeg, clip, tmp_path, temporal, mask_kind):
    from rethined_engine.video import VideoInpainter

    if mask_kind == "still":
        masks = [moving_masks()[0]] * FRAMES
        mask_path = tmp_path / "mask.png"
        Image.fromarray(masks[0].astype(np.uint8) * 255).save(mask_path)
    else:
        masks = moving_masks()
        mask_path = tmp_path / "masks.mkv"
        write_video(mask_path, [np.repeat(m[..., None].astype(np.uint8) * 255, 3, axis=-1) for m in masks],
                   pix_fmt="gray", audio=False)
    out = tmp_path / "out.mkv"
    weights = engine.weights_path
    result = run_shell(
        f"{ffmpeg} -v error -i {clip} -f rawvideo -pix_fmt rgb24 - "
        f"| {CLI} video - {mask_path} -o - --raw {WIDTH}x{HEIGHT} --pix-fmt rgb24 --temporal {temporal} "
        f"--device cpu --weights {weights} "
        f"| {ffmpeg} -v error -f rawvideo -pix_fmt rgb24 -s {WIDTH}x{HEIGHT} -r {FPS} -i - -i {clip} "
        f"-map 0:v -map 1:a? -c:v ffv1 -pix_fmt bgr0 -c:a copy {out}", tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote {FRAMES} frames {WIDTH}x{HEIGHT} rgb24" in result.stderr

    inpainter = VideoInpainter(engine, temporal)
    expected = [inpainter.process(frame, mask) for frame, mask in zip(decoded(clip), masks)]
    got = decoded(out)
    assert len(got) == FRAMES
    for i, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_array_equal(g, e, err_msg=f"frame {i}")
    assert audio_payloads(out) == audio_payloads(clip)


def test_a_short_last_frame_is_a_one_line_error(engine, ffmpeg, clip, tmp_path):
    mask_path = tmp_path / "mask.png"
    Image.fromarray(moving_masks()[0].astype(np.uint8) * 255).save(mask_path)
    cut = RawFormat(WIDTH, HEIGHT).frame_bytes * 3 // 2  # one frame and a half
    result = run_shell(
        f"{ffmpeg} -v error -i {clip} -f rawvideo -pix_fmt rgb24 - | head -c {cut} "
        f"| {CLI} video - {mask_path} -o - --raw {WIDTH}x{HEIGHT} --device cpu --weights {engine.weights_path} "
        "> frames.rgb", tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"error: input: frame 1 is cut short: {cut - RawFormat(WIDTH, HEIGHT).frame_bytes} of" in result.stderr
    assert (tmp_path / "frames.rgb").stat().st_size == RawFormat(WIDTH, HEIGHT).frame_bytes  # frame 0 went out


def test_a_reader_that_goes_away_is_a_one_line_error(engine, ffmpeg, clip, tmp_path):
    mask_path = tmp_path / "mask.png"
    Image.fromarray(moving_masks()[0].astype(np.uint8) * 255).save(mask_path)
    result = run_shell(
        f"{ffmpeg} -v error -i {clip} -f rawvideo -pix_fmt rgb24 - "
        f"| {CLI} video - {mask_path} -o - --raw {WIDTH}x{HEIGHT} --device cpu --weights {engine.weights_path} "
        "| head -c 100 > /dev/null; echo \"stages ${PIPESTATUS[*]}\" >&2", tmp_path)
    stages = result.stderr.strip().splitlines()[-1].split()[1:]
    assert stages[1] != "0", result.stderr
    assert "Traceback" not in result.stderr
    assert "error: output: the reader closed the pipe" in result.stderr


def test_pipe_frames_passes_each_frame_its_exclusion(engine):
    from rethined_engine.video import VideoInpainter
    from rethined_engine.video.masks import StillMask
    from rethined_engine.video.raw_pipe import pipe_frames

    frames = photo_pan()[:3]
    height, width = frames[0].shape[:2]
    mask, exclude = moving_masks()[0], np.zeros((height, width), bool)
    exclude[:, : width // 3] = True
    out = io.BytesIO()
    count = pipe_frames(VideoInpainter(engine, "off"), StillMask(mask), RawFormat(width, height),
                        io.BytesIO(b"".join(f.tobytes() for f in frames)), out,
                        excludes=StillMask(exclude, name="exclude"))
    got = np.frombuffer(out.getvalue(), np.uint8).reshape(count, height, width, 3)
    assert count == 3
    for frame, filled in zip(frames, got):
        np.testing.assert_array_equal(filled, engine.inpaint(frame, mask, exclude))


def test_rgb48le_frames_keep_their_known_pixels_at_16_bits(engine):
    from rethined_engine.video import VideoInpainter
    from rethined_engine.video.known_pixels import LEVEL_16_PER_8, to_uint8
    from rethined_engine.video.masks import StillMask
    from rethined_engine.video.raw_pipe import pipe_frames

    rng = np.random.default_rng(2)
    frames = [(f.astype(np.uint16) * LEVEL_16_PER_8 + rng.integers(-128, 128, f.shape)).clip(0, 65535)
              .astype("<u2") for f in photo_pan()[:3]]                   # low bits in use
    height, width = frames[0].shape[:2]
    mask = moving_masks()[0]
    out = io.BytesIO()
    raw = RawFormat.parse(f"{width}x{height}", "rgb48le")
    count = pipe_frames(VideoInpainter(engine, "off"), StillMask(mask), raw,
                        io.BytesIO(b"".join(f.tobytes() for f in frames)), out)
    got = np.frombuffer(out.getvalue(), "<u2").reshape(count, height, width, 3)
    assert count == 3 and raw.frame_bytes == width * height * 6
    for frame, filled in zip(frames, got):
        np.testing.assert_array_equal(filled[~mask], frame[~mask])
        expected = engine.inpaint(to_uint8(frame), mask)[mask].astype(np.uint16) * LEVEL_16_PER_8
        np.testing.assert_array_equal(filled[mask], expected)


def test_read_frame_splits_a_stream_into_frames_and_flags_a_cut():
    raw = RawFormat.parse("5x3")
    data = np.random.default_rng(0).integers(0, 256, raw.frame_bytes * 2 + 7, dtype=np.uint8).tobytes()
    stream = io.BufferedReader(io.BytesIO(data), buffer_size=4)  # reads come back in pieces
    first, second = read_frame(stream, raw, 0), read_frame(stream, raw, 1)
    np.testing.assert_array_equal(first, np.frombuffer(data[:45], np.uint8).reshape(3, 5, 3))
    np.testing.assert_array_equal(second, np.frombuffer(data[45:90], np.uint8).reshape(3, 5, 3))
    with pytest.raises(ShortReadError, match="frame 2 is cut short: 7 of 45 bytes"):
        read_frame(stream, raw, 2)
    assert read_frame(io.BytesIO(b""), raw, 0) is None


@pytest.mark.parametrize("size, pix_fmt, message", [("96x", "rgb24", "raw: expected WIDTHxHEIGHT"),
                                                     ("0x64", "rgb24", "raw: expected WIDTHxHEIGHT"),
                                                     ("96x64", "yuv420p", "pix_fmt: expected one of")])
def test_raw_format_errors_name_the_option(size, pix_fmt, message):
    with pytest.raises(ValueError, match=message):
        RawFormat.parse(size, pix_fmt)


@pytest.mark.parametrize("argv, message", [
    (["video", "in.mp4", "m.png", "-o", "-", "--raw", "96x64"], "give '-' as INPUT and '-o -'"),
    (["video", "-", "m.png", "-o", "-", "--raw", "96x64", "--lossless"], "--lossless apply to video files"),
    (["video", "-", "m.png", "-o", "-", "--raw", "96x64", "--pix-fmt", "nv12"], "--pix_fmt: expected one of"),
])
def test_raw_mode_rejects_file_options_before_loading_the_engine(argv, message):
    with pytest.raises(SystemExit, match=message):
        main(argv)


def doc_block(section: str, language: str) -> str:
    """The first ```language block under the '## section' heading of docs/integrations.md."""
    text = (REPO / "docs" / "integrations.md").read_text()
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    return body.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_documented_pipeline_runs_as_written(ffmpeg, tmp_path):
    """docs/integrations.md's ffmpeg recipe, only the programs' paths filled in: x264 in, x264 out, the shipped
    weights; the audio must come through unchanged and the known pixels within x264's loss."""
    with av.open(str(tmp_path / "in.mp4"), "w") as container:  # x264 + AAC, as a camera or an editor writes
        video = container.add_stream("libx264", rate=FPS, options={"crf": "10"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i, rgb in enumerate(photo_pan()):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    write_video(tmp_path / "sound.mkv", photo_pan())  # the audio track, muxed into in.mp4 below
    subprocess.run([ffmpeg, "-v", "error", "-i", str(tmp_path / "in.mp4"), "-i", str(tmp_path / "sound.mkv"),
                    "-map", "0:v", "-map", "1:a", "-c", "copy", str(tmp_path / "in_audio.mp4")], check=True)
    (tmp_path / "in_audio.mp4").replace(tmp_path / "in.mp4")
    mask = moving_masks()[0]
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    script = doc_block("ffmpeg", "bash").replace("ffmpeg ", f"{ffmpeg} ").replace("rethined ", f"{CLI} ")
    result = run_shell(script, tmp_path)
    assert result.returncode == 0, result.stderr
    got, source = decoded(tmp_path / "out.mp4"), decoded(tmp_path / "in.mp4")
    assert len(got) == FRAMES and got[0].shape == (HEIGHT, WIDTH, 3)
    assert audio_payloads(tmp_path / "out.mp4") == audio_payloads(tmp_path / "in.mp4")
    known_error = np.mean([np.abs(g.astype(int) - s)[~mask].mean() for g, s in zip(got, source)])
    assert known_error < X264_KNOWN_PIXEL_TOLERANCE
