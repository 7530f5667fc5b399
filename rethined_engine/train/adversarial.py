"""An adversarial term for training: a small patch discriminator that judges the hole (as LaMa and MI-GAN train).

L1, SSIM and the other reconstruction terms reward the mean of the plausible fills, a blur; a discriminator that
tells the fill's patches from real ones rewards a fill that looks real instead. `PatchDiscriminator` maps an image
to a grid of logits, one per cell of DOWNSAMPLE px, each judging the patch its receptive field sees. The hinge
losses (`Critic`) count the real images' cells all as real and the filled images' cells as fake by their share of
hole pixels: a cell of known pixels is the photo's own, neither real nor fake evidence about the fill.

Shapes: images (B, 3, h, w) in [0, 1] with h and w multiples of DOWNSAMPLE; masks (B, 1, h, w) float {0, 1},
1 = hole.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

WIDTHS = (32, 64, 128)        # channels of the three stride-2 convolutions
DOWNSAMPLE = 2 ** len(WIDTHS)  # px of the input per logit cell
KERNEL = 4                    # stride-2 convolutions' kernel (PatchGAN's)
SLOPE = 0.2                   # LeakyReLU's negative slope
ADAM_BETAS = (0.5, 0.999)     # the discriminator's Adam (the usual GAN setting)


class PatchDiscriminator(nn.Module):
    """(B, 3, h, w) in [0, 1] -> (B, 1, h / DOWNSAMPLE, w / DOWNSAMPLE) logits (> 0: real). Three spectrally
    normalised 4 x 4 stride-2 convolutions (WIDTHS) with LeakyReLU, then a 3 x 3 convolution to one channel; the
    receptive field of a cell is 38 px. Inputs are centred to [-1, 1]."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for width in WIDTHS:
            layers += [spectral_norm(nn.Conv2d(channels, width, KERNEL, stride=2, padding=1)),
                       nn.LeakyReLU(SLOPE)]
            channels = width
        layers.append(spectral_norm(nn.Conv2d(channels, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image * 2.0 - 1.0)


def hole_share(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w) hole mask -> (B, 1, h / DOWNSAMPLE, w / DOWNSAMPLE): the share of each logit cell's pixels
    that are hole."""
    return F.avg_pool2d(mask, DOWNSAMPLE)


def _weighted_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean of x weighted by weight (same shape); 0 where weight sums to 0 (no hole: no evidence)."""
    return (x * weight).sum() / weight.sum().clamp_min(1e-6)


class Critic:
    """The discriminator, its optimiser and its two losses.

    `generator_loss(fake, mask)`: minus the hole-weighted mean logit of the filled images (the fill's generator
    lowers it by looking real); the discriminator's parameters take no gradient from it.
    `step(real, fake, mask)`: one discriminator update on the hinge loss (real cells above +1, the filled images'
    hole cells below -1, weighted by `hole_share`); returns that loss."""

    def __init__(self, lr: float, device: str | torch.device = "cpu"):
        self.net = PatchDiscriminator().to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, betas=ADAM_BETAS)

    def generator_loss(self, fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.net.requires_grad_(False)
        try:
            return -_weighted_mean(self.net(fake), hole_share(mask))
        finally:
            self.net.requires_grad_(True)

    def step(self, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> float:
        real_logits, fake_logits = self.net(real), self.net(fake.detach())
        loss = F.relu(1.0 - real_logits).mean() + _weighted_mean(F.relu(1.0 + fake_logits), hole_share(mask))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
