"""The Triton backend: the Triton preparation kernel (`kernels/prep.py`) makes the LR input straight
from the caller's uint8 image; at LR the coarse CNN and the coherence convs run in torch (cuDNN), the
patch projection (`kernels/patch_projection.py`), the masked attention + token mixing + top-K
(`kernels/masked_attention.py`) and the coherence epilogue (`kernels/coherence.py`) in Triton; the Triton HR-upscale kernel (`kernels/hr_upscale.py`)
carries the result to full resolution, reading and writing uint8 in the caller's layout (no HR float
copies; with hr_feather > 0 it cross-fades neighbouring copies' texture), and with `seam_sigma` the seam blend
(`kernels/seam_blend.py`) rewrites its hole border in place. With lr_texture="copy" the candidate search
(`kernels/copy_candidates.py`, pools up to its POOL_MAX), the sources' propagation updates
(`kernels/source_sweep.py`), the copies (`kernels/token_copy.py`, `kernels/membrane.py`, `kernels/blur.py`), the
colour anchor (`kernels/colour_anchor.py`) and the flat fill (`kernels/flat_fill.py`) run as
Triton kernels; the expected colours' membrane on the token grid in torch. Float images,
hr_topk=0, and hr_feather > 0 with hr_topk > 1 run the torch path."""
from __future__ import annotations

import functools
import os
from typing import Any

import torch

from ..geometry import plan
from ..io import prepare
from ..model.patchmatch import pad_rows, token_mask
from ..model.rethined import Rethined, frame_line_keys, tokens_touching
from ..model.upscale import hf_band_gains
from .cuda_graph import GraphedFunction
from .torch_backend import TorchBackend, join_channels_last


class TritonLRNetwork:
    """`LRNetwork` (forward_lr + top-K) with the attention block on Triton kernels, one image at a time:
    torch CNN -> Triton projection -> Triton attention (mixes in place) -> cuDNN coherence convs ->
    Triton epilogue (last conv + residual + clamp + composite).

    __call__(image (1, 3, h, w), mask (1, 1, h, w) float, key_inside (1, 1, gh, gw) float) ->
    (lr_result (1, 3, h, w), weight, fine_weight (1, N, K) float32, index (1, N, K) int32).
    compact: lr_texture="copy"'s similarities and source scores over hole rows x allowed keys only
    (data-dependent sizes: host syncs, which a captured CUDA graph cannot hold); False: dense, the same
    sources, with no host sync.
    """

    def __init__(self, model: Rethined, topk: int, compact: bool = True):
        from ..kernels.coherence import coherence_epilogue
        from ..kernels.masked_attention import masked_attention_topk
        from ..kernels.patch_projection import patch_projection

        if topk < 1:
            raise ValueError(f"topk: expected >= 1, got {topk}")
        self.model, self.topk, self.compact = model, topk, compact
        last = model.patch_match.coherence[-1]
        if last.kernel_size != (3, 3) or last.padding != (1, 1) or last.dilation != (1, 1):
            raise ValueError(f"model: the coherence epilogue kernel needs a 3x3, padding 1 last conv, got {last}")
        self.project, self.attend, self.epilogue = patch_projection, masked_attention_topk, coherence_epilogue
        self.logit_scale = float(model.patch_match.logit_scale().detach())   # once: .item() on CUDA syncs

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, key_inside: torch.Tensor):
        if image.shape[0] != 1:
            raise ValueError(f"image: TritonLRNetwork takes one image, got batch {image.shape[0]}")
        pm, patch = self.model.patch_match, self.model.cfg.patch_size
        coarse, features = self.model.coarse_net(image, mask)
        composite = torch.where(mask > 0, coarse, image).contiguous()   # the attention mixes it in place
        q, k = self.project(composite[0], features[0], pm.to_q.weight, pm.to_q.bias, pm.to_k.weight, pm.to_k.bias, patch)
        query_masked = token_mask(mask, patch)[0]
        inside = key_inside.flatten()[None] > 0.5
        key_ok = pm.allowed_keys(query_masked[None], inside, features.shape[-1])[0]
        if pm.copy:
            return self._copy(image, mask, key_inside, composite, q, k, query_masked, key_ok, inside)
        # values are read from known tokens only and only hole tokens are written: mix in place
        mixed, weight, index = self.attend(q, k, composite[0], query_masked, key_ok, self.logit_scale,
                                           self.topk, patch, out=composite[0])
        hidden = pm.coherence[:-1](torch.cat([mixed[None], coarse, mask], dim=1))     # cuDNN convs + ReLU
        last = pm.coherence[-1]
        result = self.epilogue(hidden[0], last.weight, last.bias, mixed, image[0], mask[0, 0])
        cfg = self.model.cfg
        gain, fine_gain = hf_band_gains(key_ok.reshape(key_inside.shape), cfg.hf_decay, cfg.hf_fine_decay,
                                        cfg.hf_mid_gain)
        weight = weight[None].float()
        return result[None], weight * gain[..., None], weight * fine_gain[..., None], index[None]


    def _copy(self, image, mask, key_inside, composite, q, k, query_masked, key_ok, inside):
        """lr_texture="copy": `NeuralPatchMatch.copy_candidates` and `.copy_outputs` (their hooked Triton kernels:
        `TritonBackend` sets them), then `Rethined.finish_fill` (its colour anchor: `kernels.colour_anchor`); the
        HR stage mixes the chosen source only."""
        pm = self.model.patch_match
        grid_w = key_inside.shape[-1]
        q, k, query_masked, key_ok = q[None], k[None], query_masked[None], key_ok[None]
        q, k = pm.copy_keys(composite, q, k, key_ok, query_masked, inside)
        candidates, colours, expected = pm.copy_candidates(composite, q, k, query_masked, key_ok, self.compact)
        copied, _, rows, _, _ = pm.copy_outputs(composite, mask, q, k, candidates, colours, expected, query_masked,
                                                key_ok, grid_w, self.compact)
        _, result = self.model.finish_fill(image, composite, mask, copied)
        weight, index = pad_rows(rows, self.topk)
        cfg = self.model.cfg
        gain, fine_gain = hf_band_gains(key_ok.reshape(key_inside.shape), cfg.hf_decay, cfg.hf_fine_decay,
                                        cfg.hf_mid_gain)
        return result, weight * gain[..., None], weight * fine_gain[..., None], index.to(torch.int32)


class TritonCopyKernels:
    """The LR network's copy steps with lr_texture="copy" (`NeuralPatchMatch.copy_kernels`) on Triton:
    `kernels.token_copy.copy_tokens` (one kernel instead of ~500 torch ones), then, when border_sigma > 0,
    `kernels.membrane.border_match` (its membrane: a pyramid launch, one for the coarse levels and one per finer
    sweep, instead of ~210 torch operations); their Gaussian blurs take
    one kernel per axis (`kernels.blur`) instead of ~38. Same arguments as the
    torch path, float32 results equal to float rounding (tests/test_kernel_token_copy.py,
    tests/test_kernel_membrane.py)."""

    def __init__(self):
        from ..kernels.membrane import border_match
        from ..kernels.token_copy import copy_tokens
        self.copy_tokens, self.border_match = copy_tokens, border_match

    def __call__(self, composite: torch.Tensor, mask: torch.Tensor, source: torch.Tensor, patch: int, feather: int,
                 base_feather: int, base_sigma: float, border_sigma: float) -> torch.Tensor:
        copied = self.copy_tokens(composite, 1.0 - mask, source, patch, feather, base_feather, base_sigma)
        return self.border_match(composite, mask, copied, border_sigma) if border_sigma > 0.0 else copied


GRAPH_MAX_LSB, GRAPH_MAX_FLIPPED = 1, 1e-3   # graph replay vs eager: the same kernels; cuDNN may pick another algorithm


def uint8_images_agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two uint8 images differ by at most GRAPH_MAX_LSB levels, in at most GRAPH_MAX_FLIPPED of the values."""
    diff = (a.to(torch.int16) - b.to(torch.int16)).abs()
    return bool(diff.max() <= GRAPH_MAX_LSB) and bool((diff > 0).float().mean() <= GRAPH_MAX_FLIPPED)


class TritonBackend(TorchBackend):
    """TorchBackend's arguments, plus cuda_graphs: on CUDA, replay each image shape's whole pipeline
    (prep -> LR network -> HR upscale) as a captured CUDA graph (`cuda_graph.GraphedFunction`); the first
    call at a new shape runs it eagerly a few times and captures it."""

    def __init__(self, weights=None, device=None, dtype=None, cuda_graphs: bool = True, **overrides):
        if not isinstance(cuda_graphs, bool):
            raise ValueError(f"cuda_graphs: expected True or False, got {cuda_graphs!r}")
        interpret = os.environ.get("TRITON_INTERPRET") == "1"
        target = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if target.type != "cuda" and not interpret:
            raise ValueError(f"device: the triton backend needs a CUDA device (or TRITON_INTERPRET=1 for testing on "
                             f"the CPU), got {target}")
        try:
            from ..kernels.colour_anchor import colour_anchor
            from ..kernels.copy_candidates import POOL_MAX, copy_candidates
            from ..kernels.flat_fill import flat_fill
            from ..kernels.hr_upscale import hr_upscale
            from ..kernels.prep import prepare_lr
            from ..kernels.seam_blend import seam_blend
            from ..kernels.source_sweep import propagate_sources
        except ModuleNotFoundError as exc:
            if exc.name != "triton":      # some other module is missing: its own error names it
                raise
            raise ImportError(f"backend 'triton' needs triton: pip install 'rethined_engine[triton]' ({exc})") from exc
        super().__init__(weights, target, dtype, **overrides)
        self.hr_upscale, self.prepare_lr, self.seam_blend = hr_upscale, prepare_lr, seam_blend
        self.model.patch_match.copy_kernels = TritonCopyKernels()
        self.model.patch_match.propagation_kernel = propagate_sources
        self.model.anchor_kernel = colour_anchor
        self.model.flat_kernel = functools.partial(flat_fill, form=self.model.flat_fill_form)
        if self.model.patch_match.copy_pool <= POOL_MAX:
            self.model.patch_match.candidates_kernel = copy_candidates
        # the HR kernel cross-fades (hr_feather > 0) one copied source per token: hr_topk = 1
        kernels_cover = self.config.hr_topk > 0 and (self.config.hr_feather == 0 or self.config.hr_topk == 1)
        # On CUDA the dense copy paths, graphed or not: no host sync (a graph can hold them), and the eager
        # call picks the same sources as the graph (cuBLAS may round a compacted similarity differently).
        cuda = self.device.type == "cuda"
        self.lr_network = (TritonLRNetwork(self.model, self.config.hr_topk, compact=not cuda)
                           if kernels_cover else None)
        self._token_grids: dict = {}   # per geometry, on the device (`_grids`)
        self._graphed = GraphedFunction(self._inpaint_one, agree=uint8_images_agree) if cuda_graphs and cuda else None

    @torch.inference_mode()
    def inpaint(self, img: Any, mask: Any, exclude: Any = None) -> Any:
        batch = prepare(img, mask, self.config.float_mask_threshold, exclude)
        full = self._fully_masked(batch)
        if full is None:
            return batch.unchanged()
        if self.lr_network is None or batch.image.dtype != torch.uint8:
            return self._torch_result(batch)
        work = batch.to(self.device)
        run = self._graphed or self._inpaint_one
        geom = plan(work.image.shape[-2], work.image.shape[-1], self.config)
        keys, _ = self._grids(geom)           # (1, 1, gh, gw) contiguous, as each image's row of the (B, 1, gh, gw)
        per_image = [keys] * len(full)        # sources with an exclusion: one graph signature with or without
        if work.exclude is not None:          # the sources less the tokens touching excluded pixels
            touched = tokens_touching(work.exclude, geom.scale * geom.patch, geom.grid_h, geom.grid_w)
            per_image = (keys * ~touched.reshape(-1, 1, geom.grid_h, geom.grid_w)).split(1)
        out = [self._fill(work.part(slice(i, i + 1)))[0] if full[i]   # nothing known: the coarse guess, torch path
               else run(image, hole[0], image_keys)                  # image (3, H, W) uint8, any strides
               for i, (image, hole, image_keys) in enumerate(zip(work.image, work.mask, per_image))]
        return batch.restore(join_channels_last(out).to(batch.image.device))

    def _grids(self, geom) -> tuple[torch.Tensor, torch.Tensor]:
        """A geometry's token grids on the device, made once (no host copy inside a captured graph): the keys by
        position (1, 1, gh, gw) of the compute dtype, and the tokens inside the image (N,) bool."""
        if geom not in self._token_grids:
            keys = torch.from_numpy(geom.key_inside_grid()).to(self.device, self.dtype)[None, None]
            self._token_grids[geom] = keys, torch.from_numpy(geom.inside_grid().reshape(-1)).to(self.device)
        return self._token_grids[geom]

    def _inpaint_one(self, image: torch.Tensor, hole: torch.Tensor, key_inside: torch.Tensor) -> torch.Tensor:
        """image (3, H, W) uint8, hole (H, W) bool, key_inside (1, 1, gh, gw) of the compute dtype (1 = the token
        may be a source) on the device -> (3, H, W) uint8; no host syncs."""
        geom = plan(image.shape[-2], image.shape[-1], self.config)
        lr_image, lr_mask = self.prepare_lr(image, hole, geom, channels_last=False)
        lr_image, lr_mask = lr_image.to(self.dtype), lr_mask.to(self.dtype)
        _, inside = self._grids(geom)
        if geom.frame_lines:              # less the tokens along a side holding a frame line (inside the graph)
            kept = frame_line_keys(image[None], hole[None, None], geom.scale * geom.patch, geom.grid_h, geom.grid_w)
            key_inside = key_inside * kept.reshape(key_inside.shape)
        lr_result, weight, fine_weight, index = self.lr_network(lr_image, lr_mask, key_inside)
        if not self.config.hf_transfer:
            weight, fine_weight = torch.zeros_like(weight), torch.zeros_like(fine_weight)
        fine_weight = fine_weight[0] if self.config.hf_fine_decay is not None else None   # None: the one-band kernel
        known = None
        if self.config.hr_feather > 0:    # the tokens whose own texture a copy fades into: no hole pixel, inside
            known = ~token_mask(lr_mask, geom.patch)[0] & inside
        out = self.hr_upscale(image, hole, lr_result, weight[0], fine_weight, index[0], geom, channels_last=False,
                              feather=self.config.hr_feather, known=known, reflect=self.config.hr_fade_reflect)
        if self._seam_taps is not None:
            self.seam_blend(image, hole, out, self._seam_taps, self.config.seam_gain, channels_last=False)
        return out
