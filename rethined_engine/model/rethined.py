"""The whole RETHINED model in plain torch: the reference every backend matches."""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import frame_lines as _frame_lines   # TorchScript reads its numbers as the module's attributes
from ..config import ModelConfig
from ..geometry import grid_plan, key_tokens, tokens_inside
from .anchor import ANCHOR_CELL, colour_anchor, jump_steps
from .coarse import CoarseNet
from .flat import flat_fill
from .patchmatch import NeuralPatchMatch, TopKRows
from .reparam import reparameterize_model
from .upscale import attention_upscale, downsample, pad_to


class LROutput(NamedTuple):
    """Everything the LR network produces. Images (B, 3, h, w) in [0, 1]; tokens N = (h/P) * (w/P)."""

    result: torch.Tensor        # composited LR inpainting
    coarse: torch.Tensor        # coarse CNN output (not composited)
    refined: torch.Tensor       # NeuralPatchMatch + coherence output (not composited)
    mixed: torch.Tensor         # tokens mixed by the attention, before the coherence layer
    attn: torch.Tensor | TopKRows  # (B, N, N) fp32 attention, or its rows' top K (forward_lr(topk=K))
    query_masked: torch.Tensor  # (B, N) bool
    key_ok: torch.Tensor        # (B, N) bool


def key_inside_tokens(height: int, width: int, span: int, grid_h: int, grid_w: int, edge: int,
                      device: torch.device) -> torch.Tensor:
    """(gh * gw,) bool, row-major: tokens of span x span HR px that may be keys in the H x W image (wholly
    inside it, less `edge` at each of its edges: `geometry.key_tokens`); the tensor form of
    `Geometry.key_inside_grid`."""
    first_row, stop_row = key_tokens(height, span, edge)
    first_col, stop_col = key_tokens(width, span, edge)
    rows, cols = torch.arange(grid_h, device=device), torch.arange(grid_w, device=device)
    keep_rows = (rows >= first_row) & (rows < stop_row)
    keep_cols = (cols >= first_col) & (cols < stop_col)
    return (keep_rows[:, None] & keep_cols[None, :]).reshape(-1)


def tokens_touching(pixels: torch.Tensor, span: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """(B, gh * gw) bool, row-major: the tokens of span x span HR px wholly inside the image that hold a set
    pixel of `pixels` (B, 1, H, W) bool; False for the others. The tensor form of `Geometry.tokens_touching`."""
    rows, cols = tokens_inside(pixels.shape[-2], span), tokens_inside(pixels.shape[-1], span)
    touched = torch.zeros(pixels.shape[0], grid_h, grid_w, dtype=torch.bool, device=pixels.device)
    inside = pixels[:, 0, :rows * span, :cols * span].reshape(pixels.shape[0], rows, span, cols, span)
    touched[:, :rows, :cols] = inside.any(dim=4).any(dim=2)
    return touched.reshape(pixels.shape[0], -1)


def _side_strips(x: torch.Tensor, fill: float) -> torch.Tensor:
    """`frame_lines.side_strips`: x (B, C, H, W) -> (B, 4, C, STRIP_LINES, max(H, W))."""
    lines, height, width = _frame_lines.STRIP_LINES, x.shape[-2], x.shape[-1]
    n = max(height, width)
    sides = [x[..., :lines, :], x[..., height - lines:, :].flip(-2), x[..., :lines].transpose(-1, -2),
             x[..., width - lines:].flip(-1).transpose(-1, -2)]
    return torch.stack([F.pad(side, [0, n - side.shape[-1]], value=fill) for side in sides], 1)


def _side_statistics(strips: torch.Tensor, known: torch.Tensor, span: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`frame_lines.side_statistics`: strips (B, 4, C, STRIP_LINES, n) float32, known (B, 4, n) bool -> (mean
    departure, agreeing share), each (B, 4, C)."""
    b, c, n = strips.shape[0], strips.shape[2], strips.shape[-1]
    spans = n // span
    near, far = _frame_lines.FRAME_LINE_BAND[0], _frame_lines.FRAME_LINE_BAND[1]
    # the band's least-squares weights (`frame_lines.band_weights`), computed on the device: a tensor made from
    # host numbers here would be a host-to-device copy inside the captured CUDA graph
    depth = torch.arange(near, far, dtype=torch.float64, device=strips.device)
    centred = depth - depth.mean()
    weights = (1.0 / (far - near) - depth.mean() * centred / (centred * centred).sum()).to(strips)
    band = strips[..., near:far, :spans * span]
    departure = strips[..., 0, :spans * span] - torch.einsum("bscln,l->bscn", band, weights)
    known = known[..., :spans * span]
    departure = torch.where(known[:, :, None], departure, torch.full_like(departure, float("nan")))
    judged = known.reshape(b, 4, 1, spans, span).sum(-1) >= span / 2
    per_span = torch.nanmedian(departure.reshape(b, 4, c, spans, span), dim=-1)[0]   # the lower middle
    per_span = torch.where(judged, per_span, torch.zeros_like(per_span))
    judged_count = judged.sum(-1).clamp(min=1)
    mean = per_span.sum(-1) / judged_count
    same_way = torch.sign(per_span) == torch.sign(mean)[..., None]
    agree = judged & same_way & (per_span.abs() >= mean.abs()[..., None] / 2)
    share = agree.sum(-1) / judged_count
    return mean, torch.where(judged_count >= _frame_lines.FRAME_LINE_MIN_SPANS, share, torch.zeros_like(share))


def _keep_range(first_side: torch.Tensor, last_side: torch.Tensor, extent: int, span: int, count: int) -> torch.Tensor:
    """(B, count) bool: `frame_lines.keep_range` along one axis of `count` tokens, per image (first_side,
    last_side (B,) bool); tokens past the image's whole ones kept."""
    inside = extent // span
    tokens = torch.arange(count, device=first_side.device)[None]
    if inside <= 1:                                 # dropping its one token would leave none
        return torch.ones(first_side.shape[0], count, dtype=torch.bool, device=first_side.device)
    drop = (tokens == 0) & first_side[:, None]
    if extent % span == 0:                          # the last whole token touches the edge's line
        drop = drop | ((tokens == inside - 1) & last_side[:, None])
    if inside == 2:                                 # both dropped would leave none: keep both
        drop = drop & ~(drop[:, :1] & drop[:, 1:2])
    return ~drop


def frame_line_keys(image: torch.Tensor, mask: torch.Tensor, span: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """(B, gh * gw) bool, row-major: the tokens that stay sources, all but those along a side of `image` (B, 3, H,
    W) uint8 or float in [0, 1] that holds a frame line (mask (B, 1, H, W) bool or {0, 1}, 1 = hole); the tensor
    form of `frame_lines.keep_grid`, on the image's device without a host read."""
    b, height, width = image.shape[0], image.shape[-2], image.shape[-1]
    if min(height, width) < 2 * _frame_lines.STRIP_LINES:
        return torch.ones(b, grid_h * grid_w, dtype=torch.bool, device=image.device)
    strips = _side_strips(image, 0.0).float()
    if image.dtype == torch.uint8:
        strips = strips / 255.0
    position = torch.arange(max(height, width), device=image.device)      # no host copy: a CUDA graph captures it
    across, down = width // span * span, height // span * span
    inside = torch.stack([position < across, position < across, position < down, position < down])   # (4, n)
    known = (_side_strips(mask.to(torch.uint8), 1.0) == 0).all(3)[:, :, 0] & inside                    # (B, 4, n)
    mean, share = _side_statistics(strips, known, span)
    holds = ((mean.abs() >= _frame_lines.FRAME_LINE_MIN_STEP) & (share >= _frame_lines.FRAME_LINE_AGREEMENT)).any(-1)
    rows = _keep_range(holds[:, 0], holds[:, 1], height, span, grid_h)
    cols = _keep_range(holds[:, 2], holds[:, 3], width, span, grid_w)
    return (rows[:, :, None] & cols[:, None, :]).reshape(b, -1)


class Rethined(nn.Module):
    """Coarse CNN + NeuralPatchMatch at LR, attention upscaling to HR. `torch.jit.script` compiles it
    (`forward` reads the settings it needs as plain attributes: TorchScript cannot read the config)."""

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.lr_long_side, self.patch_size, self.grid_multiple = cfg.lr_long_side, cfg.patch_size, cfg.grid_multiple
        self.hr_topk, self.hf_transfer, self.hf_decay = cfg.hr_topk, cfg.hf_transfer, cfg.hf_decay
        self.hf_fine_decay, self.hf_mid_gain, self.hr_feather = cfg.hf_fine_decay, cfg.hf_mid_gain, cfg.hr_feather
        self.hr_fade_reflect = cfg.hr_fade_reflect
        self.key_edge_tokens, self.key_frame_lines = cfg.key_edge_tokens, cfg.key_frame_lines
        self.colour_anchor, self.colour_anchor_sigma = float(cfg.colour_anchor), float(cfg.colour_anchor_sigma)
        self.colour_anchor_flat = cfg.colour_anchor_flat
        self.flat_fill_form = cfg.flat_fill_form
        self.anchor_steps = jump_steps(cfg.lr_long_side // ANCHOR_CELL)
        self.anchor_kernel = None   # a backend's `colour_anchor`: native `ColourAnchor` (C++)
        self.flat_kernel = None     # a backend's `flat_fill`: native `FlatFill` (C++)
        self.coarse_net = CoarseNet(cfg)
        self.patch_match = NeuralPatchMatch(cfg, self.coarse_net.feature_channels)

    def reparameterize(self) -> "Rethined":
        """Fold BN and MobileOne branches into single convs (inference form, eval mode)."""
        return reparameterize_model(self)

    def forward_lr(self, image: torch.Tensor, mask: torch.Tensor, key_inside: torch.Tensor,
                   topk: int | None = None) -> LROutput:
        """image (B, 3, h, w) in [0, 1] (hole values ignored), mask (B, 1, h, w) float {0, 1}, key_inside
        (B, N) or (N,) bool; h, w multiples of 32. topk=K: the attention is computed over hole rows x
        allowed keys only and `LROutput.attn` holds its rows' top K (eager inference)."""
        coarse, features = self.coarse_net(image, mask)
        composite = torch.where(mask > 0, coarse, image)
        key_inside = key_inside.expand(image.shape[0], -1)
        refined, mixed, attn, query_masked, key_ok = self.patch_match(composite, coarse, mask, features, key_inside, topk)
        refined, result = self.finish_fill(image, composite, mask, refined)
        return LROutput(result, coarse, refined, mixed, attn, query_masked, key_ok)

    def finish_fill(self, image: torch.Tensor, composite: torch.Tensor, mask: torch.Tensor,
                    filled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LR fill's last steps, the same on every backend: `anchor_fill`, then the known pixels put back.
        image, composite, filled (B, 3, h, w), mask (B, 1, h, w) -> (the anchored fill, the LR result: the
        image with its hole pixels the anchored fill's, clamped to [0, 1])."""
        filled = self.anchor_fill(composite, mask, filled)
        return filled, torch.where(mask > 0, filled.clamp(0.0, 1.0), image)

    def anchor_fill(self, composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """`colour_anchor` of the fill (B, 3, h, w) with this model's settings, by `self.anchor_kernel` where a
        backend set one, then (colour_anchor_flat) moved by `flat_fill`'s weight towards its fill (the low band a
        membrane through the known pixels, where the surroundings are flat). The fill itself with neither."""
        anchored = filled
        if self.colour_anchor > 0.0:
            anchored = self.anchor(composite, mask, filled)
        if self.colour_anchor_flat:
            smooth, weight = self.flat(composite, mask, filled)
            anchored = anchored + weight * (smooth - anchored)
        return anchored

    def flat(self, composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """`flat_fill`, by `self.flat_kernel` where a backend set one."""
        if self.flat_kernel is not None and not torch.jit.is_scripting():
            return self.kernel_flat(composite, mask, filled)
        return flat_fill(composite, mask, filled, self.flat_fill_form)

    @torch.jit.unused
    def kernel_flat(self, composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`flat_fill` by `self.flat_kernel`."""
        return self.flat_kernel(composite, mask, filled)

    def anchor(self, composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """`colour_anchor` with this model's settings, by `self.anchor_kernel` where a backend set one."""
        if self.anchor_kernel is not None and not torch.jit.is_scripting():
            return self.kernel_anchor(composite, mask, filled)
        return colour_anchor(composite, mask, filled, self.colour_anchor, self.colour_anchor_sigma, self.anchor_steps)

    @torch.jit.unused
    def kernel_anchor(self, composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """`colour_anchor` with this model's settings, by `self.anchor_kernel`."""
        return self.anchor_kernel(composite, mask, filled, self.colour_anchor, self.colour_anchor_sigma,
                                  self.anchor_steps)

    def prepare(self, image: torch.Tensor, mask: torch.Tensor, scale: int, grid_h: int, grid_w: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """image (B, 3, H, W) in [0, 1], mask (B, 1, H, W) float {0, 1}, the `grid_plan` -> (padded HR image
        with holes zeroed, padded mask, LR image, LR mask)."""
        span = scale * self.patch_size
        padded_size = (grid_h * span, grid_w * span)
        padded = pad_to(image * (1.0 - mask), padded_size)
        padded_mask = pad_to(mask, padded_size)
        lr_image, lr_mask = downsample(padded, padded_mask, scale)
        return padded, padded_mask, lr_image, lr_mask

    def forward(self, image: torch.Tensor, mask: torch.Tensor, exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Inpaint at full resolution.

        image: (B, 3, H, W) float in [0, 1]; mask: (B, 1, H, W) bool or {0, 1}, True = fill; exclude: None or
        (B, 1, H, W) bool, True = a known pixel the fill must not copy: no token holding one is a source
        (`tokens_touching`).
        Returns (B, 3, H, W) in image.dtype with known pixels equal to the input.
        """
        height, width = image.shape[-2], image.shape[-1]
        mask = mask.to(image.dtype)
        scale, grid_h, grid_w = grid_plan(height, width, self.lr_long_side, self.patch_size, self.grid_multiple)
        padded, padded_mask, lr_image, lr_mask = self.prepare(image, mask, scale, grid_h, grid_w)
        span = scale * self.patch_size
        keys = key_inside_tokens(height, width, span, grid_h, grid_w, self.key_edge_tokens, image.device)
        if exclude is not None:
            keys = keys[None] & ~tokens_touching(exclude, span, grid_h, grid_w)
        if self.key_frame_lines:
            keys = keys & frame_line_keys(image, mask, span, grid_h, grid_w)
        lr = self.forward_lr(lr_image, lr_mask, keys)
        if scale == 1:
            hr = lr.result
        else:
            known = ~lr.query_masked & key_inside_tokens(height, width, span, grid_h, grid_w, 0, image.device)
            hr = attention_upscale(padded, padded_mask, lr.result, lr.attn, lr.query_masked, lr.key_ok,
                                   scale, self.patch_size, self.hr_topk, self.hf_transfer,
                                   self.hf_decay, self.hf_fine_decay, self.hf_mid_gain, self.hr_feather, known,
                                   self.hr_fade_reflect)
        return torch.where(mask > 0, hr[..., :height, :width], image)
