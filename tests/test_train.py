"""Training pieces: masks, data, losses, a resumable run, export."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rethined_engine import Engine, ModelConfig
from rethined_engine.config import STYLES
from rethined_engine.weights import load_model, read_metadata
from rethined_engine.train.data import PhotoCrops
from rethined_engine.train.losses import (LossWeights, copy_distance_loss, focal_frequency_loss, gradient_l1,
                                          patch_swd, total_loss, true_token_distances)
from rethined_engine.train.masks import random_mask
from rethined_engine.train.train import (CHECKPOINT, LOG, TRAINING_STYLE, TrainConfig, export, learning_rate, main,
                                         train)

from conftest import make_model


@pytest.mark.parametrize("h,w", [(256, 256), (100, 333)])
def test_mask_coverage_and_determinism(h, w):
    for seed in range(5):
        m1 = random_mask(h, w, np.random.default_rng(seed))
        m2 = random_mask(h, w, np.random.default_rng(seed))
        assert m1.dtype == bool and m1.shape == (h, w)
        assert np.array_equal(m1, m2)
        assert 0.30 <= m1.mean() <= 0.50
    assert not np.array_equal(random_mask(h, w, np.random.default_rng(0)), random_mask(h, w, np.random.default_rng(1)))


def test_mask_custom_coverage_and_bad_range():
    m = random_mask(128, 128, np.random.default_rng(0), (0.05, 0.10))
    assert 0.05 <= m.mean() <= 0.10
    with pytest.raises(ValueError, match="coverage"):
        random_mask(64, 64, np.random.default_rng(0), (0.6, 0.5))


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3)
    assert learning_rate(0, cfg) == pytest.approx(1e-4)
    assert learning_rate(9, cfg) == pytest.approx(1e-3)
    assert learning_rate(55, cfg) == pytest.approx(5e-4)
    assert learning_rate(100, cfg) == pytest.approx(0.0, abs=1e-12)


def test_focal_frequency_zero_iff_equal():
    x = torch.rand(2, 3, 16, 16)
    assert float(focal_frequency_loss(x, x)) == 0.0
    assert float(focal_frequency_loss(x, x.flip(-1))) > 0.0


def test_gradient_loss_sees_seams_in_holes_only():
    target = torch.rand(1, 3, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    assert float(gradient_l1(target, target, mask)) == 0.0
    seam = target.clone()
    seam[..., 4:12, 8:12] += 0.2                       # a step inside the hole: a token seam
    assert float(gradient_l1(seam, target, mask)) > 0.0
    outside = target.clone()
    outside[..., 13:, 13:] += 0.2                      # far from the hole: ignored
    assert float(gradient_l1(outside, target, mask)) == 0.0
    flat_shift = target + 0.2 * mask                   # a constant offset in the hole steps at its border
    assert float(gradient_l1(flat_shift, target, mask)) > 0.0


def test_losses_finite_and_differentiable():
    model = make_model(seed=4).train()
    image = torch.rand(2, 3, 64, 64)
    mask = torch.from_numpy(np.stack([random_mask(64, 64, np.random.default_rng(i)) for i in range(2)]))[:, None]
    out = model.forward_lr(image, mask.float(), torch.ones(1, 64, dtype=torch.bool))
    loss, parts = total_loss(out, image, mask.float(), 8, LossWeights(hole_ssim=1.0))
    assert torch.isfinite(loss) and all(np.isfinite(v) for v in parts.values())
    assert 0.0 <= parts["hole_ssim"] <= 2.0
    loss.backward()
    assert model.patch_match.to_q.weight.grad is not None
    assert model.coarse_net.stem[0].conv_branches[0][0].weight.grad.abs().sum() > 0


def test_copy_distance_is_the_expected_error_of_a_copy_drawn_from_the_attention():
    """One-hot attention on each hole token's nearest key gives the nearest key's distance (the least any
    attention can reach); uniform attention over the keys their mean; both against a plain loop."""
    model = make_model(seed=5).train()
    image = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:40, 8:48] = 1.0
    out = model.forward_lr(image, mask, torch.ones(1, 64, dtype=torch.bool))
    dist = true_token_distances(out, image, 8)
    tokens = image.reshape(3, 8, 8, 8, 8).permute(1, 3, 0, 2, 4).reshape(64, -1)
    keys = [j for j in range(64) if out.key_ok[0, j]]
    holes = [i for i in range(64) if out.query_masked[0, i]]
    assert len(keys) == 49 and len(holes) == 15
    plain = {(i, j): float((tokens[i] - tokens[j]).pow(2).mean().sqrt()) for i in holes for j in keys}
    nearest = torch.zeros(1, 64, 64)
    uniform = torch.zeros(1, 64, 64)
    for i in holes:
        nearest[0, i, min(keys, key=lambda j: plain[i, j])] = 1.0
        uniform[0, i, keys] = 1.0 / len(keys)
    expect_nearest = np.mean([min(plain[i, j] for j in keys) for i in holes])
    expect_uniform = np.mean([np.mean([plain[i, j] for j in keys]) for i in holes])
    assert float(copy_distance_loss(out._replace(attn=nearest), dist)) == pytest.approx(expect_nearest, rel=1e-5)
    assert float(copy_distance_loss(out._replace(attn=uniform), dist)) == pytest.approx(expect_uniform, rel=1e-5)
    assert expect_nearest < expect_uniform
    only_copy = LossWeights(hole_l1=0, coarse_l2=0, mixed_l1=0, focal_freq=0, hole_grad_l1=0, retrieval=0,
                            copy_distance=1.0)
    loss, parts = total_loss(out, image, mask, 8, only_copy)
    loss.backward()                                    # on its own it reaches the query/key projections
    assert model.patch_match.to_q.weight.grad.abs().sum() > 0 and "copy_distance" in parts


def test_photo_crops(photo_dir):
    data = PhotoCrops(photo_dir, crop=64)
    image, mask = data.sample(3, np.random.default_rng(0))
    assert image.shape == (3, 3, 64, 64) and mask.shape == (3, 1, 64, 64)
    assert 0 <= image.min() and image.max() <= 1
    image2, mask2 = data.sample(3, np.random.default_rng(0))
    assert torch.equal(image, image2) and torch.equal(mask, mask2)


def test_photo_crops_long_side_range(photo_dir):
    with pytest.raises(ValueError, match="long_side"):
        PhotoCrops(photo_dir, crop=64, long_side=(600, 500))
    image, _ = PhotoCrops(photo_dir, crop=64, long_side=(512, 512)).sample(2, np.random.default_rng(0))
    assert image.shape == (2, 3, 64, 64)


def test_photo_crops_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        PhotoCrops(tmp_path)


def test_train_resume_and_export(photo_dir, tmp_path, rng):
    out = tmp_path / "run"
    cfg = TrainConfig(steps=2, batch=2, crop=64, warmup=1, checkpoint_every=1)
    train(photo_dir, out, cfg)
    first = torch.load(out / CHECKPOINT, weights_only=False)
    assert first["step"] == 2
    train(photo_dir, out, TrainConfig(steps=3, batch=2, crop=64, warmup=1, checkpoint_every=1))
    assert torch.load(out / CHECKPOINT, weights_only=False)["step"] == 3
    steps = [json.loads(line)["step"] for line in (out / LOG).read_text().splitlines()]
    assert steps == [1, 2, 3]
    # a fresh 3-step run gives the same weights as 2 steps + resume
    again = tmp_path / "again"
    train(photo_dir, again, TrainConfig(steps=3, batch=2, crop=64, warmup=1, checkpoint_every=1))
    a = torch.load(out / CHECKPOINT, weights_only=False)["model"]
    b = torch.load(again / CHECKPOINT, weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    weights = tmp_path / "w.safetensors"
    export(out / CHECKPOINT, weights)
    top3 = tmp_path / "top3.safetensors"
    main(["--out", str(out), "--export", str(top3), "--export-hr-topk", "3", "--export-hf-decay", "1.5",
          "--export-hf-fine-decay", "0", "--export-hf-mid-gain", "0.5", "--export-seam-sigma", "2",
          "--export-lineage", "a -> b"])
    cfg = load_model(top3).cfg
    assert (cfg.hr_topk, cfg.hf_decay, cfg.hf_fine_decay, cfg.hf_mid_gain, cfg.seam_sigma, cfg.seam_gain) == \
        (3, 1.5, 0.0, 0.5, 2.0, 8.0)
    assert read_metadata(top3)["lineage"] == "a -> b"
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[10:20, 10:30] = True
    result = Engine(weights=weights, device="cpu").inpaint(img, mask)
    assert np.array_equal(result[~mask], img[~mask])


def test_fine_tune_from_weights_file(photo_dir, tmp_path):
    """A run can start from a committed .safetensors file (inference form), resume, and export again."""
    shipped = tmp_path / "shipped.safetensors"
    train(photo_dir, tmp_path / "seed", TrainConfig(steps=1, batch=1, crop=64, warmup=1))
    export(tmp_path / "seed" / CHECKPOINT, shipped)
    out = tmp_path / "fine"
    zero_lr = TrainConfig(steps=1, batch=2, crop=64, warmup=1, lr=0.0, checkpoint_every=1)
    train(photo_dir, out, zero_lr, init_from=shipped)
    state = torch.load(out / CHECKPOINT, weights_only=False)
    assert state["fused"] and state["step"] == 1
    reference = load_model(shipped).state_dict()
    assert state["model"].keys() == reference.keys()
    for key, value in reference.items():      # lr 0: the run starts exactly at the file's weights
        torch.testing.assert_close(state["model"][key], value)
    train(photo_dir, out, TrainConfig(steps=2, batch=2, crop=64, warmup=1, lr=1e-3), init_from=shipped)
    resumed = torch.load(out / CHECKPOINT, weights_only=False)
    assert resumed["fused"] and resumed["step"] == 2
    assert any(not torch.equal(resumed["model"][k], reference[k]) for k in reference)
    again = tmp_path / "again.safetensors"
    export(out / CHECKPOINT, again)
    for key, value in load_model(again).state_dict().items():
        torch.testing.assert_close(value, resumed["model"][key].half().float())
    with pytest.raises(ValueError, match="init-skip"):
        train(photo_dir, tmp_path / "bad", zero_lr, init_from=shipped, init_skip=("patch_match.to_q",))
    # the init file's inference defaults changed since (same tensors, new hf_decay): the run still resumes,
    # with its own settings; another architecture is refused
    main(["--out", str(out), "--export", str(shipped), "--export-hf-decay", "2.5"])
    train(photo_dir, out, TrainConfig(steps=3, batch=2, crop=64, warmup=1, lr=1e-3), init_from=shipped)
    resumed = torch.load(out / CHECKPOINT, weights_only=False)
    assert resumed["step"] == 3
    assert ModelConfig.from_json(resumed["model_config"]).hf_decay == STYLES[TRAINING_STYLE]["hf_decay"] != 2.5
    with pytest.raises(ValueError, match="architecture"):
        train(photo_dir, out, TrainConfig(steps=4, batch=2, crop=64, warmup=1), ModelConfig(coherence_hidden=8))


def test_fine_tune_a_copy_style_file_and_export_a_style(photo_dir, tmp_path):
    """A file whose default is a copy style (no gradient through the copy choice) fine-tunes with the mixed
    attention; --export-style writes a style's settings as the new file's defaults."""
    train(photo_dir, tmp_path / "seed", TrainConfig(steps=1, batch=1, crop=64, warmup=1))
    realistic = tmp_path / "realistic.safetensors"
    main(["--out", str(tmp_path / "seed"), "--export", str(realistic), "--export-style", "realistic",
          "--export-seam-gain", "4"])
    cfg = load_model(realistic).cfg
    assert all(getattr(cfg, name) == value for name, value in STYLES["realistic"].items() if name != "seam_gain")
    assert cfg.seam_gain == 4.0                        # single --export-* settings go on top of the style
    out = tmp_path / "fine"
    train(photo_dir, out, TrainConfig(steps=2, batch=2, crop=64, warmup=1, lr=1e-3), init_from=realistic)
    state = torch.load(out / CHECKPOINT, weights_only=False)
    assert state["step"] == 2 and ModelConfig.from_json(state["model_config"]).lr_texture == "mix"
    assert all(math.isfinite(json.loads(line)["retrieval"]) for line in (out / LOG).read_text().splitlines())


def test_patch_swd_is_the_realism_metric_as_a_loss():
    """0 for identical images; a blurred truth scores worse than the truth with faint noise, as the metric says; its
    gradient is finite; the coarse fill's term joins total_loss and reaches the coarse network."""
    from rethined_engine.metrics import swd_levels

    torch.manual_seed(0)
    target = torch.rand(2, 3, 48, 64)
    mask = torch.zeros(2, 1, 48, 64)
    mask[:, :, 12:36, 16:48] = 1.0
    assert float(patch_swd(target, target, mask)) == 0.0
    blurred = F.avg_pool2d(F.pad(target, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    noisy = (target + 0.01 * torch.randn_like(target)).clamp(0, 1)
    assert float(patch_swd(blurred, target, mask)) > 3 * float(patch_swd(noisy, target, mask))
    assert float(swd_levels(blurred, target, mask).mean()) > float(swd_levels(noisy, target, mask).mean())
    pred = blurred.clone().requires_grad_(True)
    patch_swd(pred, target, mask).backward()
    assert pred.grad.abs().sum() > 0 and torch.isfinite(pred.grad).all()
    model = make_model(seed=5).train()
    image, hole = torch.rand(2, 3, 64, 64), F.pad(mask[..., :32], (16, 16, 0, 16))        # the model's sizes
    out = model.forward_lr(image, hole, torch.ones(1, 64, dtype=torch.bool))
    loss, parts = total_loss(out, image, hole, 8, LossWeights(coarse_swd=1.0))
    loss.backward()
    assert parts["coarse_swd"] > 0 and model.coarse_net.stem[0].conv_branches[0][0].weight.grad.abs().sum() > 0


def test_retrieval_weight_scales_its_term(photo_dir, tmp_path):
    """--retrieval-weight sets the retrieval term's weight in the loss (same seed, same first batch)."""
    first = {}
    for weight in (0.05, 2.0):
        out = tmp_path / f"w{weight}"
        train(photo_dir, out, TrainConfig(steps=1, batch=2, crop=64, warmup=1, retrieval_weight=weight))
        first[weight] = json.loads((out / LOG).read_text().splitlines()[0])
    a, b = first[0.05], first[2.0]
    assert a["retrieval"] == pytest.approx(b["retrieval"], rel=1e-6)
    assert b["loss"] - a["loss"] == pytest.approx((2.0 - 0.05) * a["retrieval"], rel=1e-4)


def test_hr_training_path_is_the_inference_path(rng):
    """The HR crops' forward (masked downsampling, LR net, attention upscaling) is what Rethined.forward runs."""
    from rethined_engine import ModelConfig, Rethined
    from rethined_engine.train.train import hr_forward

    torch.manual_seed(0)
    model = Rethined(ModelConfig(lr_long_side=64)).reparameterize()
    image = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    mask = torch.from_numpy(np.stack([random_mask(128, 128, rng) for _ in range(2)]))[:, None].float()
    key_inside = torch.ones(1, (64 // 8) ** 2, dtype=torch.bool)
    with torch.no_grad():
        *_, hr = hr_forward(model, image, mask, 2, key_inside)
        expected = model(image, mask)
    torch.testing.assert_close(hr, expected, rtol=0, atol=1e-6)


def test_hr_losses_reach_the_attention(photo_dir, tmp_path):
    """HR crops: the run logs the HR terms, and the HR losses alone move the Q/K projections."""
    from rethined_engine import ModelConfig, Rethined
    from rethined_engine.train.losses import LossWeights, log_energy_ratio
    from rethined_engine.train.train import _step_losses

    out = tmp_path / "hr"
    train(photo_dir, out, TrainConfig(steps=1, batch=2, crop=64, warmup=1, hr_scale=2, hr_ssim_weight=1.0,
                                      hr_sharpness_weight=0.1, photo_min=64, photo_max=96))
    logged = json.loads((out / LOG).read_text().splitlines()[0])
    assert {"hr_ssim", "hr_sharpness", "hr_l1"} <= logged.keys()
    torch.manual_seed(0)
    model = Rethined(ModelConfig()).reparameterize().train()
    image = torch.rand(2, 3, 128, 128)
    mask = torch.zeros(2, 1, 128, 128)
    mask[:, :, 30:90, 20:100] = 1
    no_lr = LossWeights(hole_l1=0, coarse_l2=0, mixed_l1=0, focal_freq=0, hole_grad_l1=0, retrieval=0,
                        hr_ssim=1.0, hr_sharpness=0.1)
    loss = _step_losses(model, image, mask, 2, torch.ones(1, 64, dtype=torch.bool), no_lr)[0]
    loss.backward()
    assert model.patch_match.to_q.weight.grad.abs().sum() > 0
    # the sharpness term: 0 for equal images, log(4) for a 2x contrast (4x Laplacian energy)
    assert float(log_energy_ratio(image, image, mask)) == 0.0
    assert abs(float(log_energy_ratio(2 * image, image, mask)) - np.log(4.0)) < 1e-5
    with pytest.raises(ValueError, match="hr_scale"):
        train(photo_dir, tmp_path / "bad", TrainConfig(steps=1, batch=1, crop=64, hr_scale=0))


def test_warm_start_skips_prefixes(photo_dir, tmp_path):
    from rethined_engine import ModelConfig, Rethined
    from rethined_engine.train.train import warm_start

    run = tmp_path / "run"
    train(photo_dir, run, TrainConfig(steps=1, batch=1, crop=64, warmup=1))
    torch.manual_seed(123)
    fresh = Rethined(ModelConfig())
    before_q = fresh.patch_match.to_q.weight.clone()
    loaded = warm_start(fresh, run / CHECKPOINT, ("patch_match.to_q",))
    trained = torch.load(run / CHECKPOINT, weights_only=False)["model"]
    assert "patch_match.to_k.weight" in loaded and not any(k.startswith("patch_match.to_q") for k in loaded)
    assert torch.equal(fresh.patch_match.to_q.weight, before_q)
    assert torch.equal(fresh.patch_match.to_k.weight, trained["patch_match.to_k.weight"])


def test_attention_starts_as_nearest_neighbour():
    """Tied Q/K initialisation: a hole token that duplicates a known token attends to it most."""
    from rethined_engine.model.patchmatch import NeuralPatchMatch
    from rethined_engine import ModelConfig

    torch.manual_seed(0)
    npm = NeuralPatchMatch(ModelConfig(), feature_channels=4)
    tokens = torch.rand(1, 6, 192)
    tokens[0, 5] = tokens[0, 2]  # the hole's content equals known token 2
    feats = torch.zeros(1, 4, 2, 3)
    q, k = npm.project(tokens, feats)
    sims = (q[0, 5] @ k[0, :5].T)
    assert int(sims.argmax()) == 2


def test_evaluate_reports_every_method(tmp_path):
    from rethined_engine.train.evaluate import evaluate
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    result = evaluate(tmp_path, None, long_side=160)
    shipped = Engine().config
    assert result["images"] == 2
    assert result["defaults"] == {"hr_topk": shipped.hr_topk, "hf_decay": shipped.hf_decay,
                                  "hf_fine_decay": shipped.hf_fine_decay, "hf_mid_gain": shipped.hf_mid_gain,
                                  "seam_sigma": shipped.seam_sigma, "seam_gain": shipped.seam_gain}
    assert set(result["summary"]) == {"ours", "ours_top1", "ours_top4", "ours_dense", "ours_no_hf", "coarse_bicubic",
                                      "untrained"}
    for row in result["rows"]:
        assert row["size"] == [96, 160] and 0.3 <= row["coverage"] <= 0.5
        assert all(np.isfinite(row[k]) for k in ("psnr", "ssim", "l1", "sharpness"))


def test_pack_photos_for_a_remote_run(tmp_path):
    from PIL import Image

    from rethined_engine.train.data import CACHE_LONG_SIDE, list_images
    from rethined_engine.train.photos import main as photos_main

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1300, 700, 3), dtype=np.uint8)).save(src / "big.png")
    Image.fromarray(rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)).save(src / "small.png")
    assert photos_main([str(tmp_path / "packed"), "--pack-from", str(src)]) == 0
    sizes = {p.name: Image.open(p).size for p in list_images(tmp_path / "packed")}
    assert sizes == {"big.jpg": (round(700 * CACHE_LONG_SIDE / 1300), CACHE_LONG_SIDE), "small.jpg": (80, 50)}


def test_rule_and_pilot_photos_are_linked_in_the_order_the_rules_read_them(tmp_path):
    """photos.select: DEST/train-select holds TRAIN_SELECT, listed in its order, the pilot folder all but the rule
    photos; a missing training photo is named."""
    from rethined_engine.train.data import list_images
    from rethined_engine.train.photos import RULE_PHOTOS, TRAIN_SELECT, select

    (tmp_path / "train").mkdir()
    for name in TRAIN_SELECT[:-1]:
        (tmp_path / "train" / name).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=TRAIN_SELECT[-1]):
        select(tmp_path)
    (tmp_path / "train" / TRAIN_SELECT[-1]).write_bytes(b"")
    written = select(tmp_path)
    assert [p.name for p in list_images(tmp_path / "train-select")] == TRAIN_SELECT
    assert [p.name for p in list_images(tmp_path / "pilot")] == TRAIN_SELECT[RULE_PHOTOS:]
    assert written["pilot"][0].resolve() == (tmp_path / "train" / TRAIN_SELECT[RULE_PHOTOS]).resolve()
    assert select(tmp_path) == written                # a second run keeps the links


def test_wheel_photos_are_read_from_the_cached_wheel(tmp_path):
    """Offline: a cached wheel is opened, not downloaded; scipy's raw face.dat becomes a PNG."""
    import bz2
    import io
    import zipfile

    from PIL import Image

    from rethined_engine.train.photos import FACE_SHAPE, WHEEL_TRAIN, wheel_photo

    requirement, member = next(entry for entry in WHEEL_TRAIN if entry[1].endswith("face.dat"))
    name, version = requirement.split("==")
    (tmp_path / "wheels").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, FACE_SHAPE, dtype=np.uint8)
    with zipfile.ZipFile(tmp_path / "wheels" / f"{name}-{version}-cp311-cp311-manylinux2014_x86_64.whl", "w") as wheel:
        wheel.writestr(member, bz2.compress(pixels.tobytes()))
    filename, data = wheel_photo(requirement, member, tmp_path)
    assert filename == "scipy__face.png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
