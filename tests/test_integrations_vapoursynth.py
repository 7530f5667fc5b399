"""`rethined_engine.integrations.vapoursynth.inpaint` in a VapourSynth core and under vspipe | ffmpeg.

Needs VapourSynth (R81+, CPython >= 3.12; marked `vapoursynth`, skipped where it does not import). The source:
10 frames at 96x64 panning over the shipped photo, a cut at frame 5 (another part of the photo, flagged with
`_SceneChangePrev`), a box mask moving with it and empty at frame 3; frames come from numpy through
`std.ModifyFrame`. The reference: `VideoInpainter` on the same uint8 frames in order, reset at the cut.
RGB24 must equal it bit for bit in any request order; RGB48 holds level x 257 and RGBS level / 255 exactly; RGBH
within half precision's rounding (HALF_TOLERANCE)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

vs = pytest.importorskip("vapoursynth")
pytestmark = pytest.mark.vapoursynth

from rethined_engine.cli import SAMPLE_IMAGE  # noqa: E402
from rethined_engine.integrations.vapoursynth import FILLED_PROP, inpaint  # noqa: E402
from rethined_engine.video import VideoConfig, VideoInpainter  # noqa: E402

WIDTH, HEIGHT, FRAMES, CUT, EMPTY_MASK_FRAME = 96, 64, 10, 5, 3
PAN_STEP = (2, 3)  # px per frame, down and right
SCENE_ORIGINS = ((200, 400), (450, 900))  # top-left corner of each scene's first crop in the photo
HALF_TOLERANCE = 2.0 ** -11  # float16 rounding of a value in [0, 1]
SHUFFLED = [7, 2, 9, 0, 5, 3, 8, 1, 6, 4]  # a request order with seeks back across and within scenes


def source_frames() -> list[np.ndarray]:
    photo = np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB"))
    frames = []
    for i in range(FRAMES):
        (y, x), k = SCENE_ORIGINS[i >= CUT], i - (CUT if i >= CUT else 0)
        y, x = y + k * PAN_STEP[0], x + k * PAN_STEP[1]
        frames.append(np.ascontiguousarray(photo[y:y + HEIGHT, x:x + WIDTH]))
    return frames


def source_masks() -> list[np.ndarray]:
    masks = []
    for i in range(FRAMES):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        if i != EMPTY_MASK_FRAME:
            mask[20:44, 24 + 2 * i:56 + 2 * i] = 255
        masks.append(mask)
    return masks


def numpy_clip(core, arrays: list[np.ndarray], fmt, cut: int | None = None):
    """A clip of `arrays` ((H, W, 3) or (H, W), uint8 or uint16, each) in `fmt` (RGB24, RGB48 or GRAY8), frame `cut`
    flagged with _SceneChangePrev."""
    blank = core.std.BlankClip(width=arrays[0].shape[1], height=arrays[0].shape[0], format=fmt, length=len(arrays))

    def fill(n, f):
        out = f.copy()
        planes = arrays[n] if arrays[n].ndim == 3 else arrays[n][..., None]
        for p in range(planes.shape[-1]):
            np.copyto(np.asarray(out[p]), planes[..., p])
        out.props["_SceneChangePrev"] = int(n == cut)
        return out
    return blank.std.ModifyFrame(blank, fill)


def reference(engine, config=None, reset_at_cut=True) -> list[np.ndarray]:
    inpainter, out = VideoInpainter(engine, "on", config), []
    for i, (frame, mask) in enumerate(zip(source_frames(), source_masks())):
        if i == CUT and reset_at_cut:
            inpainter.reset()
        out.append(inpainter.process(frame, mask))
    return out


def rgb(frame) -> np.ndarray:
    return np.stack([np.asarray(frame[p]) for p in range(3)], axis=-1)


@pytest.fixture
def clips():
    core = vs.core
    return (numpy_clip(core, source_frames(), vs.RGB24, CUT), numpy_clip(core, source_masks(), vs.GRAY8))


@pytest.mark.parametrize("order", ["linear", "shuffled"])
def test_rgb24_equals_the_video_inpainter_in_any_request_order(engine, clips, order):
    expected = reference(engine)
    out = inpaint(*clips, engine=engine)
    assert (out.format.id, out.width, out.height, out.num_frames) == (vs.RGB24, WIDTH, HEIGHT, FRAMES)
    for n in (range(FRAMES) if order == "linear" else SHUFFLED):
        frame = out.get_frame(n)
        np.testing.assert_array_equal(rgb(frame), expected[n], err_msg=f"frame {n} ({order})")
        assert frame.props[FILLED_PROP] == int(n != EMPTY_MASK_FRAME)


def test_temporal_off_in_shuffled_order_is_the_engine_per_frame(engine, clips):
    out = inpaint(*clips, temporal="off", engine=engine)
    for n in SHUFFLED:
        np.testing.assert_array_equal(rgb(out.get_frame(n)), engine.inpaint(source_frames()[n], source_masks()[n]))


def test_the_scene_flag_resets_the_state(engine):
    """With the inpainter's own cut detection off, only _SceneChangePrev resets: flagged and unflagged
    sources give the two references, which differ after the cut."""
    core = vs.core
    config = VideoConfig(scene_cut=False)
    masks = numpy_clip(core, source_masks(), vs.GRAY8)
    flagged = inpaint(numpy_clip(core, source_frames(), vs.RGB24, CUT), masks, engine=engine, config=config)
    unflagged = inpaint(numpy_clip(core, source_frames(), vs.RGB24), masks, engine=engine, config=config)
    with_reset, without = reference(engine, config), reference(engine, config, reset_at_cut=False)
    assert any(not np.array_equal(a, b) for a, b in zip(with_reset[CUT:], without[CUT:]))
    for n in SHUFFLED:
        np.testing.assert_array_equal(rgb(flagged.get_frame(n)), with_reset[n], err_msg=f"flagged frame {n}")
        np.testing.assert_array_equal(rgb(unflagged.get_frame(n)), without[n], err_msg=f"unflagged frame {n}")


@pytest.mark.parametrize("fmt, tolerance", [("RGBS", 0.0), ("RGBH", HALF_TOLERANCE)])
def test_float_formats_keep_known_pixels_and_hold_the_fill_as_level_over_255(engine, clips, fmt, tolerance):
    expected = reference(engine)
    source = clips[0].resize.Point(format=getattr(vs, fmt))
    out = inpaint(source, clips[1].resize.Point(format=vs.GRAYS), engine=engine)
    assert out.format.id == getattr(vs, fmt)
    for n in SHUFFLED:
        got, given, hole = rgb(out.get_frame(n)), rgb(source.get_frame(n)), source_masks()[n] != 0
        np.testing.assert_array_equal(got[~hole], given[~hole])
        np.testing.assert_allclose(got[hole].astype(np.float32), expected[n][hole] / np.float32(255), rtol=0,
                                   atol=tolerance)


def test_rgb48_keeps_its_known_pixels_and_holds_the_fill_as_level_times_257(engine, clips):
    """16 bits with content in the low bits (each sample + 100, so no known pixel is a multiple of 257): the known
    pixels come back unchanged, the hole holds the 8-bit reference's levels x 257."""
    expected = reference(engine)
    deep = [frame.astype(np.uint16) * 257 + np.uint16(100) * (frame < 255) for frame in source_frames()]
    source = numpy_clip(vs.core, deep, vs.RGB48)
    out = inpaint(source, clips[1], engine=engine)
    assert out.format.id == vs.RGB48
    for n in SHUFFLED:
        got, hole = rgb(out.get_frame(n)), source_masks()[n] != 0
        np.testing.assert_array_equal(got[~hole], deep[n][~hole])
        np.testing.assert_array_equal(got[hole], expected[n][hole].astype(np.uint16) * 257)


def test_an_exclude_clip_reaches_every_frame(engine, clips):
    """One exclusion frame for all: RGB24 equals `VideoInpainter.process(frame, mask, exclude)` in order, reset at
    the cut, and differs from the plain fill."""
    exclude = np.zeros((HEIGHT, WIDTH), np.uint8)
    exclude[:, 60:] = 255
    out = inpaint(*clips, engine=engine, exclude_clip=numpy_clip(vs.core, [exclude], vs.GRAY8))
    inpainter, plain = VideoInpainter(engine, "on"), reference(engine)
    for i, (frame, mask) in enumerate(zip(source_frames(), source_masks())):
        if i == CUT:
            inpainter.reset()
        want = inpainter.process(frame, mask, exclude)
        np.testing.assert_array_equal(rgb(out.get_frame(i)), want, err_msg=f"frame {i}")
    assert not np.array_equal(want, plain[-1])


def test_wrong_inputs_are_refused_by_name(clips):
    clip, mask = clips
    with pytest.raises(ValueError, match="clip: expected RGB24, RGB48, RGBS or RGBH"):
        inpaint(clip.resize.Point(format=vs.YUV444P8, matrix_s="709"), mask, engine=object())
    with pytest.raises(ValueError, match="mask_clip: expected a one-plane"):
        inpaint(clip, clip, engine=object())
    with pytest.raises(ValueError, match="mask_clip: expected 1 or 10 frames"):
        inpaint(clip, mask[:4], engine=object())
    with pytest.raises(ValueError, match="exclude_clip: expected 1 or 10 frames"):
        inpaint(clip, mask, engine=object(), exclude_clip=mask[:4])


VPY = """
import sys
import numpy as np
import vapoursynth as vs
sys.path.insert(0, {tests!r})
from test_integrations_vapoursynth import CUT, numpy_clip, source_frames, source_masks
from rethined_engine import Engine
from rethined_engine.integrations.vapoursynth import inpaint

core = vs.core
clip = inpaint(numpy_clip(core, source_frames(), vs.RGB24, CUT), numpy_clip(core, source_masks(), vs.GRAY8),
               engine=Engine(weights=weights.decode() if isinstance(weights, bytes) else weights, device="cpu"))
clip.set_output()  # vspipe writes RGB planes as G, B, R: the order of ffmpeg's gbrp
"""


def test_vspipe_into_ffmpeg_equals_the_video_inpainter(engine, weights_path, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    vspipe = Path(sys.executable).with_name("vspipe")
    script = tmp_path / "inpaint.vpy"
    script.write_text(VPY.format(tests=str(Path(__file__).parent)))
    out = tmp_path / "out.rgb"
    command = (f"set -o pipefail; {vspipe} -r 4 -a weights={weights_path} {script} - "
               f"| {imageio_ffmpeg.get_ffmpeg_exe()} -v error -f rawvideo -pix_fmt gbrp -s {WIDTH}x{HEIGHT} -i - "
               f"-f rawvideo -pix_fmt rgb24 {out}")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    got = np.fromfile(out, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)
    expected = reference(engine)
    assert len(got) == FRAMES
    for n in range(FRAMES):
        np.testing.assert_array_equal(got[n], expected[n], err_msg=f"frame {n}")


def doc_blocks(section: str, language: str) -> list[str]:
    """The ```language blocks under the '## section' heading of docs/integrations.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    return [part.split("```", 1)[0] for part in body.split(f"```{language}\n")[1:]]


DOC_SOURCES = """
import sys
import vapoursynth as vs
sys.path.insert(0, {tests!r})
from test_integrations_vapoursynth import CUT, numpy_clip, source_frames, source_masks

clip = numpy_clip(vs.core, source_frames(), vs.RGB24, CUT).resize.Bicubic(format=vs.YUV420P8, matrix_s="709")
mask = numpy_clip(vs.core, source_masks(), vs.GRAY8)
"""


def test_the_documented_script_runs_as_written(tmp_path):
    """docs/integrations.md's VapourSynth script and vspipe command, with `clip` (YUV 4:2:0, as a source plugin
    gives) and `mask` defined before it and the programs' paths filled in: 10 frames come out of ffmpeg."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    (script,) = doc_blocks("VapourSynth", "python")
    command = doc_blocks("VapourSynth", "bash")[0]  # the vspipe line (the second block sets up the tests)
    (tmp_path / "script.vpy").write_text(DOC_SOURCES.format(tests=str(Path(__file__).parent)) + script)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    vspipe = Path(sys.executable).with_name("vspipe")
    command = command.replace("vspipe ", f"{vspipe} ").replace("ffmpeg ", f"{ffmpeg} ")
    result = subprocess.run(["bash", "-c", "set -o pipefail\n" + command], cwd=tmp_path, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(tmp_path / "out.mkv"), "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], capture_output=True, check=True).stdout
    assert len(raw) == FRAMES * HEIGHT * WIDTH * 3
