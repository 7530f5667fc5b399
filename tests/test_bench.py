"""Benchmarks as data: the quality benchmark's files, fixed masks and methods (tiny sizes)."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("cv2")
from rethined_engine import Engine  # noqa: E402
from rethined_engine.bench.quality import build_methods, parse_variant, resolution_table, run, summarise  # noqa: E402
from rethined_engine.cli import main as cli_main  # noqa: E402
from rethined_engine.config import STYLES  # noqa: E402
from rethined_engine.model.anchor import ANCHOR_CELL, jump_steps  # noqa: E402
from rethined_engine.weights import DEFAULT_WEIGHTS, read_config  # noqa: E402

RESOLUTIONS = [64, 96]


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (h, w) in enumerate([(60, 90), (100, 70)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_quality_writes_json_table_grid_and_masks(photos, tmp_path):
    pytest.importorskip("patchmatch")                 # every method, PatchMatch included (Python >= 3.11)
    out = tmp_path / "results"
    methods = build_methods(None, "cpu")
    result = run(photos, RESOLUTIONS, seed=0, out=out, methods=methods)
    saved = json.loads((out / "quality-photos.json").read_text())
    assert set(saved) >= {"commit", "device", "dataset", "rows"} and saved["dataset"] == "photos"
    assert len(saved["rows"]) == 2 * len(RESOLUTIONS) * len(methods)
    for row in saved["rows"]:
        assert set(row) >= {"method", "resolution", "psnr", "ssim", "l1", "sharpness", "sharpness_inner", "seconds"}
        assert max(row["size"]) == row["resolution"]
        assert row["upsampled"] == (row["resolution"] > max(60, 90) if row["image"] == "p0.png" else row["resolution"] > 100)
    assert sorted(p.name for p in (out / "masks-photos").iterdir()) == ["p0.png", "p1.png"]
    table = (out / "quality-photos.md").read_text()
    assert table.count("\n| ") == (len(methods) * len(RESOLUTIONS) + 1) + (len(methods) + 1)   # long + per-method tables
    assert Image.open(out / "quality-photos-grid.jpg").width > 0
    assert result["summary"][0]["images"] == 2


def test_quality_masks_are_reused(photos, tmp_path):
    out = tmp_path / "results"
    methods = build_methods(["coarse_bicubic", "opencv_telea_r3"], "cpu")
    first = run(photos, RESOLUTIONS, seed=0, out=out, methods=methods)
    again = run(photos, RESOLUTIONS, seed=123, out=out, methods=methods)  # saved masks win over the seed
    for a, b in zip(first["rows"], again["rows"]):
        assert a["coverage"] == b["coverage"] and a["psnr"] == b["psnr"]
    fresh = run(photos, RESOLUTIONS, seed=123, out=tmp_path / "other", methods=methods)
    assert [r["coverage"] for r in fresh["rows"]] != [r["coverage"] for r in first["rows"]]


def test_biharmonic_peer_never_reads_hole_pixels():
    pytest.importorskip("skimage")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (70, 1100, 3), dtype=np.uint8)     # long side > 512: solved small, upsampled
    mask = np.zeros((70, 1100), dtype=bool)
    mask[20:50, 300:700] = True
    run = build_methods(["biharmonic_lr"], "cpu")["biharmonic_lr"]
    out = run(image, mask, 1100)
    poisoned = image.copy()
    poisoned[mask] = 255 - poisoned[mask]
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], image[~mask])
    np.testing.assert_array_equal(run(poisoned, mask, 1100), out)
    assert out[mask].std() > 0            # a fill, not a constant


def test_patchmatch_peer_keeps_known_pixels(photos):
    pytest.importorskip("patchmatch")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = np.zeros((40, 56), bool)
    mask[10:25, 20:40] = True
    out = build_methods(["patchmatch"], "cpu")["patchmatch"](image, mask, 56)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], image[~mask]) and not np.array_equal(out[mask], image[mask])


def test_ours_variants_take_inference_settings(photos):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (600, 1100, 3), dtype=np.uint8)     # scale 3: an HR stage
    mask = np.zeros((600, 1100), bool)
    mask[100:500, 200:900] = True
    methods = build_methods(["ours"], "cpu", ["two_band=hf_decay:0.5,hf_fine_decay:3.0,hf_mid_gain:1.0,hr_feather:0",
                                              "plain=hf_transfer:false"])
    assert list(methods) == ["ours", "ours_two_band", "ours_plain"]
    outs = {name: method(image, mask, 1100) for name, method in methods.items()}
    assert not np.array_equal(outs["ours"][mask], outs["ours_two_band"][mask])
    assert np.array_equal(outs["ours_plain"], Engine(device="cpu", hf_transfer=False).inpaint(image, mask))
    with pytest.raises(SystemExit, match="--ours"):
        build_methods(["ours"], "cpu", ["no_equals_sign"])


def test_ours_variant_values():
    assert parse_variant("x=dtype:bfloat16,hf_decay:0.5,hr_topk:2,hf_transfer:false,hf_fine_decay:none") == (
        "ours_x", {"dtype": "bfloat16", "hf_decay": 0.5, "hr_topk": 2, "hf_transfer": False, "hf_fine_decay": None})


def test_unknown_method_is_named():
    with pytest.raises(SystemExit, match="no_such_peer"):
        build_methods(["ours", "no_such_peer"], "cpu")


def test_cli_reaches_the_benchmark(photos, tmp_path):
    cli_main(["bench", "quality", "--images", str(photos), "--resolutions", "64", "--methods", "opencv_ns_r3",
              "--out", str(tmp_path / "cli")])
    assert (tmp_path / "cli" / "quality-photos.json").exists()


@pytest.mark.parametrize("backend", ["opencv_telea", "native", "torch", "native+noseam", "native+exclude@fast"])
def test_latency_row_per_backend(backend):
    from rethined_engine.backends.native_backend import native_module
    from rethined_engine.bench.latency import measure_one

    if backend.startswith("native") and native_module() is None:
        pytest.skip("native extension not built")
    row = measure_one(96, backend, "cpu", repeats=1, warmup=0)
    assert row["backend"] == backend and row["size"] == 96 and row["median_ms"] > 0
    assert 0.35 < row["mask_frac"] < 0.45


def test_latency_exclusion_reaches_the_engine():
    """+exclude: each call passes the known pixels of the image's left third as `exclude`, and the result is the
    engine's with that exclusion."""
    from rethined_engine import Engine
    from rethined_engine.bench.latency import bench_input, make_engine

    engine = make_engine("torch+exclude@fast", "cpu")
    assert engine.backend == "torch" and engine.config.hr_feather == Engine(style="fast").config.hr_feather
    img, mask = bench_input(96)
    exclude = np.zeros_like(mask)
    exclude[:, :32] = True
    reference = Engine(backend="torch", style="fast")
    want = reference.inpaint(img, mask, exclude & ~mask)
    np.testing.assert_array_equal(engine.inpaint(img, mask), want)
    assert not np.array_equal(want, reference.inpaint(img, mask))


def test_quality_merge_keeps_other_pairs(photos, tmp_path):
    out = tmp_path / "results"
    run(photos, [64], seed=0, out=out, methods=build_methods(["coarse_bicubic", "opencv_ns_r3"], "cpu"))
    first_grid = (out / "quality-photos-grid.jpg").read_bytes()
    merged = run(photos, [96], seed=0, out=out, methods=build_methods(["opencv_ns_r3"], "cpu"), merge=True)
    pairs = {(r["method"], r["resolution"]) for r in merged["rows"]}
    assert pairs == {("coarse_bicubic", 64), ("opencv_ns_r3", 64), ("opencv_ns_r3", 96)}
    assert merged["resolutions"] == [64, 96] and len(merged["runs"]) == 2
    assert json.loads((out / "quality-photos.json").read_text())["rows"] == merged["rows"]
    assert (out / "quality-photos-grid.jpg").read_bytes() == first_grid   # kept, not redrawn with 1 method
    with pytest.raises(SystemExit, match="same photos and seed"):
        run(photos, [96], seed=1, out=out, methods=build_methods(["opencv_ns_r3"], "cpu"), merge=True)


def test_quality_summary_of_rows_without_inner_sharpness(photos, tmp_path):
    """Rows saved before `sharpness_inner` existed summarise to None for it (a "-" in the tables)."""
    result = run(photos, [64], seed=0, out=tmp_path, methods=build_methods(["opencv_ns_r3"], "cpu"))
    assert all(s["sharpness_inner"] is not None for s in result["summary"])
    old = [{k: v for k, v in row.items() if k != "sharpness_inner"} for row in result["rows"]]
    (summary,) = summarise(old)
    assert summary["sharpness_inner"] is None and summary["sharpness"] == result["summary"][0]["sharpness"]
    assert "| - |" in resolution_table([summary])


def test_quality_rows_and_tables_carry_texture_realism(photos, tmp_path):
    """Every row has swd_l0 .. swd_l3 and swd_mean (x 10^3); both tables gain SWD columns, every table row as
    many cells as its header; rows saved before the metric existed summarise to None ("-")."""
    from rethined_engine.bench.quality import markdown_table

    result = run(photos, [64], seed=0, out=tmp_path, methods=build_methods(["coarse_bicubic", "opencv_ns_r3"], "cpu"))
    levels = [f"swd_l{level}" for level in range(4)]
    for row in result["rows"]:
        assert all(row[k] > 0 for k in levels)
        assert row["swd_mean"] == pytest.approx(sum(row[k] for k in levels) / 4)
    assert all(s["swd_mean"] is not None for s in result["summary"])
    lines = [line for line in (tmp_path / "quality-photos.md").read_text().splitlines() if line.startswith("|")]
    long_header, compact_header = [line for line in lines if line.startswith("| method")]
    assert all(f"SWD L{level}" in long_header for level in range(4)) and "SWD mean" in long_header
    assert "SWD mean" in compact_header
    long_cells = long_header.count("|")
    assert [line.count("|") for line in lines[:4]] == [long_cells] * 4          # header, rule, 2 methods
    old = [{k: v for k, v in row.items() if not k.startswith("swd")} for row in result["rows"]]
    (summary,) = summarise(old[:1])
    assert summary["swd_mean"] is None and markdown_table([summary]).count("| - ") == 5


def test_grid_offsets_spread_over_one_token():
    from rethined_engine.bench.quality import grid_offsets

    assert grid_offsets(16, 1) == [0]
    assert grid_offsets(16, 4) == [0, 4, 8, 12]
    assert grid_offsets(64, 3) == [0, 21, 43]
    for count in (0, 17):
        with pytest.raises(ValueError, match="count in 1..16"):
            grid_offsets(16, count)


def test_quality_grid_offsets_crop_every_method_alike_and_give_their_range(photos, tmp_path):
    """--grid-offsets 2 at 64 px (ours works at scale 1 there: 8 px tokens, offsets 0 and 4): each photo is
    scored as it is and with its first 4 rows and columns cut off, image and mask alike; the summary averages
    over both, counts photos and offsets apart, and the spread table gives the range of the per-offset means;
    a merge with another offset count is refused."""
    from rethined_engine.bench.quality import offset_spread

    out = tmp_path / "results"
    cli_main(["bench", "quality", "--images", str(photos), "--resolutions", "64", "--methods", "opencv_ns_r3",
              "coarse_bicubic", "--out", str(out), "--grid-offsets", "2"])
    saved = json.loads((out / "quality-photos.json").read_text())
    assert saved["grid_offsets"] == 2 and len(saved["rows"]) == 2 * 2 * 2
    masks = {p.stem: np.asarray(Image.open(p)) > 0 for p in (out / "masks-photos").iterdir()}
    for row in saved["rows"]:
        whole = masks[row["image"][:-4]]
        assert row["offset"] in (0, 4)
        assert row["size"] == [whole.shape[0] - row["offset"], whole.shape[1] - row["offset"]]
        assert row["coverage"] == pytest.approx(whole[row["offset"]:, row["offset"]:].mean())
    for summary in saved["summary"]:
        sel = [r for r in saved["rows"] if r["method"] == summary["method"]]
        assert summary["images"] == 2 and summary["offsets"] == 2
        assert summary["psnr"] == pytest.approx(np.mean([r["psnr"] for r in sel]))
    for spread in saved["offset_spread"]:
        sel = [r for r in saved["rows"] if r["method"] == spread["method"]]
        per_offset = sorted(np.mean([r["swd_l3"] for r in sel if r["offset"] == d]) for d in (0, 4))
        assert spread["swd_l3"] == pytest.approx(per_offset)
    assert [s["method"] for s in saved["offset_spread"]] == ["opencv_ns_r3", "coarse_bicubic"]
    table = (out / "quality-photos.md").read_text()
    assert "each at 2 grid offsets" in table and "| opencv_ns_r3 | 64 | 2 |" in table
    assert offset_spread([{**r, "offset": 0} for r in saved["rows"]]) == []        # one offset: no range
    with pytest.raises(SystemExit, match="2 grid offsets, this one 1"):
        cli_main(["bench", "quality", "--images", str(photos), "--resolutions", "96", "--methods", "opencv_ns_r3",
                  "--out", str(out), "--merge"])


def test_quality_object_masks_live_beside_the_strokes_run(photos, tmp_path):
    """--mask-family objects: its own mask folder and files (*-objects), rows naming the family, 5-20 % holes;
    the strokes run's masks and files in the same folder are left as they were."""
    out = tmp_path / "results"
    cli_main(["bench", "quality", "--images", str(photos), "--resolutions", "64", "--methods", "opencv_ns_r3",
              "--out", str(out)])
    strokes = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and "grid" not in p.name}
    cli_main(["bench", "quality", "--images", str(photos), "--resolutions", "64", "--methods", "opencv_ns_r3",
              "--out", str(out), "--mask-family", "objects"])
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.name in strokes and p.parent.name == "masks-photos"}
    after |= {p.name: p.read_bytes() for p in out.glob("quality-photos.*")}
    assert after == strokes
    assert sorted(p.name for p in (out / "masks-photos-objects").iterdir()) == ["p0.png", "p1.png"]
    assert all((out / f"quality-photos-objects{suffix}").is_file() for suffix in (".json", ".md", "-grid.jpg"))
    saved = json.loads((out / "quality-photos-objects.json").read_text())
    assert saved["mask_family"] == "objects" and all(r["mask_family"] == "objects" for r in saved["rows"])
    assert all(0.05 <= r["coverage"] <= 0.20 for r in saved["rows"])
    assert all(r["mask_family"] == "strokes" and r["coverage"] >= 0.3
               for r in json.loads((out / "quality-photos.json").read_text())["rows"])
    assert "objects masks" in (out / "quality-photos-objects.md").read_text()


def test_grid_crop_shows_the_hole_border():
    """The zoomed row shows where fill meets photo (a big box's interior shows nothing of seams)."""
    from rethined_engine.bench.grid import crop_origin

    mask = np.zeros((400, 600), bool)
    mask[50:350, 50:350] = True                      # a big box: its centre is all hole
    mask[200:210, 400:580] = True                    # and a thin stroke: mostly border
    y0, x0 = crop_origin(mask, 100, 150)
    window = mask[y0:y0 + 100, x0:x0 + 150]
    assert window.any() and not window.all()
    assert crop_origin(np.zeros((40, 60), bool), 20, 30) == (10, 15)
    assert crop_origin(np.ones((40, 60), bool), 20, 30) == (10, 15)


def test_detail_correlation_tells_the_truth_from_invented_detail():
    """rho = 1 and energy = 1 for the truth itself, energy ~ 0 for a flat fill, rho ~ 0 for detail of the
    right amount from an independent source, and the bins split the hole by distance from its border."""
    from rethined_engine.bench.detail_correlation import DISTANCE_BINS, band_sums, border_distance, correlation_rows

    rng = np.random.default_rng(4)
    truth = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[20:100, 30:130] = True                      # 40 px to the centre: bins up to 33-64 hold pixels
    flat = truth.copy()
    flat[mask] = 128
    invented = truth.copy()
    invented[mask] = rng.integers(0, 256, (int(mask.sum()), 3), dtype=np.uint8)

    def rows(pred):
        return correlation_rows(band_sums(pred, truth, mask))

    assert all(r["rho"] == pytest.approx(1.0) and r["energy"] == pytest.approx(1.0) for r in rows(truth) if r["pixels"])
    inner = [r for r in rows(flat) if r["pixels"] and r["distance"] not in ("1-2",)]   # the first px see known neighbours
    assert inner and all(r["rho"] is None and r["energy"] == 0.0 for r in inner)
    deep = [r for r in rows(invented) if r["pixels"] > 1000]
    assert deep and all(abs(r["rho"]) < 0.1 and 0.7 < r["energy"] < 1.3 for r in deep)
    assert sum(r["pixels"] for r in rows(truth)) == mask.sum()
    assert [r["distance"] for r in rows(truth)] == [f"{lo}-{hi}" if hi else f">={lo}" for lo, hi in DISTANCE_BINS]
    dist = border_distance(mask)
    assert dist[~mask].max() == 0 and dist[20, 60] == 1 and dist[60, 80] == 40


def test_detail_correlation_run_writes_json(photos, tmp_path):
    from rethined_engine.bench.detail_correlation import markdown_table, run as run_detail

    result = run_detail(photos, 96, seed=0, out=tmp_path, methods=build_methods(["opencv_ns_r3", "ours"], "cpu"))
    saved = json.loads((tmp_path / "detail-correlation-photos-96.json").read_text())
    assert saved["methods"].keys() == {"opencv_ns_r3", "ours"} and saved["resolution"] == 96
    _ran_here(saved)
    assert sorted(p.name for p in (tmp_path / "masks-photos").iterdir()) == ["p0.png", "p1.png"]
    assert len(markdown_table(result).splitlines()) == 2 + 2          # header, rule, one row per method


def _latency(tmp_path, *args):
    from rethined_engine.bench.latency import main as latency_main

    latency_main(["--sizes", "64", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path / "latency.json"), *args])
    return json.loads((tmp_path / "latency.json").read_text())


def _commit_exists(commit):
    import subprocess

    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True).returncode == 0


def test_latency_append_adds_rows_and_every_row_says_where_it_ran(tmp_path):
    old = {"commit": "0123abc", "device": "Old CPU", "torch": "2.0", "triton": None, "threads": 4,
           "rows": [{"backend": "opencv_telea", "size": 64, "median_ms": 1.0, "commit": "0123abc"}]}
    (tmp_path / "latency.json").write_text(json.dumps(old))
    saved = _latency(tmp_path, "--backends", "opencv_telea", "--append")
    saved = _latency(tmp_path, "--backends", "opencv_telea", "--append")       # the same backend and size again
    first, *new = saved["rows"]
    assert len(new) == 2 and first["median_ms"] == 1.0            # kept, not replaced by a same-key row
    assert first | {"device": "Old CPU", "torch": "2.0", "threads": 4} == first   # the file's values, its own commit
    for record in [saved, *new]:
        assert set(record) >= {"device", "commit", "dirty", "python", "torch", "triton", "numpy", "threads"}
        assert _commit_exists(record["commit"]) and isinstance(record["dirty"], bool)
    assert all(row["engine_backend"] == "opencv_telea" and row["size"] == 64 for row in new)


def test_latency_interleave_times_backends_in_turn_with_ratios(tmp_path):
    saved = _latency(tmp_path, "--backends", "opencv_telea", "native@hr_feather=0", "--interleave", "--repeats", "3")
    first, second = saved["rows"]
    assert [first["backend"], second["backend"]] == ["opencv_telea", "native@hr_feather=0"]
    assert first["ratio_to_first"] == 1.0 and all(row["interleaved"] and len(row["times_ms"]) == 3 for row in (first, second))
    assert second["ratio_to_first"] == pytest.approx(second["median_ms"] / first["median_ms"])
    assert first["peak_mem_mb"] is None and first["commit"] == saved["commit"]


def test_latency_without_append_starts_a_new_file(tmp_path):
    (tmp_path / "latency.json").write_text(json.dumps({"rows": [{"backend": "opencv_telea", "size": 64}] * 3}))
    assert len(_latency(tmp_path, "--backends", "opencv_telea")["rows"]) == 1


def test_latency_unloadable_backend_fails_loudly_and_keeps_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)          # the triton backend then needs CUDA
    (tmp_path / "latency.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="1 of 1 measurements failed .*triton at 64.*not written"):
        _latency(tmp_path, "--backends", "triton", "--append")
    assert "needs a CUDA device" in capsys.readouterr().err
    assert json.loads((tmp_path / "latency.json").read_text()) == {"rows": []}


def test_latency_append_refuses_a_file_without_rows(tmp_path):
    (tmp_path / "latency.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="--append: .* not a latency result file"):
        _latency(tmp_path, "--backends", "opencv_telea", "--append")


def test_result_commit_is_head_and_dirty_counts_tracked_code_only(tmp_path, monkeypatch):
    import subprocess

    from rethined_engine.bench import env

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "bench" / "results" / "r.json").write_text("{}\n")
    git("init", "-q")
    git("add", "code.py", "bench/results/r.json")
    git("commit", "-q", "-m", "start")
    monkeypatch.setattr(env, "checkout", lambda: tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert env.git_commit() == head and env.git_dirty() is False
    (tmp_path / "bench" / "results" / "r.json").write_text("{\"rows\": []}\n")   # a benchmark's own output
    (tmp_path / "new.py").write_text("")                                          # untracked
    assert env.git_dirty() is False
    (tmp_path / "code.py").write_text("a = 2\n")
    assert env.git_dirty() is True


def test_result_commit_outside_a_checkout_comes_from_bench_commit(monkeypatch):
    from rethined_engine.bench import env

    monkeypatch.setattr(env, "checkout", lambda: None)
    monkeypatch.delenv("BENCH_COMMIT", raising=False)
    monkeypatch.delenv("BENCH_DIRTY", raising=False)
    with pytest.raises(SystemExit, match="BENCH_COMMIT=<git rev-parse HEAD"):
        env.run_environment("cpu")
    monkeypatch.setenv("BENCH_COMMIT", "working tree")
    with pytest.raises(SystemExit, match="BENCH_COMMIT: expected the hash"):
        env.run_environment("cpu")
    monkeypatch.setenv("BENCH_COMMIT", "6b5134e")
    with pytest.raises(SystemExit, match="BENCH_DIRTY: not set"):
        env.run_environment("cpu")
    monkeypatch.setenv("BENCH_DIRTY", "maybe")
    with pytest.raises(SystemExit, match="BENCH_DIRTY: expected 1"):
        env.run_environment("cpu")
    monkeypatch.setenv("BENCH_DIRTY", "1")
    assert env.run_environment("cpu") | {"commit": "6b5134e", "dirty": True} == env.run_environment("cpu")


def test_bench_commit_wins_over_the_checkout(monkeypatch):
    """A tree copied with a stale .git (HEAD not the tree's commit) is labelled by BENCH_COMMIT/BENCH_DIRTY."""
    from rethined_engine.bench import env

    monkeypatch.setenv("BENCH_COMMIT", "6b5134e")
    monkeypatch.setenv("BENCH_DIRTY", "0")
    assert env.checkout() is not None
    assert env.git_commit() == "6b5134e" and env.git_dirty() is False


ENVIRONMENT_KEYS = ("device", "commit", "dirty", "python", "torch", "triton", "numpy", "rethined_engine", "threads")


def _ran_here(record):
    """record carries this machine's device, versions and threads, a commit of this repository and the dirty flag."""
    import platform

    import torch

    import rethined_engine
    from rethined_engine.bench.env import device_name

    assert set(record) >= set(ENVIRONMENT_KEYS)
    assert record["device"] == device_name("cpu") and record["threads"] == torch.get_num_threads()
    assert (record["python"], record["torch"], record["numpy"], record["rethined_engine"]) == (
        platform.python_version(), torch.__version__, np.__version__, rethined_engine.__version__)
    assert len(record["commit"]) == 40 and _commit_exists(record["commit"]) and isinstance(record["dirty"], bool)


@pytest.fixture
def photos_96x128(tmp_path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "small"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(folder / f"q{i}.png")
    return folder


def test_quality_file_and_each_run_say_where_they_ran(photos_96x128, tmp_path):
    out = tmp_path / "results"
    cli_main(["bench", "quality", "--images", str(photos_96x128), "--resolutions", "96", "--methods", "ours",
              "--out", str(out)])
    saved = json.loads((out / "quality-small.json").read_text())
    (this_run,) = saved["runs"]
    for record in (saved, this_run):
        _ran_here(record)
    assert this_run["methods"] == ["ours"] and this_run["resolutions"] == [96]
    assert {k: saved[k] for k in ENVIRONMENT_KEYS} == {k: this_run[k] for k in ENVIRONMENT_KEYS}
    assert saved["commit"] in (out / "quality-small.md").read_text()


def test_quality_merge_into_a_file_written_before_runs_carried_the_environment(photos_96x128, tmp_path):
    """An older file (no `runs`, no dirty flag or versions) merges: its run keeps its own commit and device,
    the new run and the file's top level carry this run's environment."""
    out = tmp_path / "results"
    first = run(photos_96x128, [64], seed=0, out=out, methods=build_methods(["opencv_ns_r3"], "cpu"))
    old = {k: v for k, v in first.items() if k not in ENVIRONMENT_KEYS and k not in ("runs", "mask_family")}
    old |= {"commit": "0123abc", "device": "Old CPU"}
    old["rows"] = [{k: v for k, v in row.items() if k != "mask_family"} for row in old["rows"]]
    (out / "quality-small.json").write_text(json.dumps(old))
    merged = run(photos_96x128, [96], seed=0, out=out, methods=build_methods(["ours"], "cpu"), merge=True)
    saved = json.loads((out / "quality-small.json").read_text())
    assert saved["runs"] == merged["runs"] and len(saved["runs"]) == 2
    assert saved["runs"][0] == {"commit": "0123abc", "device": "Old CPU", "resolutions": [64]}
    _ran_here(saved)
    _ran_here(saved["runs"][1])
    assert {(r["method"], r["resolution"]) for r in saved["rows"]} == {("opencv_ns_r3", 64), ("ours", 96)}
    caption = (out / "quality-small.md").read_text().splitlines()[0]
    assert "0123abc" in caption and saved["commit"] in caption


def test_evaluate_json_says_where_it_ran(photos_96x128, tmp_path):
    from rethined_engine.train.evaluate import main as evaluate_main

    evaluate_main([str(photos_96x128), "--long-side", "96", "--json", str(tmp_path / "eval.json")])
    saved = json.loads((tmp_path / "eval.json").read_text())
    _ran_here(saved)
    assert saved["images"] == 2 and saved["long_side"] == 96


def test_latency_backend_names_can_pick_a_style_or_settings():
    from bench.latency import make_engine

    assert make_engine("torch@smooth", "cpu").config.lr_texture == "mix"
    assert make_engine("torch@realistic", "cpu").config.lr_texture == "copy"
    assert make_engine("torch+noseam@smooth", "cpu").config.seam_sigma == 0.0
    settings = make_engine("torch@copy_repeat_radius=0,copy_continuity=0.25", "cpu").config
    assert settings.copy_repeat_radius == 0 and settings.copy_continuity == 0.25 and settings.lr_texture == "copy"
    with pytest.raises(ValueError, match="NAME@KEY=VALUE"):
        make_engine("torch@copy_repeat_radius=0,smooth", "cpu")


def test_lr_runtimes_agree_on_a_small_image():
    pytest.importorskip("onnxruntime")
    from rethined_engine.bench.lr_runtimes import measure

    rows = measure(256, repeats=1, threads=1)
    assert [r["runtime"] for r in rows][0].startswith("torch compact")
    for row in rows:
        assert row["lr_result_max_abs_diff"] < 1e-4 and row["topk_index_differ_share"] == 0.0


def test_op_counter_counts_the_host_syncs_among_the_operations():
    """Reading a tensor as a bool and torch.equal make a GPU's host wait: counted as syncs (and as operations);
    arithmetic is not."""
    from rethined_engine.bench.op_count import OpCounter

    a, b = torch.zeros(4), torch.ones(4)
    counter = OpCounter(lambda stack: "here")
    with counter:
        c = a + b
        flag = bool((c > 0).any())
        same = torch.equal(a, b)
    assert flag and not same
    assert counter.syncs["here"] == 2 and counter.by_function["here"] == 5


def test_op_counter_counts_copies_to_the_host_inside_count_host_reads_only():
    """tolist() and cpu() reach no dispatch on a CPU tensor but copy to the host on a GPU: counted as syncs
    (not operations) inside count_host_reads, not outside it, and the Tensor methods are restored after."""
    from rethined_engine.bench.op_count import OpCounter

    before = (torch.Tensor.tolist, torch.Tensor.cpu)
    a = torch.arange(4)
    counter = OpCounter(lambda stack: "here")
    with counter:
        a.tolist()
    assert counter.syncs["here"] == 0
    with counter, counter.count_host_reads():
        assert a.tolist() == [0, 1, 2, 3] and torch.equal(a.cpu(), a)
    assert counter.syncs["here"] == 3 and counter.by_function["here"] == 1      # tolist, cpu, equal; equal's op
    assert (torch.Tensor.tolist, torch.Tensor.cpu) == before and "tolist" not in torch.Tensor.__dict__


def test_op_count_counts_the_lr_networks_operations():
    """bench.op_count: a positive count per style that its by-function table adds up to; the copy styles issue
    more operations than the attention mix (the propagation sweeps and the membrane)."""
    from rethined_engine.bench.op_count import count_style

    rows = {style: count_style(style, 64, 96) for style in ("realistic", "smooth")}
    for row in rows.values():
        assert row["ops"] > 0 and sum(row["by_function"].values()) == row["ops"]
    assert rows["realistic"]["ops"] > 2 * rows["smooth"]["ops"]
    assert "propagate_sources" in rows["realistic"]["by_function"]
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") == "1":  # the interpreter (conftest sets it without CUDA)
        triton_row = count_style("realistic", 64, 96, network="triton")
        launches = triton_row["by_function"]
        assert launches["triton:propagation_sweep_kernel"] == STYLES["realistic"]["copy_sweeps"]
        # the border match's membrane, and the flat fill's two (the flatness carried into the hole, the colours)
        membranes = 1 + 2 * STYLES["realistic"]["colour_anchor_flat"]
        assert launches["triton:jacobi_sweep_kernel"] > 0 and launches["triton:membrane_coarse_kernel"] == membranes
        assert launches["triton:membrane_pyramid_kernel"] == membranes and "membrane_pyramid" not in launches
        assert launches["triton:pool_search_kernel"] == launches["triton:pool_merge_kernel"] == 1
        assert "_rank_by_colour" not in launches
        assert launches["triton:filter_axis_kernel"] > 0
        # the copy steps' filters, the colour anchor and the flat fill's blurs are Triton kernels: no torch filter or
        # jump flood is left
        assert "_filter_along" not in launches and "nearest_seeds" not in launches
        assert launches["triton:anchor_cells_kernel"] == launches["triton:anchor_apply_kernel"] == 1
        lr_long_side = read_config(DEFAULT_WEIGHTS).lr_long_side                  # the shipped weights' LR size
        assert launches["triton:jump_flood_kernel"] == len(jump_steps(lr_long_side // ANCHOR_CELL))
        assert triton_row["ops"] < rows["realistic"]["ops"] / 2   # the copy steps' kernels


def test_coarse_colour_scores_every_guess_per_family(tmp_path, weights_path):
    """On flat photos a membrane through the known colours is exact, Navier-Stokes nearly so; the coarse CNN of a
    random weights file is not: the benchmark tells them apart, per mask family, in a JSON that says where it ran."""
    from rethined_engine.bench.coarse_colour import main as coarse_colour_main

    folder = tmp_path / "flat"
    folder.mkdir()
    for i, colour in enumerate([(200, 40, 90), (30, 160, 220)]):
        Image.fromarray(np.full((300, 280, 3), colour, np.uint8)).save(folder / f"p{i}.png")
    out = tmp_path / "colour.json"
    coarse_colour_main(["--images", str(folder), "--weights", str(weights_path), "--crops", "2", "--out", str(out)])
    saved = json.loads(out.read_text())
    _ran_here(saved)
    errors = saved["token_colour_rms"]
    name = weights_path.stem
    assert errors.keys() == {f"coarse[{name}]", f"lr_result[{name}]", "membrane", "navier_stokes"}
    assert all(by_family.keys() == {"strokes", "objects"} for by_family in errors.values())
    assert max(errors["membrane"].values()) < 1e-5 and max(errors["navier_stokes"].values()) < 1.0 / 255
    assert min(errors[f"coarse[{name}]"].values()) > 0.01


def test_flow_accuracy_scores_each_estimator_on_known_motions(photos, tmp_path, monkeypatch):
    """Rows per motion, noise level and estimator, each naming its commit; a merge keeps another commit's rows and
    replaces this one's."""
    from rethined_engine.bench import flow_accuracy

    monkeypatch.setattr(flow_accuracy, "WIDTH", 160)
    out = tmp_path / "flow.json"
    argv = ["flow_accuracy", "--photos", str(photos), "--limit", "1", "--noise", "0", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    flow_accuracy.main()
    rows = json.loads(out.read_text())["rows"]
    assert {(r["motion"], r["estimator"]) for r in rows} == {
        (m, e) for m in flow_accuracy.MOTIONS for e in ("opencv_dis", "torch_dis")}
    assert all(r["noise"] == 0 and r["photos"] == 1 and 0 <= r["outliers"] <= 1 for r in rows)
    saved = json.loads(out.read_text())
    saved["rows"] = [{**row, "commit": "0" * 40} for row in saved["rows"]] + rows
    out.write_text(json.dumps(saved))
    monkeypatch.setattr("sys.argv", argv + ["--merge"])
    flow_accuracy.main()
    assert len(json.loads(out.read_text())["rows"]) == 2 * len(rows)


def test_flow_accuracy_known_flows_move_the_named_pixels():
    from rethined_engine.bench.flow_accuracy import known_flow

    rng = np.random.default_rng(0)
    shift = known_flow("shift", 40, 60, rng)
    assert np.ptp(shift[..., 0]) == 0 and np.ptp(shift[..., 1]) == 0
    moving = known_flow("object", 40, 60, rng)
    assert 0 < (np.abs(moving - np.float32([3, 1])).sum(-1) > 0).mean() < 0.5     # an ellipse moves on its own
    with pytest.raises(ValueError, match="motion"):
        known_flow("spin", 40, 60, rng)


def test_frame_line_scan_names_the_side_holding_a_line(tmp_path):
    """bench.frame_lines: a photo with a dark last row is listed with its bottom side, one without is not; the
    rows carry each side's departure (levels) and agreement."""
    from bench.frame_lines import main as frame_lines_main

    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    smooth = np.clip(120 + rng.normal(0, 4, (96, 128, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(smooth).save(folder / "plain.png")
    framed = smooth.copy()
    framed[-1] = 20
    Image.fromarray(framed).save(folder / "framed.png")
    out = tmp_path / "frame-lines.json"
    frame_lines_main(["--images", str(folder), "--resolutions", "128", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["found"] == [["photos", "framed.png", "bottom"]]
    bottom = next(r for r in saved["rows"] if r["image"] == "framed.png" and r["side"] == "bottom")
    assert bottom["departure"] < -80 and bottom["agreement"] == 1.0 and bottom["frame_line"]
