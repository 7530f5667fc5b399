"""A range that starts late is decoded from the keyframe at or before its first frame, with every frame keeping its
source index: an H.264 clip with a keyframe every 5 frames and B-frames (decode order differs from presentation),
23 frames at 10 fps, 64 x 96, written with PyAV."""
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from rethined_engine import Engine  # noqa: E402
from rethined_engine.video import LOSSLESS, inpaint_video  # noqa: E402
from rethined_engine.video import files, seek  # noqa: E402
from rethined_engine.video.sequences import VideoSource  # noqa: E402

FPS, FRAMES, GOP, HEIGHT, WIDTH = 10, 23, 5, 64, 96


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("seek") / "clip.mp4"
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"g": str(GOP), "keyint_min": str(GOP), "bf": "2", "sc_threshold": "0", "crf": "20",
                         "preset": "veryfast"}
        for i in range(FRAMES):       # each frame a different shade: a wrong index shows
            rgb = np.stack([(x * 2 + i * 10) % 256, (y * 3 + i * 7) % 256, np.full_like(x, i * 11)], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


@pytest.fixture(scope="module")
def engine():
    return Engine(device="cpu")


def decoded(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24", src_color_range=f.color_range) for f in container.decode(video=0)]


def hole():
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[20:40, 30:60] = True
    return mask


def run(clip, engine, tmp_path, **kwargs):
    """inpaint_video with a mask callable that records the (index, frame) pairs it is asked for."""
    seen = []

    def mask(index, frame):
        seen.append((index, frame.copy()))
        return hole()

    summary = inpaint_video(clip, mask, tmp_path / "out.mkv", temporal="off", engine=engine, encode=LOSSLESS,
                            audio=False, **kwargs)
    return summary, seen, decoded(tmp_path / "out.mkv")


def test_the_plan_seeks_to_the_keyframe_before_a_late_range(clip):
    opener = VideoSource(clip).open
    assert seek.seek_plan(opener, None, None) is None and seek.seek_plan(opener, 0, 0.0) is None
    assert seek.seek_plan(opener, 3, None) is None                  # within the first group of pictures
    plan = seek.seek_plan(opener, 12, None)
    assert plan.first_kept == 12 and plan.ranks[plan.pts] == 10   # the keyframe at or before frame 12
    assert sorted(plan.ranks.values()) == list(range(len(plan.ranks)))
    assert seek.seek_plan(opener, None, 1.25).first_kept == 13 and seek.seek_plan(opener, 40, None) is None


@pytest.mark.parametrize("kwargs, indices", [({"frames": (12, 16)}, range(12, 16)),
                                             ({"seconds": (1.25, 1.75)}, range(13, 18)),
                                             ({"frames": (7, None), "seconds": (1.0, None)}, range(10, FRAMES))])
def test_a_late_range_keeps_every_frame_its_index(clip, engine, tmp_path, monkeypatch, kwargs, indices):
    plans = []
    monkeypatch.setattr(files, "seek_plan", lambda *args: plans.append(seek.seek_plan(*args)) or plans[-1])
    whole = decoded(clip)
    summary, seen, got = run(clip, engine, tmp_path, **kwargs)
    assert plans[0] is not None and plans[0].ranks[plans[0].pts] == 10     # decoding started at frame 10
    assert [index for index, _ in seen] == list(indices) and summary.frames == len(indices) == len(got)
    for (index, frame), out in zip(seen, got):
        assert np.array_equal(frame, whole[index])                # the frame the mask was asked for is that frame
        assert np.array_equal(out, engine.inpaint(whole[index], hole()))


def test_a_seek_that_lands_past_the_range_decodes_from_the_start(clip, engine, tmp_path, monkeypatch):
    plan = seek.seek_plan(VideoSource(clip).open, 12, None)
    late = next(pts for pts, rank in plan.ranks.items() if rank == 15)     # a keyframe after frame 12
    monkeypatch.setattr(files, "seek_plan", lambda *args: seek.SeekPlan(late, plan.ranks, 12))
    whole = decoded(clip)
    _, seen, got = run(clip, engine, tmp_path, frames=(12, 14))
    assert [index for index, _ in seen] == [12, 13]
    assert all(np.array_equal(frame, whole[index]) for index, frame in seen)


def test_a_mask_video_seeks_to_the_first_mask_asked_for(tmp_path, monkeypatch):
    from rethined_engine.video import masks

    path = tmp_path / "masks.mp4"
    with av.open(str(path), "w") as container:       # mask i: a bar 4 px wide at x = 4 i
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"g": str(GOP), "keyint_min": str(GOP), "bf": "2", "sc_threshold": "0", "qp": "0"}
        for i in range(FRAMES):
            bar = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            bar[:, 4 * i:4 * i + 4] = 255
            frame = av.VideoFrame.from_ndarray(bar, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    plans = []
    monkeypatch.setattr(masks, "seek_plan", lambda *args: plans.append(seek.seek_plan(*args)) or plans[-1])
    source = masks.VideoMasks(path)
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    try:
        for index in (12, 13, 16):
            columns = np.flatnonzero(source.mask_at(index, frame).all(axis=0))
            assert columns.tolist() == list(range(4 * index, 4 * index + 4)), index
    finally:
        source.close()
    assert plans[0].ranks[plans[0].pts] == 10 and len(plans) == 1
