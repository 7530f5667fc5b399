"""`inpaint_video` copies every audio and subtitle stream of the source, with its tags and disposition, and the
container's tags and chapters: a 1 s clip at 96x64 with two audio tracks (AAC, English, default; Opus, French,
titled) and two chapters written with PyAV, and subtitles (SubRip, German) muxed in with imageio-ffmpeg's ffmpeg
binary."""
import subprocess
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from conftest import CLIP_FPS as FPS, write_video  # noqa: E402
from rethined_engine import Engine  # noqa: E402
from rethined_engine.cli import main  # noqa: E402
from rethined_engine.video import LOSSLESS, EncodeSettings, inpaint_video  # noqa: E402

WIDTH, HEIGHT, FRAMES = 96, 64, 12
TRACKS = (("aac", "mono", {"language": "eng"}, "default"), ("libopus", "stereo", {"language": "fra",
                                                                                     "title": "commentary"}, None))
MS = Fraction(1, 1000)
SUBTITLES = "1\n00:00:00,100 --> 00:00:00,400\nHello\n\n2\n00:00:00,600 --> 00:00:00,900\nWorld\n"


@pytest.fixture(scope="module")
def engine():
    return Engine(device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The clip with two audio tracks, a container title and two chapters."""
    path = tmp_path_factory.mktemp("streams") / "clip.mkv"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(FRAMES)]
    chapters = [{"id": i + 1, "start": 500 * i, "end": 500 * (i + 1), "time_base": MS, "metadata": {"title": title}}
                for i, title in enumerate(("One", "Two"))]
    write_video(path, frames, "ffv1", "bgr0", options={"g": "1"}, tracks=list(TRACKS),    # every frame a keyframe
                tags={"title": "A film"}, chapters=chapters)
    return path


@pytest.fixture(scope="module")
def subtitled(clip, tmp_path_factory):
    """The clip with a German SubRip track muxed in (stream copy)."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    folder = tmp_path_factory.mktemp("subtitled")
    (folder / "subs.srt").write_text(SUBTITLES)
    path = folder / "subtitled.mkv"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip), "-i", str(folder / "subs.srt"),
                    "-map", "0", "-map", "1", "-c", "copy", "-metadata:s:s:0", "language=deu", str(path)], check=True)
    return path


def packets(path, kind):
    """(language, [(start in s, payload)]) of every stream of `kind` in path."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        found = {s.index: [] for s in streams}
        for packet in container.demux(*streams):
            if packet.size:
                found[packet.stream.index].append((float(packet.pts * packet.time_base), bytes(packet)))
        return [(s.metadata.get("language"), found[s.index]) for s in streams]


def test_every_audio_stream_is_copied_with_its_tags_and_disposition(clip, engine, tmp_path):
    out = tmp_path / "out.mkv"
    summary = inpaint_video(clip, np.zeros((HEIGHT, WIDTH), bool), out, temporal="off", engine=engine,
                            encode=LOSSLESS)
    assert summary.audio == "copied" and summary.subtitles == "none"
    with av.open(str(out)) as container:
        assert container.metadata.get("title") == "A film"
        audio = container.streams.audio
        assert [s.metadata.get("language") for s in audio] == ["eng", "fra"]
        assert audio[1].metadata.get("title") == "commentary"
        assert bool(audio[0].disposition & av.stream.Disposition.default)
        assert not audio[1].disposition & av.stream.Disposition.default
        assert [s.codec_context.name for s in audio] == ["aac", "opus"]
    assert packets(out, "audio") == packets(clip, "audio")    # packet for packet, same times


def test_a_range_cuts_every_audio_stream_alike(clip, engine, tmp_path):
    out = tmp_path / "cut.mkv"
    first, stop = 3, 9
    inpaint_video(clip, np.zeros((HEIGHT, WIDTH), bool), out, temporal="off", engine=engine, encode=LOSSLESS,
                  frames=(first, stop))
    for (language, source), (kept_language, kept) in zip(packets(clip, "audio"), packets(out, "audio")):
        start, end = first / FPS, stop / FPS
        expected = [(t - start, payload) for t, payload in source if start - 1e-9 <= t < end]
        assert kept_language == language and [p for _, p in kept] == [p for _, p in expected]
        assert [t for t, _ in kept] == pytest.approx([t for t, _ in expected], abs=2e-3)


def chapters(path):
    """(title, start s, end s) of every chapter of path."""
    with av.open(str(path)) as container:
        return [(c["metadata"].get("title"), float(c["start"] * c["time_base"]), float(c["end"] * c["time_base"]))
                for c in container.chapters()]


def test_chapters_are_copied_and_cut_with_the_range(clip, engine, tmp_path):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    inpaint_video(clip, mask, tmp_path / "all.mkv", temporal="off", engine=engine, encode=LOSSLESS)
    assert chapters(tmp_path / "all.mkv") == [("One", 0.0, 0.5), ("Two", 0.5, 1.0)]
    inpaint_video(clip, mask, tmp_path / "cut.mkv", temporal="off", engine=engine, encode=LOSSLESS, frames=(3, 9))
    assert chapters(tmp_path / "cut.mkv") == [("One", 0.0, 0.25), ("Two", 0.25, 0.5)]       # 0.25-0.75 s kept
    inpaint_video(clip, mask, tmp_path / "late.mkv", temporal="off", engine=engine, encode=LOSSLESS, frames=(7, None))
    (title, start, end), = chapters(tmp_path / "late.mkv")         # from frame 7, at 7/12 s, to the end
    assert title == "Two" and start == 0.0 and end == pytest.approx(1 - 7 / FPS, abs=1e-3)


def test_a_stream_the_container_cannot_hold_is_dropped_alone(clip, engine, tmp_path):
    vp9 = EncodeSettings(codec="libvpx-vp9", crf=40, preset=None, options={"b": "0"})
    with pytest.warns(UserWarning, match=r"the audio stream 1 \(eng\) is dropped \(the webm container cannot hold aac"):
        summary = inpaint_video(clip, np.zeros((HEIGHT, WIDTH), bool), tmp_path / "out.webm", temporal="off",
                                engine=engine, encode=vp9, frames=(0, 2))
    assert summary.audio == ("copied 1 of 2; dropped: audio stream 1 (eng): the webm container cannot hold aac")
    with av.open(str(tmp_path / "out.webm")) as container:
        assert [s.metadata.get("language") for s in container.streams.audio] == ["fra"]


def test_subtitles_are_copied_or_dropped_by_name(subtitled, engine, tmp_path):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    summary = inpaint_video(subtitled, mask, tmp_path / "out.mkv", temporal="off", engine=engine, encode=LOSSLESS)
    assert summary.subtitles == "copied" and summary.audio == "copied"
    assert packets(tmp_path / "out.mkv", "subtitle") == packets(subtitled, "subtitle")
    assert packets(subtitled, "subtitle")[0][0] == "deu" and len(packets(subtitled, "subtitle")[0][1]) == 2
    with pytest.warns(UserWarning, match=r"the subtitle stream 3 \(deu\) is dropped \(the mp4 container cannot "
                                         r"hold (subrip|srt)"):     # FFmpeg's decoder name for SubRip
        summary = inpaint_video(subtitled, mask, tmp_path / "out.mp4", temporal="off", engine=engine,
                                encode=EncodeSettings(preset="ultrafast"))
    assert summary.subtitles.startswith("dropped: the mp4 container cannot hold ")
    summary = inpaint_video(subtitled, mask, tmp_path / "none.mkv", temporal="off", engine=engine, encode=LOSSLESS,
                            audio=False, subtitles=False)
    assert summary.audio == "dropped: audio=False" and summary.subtitles == "dropped: subtitles=False"
    with av.open(str(tmp_path / "none.mkv")) as container:
        assert [s.type for s in container.streams] == ["video"]


def test_cli_reports_the_streams_and_leaves_subtitles_out_on_request(subtitled, tmp_path, capsys):
    import PIL.Image

    mask_file = tmp_path / "mask.png"
    PIL.Image.fromarray(np.zeros((HEIGHT, WIDTH), np.uint8)).save(mask_file)
    assert main(["video", str(subtitled), str(mask_file), "-o", str(tmp_path / "a.mkv"), "--temporal", "off",
                 "--lossless", "--device", "cpu"]) == 0
    assert "audio copied, subtitles copied" in capsys.readouterr().out
    assert main(["video", str(subtitled), str(mask_file), "-o", str(tmp_path / "b.mkv"), "--temporal", "off",
                 "--lossless", "--no-subtitles", "--device", "cpu"]) == 0
    assert "subtitles dropped: subtitles=False" in capsys.readouterr().out


def test_video_segments_carry_every_stream_tag_and_chapter(subtitled, tmp_path):
    from rethined_engine.distributed.video_segments import inpaint_video_segments

    out = tmp_path / "segmented.mkv"
    segments = inpaint_video_segments(subtitled, np.zeros((HEIGHT, WIDTH), bool), out, seconds=0.5, temporal="off",
                                      engine={"device": "cpu"})
    assert len(segments) == 2
    assert packets(out, "audio") == packets(subtitled, "audio")
    assert packets(out, "subtitle") == packets(subtitled, "subtitle")
    assert chapters(out) == chapters(subtitled)
    with av.open(str(out)) as container:
        assert container.metadata.get("title") == "A film"
    inpaint_video_segments(subtitled, np.zeros((HEIGHT, WIDTH), bool), tmp_path / "bare.mkv", seconds=0.5,
                           temporal="off", engine={"device": "cpu"}, audio=False, subtitles=False)
    with av.open(str(tmp_path / "bare.mkv")) as container:
        assert [s.type for s in container.streams] == ["video"]
