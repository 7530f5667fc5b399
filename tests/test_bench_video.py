"""The video benchmark's code paths on 3-frame clips a few dozen pixels high: clips, masks, scores, files."""
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("cv2")
pytest.importorskip("av")
from rethined_engine.bench import video, video_clips  # noqa: E402

SIZE = (48, 64)   # (H, W)


@pytest.fixture
def photo(tmp_path):
    """A smooth random grey texture (the synthetic clips' photo; no colour for 4:2:0 to lose), 120 x 160."""
    rng = np.random.default_rng(0)
    coarse = np.repeat(rng.integers(0, 256, (12, 16, 1), dtype=np.uint8), 3, axis=2)
    path = tmp_path / "photo.png"
    Image.fromarray(coarse).resize((160, 120), Image.BICUBIC).save(path)
    return path


def test_static_camera_repeats_the_window_and_a_pan_shifts_it(photo):
    static = video_clips.synthetic_clip(photo, "static", 3, SIZE, noise_sigma=0.0, round_trip=False).frames
    assert static.shape == (3, *SIZE, 3) and static.dtype == np.uint8
    assert np.array_equal(static[0], static[2])
    pan = video_clips.synthetic_clip(photo, "pan", 3, SIZE, noise_sigma=0.0, round_trip=False)
    matrices = video_clips.camera_matrices("pan", 3, SIZE)
    shift = matrices[1][:, 2] - matrices[0][:, 2]             # field px the window moved, (x, y)
    assert shift[0] == pytest.approx(video_clips.PAN_SPEED * SIZE[1])
    expected = np.roll(pan.frames[0].astype(float), (-round(shift[1]), -round(shift[0])), axis=(0, 1))
    inner = (slice(4, -4), slice(4, SIZE[1] - 4 - int(np.ceil(shift[0]))))
    # the shift is fractional: bicubic resampling differs by a few levels, a wrong direction by far more
    assert np.abs(pan.frames[1][inner] - expected[inner]).mean() < 12


def test_x264_round_trip_keeps_size_and_most_of_the_signal(photo):
    clean = video_clips.synthetic_clip(photo, "pan", 3, SIZE, round_trip=False).frames
    coded = video_clips.x264_round_trip(clean)
    assert coded.shape == clean.shape
    mse = ((coded.astype(float) - clean) ** 2).mean()
    assert 0 < mse and 10 * np.log10(255 ** 2 / mse) > 30


def test_masks_static_and_moving():
    logo = video_clips.clip_masks("logo", SIZE, 3)
    assert logo.shape == (3, *SIZE) and logo[0].any() and np.array_equal(logo[0], logo[2])
    assert video_clips.clip_masks("watermark", (180, 320), 2)[0].any()
    blob = video_clips.clip_masks("blob", SIZE, 3)
    centres = [np.nonzero(m)[1].mean() for m in blob]
    assert centres[0] < centres[1] < centres[2]                # left to right
    with pytest.raises(ValueError, match="kind"):
        video_clips.clip_masks("cloud", SIZE, 1)


def test_hole_scores_match_a_plain_psnr():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    output = np.clip(truth.astype(int) + rng.integers(-9, 10, truth.shape), 0, 255).astype(np.uint8)
    mask = video_clips.logo_mask(SIZE)
    mse = ((output[mask].astype(float) - truth[mask]) ** 2).mean() / 255 ** 2
    psnr, ssim = video.hole_scores(truth, output, mask)
    assert psnr == pytest.approx(10 * np.log10(1 / mse), abs=1e-6)
    assert video.hole_scores(truth, truth, mask)[1] == pytest.approx(1.0)
    assert ssim < 1.0


def test_parse_mode():
    assert video.parse_mode("off") == ("off", {})
    assert video.parse_mode("on+propagate=false,window=3,gate=0.5") == ("on", {"propagate": False, "window": 3,
                                                                              "gate": 0.5})
    for bad in ("of", "off+propagate=false", "on+propagate"):
        with pytest.raises(ValueError, match="mode"):
            video.parse_mode(bad)


def test_merge_keeps_saved_rows_not_measured_again():
    saved = {"quality": [{"case": "a", "mode": "off", "frames": 3, "psnr": 1.0},
                         {"case": "b", "mode": "off", "frames": 3, "psnr": 2.0}]}
    fresh = {"quality": [{"case": "a", "mode": "off", "frames": 3, "psnr": 3.0}], "speed": []}
    rows = video.merged(saved, fresh)["quality"]
    assert sorted((r["case"], r["psnr"]) for r in rows) == [("a", 3.0), ("b", 2.0)]


def test_quick_run_writes_every_part(photo, tmp_path):
    """bench.video --quick on two synthetic cases: rows for each part, the truth's E_warp, a picture each."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cases = [c for c in video.CASES if c.name in ("static-1080p-logo", "pan-1080p-blob")]
    for name in {c.clip[0] for c in cases} | {video.SPEED_PHOTO}:
        (photos / name).symlink_to(photo)
    out = tmp_path / "results" / "video-cpu.json"
    video.main(["--quick", "--modes", "off", "--photos", str(photos), "--out", str(out), "--pictures",
                "--cases", *[c.name for c in cases]])
    result = json.loads(out.read_text())
    assert {"device", "commit", "dirty", "threads"} <= set(result)
    assert [r["case"] for r in result["quality"]] == [c.name for c in cases]
    for row in result["quality"]:
        assert row["size"] == [video.QUICK_HEIGHT, video.frame_width(video.QUICK_HEIGHT)]
        assert np.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1 and row["warp_hole"] >= 0
        assert row["truth_warp_hole"] >= 0 and row["commit"] == result["commit"]
        assert row["engine_calls"] == row["frames"] and row["engine_shapes"] == 1     # off: every frame, whole
        assert (out.parent / f"video-{row['case']}.jpg").is_file()
    speed, = result["speed"]
    assert speed["frames"] == video.QUICK_FRAMES and speed["seconds_per_frame"] > 0 and speed["engine_fps"] > 0
    ops, = result["ops"]       # counted for temporal mode on the device path, whatever the modes asked for
    assert ops["mode"] == video.ON and ops["ops_per_frame"][0] > 0 and ops["by_function"]
    assert ops["by_function"]["dis variational refinement (Triton launches)"] > 0
    assert len(ops["syncs_per_frame"]) == len(ops["ops_per_frame"]) and sum(ops["syncs_by_function"].values()) > 0
    memory, = result["memory"]
    assert len(memory["rss_mb"]) == video.QUICK_MEMORY[0] // video.QUICK_MEMORY[1]
    assert "| pan-1080p-blob |" in video.markdown(result)


def test_hole_windows_share_a_size_and_hold_each_hole():
    masks = video_clips.clip_masks("blob", (90, 160), 3)
    windows = video.hole_windows(masks, 0.35)
    shapes = {masks[t][w].shape for t, w in enumerate(windows)}
    assert len(shapes) == 1
    for mask, window in zip(masks, windows):
        assert mask[window].sum() == mask.sum()                  # the whole hole is inside its window


def test_ever_seen_follows_a_pan_and_the_ceiling_copies_the_truth():
    """A 4 px/frame pan past a still 12 px wide hole: a third more of the hole was seen with each frame."""
    import cv2

    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (40, 132, 3), dtype=np.uint8), (7, 7), 2)
    truth = np.stack([scene[:, 4 * t:4 * t + 80] for t in range(4)])
    masks = np.zeros((4, 40, 80), bool)
    masks[:, 10:30, 30:42] = True
    ever, recent = video.ever_seen(truth, masks)
    assert [round(float(ever[t].sum() / masks[t].sum()), 2) for t in range(4)] == [0.0, 0.33, 0.67, 1.0]
    assert np.array_equal(ever, recent)       # all within ORACLE_WINDOW frames
    scores = video.oracle_scores(truth, np.zeros_like(truth), masks)
    assert scores["oracle_seen"] == pytest.approx(0.5, abs=0.01)


def test_known_pixels_bench_compares_the_kept_samples_with_the_conversions_alone(photo, tmp_path):
    from rethined_engine.bench import video_known_pixels

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / video.SPEED_PHOTO).write_bytes(photo.read_bytes())
    row = video_known_pixels.measure(photos, SIZE[0], 3, 1, "yuv420p10le")
    kept = row["known_samples_lossless_output"]
    assert kept["inpaint_video"]["pix_fmt"] == "yuv420p10le"
    assert kept["inpaint_video"]["luma"]["exact_share"] == kept["inpaint_video"]["chroma"]["exact_share"] == 1.0
    assert kept["conversions_alone"]["luma"]["exact_share"] < 0.5          # rgb24 and back: most codes move
    assert kept["inpaint_video_8bit_output"]["pix_fmt"] == "yuv420p"
    assert set(row["x264_seconds_per_frame"]) == {"default", "yuv420p"} and row["keep_source_samples_seconds"] > 0
