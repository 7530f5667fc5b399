"""`rethined video IN MASK -o OUT` on a tiny clip written with PyAV."""
import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av")

from rethined_engine import Engine  # noqa: E402
from rethined_engine.cli import main  # noqa: E402
from test_video_files import audio_packets, box_mask, decoded, write_clip  # noqa: E402


@pytest.fixture()
def inputs(tmp_path):
    """An 8-frame ffv1 clip with audio and a box mask image."""
    frames = write_clip(tmp_path / "in.mkv", n=8)
    Image.fromarray(box_mask()).save(tmp_path / "mask.png")
    return tmp_path / "in.mkv", tmp_path / "mask.png", frames


def test_video_lossless_range_matches_engine_with_progress(inputs, tmp_path, capsys):
    src, mask, frames = inputs
    out = tmp_path / "out.mkv"
    assert main(["video", str(src), str(mask), "-o", str(out), "--temporal", "off", "--start", "2",
                 "--end", "0.5s", "--lossless", "--device", "cpu"]) == 0
    got, _ = decoded(out)
    engine = Engine(device="cpu")
    assert len(got) == 4  # frames 2..5: index >= 2 and time < 0.5 s at 12 fps
    for index, frame in zip(range(2, 6), got):
        assert np.array_equal(frame, engine.inpaint(frames[index], box_mask()))
    assert audio_packets(out)
    captured = capsys.readouterr()
    assert "frames 4" in captured.err and "fps" in captured.err
    assert f"wrote {out}: 4 frames" in captured.out and "audio copied" in captured.out


def test_video_exclude_reaches_every_frame(inputs, tmp_path, capsys):
    from test_video_files import right_band

    src, mask, frames = inputs
    Image.fromarray(right_band()).save(tmp_path / "exclude.png")
    out = tmp_path / "out.mkv"
    assert main(["video", str(src), str(mask), "-o", str(out), "--temporal", "off", "--end", "3", "--lossless",
                 "--exclude", str(tmp_path / "exclude.png"), "--device", "cpu"]) == 0
    engine = Engine(device="cpu")
    for frame, got in zip(frames, decoded(out)[0]):
        assert np.array_equal(got, engine.inpaint(frame, box_mask(), right_band()))
    with pytest.raises(SystemExit, match="exclude: file not found"):
        main(["video", str(src), str(mask), "-o", str(out), "--exclude", str(tmp_path / "missing.png"),
              "--device", "cpu"])


def test_video_x264_options_and_no_audio(inputs, tmp_path, capsys):
    src, mask, _ = inputs
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), str(mask), "-o", str(out), "--temporal", "off", "--end", "3", "--crf", "30",
                 "--preset", "ultrafast", "--dilate", "2", "--no-audio", "--device", "cpu"]) == 0
    import av

    with av.open(str(out)) as container:
        assert not container.streams.audio and container.streams.video[0].codec_context.name == "h264"
        assert len(list(container.decode(video=0))) == 3
    assert "audio dropped: audio=False" in capsys.readouterr().out


def test_video_lookahead_gives_every_frame_as_the_stream_does(inputs, tmp_path, capsys):
    from rethined_engine.video import VideoConfig, VideoInpainter

    src, mask, frames = inputs
    out = tmp_path / "out.mkv"
    assert main(["video", str(src), str(mask), "-o", str(out), "--lookahead", "3", "--lossless",
                 "--device", "cpu"]) == 0
    got, _ = decoded(out)
    want = VideoInpainter(Engine(device="cpu"), "on", VideoConfig(lookahead=3)).process_batch(np.stack(frames),
                                                                                              box_mask())
    assert len(got) == len(frames) and all(np.array_equal(a, b) for a, b in zip(got, want))
    assert f"wrote {out}: {len(frames)} frames" in capsys.readouterr().out


@pytest.mark.parametrize("extra,match", [
    (["--lookahead", "-1"], "--lookahead: expected >= 0, got -1"),
    (["--lossless", "--crf", "20"], "--lossless sets the codec and pixel format; leave out --crf"),
    (["--start", "1.5"], "--start: expected a frame index"),
    (["--end", "0"], "frames: the end"),
    (["--pix-fmt", "nope"], "encode.pix_fmt: libx264 cannot encode 'nope'"),
    (["--preset", "fastest"], "encode: the encoder libx264 rejects the options"),
])
def test_video_bad_options_exit_with_a_message(inputs, tmp_path, extra, match):
    src, mask, _ = inputs
    with pytest.raises(SystemExit, match=match):
        main(["video", str(src), str(mask), "-o", str(tmp_path / "out.mp4"), "--temporal", "off",
              "--device", "cpu", *extra])
    assert not (tmp_path / "out.mp4").exists()


def test_video_bad_inputs_exit_with_a_message_and_leave_no_file(inputs, tmp_path):
    src, mask, _ = inputs
    out = tmp_path / "out.mp4"
    with pytest.raises(SystemExit, match="error: src: file not found"):
        main(["video", str(tmp_path / "missing.mp4"), str(mask), "-o", str(out), "--device", "cpu"])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(SystemExit, match="error: mask: .* gives a 10x10 mask for frame 0, the video is 96x64"):
        main(["video", str(src), str(tmp_path / "small.png"), "-o", str(out), "--temporal", "off",
              "--device", "cpu"])
    assert sorted(os.listdir(tmp_path)) == ["in.mkv", "mask.png", "small.png"]


def test_video_help_names_the_mask_rules(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["video", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("--temporal", "--start", "--crf", "--lossless", "--hold-last-mask", "shorter than"):
        assert phrase in text


def test_video_style_and_settings_reach_the_engine(inputs, tmp_path):
    src, mask, frames = inputs
    out = tmp_path / "out.mkv"
    assert main(["video", str(src), str(mask), "-o", str(out), "--temporal", "off", "--end", "2", "--lossless",
                 "--device", "cpu", "--style", "smooth", "--set", "seam_sigma=0"]) == 0
    got, _ = decoded(out)
    engine = Engine(device="cpu", style="smooth", seam_sigma=0.0)
    assert len(got) == 2 and all(np.array_equal(g, engine.inpaint(f, box_mask())) for g, f in zip(got, frames))
    assert not np.array_equal(got[0], Engine(device="cpu").inpaint(frames[0], box_mask()))
