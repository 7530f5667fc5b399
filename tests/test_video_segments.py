"""Video segments: keyframe-aligned plans, seek-and-decode equal to a sequential decode, parts joined without
re-encoding, and the segmented output against `inpaint_video` (temporal off: bit-exact; on: known pixels, and
bit-exact with the whole past replayed)."""
from fractions import Fraction

import numpy as np
import pytest

from rethined_engine import Engine
from rethined_engine.distributed.video_segments import (
    Segment,
    _segment_frames,
    frame_table,
    inpaint_video_segments,
    plan_segments,
)
from rethined_engine.video.files import LOSSLESS, inpaint_video

av = pytest.importorskip("av")

FPS, FRAMES, GOP = 10, 23, 5          # keyframes at 0, 5, 10, ...: 2.3 s


def write_x264(path, frames, gop=GOP, bframes=2):
    """An H.264 clip with a keyframe every `gop` frames and B-frames (decode order differs from presentation)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        video.options = {"g": str(gop), "keyint_min": str(gop), "bf": str(bframes), "sc_threshold": "0",
                         "crf": "20", "preset": "veryfast"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A textured pan of FRAMES frames at 64 x 96, and a static box mask."""
    rng = np.random.default_rng(0)
    world = (rng.random((64, 96 + 2 * FRAMES, 3)) * 255).astype(np.uint8)
    world = np.repeat(np.repeat(world[::4, ::4], 4, 0), 4, 1)[:64]
    frames = [np.ascontiguousarray(world[:, 2 * i:2 * i + 96]) for i in range(FRAMES)]
    path = tmp_path_factory.mktemp("clip") / "pan.mp4"
    write_x264(path, frames)
    mask = np.zeros((64, 96), bool)
    mask[20:44, 30:62] = True
    return path, mask


def decode_all(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_plan_starts_every_segment_on_a_keyframe_and_covers_every_frame(clip):
    path, _ = clip
    pts, keyframe, _, fps = frame_table(path)
    assert len(pts) == FRAMES and fps == FPS and [i for i, k in enumerate(keyframe) if k] == list(range(0, FRAMES, GOP))
    segments = plan_segments(path, seconds=0.7, warmup=3, lookahead=4)
    # boundaries at 0.7, 1.4 and 2.1 s: the keyframes at or after them are frames 10 (1.0 s) and 15 (1.5 s)
    assert [(s.first, s.stop) for s in segments] == [(0, 10), (10, 15), (15, 23)]
    assert [s.warm for s in segments] == [0, 7, 12] and [s.end for s in segments] == [14, 19, 23]
    assert [s.seek_pts for s in segments] == [pts[0], pts[5], pts[10]]
    with pytest.raises(ValueError, match="^seconds: expected"):
        plan_segments(path, seconds=0)
    with pytest.raises(ValueError, match="^warmup: expected"):
        plan_segments(path, seconds=1, warmup=-1)
    with pytest.raises(ValueError, match="^lookahead: expected"):
        plan_segments(path, seconds=1, lookahead=-1)


def test_seeking_to_each_segment_decodes_exactly_the_sequential_frames(clip):
    path, _ = clip
    sequential = decode_all(path)
    pts = frame_table(path)[0]
    for segment in plan_segments(path, seconds=0.5, warmup=2, lookahead=3):
        decoded = list(_segment_frames(path, segment, pts))
        assert [index for index, *_ in decoded] == list(range(segment.warm, segment.end))
        for index, _, rgb, rgb16 in decoded:
            assert np.array_equal(rgb, sequential[index]) and rgb16 is None, index


def test_segments_without_temporal_state_equal_the_sequential_run(clip, tmp_path):
    path, mask = clip
    engine = Engine(device="cpu")
    inpaint_video(path, mask, tmp_path / "sequential.mkv", temporal="off", engine=engine, encode=LOSSLESS, audio=False)
    segments = inpaint_video_segments(path, mask, tmp_path / "segmented.mkv", seconds=0.5, temporal="off",
                                      engine={"device": "cpu"})
    assert len(segments) == 5
    expected, got = decode_all(tmp_path / "sequential.mkv"), decode_all(tmp_path / "segmented.mkv")
    assert len(got) == FRAMES and all(np.array_equal(a, b) for a, b in zip(expected, got))
    with av.open(str(tmp_path / "segmented.mkv")) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    assert times == pytest.approx([i / FPS for i in range(FRAMES)], abs=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segmented.mkv", "sequential.mkv"]   # no parts left


def test_segments_with_temporal_state_keep_known_pixels_and_write_each_frame_once(clip, tmp_path):
    path, mask = clip
    inpaint_video_segments(path, mask, tmp_path / "out.mkv", seconds=1.0, temporal="on", engine={"device": "cpu"},
                           warmup=3)
    source, got = decode_all(path), decode_all(tmp_path / "out.mkv")
    assert len(got) == FRAMES
    for frame, filled in zip(source, got):
        assert np.array_equal(filled[~mask], frame[~mask])


def test_segments_replaying_the_past_and_reading_ahead_equal_the_sequential_run(clip, tmp_path):
    """With the whole past replayed (warmup past the first frame) and the lookahead's frames decoded past each
    segment's end, every frame sees what one sequential run shows it: the outputs are equal bit for bit, also
    right before a segment's end, where a segment without those frames would see fewer later frames."""
    from rethined_engine.video import VideoConfig

    path, mask = clip
    inpaint_video(path, mask, tmp_path / "sequential.mkv", engine=Engine(device="cpu"), encode=LOSSLESS,
                  audio=False, config=VideoConfig(lookahead=3))
    inpaint_video_segments(path, mask, tmp_path / "segmented.mkv", seconds=0.5, engine={"device": "cpu"},
                           warmup=FRAMES, lookahead=3)
    expected, got = decode_all(tmp_path / "sequential.mkv"), decode_all(tmp_path / "segmented.mkv")
    assert len(got) == FRAMES and all(np.array_equal(a, b) for a, b in zip(expected, got))


def test_a_segment_past_the_end_is_an_error(clip):
    path, _ = clip
    pts = frame_table(path)[0]
    with pytest.raises(ValueError, match="ended at frame 23"):
        list(_segment_frames(path, Segment(0, 20, 30, 20, 30, pts[20]), pts))


def test_cli_video_segments_writes_the_same_file_and_refuses_encoder_options(clip, tmp_path, capsys):
    from PIL import Image

    from rethined_engine.cli import main

    path, mask = clip
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    main(["video", str(path), str(tmp_path / "mask.png"), "-o", str(tmp_path / "cli.mkv"), "--segments", "1",
          "--temporal", "off", "--device", "cpu"])
    assert "23 frames in 3 segments" in capsys.readouterr().out
    inpaint_video_segments(path, mask, tmp_path / "api.mkv", seconds=1, temporal="off", engine={"device": "cpu"})
    assert all(np.array_equal(a, b) for a, b in zip(decode_all(tmp_path / "cli.mkv"), decode_all(tmp_path / "api.mkv")))
    exclude = np.zeros(mask.shape, np.uint8)
    exclude[:, : mask.shape[1] // 3] = 255
    Image.fromarray(exclude).save(tmp_path / "exclude.png")
    main(["video", str(path), str(tmp_path / "mask.png"), "-o", str(tmp_path / "excluded.mkv"), "--segments", "1",
          "--temporal", "off", "--exclude", str(tmp_path / "exclude.png"), "--device", "cpu"])
    engine = Engine(device="cpu")
    sources = decode_all(path)
    assert all(np.array_equal(got, engine.inpaint(frame, mask, exclude))
               for got, frame in zip(decode_all(tmp_path / "excluded.mkv"), sources))
    with pytest.raises(SystemExit, match="leave out --crf"):
        main(["video", str(path), str(tmp_path / "mask.png"), "-o", str(tmp_path / "x.mkv"), "--segments", "1",
              "--crf", "18"])
    with pytest.raises(SystemExit, match="--lookahead: expected >= 0, got -2"):
        main(["video", str(path), str(tmp_path / "mask.png"), "-o", str(tmp_path / "x.mkv"), "--segments", "1",
              "--lookahead", "-2"])
