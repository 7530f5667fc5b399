"""Batch inpainting over files: the manifest, the stages, the local loop and Ray Data (one Ray start for the
module, 2 CPUs), against `Engine().inpaint` on crops of the shipped photo with fixed-seed masks."""
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rethined_engine import Engine
from rethined_engine.cli import SAMPLE_IMAGE, main
from rethined_engine.distributed import (
    ERROR,
    OK,
    SKIPPED,
    BatchConfig,
    build_manifest,
    inpaint_dataset,
)
from rethined_engine.distributed.stages import write_atomically
from rethined_engine.image_files import read_mask, read_photo
from rethined_engine.train.masks import random_mask

PHOTO_SIZES = {"beach": (240, 320), "field": (256, 256), "hill": (240, 320), "road": (288, 224)}   # (height, width)
# half the 2 CPUs for the actors, half for decode and encode: file work keeps both actors fed
RAY_CONFIG = BatchConfig(engine={"device": "cpu"}, workers=2, cpus_per_worker=0.5, cpus_per_io_task=0.25,
                         rows_per_call=2)   # engine calls on batches of 2 rows, of equal or unequal shapes
COPIES = 3                                      # copies of each photo in the two-actor run


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """images/ (crops of the sample photo resized to PHOTO_SIZES, a corrupt JPEG, an image without mask) and
    masks/ (fixed-seed random masks, one without an image)."""
    root = tmp_path_factory.mktemp("batch")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    photo = Image.open(SAMPLE_IMAGE).convert("RGB")
    for seed, (stem, (height, width)) in enumerate(PHOTO_SIZES.items()):
        left = seed * photo.width // 8
        crop = photo.crop((left, 0, left + photo.width // 2, photo.height // 2)).resize((width, height))
        crop.save(images / f"{stem}.jpg" if seed % 2 else images / f"{stem}.png", quality=90)
        hole = random_mask(height, width, np.random.default_rng(seed))
        Image.fromarray(hole.astype(np.uint8) * 255).save(masks / f"{stem}.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(masks / "broken.png")
    photo.resize((40, 40)).save(images / "lonely.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(masks / "orphan.png")
    return images, masks


@pytest.fixture(scope="module")
def expected(folders):
    """stem -> Engine(device="cpu").inpaint of that photo and mask, (H, W, 3) uint8."""
    images, masks = folders
    engine = Engine(device="cpu")
    return {stem: engine.inpaint(read_photo(next(images.glob(stem + ".*"))).rgb, read_mask(masks / f"{stem}.png"))
            for stem in PHOTO_SIZES}


RAY_LEVEL_FLIPS = 1e-3   # share of pixels a Ray worker's result may have one level off the local one


def assert_same_fill(got: np.ndarray, want: np.ndarray, name: str) -> None:
    """The Ray workers run torch with their own thread count (OMP_NUM_THREADS, 1 unless set), and torch's CPU
    kernels round differently per thread count, which can move a rare pixel by one level (the crop "beach": one
    pixel between 1 and 2 threads): equal but for such pixels."""
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= RAY_LEVEL_FLIPS, name


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def _by_stem(results) -> dict:
    return {Path(result["image"]).stem: result for result in results}


def test_manifest_pairs_by_stem_sorts_by_size_and_reports_unmatched(folders, tmp_path):
    images, masks = folders
    manifest = build_manifest(images, masks, tmp_path / "out")
    assert [Path(path).name for path in manifest.missing_masks] == ["lonely.png"]
    assert [Path(path).name for path in manifest.unmatched_masks] == ["orphan.png"]
    assert {Path(row.image).stem: Path(row.output) for row in manifest.rows} == {
        stem: tmp_path / "out" / f"{stem}.png" for stem in [*PHOTO_SIZES, "broken", "lonely"]}
    sizes = [(row.height, row.width) for row in manifest.rows]
    assert sizes == sorted(sizes) and sizes[0] == (0, 0)   # the corrupt file's header cannot be read
    static = build_manifest(images, masks / "beach.png", tmp_path / "out", ".jpg")
    assert {row.mask for row in static.rows} == {str(masks / "beach.png")} and static.unmatched_masks == ()
    assert all(row.output.endswith(".jpg") for row in static.rows)


def test_manifest_refuses_shared_stems_and_unknown_formats(folders, tmp_path):
    images, masks = folders
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="share the stem 'a'"):
        build_manifest(tmp_path, masks, tmp_path / "out")
    with pytest.raises(ValueError, match="out_suffix"):
        build_manifest(images, masks, tmp_path / "out", ".gif")


@pytest.mark.parametrize("setting,value", [("workers", 0), ("rows_per_call", 0), ("gpus_per_worker", -1),
                                           ("cpus_per_io_task", -0.5), ("jpeg_quality", 101)])
def test_batch_config_names_a_bad_setting(setting, value):
    with pytest.raises(ValueError, match=f"^{setting}: expected"):
        BatchConfig(**{setting: value})


def test_cli_batch_refuses_ray_settings_without_ray(folders, tmp_path):
    images, masks = folders
    with pytest.raises(SystemExit, match="apply with --ray only"):
        main(["batch", str(images), str(masks), "-o", str(tmp_path), "--workers", "2"])


def test_write_atomically_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    old = np.full((4, 5, 3), 7, np.uint8)
    write_atomically(target, old, 95)

    def killed(*args):
        raise OSError("killed while renaming")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError, match="killed"):
        write_atomically(target, np.zeros((4, 5, 3), np.uint8), 95)
    assert os.listdir(tmp_path) == ["out.png"] and np.array_equal(np.asarray(Image.open(target)), old)


def test_ray_two_actors_equal_engine_with_error_rows_then_resume(folders, expected, ray_local, tmp_path):
    images, masks = folders
    copies = tmp_path / "images"     # each photo three times: enough rows for both actors
    copies.mkdir()
    for path in images.iterdir():
        for copy in range(COPIES):
            (copies / f"{path.stem}{copy}{path.suffix}").symlink_to(path)
            if (masks / f"{path.stem}.png").exists():
                (tmp_path / "masks").mkdir(exist_ok=True)
                (tmp_path / "masks" / f"{path.stem}{copy}.png").symlink_to(masks / f"{path.stem}.png")
    out = tmp_path / "out"
    manifest = build_manifest(copies, tmp_path / "masks", out)
    results = _by_stem(inpaint_dataset(manifest, RAY_CONFIG, use_ray=True))
    good = [f"{stem}{copy}" for stem in PHOTO_SIZES for copy in range(COPIES)]
    assert {stem: result["status"] for stem, result in results.items()} == {
        **{stem: OK for stem in good}, **{f"{bad}{copy}": ERROR for bad in ("broken", "lonely") for copy in range(COPIES)}}
    assert results["broken0"]["error"].startswith("decode:") and results["lonely0"]["error"].startswith("mask:")
    engine_processes = {results[stem]["worker"] for stem in good}           # both actors took rows
    assert len(engine_processes) == RAY_CONFIG.workers and f"{socket.gethostname()}:{os.getpid()}" not in engine_processes
    for stem in good:
        assert_same_fill(np.asarray(Image.open(out / f"{stem}.png")), expected[stem[:-1]], stem)
    assert sorted(os.listdir(out)) == sorted(f"{stem}.png" for stem in good)   # no temporaries

    written = {stem: (out / f"{stem}.png").stat().st_mtime_ns for stem in good}
    (out / "road0.png").unlink()
    rerun = _by_stem(inpaint_dataset(manifest, RAY_CONFIG, use_ray=True))
    assert {stem: rerun[stem]["status"] for stem in good} == {stem: SKIPPED if stem != "road0" else OK for stem in good}
    assert all((out / f"{stem}.png").stat().st_mtime_ns == written[stem] for stem in good if stem != "road0")
    assert_same_fill(np.asarray(Image.open(out / "road0.png")), expected["road"], "road0")


def test_ray_decodes_in_tasks_of_its_own(folders, ray_local, tmp_path):
    """Equal CPU reservations for file tasks and engine actors (the defaults): decode is still not fused into
    the actors."""
    from rethined_engine.distributed.dataset import ray_dataset

    images, masks = folders
    config = BatchConfig(engine={"device": "cpu"}, workers=1, cpus_per_worker=0.5, cpus_per_io_task=0.5)
    dataset = ray_dataset(build_manifest(images, masks, tmp_path).rows, config).materialize()
    stats = dataset.stats()
    assert "Map(decode)" in stats and "Map(decode)->" not in stats and "MapBatches(EngineStage)" in stats
    assert sorted(os.listdir(tmp_path)) == sorted(f"{stem}.png" for stem in PHOTO_SIZES)


def test_local_loop_writes_the_same_files(folders, expected, tmp_path):
    images, masks = folders
    results = list(inpaint_dataset(build_manifest(images, masks, tmp_path), BatchConfig(engine={"device": "cpu"})))
    assert [Path(r["image"]).stem for r in results if r["status"] == OK] == sorted(
        PHOTO_SIZES, key=lambda stem: (PHOTO_SIZES[stem], stem))
    for stem, filled in expected.items():
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{stem}.png")), filled), stem


def test_static_mask_of_another_size_is_an_error_row(folders, expected, tmp_path):
    images, masks = folders
    static = masks / "beach.png"   # 240x320: fits beach and hill only
    results = _by_stem(inpaint_dataset(build_manifest(images, static, tmp_path), BatchConfig(engine={"device": "cpu"})))
    assert {stem: results[stem]["status"] for stem in PHOTO_SIZES} == {
        "beach": OK, "hill": OK, "field": ERROR, "road": ERROR}
    assert results["field"]["error"].startswith("inpaint: ValueError: mask")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "beach.png")), expected["beach"])
    assert sorted(os.listdir(tmp_path)) == ["beach.png", "hill.png"]


def left_half(height: int, width: int) -> np.ndarray:
    """(height, width) uint8 exclusion: the left half, 255."""
    exclude = np.zeros((height, width), np.uint8)
    exclude[:, :width // 2] = 255
    return exclude


def test_exclusions_pair_by_stem_and_reach_the_engine(folders, expected, tmp_path, capsys):
    """An image with an exclusion file of its stem gets `inpaint(photo, mask, exclude)`, one without none
    (its file equals the plain fill); an exclusion of another size fails its row, naming exclude; one without an
    image is reported."""
    images, masks = folders
    excludes = tmp_path / "excludes"
    excludes.mkdir()
    Image.fromarray(left_half(*PHOTO_SIZES["beach"])).save(excludes / "beach.png")
    Image.fromarray(left_half(8, 8)).save(excludes / "field.png")
    Image.fromarray(left_half(8, 8)).save(excludes / "stray.png")
    manifest = build_manifest(images, masks, tmp_path / "out", excludes=excludes)
    assert {Path(row.image).stem: row.exclude for row in manifest.rows if row.exclude} == {
        "beach": str(excludes / "beach.png"), "field": str(excludes / "field.png")}
    assert manifest.unmatched_excludes == (str(excludes / "stray.png"),)
    status = main(["batch", str(images), str(masks), "-o", str(tmp_path / "out"), "--exclude", str(excludes),
                   "--device", "cpu"])
    out = capsys.readouterr()
    assert status == 1 and "done 3, skipped 0, failed 3" in out.out and "stray.png" in out.err
    assert "field.png" not in out.err and "inpaint: ValueError: exclude" in out.out
    beach = read_photo(images / "beach.png").rgb
    want = Engine(device="cpu").inpaint(beach, read_mask(masks / "beach.png"), left_half(*PHOTO_SIZES["beach"]))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "beach.png")), want)
    assert not np.array_equal(want, expected["beach"])
    for stem in ("hill", "road"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"{stem}.png")), expected[stem]), stem


def test_cli_batch_jpeg_summary_and_exit_status(folders, expected, tmp_path, capsys):
    images, masks = folders
    status = main(["batch", str(images), str(masks), "-o", str(tmp_path), "--format", "jpg", "--jpeg-quality", "80",
                   "--device", "cpu"])
    out = capsys.readouterr()
    assert status == 1   # two rows failed
    assert "done 4, skipped 0, failed 2" in out.out and "1 masks without an image" in out.out
    assert "failed: " in out.out and "orphan.png" in out.err
    for stem, filled in expected.items():
        Image.fromarray(filled).save(tmp_path / "reference.jpg", quality=80)
        assert (tmp_path / f"{stem}.jpg").read_bytes() == (tmp_path / "reference.jpg").read_bytes(), stem


def test_cli_batch_on_ray_with_a_static_mask_and_exclusion(folders, ray_local, tmp_path, capsys):
    images, _masks = folders
    for stem in PHOTO_SIZES:   # one size for all, as a static mask needs
        Image.open(next(images.glob(stem + ".*"))).resize((64, 48)).save(tmp_path / f"{stem}.png")
    hole = random_mask(48, 64, np.random.default_rng(9)).astype(np.uint8) * 255
    Image.fromarray(hole).save(tmp_path / "static.png")
    (tmp_path / "images").mkdir()
    for stem in PHOTO_SIZES:
        (tmp_path / f"{stem}.png").rename(tmp_path / "images" / f"{stem}.png")
    Image.fromarray(left_half(48, 64)).save(tmp_path / "exclude.png")
    status = main(["batch", str(tmp_path / "images"), str(tmp_path / "static.png"), "-o", str(tmp_path / "out"),
                   "--exclude", str(tmp_path / "exclude.png"),
                   "--ray", "--workers", "2", "--cpus-per-worker", "0.5", "--device", "cpu"])
    assert status == 0 and "done 4, skipped 0, failed 0" in capsys.readouterr().out
    engine = Engine(device="cpu")
    for stem in PHOTO_SIZES:
        filled = engine.inpaint(read_photo(tmp_path / "images" / f"{stem}.png").rgb, hole, left_half(48, 64))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"{stem}.png")), filled), stem


def test_video_segments_on_ray_equal_the_local_segments(ray_local, tmp_path):
    """Segments of an H.264 clip (a keyframe every 3 frames) as Ray rows on 2 actors, temporal mode on: the same
    frames as the local loop over the same segments."""
    av = pytest.importorskip("av")
    from conftest import write_video

    from rethined_engine.distributed.video_segments import inpaint_video_segments

    rng = np.random.default_rng(3)
    frames = [(rng.random((48, 64, 3)) * 255).astype(np.uint8) for _ in range(12)]
    write_video(tmp_path / "clip.mkv", frames, codec="libx264", pix_fmt="yuv420p", audio=False,
                options={"g": "3", "keyint_min": "3", "sc_threshold": "0"})
    hole = np.zeros((48, 64), bool)
    hole[12:30, 20:44] = True
    settings = {"seconds": 0.25, "temporal": "on", "engine": {"device": "cpu"}, "warmup": 2}   # 12 fps: 4 segments
    local = inpaint_video_segments(tmp_path / "clip.mkv", hole, tmp_path / "local.mkv", **settings)
    on_ray = inpaint_video_segments(tmp_path / "clip.mkv", hole, tmp_path / "ray.mkv", use_ray=True, workers=2,
                                    **settings)
    assert local == on_ray and len(local) > 2

    def decoded(path):
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]

    assert all(np.array_equal(a, b) for a, b in zip(decoded(tmp_path / "local.mkv"), decoded(tmp_path / "ray.mkv")))
    assert len(decoded(tmp_path / "ray.mkv")) == 12
