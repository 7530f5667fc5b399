"""The adversarial term (`train.adversarial`): the discriminator's grid, which cells count, that it learns to tell
real patches from a blur, and a resumable run that trains with it."""
import json

import pytest
import torch
import torch.nn.functional as F

from rethined_engine.train.adversarial import DOWNSAMPLE, Critic, PatchDiscriminator, hole_share
from rethined_engine.train.train import CHECKPOINT, LOG, TrainConfig, train


@pytest.mark.parametrize("batch,h,w", [(1, 64, 64), (2, 96, 40)])
def test_one_logit_per_cell(batch, h, w):
    logits = PatchDiscriminator()(torch.rand(batch, 3, h, w))
    assert logits.shape == (batch, 1, h // DOWNSAMPLE, w // DOWNSAMPLE)


def test_hole_share_counts_hole_pixels_per_cell():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :4] = 1.0
    assert torch.equal(hole_share(mask)[0, 0], torch.tensor([[0.5, 0.0], [0.0, 0.0]]))


def test_without_a_hole_the_fill_gives_no_evidence():
    """Known pixels are the photo's own: the generator term is 0 and the discriminator sees only real cells."""
    torch.manual_seed(0)
    critic = Critic(lr=1e-3)
    image, no_hole = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    assert float(critic.generator_loss(image, no_hole)) == 0.0
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    critic.generator_loss(fake, torch.ones(2, 1, 32, 32)).backward()
    assert fake.grad.abs().sum() > 0                                   # the fill takes the gradient ...
    assert all(p.grad is None for p in critic.net.parameters())         # ... the discriminator none


def test_the_discriminator_learns_to_tell_texture_from_its_blur():
    """Real: noise textures; fake: the same blurred in the hole. After some updates the real cells score above the
    fake hole cells, and the generator term (which a fill lowers by looking real) is positive."""
    torch.manual_seed(0)
    critic = Critic(lr=2e-3)
    mask = torch.zeros(4, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1.0
    first = None
    for _ in range(60):
        real = torch.rand(4, 3, 32, 32)
        blurred = F.avg_pool2d(real, 5, stride=1, padding=2, count_include_pad=False)
        fake = torch.where(mask > 0, blurred, real)
        loss = critic.step(real, fake, mask)
        first = loss if first is None else first
    assert loss < first
    with torch.no_grad():
        real_score = critic.net(real).mean()
        fake_score = (critic.net(fake) * hole_share(mask)).sum() / hole_share(mask).sum()
    assert real_score > fake_score
    assert float(critic.generator_loss(fake, mask)) > float(critic.generator_loss(real, mask))


def test_a_run_with_the_adversarial_term_logs_it_and_resumes(photo_dir, tmp_path):
    out = tmp_path / "adv"
    cfg = dict(batch=2, crop=64, warmup=1, checkpoint_every=1, adversarial_weight=0.1)
    train(photo_dir, out, TrainConfig(steps=2, **cfg))
    saved = torch.load(out / CHECKPOINT, weights_only=False)
    assert set(saved["critic"]) == {"net", "opt"}
    train(photo_dir, out, TrainConfig(steps=3, **cfg))
    lines = [json.loads(line) for line in (out / LOG).read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all("adversarial" in line and "discriminator" in line for line in lines)
    again = tmp_path / "again"                      # 2 steps + resume = 3 steps at once, discriminator included
    train(photo_dir, again, TrainConfig(steps=3, **cfg))
    a, b = (torch.load(run / CHECKPOINT, weights_only=False)["critic"]["net"] for run in (out, again))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg,message", [(dict(adversarial_weight=-1.0), "adversarial_weight: expected >= 0"),
                                         (dict(adversarial_weight=0.1, crop=60), "crop: expected a multiple of 8")])
def test_bad_adversarial_settings_are_named(photo_dir, tmp_path, cfg, message):
    with pytest.raises(ValueError, match=message):
        train(photo_dir, tmp_path / "bad", TrainConfig(steps=1, batch=2, **{"crop": 64, **cfg}))
