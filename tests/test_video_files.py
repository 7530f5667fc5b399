"""`inpaint_video` on tiny clips written here with PyAV (96x64, 10-16 frames, a 440 Hz AAC track).

The per-frame reference is `Engine.inpaint` on the frames as PyAV decodes them; with the lossless
output (ffv1 bgr0) the written frames must equal it bit for bit."""
import os
import warnings
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from rethined_engine import Engine  # noqa: E402
from rethined_engine.video import LOSSLESS, EncodeSettings, inpaint_video  # noqa: E402
from rethined_engine.video.files import FrameRange, parse_position  # noqa: E402
from rethined_engine.video.masks import MaskTooShortError, dilate  # noqa: E402

from conftest import CLIP_AUDIO_FRAME as AUDIO_FRAME, CLIP_FPS as FPS, CLIP_SAMPLE_RATE as SAMPLE_RATE, write_video  # noqa: E402

WIDTH, HEIGHT = 96, 64
X264_KNOWN_PIXEL_TOLERANCE = 3.0  # mean |difference| (of 255), crf 18 re-encode of smooth frames (measured
# about 1.8 with the BT.709 matrix both ways, about 8 when the output is read with BT.601)


def smooth_frames(n, size):
    """Colour gradients that move 4 px per frame: what a lossy codec keeps well, saturated enough to show
    a wrong colour matrix."""
    y, x = np.mgrid[0:size[0], 0:size[1]]
    return [np.stack([x * 255 // (size[1] - 1), y * 255 // (size[0] - 1), (x + y + 4 * i) * 2 % 256], axis=-1)
            .astype(np.uint8) for i in range(n)]


def write_clip(path, n=12, size=(HEIGHT, WIDTH), codec="ffv1", pix_fmt="bgr0", audio=True, seed=0, rotation=0,
               colour=None, smooth=False):
    """Write random (or `smooth_frames`) frames plus a sine AAC track to `path`; returns the frames as
    (H, W, 3) uint8 RGB."""
    rng = np.random.default_rng(seed)
    frames = smooth_frames(n, size) if smooth else [rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                                                    for _ in range(n)]
    write_video(path, frames, codec, pix_fmt, audio, rotation, colour)
    return frames


def decoded(path, **reformat):
    """Every video frame of `path` as (H, W, 3) uint8 RGB, and their presentation times in seconds."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [f.to_ndarray(format="rgb24", **reformat) for f in frames], [float(f.time) for f in frames]


def audio_packets(path):
    """(pts in seconds, payload bytes) of every audio packet of `path`."""
    with av.open(str(path)) as container:
        return [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(audio=0) if p.dts is not None]


def box_mask(top=20, left=30, height=20, width=30):
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[top:top + height, left:left + width] = 255
    return mask


def moving_mask(index, frame=None):
    """A box that moves 3 px right per source frame index (so a misaligned index shows)."""
    return box_mask(left=10 + 3 * index)


@pytest.fixture(scope="module")
def engine():
    return Engine(device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A lossless ffv1 clip with audio, and its frames."""
    path = tmp_path_factory.mktemp("clip") / "clip.mkv"
    return path, write_clip(path)


def test_ffv1_bgr0_round_trip_is_bit_exact(clip):
    path, frames = clip
    got, times = decoded(path)
    assert len(got) == len(frames) and all(np.array_equal(a, b) for a, b in zip(got, frames))
    assert times == pytest.approx([i / FPS for i in range(len(frames))], abs=1e-3)


@pytest.mark.parametrize("overlap_io", [False, True])
def test_lossless_output_equals_per_frame_engine_and_keeps_audio(clip, engine, tmp_path, overlap_io):
    path, frames = clip
    mask = box_mask()
    summary = inpaint_video(path, mask, tmp_path / "out.mkv", temporal="off", engine=engine, encode=LOSSLESS,
                            overlap_io=overlap_io)
    got, times = decoded(tmp_path / "out.mkv")
    assert summary.frames == len(frames) and summary.audio == "copied" and summary.video_fps == FPS
    assert len(got) == len(frames)
    for frame, out in zip(frames, got):
        assert np.array_equal(out, engine.inpaint(frame, mask))
    assert times == pytest.approx(decoded(path)[1], abs=1e-3)
    assert audio_packets(tmp_path / "out.mkv") == audio_packets(path)  # copied: same bytes, same times


def test_libx264rgb_qp0_is_lossless_too(clip, engine, tmp_path):
    path, frames = clip
    lossless_h264 = EncodeSettings(codec="libx264rgb", pix_fmt="rgb24", crf=None, preset="ultrafast",
                                   options={"qp": "0"})
    inpaint_video(path, box_mask(), tmp_path / "out.mkv", temporal="off", engine=engine, encode=lossless_h264,
                  frames=(0, 3))
    got, _ = decoded(tmp_path / "out.mkv")
    assert len(got) == 3 and all(np.array_equal(out, engine.inpaint(frame, box_mask()))
                                 for frame, out in zip(frames, got))


def test_x264_default_keeps_timing_colour_tags_and_rotation(tmp_path, engine):
    bt709 = dict(colorspace=1, color_primaries=1, color_trc=1, color_range=1)  # BT.709, limited range
    src = tmp_path / "in.mp4"
    write_clip(src, n=10, codec="libx264", pix_fmt="yuv420p", rotation=90, colour=bt709, smooth=True)
    mask = box_mask()
    inpaint_video(src, mask, tmp_path / "out.mp4", temporal="off", engine=engine)
    with av.open(str(tmp_path / "out.mp4")) as out, av.open(str(src)) as ref:
        out_stream, ref_stream = out.streams.video[0], ref.streams.video[0]
        assert out_stream.codec_context.name == "h264" and out_stream.codec_context.pix_fmt == "yuv420p"
        assert out_stream.average_rate == ref_stream.average_rate
        first_out, first_ref = next(out.decode(out_stream)), next(ref.decode(ref_stream))
        for tag in ("colorspace", "color_range", "color_primaries", "color_trc", "rotation"):
            assert getattr(first_out, tag) == getattr(first_ref, tag), tag
    # the BT.709 matrix both ways: known pixels decoded with BT.709 match the source's BT.709 decode
    source_frames, source_times = decoded(src, src_colorspace="itu709", src_color_range="MPEG")
    out_frames, out_times = decoded(tmp_path / "out.mp4", src_colorspace="itu709", src_color_range="MPEG")
    assert out_times == pytest.approx(source_times, abs=1e-3)
    known = mask == 0
    for frame, out in zip(source_frames, out_frames):
        assert np.abs(out[known].astype(int) - frame[known]).mean() < X264_KNOWN_PIXEL_TOLERANCE
    assert [t for t, _ in audio_packets(tmp_path / "out.mp4")] == [t for t, _ in audio_packets(src)]


def test_frame_range_trims_video_and_audio_and_indexes_masks_by_source_frame(clip, engine, tmp_path):
    path, frames = clip
    first, stop = 3, 9
    summary = inpaint_video(path, moving_mask, tmp_path / "cut.mkv", temporal="off", engine=engine,
                            encode=LOSSLESS, frames=(first, stop))
    got, times = decoded(tmp_path / "cut.mkv")
    assert summary.frames == stop - first == len(got)
    for index, out in zip(range(first, stop), got):
        assert np.array_equal(out, engine.inpaint(frames[index], moving_mask(index)))
    assert times == pytest.approx([i / FPS for i in range(stop - first)], abs=1e-3)
    packet_s = AUDIO_FRAME / SAMPLE_RATE
    source_audio = {payload: t for t, payload in audio_packets(path)}
    kept = audio_packets(tmp_path / "cut.mkv")
    start_s, end_s = first / FPS, stop / FPS
    expected = sorted(t for t in source_audio.values() if start_s <= t < end_s)
    assert [t for t, _ in kept] == pytest.approx([t - start_s for t in expected], abs=1e-3)
    assert 0 <= kept[0][0] < packet_s and all(source_audio[payload] >= start_s for _, payload in kept)


def test_time_range_keeps_frames_whose_time_lies_in_it(clip, engine, tmp_path):
    path, frames = clip
    t0, t1 = 0.2, 0.5  # frames at 3/12 .. 5/12 s
    inpaint_video(path, box_mask(), tmp_path / "cut.mkv", temporal="off", engine=engine, encode=LOSSLESS,
                  seconds=(t0, t1))
    got, _ = decoded(tmp_path / "cut.mkv")
    kept = [i for i in range(len(frames)) if t0 <= i / FPS < t1]
    assert len(got) == len(kept) == 3
    assert np.array_equal(got[0], engine.inpaint(frames[kept[0]], box_mask()))


def test_mask_folder_video_and_callable_give_the_same_masks(clip, engine, tmp_path):
    from PIL import Image

    path, frames = clip
    folder = tmp_path / "masks"
    folder.mkdir()
    for i in range(len(frames)):  # names sort by number, not by text: m_2 before m_10
        rgb = np.repeat(moving_mask(i)[..., None], 3, axis=-1)  # colour images become one channel
        Image.fromarray(rgb).save(folder / f"m_{i}.png")
    mask_video = tmp_path / "masks.mkv"
    with av.open(str(mask_video), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "gray"
        for i in range(len(frames)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(moving_mask(i), format="gray")))
        container.mux(stream.encode(None))
    outputs = {}
    for name, mask in (("callable", moving_mask), ("folder", folder), ("video", mask_video)):
        inpaint_video(path, mask, tmp_path / f"{name}.mkv", temporal="off", engine=engine, encode=LOSSLESS,
                      frames=(0, 4))
        outputs[name] = decoded(tmp_path / f"{name}.mkv")[0]
    for i, frame in enumerate(outputs["callable"]):
        assert np.array_equal(frame, engine.inpaint(frames[i], moving_mask(i)))
        assert np.array_equal(outputs["folder"][i], frame) and np.array_equal(outputs["video"][i], frame)


def right_band(index=None, frame=None):
    """(HEIGHT, WIDTH) uint8 exclusion: the right third, 255."""
    exclude = np.zeros((HEIGHT, WIDTH), np.uint8)
    exclude[:, 2 * WIDTH // 3:] = 255
    return exclude


def test_exclusions_in_every_form_reach_the_stream(clip, engine, tmp_path):
    """An exclusion as an array (off: each frame `engine.inpaint(frame, mask, exclude)`), and as a folder, a
    mask video or a function (on: the frames `VideoInpainter.push(frame, mask, exclude)` gives); one too short or
    of another size is refused, naming exclude."""
    from PIL import Image

    from rethined_engine.video import VideoConfig, VideoInpainter

    path, frames = clip
    inpaint_video(path, box_mask(), tmp_path / "off.mkv", temporal="off", engine=engine, encode=LOSSLESS,
                  frames=(0, 3), exclude=right_band())
    for frame, out in zip(frames, decoded(tmp_path / "off.mkv")[0]):
        assert np.array_equal(out, engine.inpaint(frame, box_mask(), right_band()))
    folder = tmp_path / "excludes"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(right_band()).save(folder / f"{i}.png")
    band_video = tmp_path / "band.mkv"
    with av.open(str(band_video), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "gray"
        for _ in range(4):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(right_band(), format="gray")))
        container.mux(stream.encode(None))
    config = VideoConfig(lookahead=0)
    want = VideoInpainter(engine, "on", config).process_batch(np.stack(frames[:4]), box_mask(), right_band())
    for name, exclude in (("folder", folder), ("video", band_video), ("callable", right_band)):
        inpaint_video(path, box_mask(), tmp_path / f"{name}.mkv", engine=engine, encode=LOSSLESS, frames=(0, 4),
                      config=config, exclude=exclude)
        got = decoded(tmp_path / f"{name}.mkv")[0]
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), name
    with pytest.raises(MaskTooShortError, match=r"^exclude: .*\(4 images\) has no mask for frame 4"):
        inpaint_video(path, box_mask(), tmp_path / "short.mkv", engine=engine, encode=LOSSLESS, exclude=folder)
    with pytest.raises(ValueError, match="^exclude: the mask array gives a 8x8 mask"):
        inpaint_video(path, box_mask(), tmp_path / "small.mkv", engine=engine, encode=LOSSLESS,
                      exclude=np.zeros((8, 8), np.uint8))
    assert not (tmp_path / "short.mkv").exists() and not (tmp_path / "small.mkv").exists()


@pytest.mark.parametrize("radius", [0, 1, 4])
def test_dilate_matches_opencv(radius):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(radius)
    mask = rng.random((37, 53)) < 0.05
    mask[0, 0] = mask[-1, -1] = True  # corners: the border must not wrap around
    expected = cv2.dilate(mask.astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)) > 0
    assert np.array_equal(dilate(mask, radius), expected)


def test_dilated_mask_is_used(clip, engine, tmp_path):
    path, frames = clip
    inpaint_video(path, box_mask(), tmp_path / "d.mkv", temporal="off", engine=engine, encode=LOSSLESS,
                  frames=(0, 1), dilate=2)
    grown = dilate(box_mask() > 0, 2)
    assert np.array_equal(decoded(tmp_path / "d.mkv")[0][0], engine.inpaint(frames[0], grown))


def test_short_mask_folder_raises_before_writing_or_holds_the_last_mask(clip, engine, tmp_path):
    from PIL import Image

    path, frames = clip
    folder = tmp_path / "masks"
    folder.mkdir()
    held = 3
    for i in range(held):
        Image.fromarray(moving_mask(i)).save(folder / f"{i:03d}.png")
    counted = tmp_path / "counted.mp4"  # MP4 states its frame count: the check comes before any decoding
    write_clip(counted, n=12, codec="libx264", pix_fmt="yuv420p", audio=False)
    with pytest.raises(MaskTooShortError, match="3 masks, the video needs 12"):
        inpaint_video(counted, folder, tmp_path / "out.mkv", temporal="off", engine=engine, encode=LOSSLESS)
    with pytest.raises(MaskTooShortError, match=r"\(3 images\) has no mask for frame 3"):  # Matroska does not
        inpaint_video(path, folder, tmp_path / "out.mkv", temporal="off", engine=engine, encode=LOSSLESS)
    assert sorted(os.listdir(tmp_path)) == ["counted.mp4", "masks"]
    with pytest.warns(UserWarning, match="last mask is held"):
        inpaint_video(path, folder, tmp_path / "out.mkv", temporal="off", engine=engine, encode=LOSSLESS,
                      frames=(0, 5), hold_last_mask=True)
    got = decoded(tmp_path / "out.mkv")[0]
    assert np.array_equal(got[4], engine.inpaint(frames[4], moving_mask(held - 1)))


def test_short_mask_video_of_unknown_length_fails_mid_stream_and_leaves_nothing(clip, engine, tmp_path):
    path, frames = clip
    mask_video = tmp_path / "short.mkv"  # Matroska states no frame count: the end shows while decoding
    write_clip(mask_video, n=4, audio=False)
    (tmp_path / "out.mkv").write_bytes(b"an older result")
    with pytest.raises(MaskTooShortError, match="no mask for frame 4"):
        inpaint_video(path, mask_video, tmp_path / "out.mkv", temporal="off", engine=engine, encode=LOSSLESS)
    assert sorted(os.listdir(tmp_path)) == ["out.mkv", "short.mkv"]
    assert (tmp_path / "out.mkv").read_bytes() == b"an older result"


@pytest.mark.parametrize("overlap_io", [False, True])
def test_interrupt_removes_the_temporary_file(clip, engine, tmp_path, overlap_io):
    path, _ = clip
    calls = []

    def interrupt(done, total):
        calls.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        inpaint_video(path, box_mask(), tmp_path / "out.mkv", temporal="off", engine=engine, progress=interrupt,
                      overlap_io=overlap_io)
    assert calls == [(1, None), (2, None)]  # Matroska states no frame count
    assert os.listdir(tmp_path) == []


def test_progress_counts_frames_against_the_known_total(tmp_path, engine):
    src = tmp_path / "in.mp4"
    write_clip(src, n=10, codec="libx264", pix_fmt="yuv420p", audio=False)
    calls = []
    summary = inpaint_video(src, box_mask(), tmp_path / "out.mp4", temporal="off", engine=engine,
                            frames=(2, None), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 8) for i in range(1, 9)] and summary.audio == "none"
    assert os.stat(tmp_path / "out.mp4").st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_frame_size_change_mid_stream_is_an_error(tmp_path, engine):
    parts = [tmp_path / "a.ts", tmp_path / "b.ts"]
    write_clip(parts[0], n=3, codec="libx264", pix_fmt="yuv420p", audio=False)
    write_clip(parts[1], n=3, size=(48, 64), codec="libx264", pix_fmt="yuv420p", audio=False)
    joined = tmp_path / "joined.ts"  # MPEG-TS files concatenate byte by byte
    joined.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    with pytest.raises(ValueError, match="frame 3 is 64x48, the first frame 96x64"):
        inpaint_video(joined, box_mask(), tmp_path / "out.mp4", temporal="off", engine=engine)
    assert not (tmp_path / "out.mp4").exists()


def test_bad_inputs_name_the_argument(clip, engine, tmp_path):
    path, _ = clip
    run = lambda src=path, mask=box_mask(), dst=tmp_path / "out.mkv", **kw: inpaint_video(  # noqa: E731
        src, mask, dst, temporal="off", engine=engine, **kw)
    with pytest.raises(FileNotFoundError, match="src: file not found"):
        run(src=tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 64)
    with pytest.raises(ValueError, match="src: cannot read"):
        run(src=tmp_path / "junk.mp4")
    with pytest.raises(ValueError, match="mask: the mask array gives a 48x32 mask for frame 0, the video is 96x64"):
        run(mask=np.ones((32, 48), np.uint8))
    with pytest.raises(FileNotFoundError, match="mask: file not found"):
        run(mask=tmp_path / "missing.png")
    with pytest.raises(ValueError, match="dst: .* is the input video"):
        run(dst=path)
    with pytest.raises(ValueError, match="dst: .* is a folder"):
        run(dst=tmp_path)
    with pytest.raises(ValueError, match="dst: the folder"):
        run(dst=tmp_path / "no" / "out.mkv")
    with pytest.raises(ValueError, match="dst: FFmpeg knows no container"):
        run(dst=tmp_path / "out.unknownsuffix")
    with pytest.raises(ValueError, match="encode.crf: the encoder ffv1 has no crf option"):
        run(encode=EncodeSettings(codec="ffv1", pix_fmt="bgr0"))
    with pytest.raises(ValueError, match="encode.pix_fmt: libx264 cannot encode 'bgr0'"):
        run(encode=EncodeSettings(pix_fmt="bgr0"))
    with pytest.raises(ValueError, match="encode: the encoder libx264 rejects the options"):
        run(encode=EncodeSettings(preset="fastest"))
    with pytest.raises(ValueError, match="frames: the end"):
        run(frames=(5, 5))
    with pytest.raises(ValueError, match="src: .* has no video frames in the selected range"):
        run(frames=(50, None))
    empty = tmp_path / "empty.avi"
    with av.open(str(empty), "w") as container:  # a video stream without frames
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "bgr0"
        container.start_encoding()
    with pytest.raises(ValueError, match="src: .* has no video frames$"):
        run(src=empty)
    odd = tmp_path / "odd.mkv"
    write_clip(odd, n=2, size=(63, 95), audio=False)
    with pytest.raises(ValueError, match="yuv420p needs a width divisible by 2, the video is 95x63"):
        run(src=odd, mask=np.zeros((63, 95), np.uint8), dst=tmp_path / "odd.mp4")
    assert sorted(os.listdir(tmp_path)) == ["empty.avi", "junk.mp4", "odd.mkv"]


def test_parse_position_and_expected_frames():
    assert parse_position("120") == (120, None) and parse_position("2.5s") == (None, 2.5)
    for bad in ("-3", "2.5", "s", "1e3s"):
        with pytest.raises(ValueError, match="frame index"):
            parse_position(bad)
    assert FrameRange.of((2, 20), None).expected_frames(12, Fraction(12)) == 10
    assert FrameRange.of(None, (0.5, None)).expected_frames(None, Fraction(12)) is None
    assert FrameRange.of(None, (0.5, 1.0)).expected_frames(None, Fraction(12)) == 6


@pytest.mark.parametrize("lookahead, device", [(0, "host"), (3, "host"), (None, "host"), (3, "engine")],
                         ids=["0", "3", "default", "3_device_path"])
def test_temporal_on_streams_every_frame_in_order(clip, engine, tmp_path, lookahead, device):
    """Every frame comes out once, at its own time, as the stream gives it (with a lookahead, the last frames
    come from the flush at the end; by default FILE_LOOKAHEAD), with the known pixels bit-exact; on the host
    path and on the device path (which a CUDA engine takes)."""
    from rethined_engine.video import VideoConfig, VideoInpainter
    from rethined_engine.video.files import FILE_LOOKAHEAD

    path, frames = clip
    config = VideoConfig(lookahead=FILE_LOOKAHEAD if lookahead is None else lookahead, temporal_device=device)
    done = []
    summary = inpaint_video(path, moving_mask, tmp_path / "on.mkv", temporal="on", engine=engine, encode=LOSSLESS,
                            config=None if lookahead is None else config,
                            progress=lambda n, total: done.append(n))
    got, times = decoded(tmp_path / "on.mkv")
    assert summary.frames == len(got) == len(frames) and done == list(range(1, len(frames) + 1))
    assert times == pytest.approx(decoded(path)[1], abs=1e-3)
    want = VideoInpainter(engine, "on", config).process_batch(np.stack(frames),
                                                             np.stack([moving_mask(i) for i in range(len(frames))]))
    for i, (frame, out) in enumerate(zip(frames, got)):
        np.testing.assert_array_equal(out, want[i])
        known = moving_mask(i) == 0
        assert np.array_equal(out[known], frame[known])


def test_audio_the_output_container_cannot_hold_is_dropped_with_a_warning(clip, engine, tmp_path):
    path, _ = clip
    vp9 = EncodeSettings(codec="libvpx-vp9", crf=40, preset=None, options={"b": "0"})
    with pytest.warns(UserWarning, match="the audio stream 1 is dropped .*webm.* cannot hold aac"):
        summary = inpaint_video(path, box_mask(), tmp_path / "out.webm", temporal="off", engine=engine,
                                encode=vp9, frames=(0, 2))
    assert summary.audio.startswith("dropped") and summary.frames == 2
    with av.open(str(tmp_path / "out.webm")) as container:
        assert not container.streams.audio and container.streams.video[0].codec_context.name == "vp9"


def test_pipeline_threads_keep_order_and_carry_exceptions():
    from rethined_engine.video.pipeline_threads import Drain, Prefetch

    def numbers(fail_at=None):
        for i in range(20):
            if i == fail_at:
                raise RuntimeError(f"failed at {i}")
            yield i

    assert list(Prefetch(numbers())) == list(range(20))
    seen = []
    with pytest.raises(RuntimeError, match="failed at 7"):
        for i in Prefetch(numbers(fail_at=7)):
            seen.append(i)
    assert seen == list(range(7))
    early = Prefetch(numbers())
    next(iter(early))
    early.close()  # returns although the consumer stopped reading

    done = []
    drain = Drain(done.append)
    for i in range(20):
        drain.put(i)
    drain.finish()
    assert done == list(range(20))

    def fail_on_three(item):
        if item == 3:
            raise RuntimeError("encoder failed")

    drain = Drain(fail_on_three)
    with pytest.raises(RuntimeError, match="encoder failed"):
        for i in range(100):
            drain.put(i)
    drain.abort()


@pytest.mark.parametrize("rotation", [90, -90])
def test_a_mask_drawn_on_a_turned_video_as_shown_is_turned_back(tmp_path, engine, rotation):
    """A portrait phone video (display matrix a quarter turn): a still mask and a per-frame function drawn on the
    frames as players show them (WxH swapped) give the output of the same masks as stored."""
    src = tmp_path / "turned.mkv"
    write_clip(src, n=4, rotation=rotation, audio=False)
    shown = np.rot90(box_mask(), round(rotation / 90))           # the display turns the frame counterclockwise
    assert shown.shape == (WIDTH, HEIGHT)
    outputs = {}
    for name, mask in [("stored", box_mask()), ("shown", shown), ("shown_fn", lambda i, f: shown)]:
        dst = tmp_path / f"{name}.mkv"
        inpaint_video(src, mask, dst, engine=engine, temporal="off", encode=LOSSLESS)
        outputs[name] = decoded(dst)[0]
    for name in ("shown", "shown_fn"):
        assert all(np.array_equal(a, b) for a, b in zip(outputs[name], outputs["stored"])), name
    with pytest.raises(ValueError, match="masks must match the frames"):
        inpaint_video(src, np.zeros((WIDTH + 1, HEIGHT), np.uint8), tmp_path / "bad.mkv", engine=engine,
                      temporal="off", encode=LOSSLESS)


@pytest.mark.parametrize("suffix,codec", [(".ts", "h264"), (".webm", "vp9"), (".ogv", "vp8")])
def test_a_container_that_cannot_hold_libx264_gets_its_own_encoder(clip, engine, tmp_path, suffix, codec):
    """With no codec asked for, MPEG-TS takes libx264 (FFmpeg's muxer says so; its list of codecs is empty), WebM and
    Ogg their own default encoders; every frame is written."""
    path, _ = clip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # the AAC track WebM and Ogg cannot hold
        summary = inpaint_video(path, box_mask(), tmp_path / f"out{suffix}", temporal="off", engine=engine,
                                frames=(0, 3))
    assert summary.frames == 3
    with av.open(str(tmp_path / f"out{suffix}")) as container:
        assert container.streams.video[0].codec_context.name == codec
        assert len(list(container.decode(video=0))) == 3


@pytest.mark.parametrize("source_pix_fmt", ["bgr0", "rgb48le"])
def test_gif_gets_a_palette_of_its_own_for_every_frame(engine, tmp_path, source_pix_fmt):
    """.gif with no pixel format asked for, from an 8-bit or a 16-bit source: pal8 with each frame's own 256
    colours (FFmpeg's palettegen and paletteuse), every frame, a few levels from the lossless output where GIF's
    fixed 3-3-2 palette (rgb8) is over twice as far off."""
    src = tmp_path / "smooth.mkv"
    write_clip(src, n=4, smooth=True, pix_fmt=source_pix_fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # the AAC track GIF cannot hold
        summary = inpaint_video(src, box_mask(), tmp_path / "out.gif", temporal="off", engine=engine)
    inpaint_video(src, box_mask(), tmp_path / "ref.mkv", temporal="off", engine=engine, encode=LOSSLESS, audio=False)
    with av.open(str(tmp_path / "out.gif")) as container:
        assert container.streams.video[0].codec_context.name == "gif"
    gif, ref = decoded(tmp_path / "out.gif")[0], decoded(tmp_path / "ref.mkv")[0]
    assert summary.frames == len(gif) == len(ref) == 4
    fixed = [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="rgb8").to_ndarray(format="rgb24")
             for f in ref]
    own = [np.abs(a.astype(int) - b).mean() for a, b in zip(gif, ref)]
    three_three_two = [np.abs(a.astype(int) - b).mean() for a, b in zip(fixed, ref)]
    assert max(own) < 8 and 2 * max(own) < min(three_three_two)          # measured: about 4.9 against 16.7


def test_an_encoder_without_crf_named_alone_drops_the_default_crf():
    from rethined_engine.video.command import _encode_args

    class Args:
        codec, pix_fmt, crf, preset, lossless = "ffv1", None, None, None, False

    assert _encode_args(Args()) == EncodeSettings(codec="ffv1", crf=None, preset=None)
    Args.crf = 20                                   # named on purpose: kept, and `codec_options` says ffv1 has none
    with pytest.raises(ValueError, match="encode.crf: the encoder ffv1 has no crf option"):
        _encode_args(Args()).codec_options()
    Args.codec = "x264"                             # not an FFmpeg encoder: a one-line error
    with pytest.raises(SystemExit, match="error: --codec: encode.codec: no FFmpeg encoder named 'x264'"):
        _encode_args(Args())
