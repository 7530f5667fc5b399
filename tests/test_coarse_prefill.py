"""The coarse CNN's membrane prefill (`ModelConfig.coarse_prefill`): what it fills, and that every path that
builds the model (weights files, TorchScript, the exported graph, fine-tuning) keeps it."""
import numpy as np
import pytest
import torch

from rethined_engine import Engine, ModelConfig
from rethined_engine.model.coarse import PREFILL_CELL, membrane_prefill
from rethined_engine.train.data import PhotoCrops
from rethined_engine.train.masks import random_mask
from rethined_engine.train.train import CHECKPOINT, TrainConfig, export, train, with_prefill
from rethined_engine.weights import load_model, read_config, save_inference_weights

from conftest import make_model

MEMBRANE = ModelConfig(coarse_prefill="membrane")


def _hole(height: int, width: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(random_mask(height, width, rng))[None, None].float()


@pytest.mark.parametrize("height, width", [(64, 96), (128, 64)])
def test_prefill_keeps_known_pixels_and_stays_within_their_colours(height, width):
    g = torch.Generator().manual_seed(height + width)
    image = torch.rand(2, 3, height, width, generator=g)
    mask = torch.cat([_hole(height, width, 0), _hole(height, width, 1)])
    filled = membrane_prefill(image * (1 - mask), mask)
    known = mask.expand_as(image) == 0
    assert torch.equal(filled[known], (image * (1 - mask))[known])
    for b in range(2):   # a membrane of known colours stays within their range (maximum principle)
        known_values = image[b][known[b]].reshape(-1)
        hole_values = filled[b][~known[b]]
        assert hole_values.min() >= known_values.min() - 1e-5 and hole_values.max() <= known_values.max() + 1e-5


def test_prefill_of_a_flat_image_is_flat_and_of_a_ramp_follows_it():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 20:44] = 1.0
    flat = torch.full((1, 3, 64, 64), 0.3)
    torch.testing.assert_close(membrane_prefill(flat * (1 - mask), mask), flat)
    ramp = torch.linspace(0.0, 1.0, 64).expand(1, 3, 64, 64).contiguous()   # left to right
    filled = membrane_prefill(ramp * (1 - mask), mask)
    # a harmonic fill of a linear ramp is the ramp, up to the cell grid's resolution (PREFILL_CELL px)
    assert (filled - ramp).abs().max() < PREFILL_CELL / 64


def test_prefill_changes_only_what_the_network_sees_in_the_hole():
    """The same tensors with coarse_prefill "membrane" give another coarse fill than with "zeros"; both ignore
    the hole's own values."""
    zeros, membrane = make_model(cfg=ModelConfig()), make_model(cfg=MEMBRANE)
    membrane.load_state_dict(zeros.state_dict())
    image, mask = torch.rand(1, 3, 64, 64), _hole(64, 64, 2)
    noisy = torch.where(mask > 0, torch.rand_like(image), image)
    with torch.no_grad():
        for model in (zeros, membrane):
            torch.testing.assert_close(model.coarse_net(image, mask)[0], model.coarse_net(noisy, mask)[0])
        assert not torch.allclose(zeros.coarse_net(image, mask)[0], membrane.coarse_net(image, mask)[0])


def test_config_names_the_choices():
    with pytest.raises(ValueError, match="coarse_prefill must be one of"):
        ModelConfig(coarse_prefill="mean")


def test_weights_file_torchscript_and_engine_keep_the_prefill(tmp_path, rng):
    path = tmp_path / "membrane.safetensors"
    save_inference_weights(make_model(cfg=MEMBRANE.replace(lr_texture="copy", hr_topk=1)), path)
    assert read_config(path).coarse_prefill == "membrane"
    model = load_model(path)
    assert model.coarse_net.membrane_prefill
    image = torch.rand(1, 3, 96, 128)
    mask = torch.zeros(1, 1, 96, 128)
    mask[..., 30:70, 40:90] = 1.0
    with torch.no_grad():
        eager = model(image, mask)
        scripted = torch.jit.script(model)(image, mask)
    torch.testing.assert_close(scripted, eager)
    img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    hole = mask[0, 0].numpy() > 0
    out_torch = Engine(weights=path, device="cpu", backend="torch").inpaint(img, hole)
    out_native = Engine(weights=path, device="cpu").inpaint(img, hole)
    assert np.array_equal(out_torch[~hole], img[~hole])
    assert np.abs(out_torch.astype(int) - out_native.astype(int)).max() <= 1


def test_fine_tuning_switches_a_file_to_the_prefill(photo_dir, tmp_path):
    shipped = tmp_path / "zeros.safetensors"
    train(photo_dir, tmp_path / "seed", TrainConfig(steps=1, batch=1, crop=64, warmup=1))
    export(tmp_path / "seed" / CHECKPOINT, shipped)
    out = tmp_path / "prefill"
    run = TrainConfig(steps=1, batch=2, crop=64, warmup=1, lr=0.0, checkpoint_every=1, coarse_prefill="membrane")
    train(photo_dir, out, run, init_from=shipped)
    state = torch.load(out / CHECKPOINT, weights_only=False)
    assert ModelConfig.from_json(state["model_config"]).coarse_prefill == "membrane"
    for key, value in load_model(shipped).state_dict().items():   # lr 0: the file's own tensors
        torch.testing.assert_close(state["model"][key], value)
    train(photo_dir, out, TrainConfig(steps=2, batch=2, crop=64, warmup=1, coarse_prefill="membrane"), init_from=shipped)
    assert torch.load(out / CHECKPOINT, weights_only=False)["step"] == 2
    exported = tmp_path / "membrane.safetensors"
    export(out / CHECKPOINT, exported)
    assert read_config(exported).coarse_prefill == "membrane"
    with pytest.raises(ValueError, match="architecture"):   # resuming with the other prefill is refused
        train(photo_dir, out, TrainConfig(steps=3, batch=2, crop=64, warmup=1, coarse_prefill="zeros"), init_from=shipped)


def test_with_prefill_keeps_the_tensors():
    model = make_model(cfg=ModelConfig())
    same = with_prefill(model, "")
    assert same is model and with_prefill(model, "zeros") is model
    rebuilt = with_prefill(model, "membrane")
    assert rebuilt.cfg.coarse_prefill == "membrane"
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)


def test_object_share_draws_object_masks_and_none_keeps_the_former_batches(photo_dir):
    strokes = PhotoCrops(photo_dir, crop=64)
    _, before = strokes.sample(3, np.random.default_rng(5))
    _, after = PhotoCrops(photo_dir, crop=64, object_share=0.0).sample(3, np.random.default_rng(5))
    assert torch.equal(before, after)
    _, objects = PhotoCrops(photo_dir, crop=64, object_share=1.0).sample(6, np.random.default_rng(5))
    coverage = objects.mean(dim=(1, 2, 3))
    assert coverage.min() > 0.0 and coverage.max() <= 0.3 < before.mean(dim=(1, 2, 3)).min()
    with pytest.raises(ValueError, match="object_share"):
        PhotoCrops(photo_dir, crop=64, object_share=1.5)
