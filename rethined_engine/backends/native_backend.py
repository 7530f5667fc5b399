"""The native CPU backend: the C++/OpenMP extension (`rethined_engine._native`, csrc/native/) does the
LR preparation and the HR attention-upscale stage in one pass each, on the caller's buffers; torch
runs the LR network (fixed size, long side 512) but for its copy steps, which the extension does too."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..config import FLAT_FILL_FORMS
from ..deploy.onnx_export import LRNetwork
from ..geometry import plan, seam_taps
from ..io import prepare
from ..model import anchor, flat, patchmatch
from .torch_backend import TorchBackend, join_channels_last

LR_BATCH = 1   # images per LR network call. On the 2-core Xeon at 1920x1080 one call on 8 images took 97 ms per
               # image against 61 ms alone (the working set leaves the caches); bench/results/latency-cpu-batch.json:
               # native 8-frame batches 6.4 frames/s vs 9.9 one by one at 52af968
JOIN_BUFFERS = 10  # `UpsampleCat` output buffers kept: the five decoder joins of two LR grid shapes


def native_module():
    """The extension, or None when it was not built (`require_native` raises with why and how to build it)."""
    try:
        from .. import _native
    except ImportError:
        return None
    return _native


def require_native():
    """The extension, or an ImportError naming the package folder it was looked for in and how to build it."""
    try:
        from .. import _native
    except ImportError as exc:
        import os

        where = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        raise ImportError(
            f"backend='native' needs the C++ extension rethined_engine._native, which is not importable from "
            f"{where} ({exc}). Build it there: from the repository root run `pip install -e .` (needs a C++17 "
            f"compiler with OpenMP, e.g. g++ or clang with libomp; add -v to see the compiler's output, or set "
            f"RETHINED_NATIVE_REQUIRED=1 to make a failed build fail the install); an installed copy's extension "
            f"is not used when the repository root is the working directory. Or choose backend='torch', or "
            f"backend=None for the fastest one available.") from exc
    return _native


def _channels_last(x: torch.Tensor) -> np.ndarray:
    """(B, C, h, w) float32 -> its (B, h, w, C) numpy array (no copy when x is channels-last)."""
    return x.permute(0, 2, 3, 1).contiguous().numpy()


class UpsampleCat:
    """The coarse CNN's decoder join in the extension (csrc/native/cnn_ops.cpp): `CoarseNet.join`, x upsampled 2x
    (bilinear) with skip after it along the channels, in one pass where torch makes the upsampled tensor and then
    the concatenation. Channels-last float32 in and out; equal to float rounding (tests/test_native.py), about 4x
    faster for the head's input at LR 512 (36 channels at 512 x 512).

    Each output shape's buffer is kept and written again by the next call of that shape (a fresh 38 MB array
    for the head costs page faults on every call, and now and then tens of ms): a join's result is read by the
    next convolution only, and the backend's calls run one at a time (the Engine's lock). At most
    JOIN_BUFFERS are kept (five per LR grid shape and batch size; a new one past that starts the cache afresh)."""

    def __init__(self, native):
        self.native = native
        self._buffers: dict[tuple[int, ...], np.ndarray] = {}

    def __call__(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], skip.shape[2], skip.shape[3], x.shape[1] + skip.shape[1])
        if shape not in self._buffers:
            if len(self._buffers) >= JOIN_BUFFERS:
                self._buffers.clear()
            self._buffers[shape] = np.empty(shape, np.float32)
        joined = self.native.upsample_cat(_channels_last(x), _channels_last(skip), self._buffers[shape])
        return torch.from_numpy(joined).permute(0, 3, 1, 2)           # (B, C1 + C2, 2h, 2w), channels-last


class CopyKernels:
    """The LR network's copy steps with lr_texture="copy" in the extension (csrc/native/lr_copy.cpp):
    `patchmatch.copy_tokens`, then `patchmatch.border_match` when border_sigma > 0. Same arguments and results
    as those (float32; equal to float rounding, tests/test_native_lr_copy.py), several times faster on the CPU
    (bench/results/native-stages-cpu.json)."""

    def __init__(self, native):
        self.native = native

    def __call__(self, composite: torch.Tensor, mask: torch.Tensor, source: torch.Tensor, patch: int, feather: int,
                 base_feather: int, base_sigma: float, border_sigma: float) -> torch.Tensor:
        image = _channels_last(composite)
        holes = mask[:, 0].contiguous().numpy()
        base_taps = seam_taps(base_sigma) if base_feather > 0 else np.zeros(0, dtype=np.float32)
        copied = self.native.copy_tokens(image, 1.0 - holes, source.contiguous().numpy(), patch, feather, base_feather,
                                         base_taps)
        if border_sigma > 0.0:
            copied = self.border_match(image, holes, copied, border_sigma)
        return torch.from_numpy(copied).permute(0, 3, 1, 2)           # (B, 3, h, w), channels-last

    def border_match(self, image: np.ndarray, holes: np.ndarray, filled: np.ndarray, sigma: float) -> np.ndarray:
        """`patchmatch.border_match` on channels-last arrays: image and filled (B, h, w, 3), holes (B, h, w)
        float32 {0, 1} -> (B, h, w, 3), with the model's membrane constants."""
        return self.native.border_match(image, holes, filled, seam_taps(sigma), patchmatch.BORDER_MATCH_LEVELS,
                                        patchmatch.JACOBI_SWEEPS, patchmatch.JACOBI_COARSEST_SWEEPS,
                                        patchmatch.COARSE_FIXED_SHARE, patchmatch.MEAN_WEIGHT_FLOOR)


class ColourAnchor:
    """`model.anchor.colour_anchor` (same arguments and result, float32; equal to float rounding,
    tests/test_native_lr_copy.py) in the extension (csrc/native/lr_copy.cpp): the jump flooding, cell means and
    blurs on the small cell grid, one pass over the LR pixels for the upsampled shift."""

    def __init__(self, native):
        self.native = native

    def __call__(self, composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, strength: float,
                 sigma: float, steps: list[int]) -> torch.Tensor:
        anchored = self.native.colour_anchor(_channels_last(composite), mask[:, 0].contiguous().numpy(),
                                             _channels_last(filled), strength, seam_taps(sigma / anchor.ANCHOR_CELL),
                                             anchor.ANCHOR_CELL, steps)
        return torch.from_numpy(anchored).permute(0, 3, 1, 2)         # (B, 3, h, w), channels-last


class FlatFill:
    """`model.flat.flat_fill` of one form (`config.FLAT_FILL_FORMS`; same arguments and results, float32; equal to
    float rounding, tests/test_native_lr_copy.py) in the extension (csrc/native/lr_copy.cpp): the cell means,
    known-pixel blurs and membranes on their cell grids, one pass over the LR pixels for the upsampled smooth fill,
    its weight and the fill."""

    def __init__(self, native, form: str):
        self.native = native
        self.form = form

    def __call__(self, composite: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        fine_sigma, coarse_sigma = flat.FLAT_BAND_SIGMAS
        smooth, weight = self.native.flat_fill(
            _channels_last(composite), mask[:, 0].contiguous().numpy(), _channels_last(filled), flat.BAND_CELL,
            seam_taps(fine_sigma / flat.BAND_CELL), seam_taps(coarse_sigma / flat.BAND_CELL),
            seam_taps(flat.FLAT_WINDOW_SIGMA / flat.BAND_CELL), flat.FLAT_CELL // flat.BAND_CELL, flat.FLAT_LEVELS,
            flat.FLAT_DETAIL_LOW, flat.FLAT_DETAIL_HIGH, flat.FLAT_DETAIL_FLOOR, flat.MEMBRANE_CELL,
            flat.MEMBRANE_LEVELS, seam_taps(flat.FLAT_LOW_SIGMA), flat.SPREAD_LOW, flat.SPREAD_HIGH,
            flat.SPREAD_FLOOR, patchmatch.JACOBI_SWEEPS, patchmatch.JACOBI_COARSEST_SWEEPS,
            patchmatch.COARSE_FIXED_SHARE, patchmatch.MEAN_WEIGHT_FLOOR, FLAT_FILL_FORMS.index(self.form),
            flat.HOLDOUT_RING, flat.HOLDOUT_ERROR_LOW, flat.HOLDOUT_ERROR_HIGH, flat.HOLDOUT_ERROR_FLOOR)
        return (torch.from_numpy(smooth).permute(0, 3, 1, 2),        # (B, 3, h, w), channels-last
                torch.from_numpy(weight)[:, None])                   # (B, 1, h, w)


class NativePropagation:
    """`patchmatch.propagate_sources` (same arguments but compact, same result) in the extension
    (csrc/native/source_sweep.cpp): the copy styles' propagation updates, OpenMP over each update's tokens; the
    sources equal the torch function's but where two options' scores lie within float rounding
    (tests/test_native_lr_copy.py)."""

    def __init__(self, native):
        self.native = native

    def __call__(self, q: torch.Tensor, k: torch.Tensor, candidates: torch.Tensor, own_score: torch.Tensor,
                 valid: torch.Tensor, has_key: torch.Tensor, key_ok: torch.Tensor, source: torch.Tensor, grid_w: int,
                 colours: torch.Tensor, expected: torch.Tensor, colour_weight: float, sweeps: int, continuity: float,
                 repeat_radius: int = 0, repeat_penalty: float = 0.0, border_continuity: float = 0.0,
                 support_margin: float = 0.0) -> torch.Tensor:
        def floats(t: torch.Tensor) -> np.ndarray:
            return t.float().contiguous().numpy()

        chosen = self.native.propagate_sources(
            floats(q), floats(k), candidates.contiguous().numpy(), floats(own_score), valid.contiguous().numpy(),
            has_key.contiguous().numpy(), key_ok.contiguous().numpy(), source.contiguous().numpy(), grid_w,
            floats(colours), floats(expected), colour_weight, sweeps, continuity, repeat_radius, repeat_penalty,
            border_continuity, support_margin)
        return torch.from_numpy(chosen)


class NativeBackend(TorchBackend):
    """Same arguments as `TorchBackend`; CPU only, top-K HR mixing (hr_topk >= 1; hr_topk=0, dense rows,
    runs the torch path)."""

    def __init__(self, weights=None, device=None, dtype=None, **overrides):
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"device: the native backend runs on the CPU, got {device!r}")
        self.native = require_native()
        super().__init__(weights, "cpu", dtype, **overrides)
        self.model.to(memory_format=torch.channels_last)   # oneDNN's convs run ~1.3x faster on NHWC
        if self.dtype == torch.float32:
            self.model.coarse_net.join_kernel = UpsampleCat(self.native)
            self.model.patch_match.copy_kernels = CopyKernels(self.native)
            self.model.patch_match.propagation_kernel = NativePropagation(self.native)
            self.model.anchor_kernel = ColourAnchor(self.native)
            self.model.flat_kernel = FlatFill(self.native, self.model.flat_fill_form)
        self.lr_network = (LRNetwork(self.model, self.config.hr_topk, compact=True)
                           if self.config.hr_topk > 0 else None)

    def _inpaint_known(self, images: list[np.ndarray], masks: list[np.ndarray],
                       excludes: list[np.ndarray | None]) -> list[np.ndarray]:
        """Images of one size (H, W, 3) uint8 or float32 with masks (H, W) uint8, each with known pixels, and
        the known pixels each must not copy ((H, W) bool or None) -> (H, W, 3) results of the images' dtype: the
        C++ LR preparation per image, the LR network once for the whole batch, the C++ HR stage (and seam
        blend) per image."""
        geom = plan(images[0].shape[0], images[0].shape[1], self.config)
        prepared = [self.native.prepare_lr(image, mask, geom.scale, geom.grid_h, geom.grid_w, geom.patch)
                    for image, mask in zip(images, masks)]
        lr_image, lr_mask = (torch.from_numpy(np.concatenate(x)).to(self.dtype).contiguous(memory_format=torch.channels_last)
                             for x in zip(*prepared))
        key_inside = torch.from_numpy(np.stack([geom.source_grid(exclude, image, mask)
                                                for image, mask, exclude in zip(images, masks, excludes)])
                                      .astype(np.float32))[:, None]
        lr_result, weight, fine_weight, index = self.lr_network(lr_image, lr_mask, key_inside)
        if not self.config.hf_transfer:
            weight, fine_weight = torch.zeros_like(weight), torch.zeros_like(fine_weight)
        lr_result = lr_result.float().contiguous().numpy()
        weight, fine_weight, index = weight.float().numpy(), fine_weight.float().numpy(), index.numpy()
        out = []
        for i, (image, mask) in enumerate(zip(images, masks)):
            result = self.native.hr_upscale(image, mask, lr_result[i:i + 1], weight[i], fine_weight[i], index[i],
                                            geom.scale, geom.patch, geom.grid_h, geom.grid_w,
                                            self.config.hr_feather * geom.scale, self.config.hr_fade_reflect)
            if self._seam_taps is not None:
                result = self.native.blend_seams(image, mask, result, self._seam_taps.numpy(), self.config.seam_gain)
            out.append(result)
        return out

    @torch.inference_mode()
    def inpaint(self, img: Any, mask: Any, exclude: Any = None) -> Any:
        batch = prepare(img, mask, self.config.float_mask_threshold, exclude)
        full = self._fully_masked(batch)
        if full is None:
            return batch.unchanged()
        if self.lr_network is None:
            return self._torch_result(batch)
        work = batch.to(self.device)
        images = work.image.permute(0, 2, 3, 1)                    # (B, H, W, 3): numpy input's own memory
        if images.dtype != torch.uint8:
            images = images.float()
        kernel_dtype = images.dtype == work.image.dtype            # uint8 or float32: the kernels' own dtypes
        masks = work.mask[:, 0].to(torch.uint8)
        excludes = [None] * len(full) if work.exclude is None else [e[0].numpy() for e in work.exclude]
        known = [i for i in range(len(full)) if not full[i]]
        results = {}
        for start in range(0, len(known), LR_BATCH):
            chunk = known[start:start + LR_BATCH]
            results.update(zip(chunk, self._inpaint_known([np.ascontiguousarray(images[i].numpy()) for i in chunk],
                                                          [masks[i].numpy() for i in chunk],
                                                          [excludes[i] for i in chunk])))
        out = []
        for i in range(len(full)):
            part = work.part(slice(i, i + 1))
            if full[i]:                  # nothing known: the coarse network's guess, the torch path
                out.append(self._fill(part))
                continue
            result = torch.from_numpy(results[i]).permute(2, 0, 1)[None]
            # uint8, float32: known pixels were copied by the kernels; other floats: cast back, known pixels the input's
            out.append(result if kernel_dtype else part.filled(result))
        return batch.restore(join_channels_last([image[0] for image in out]).to(batch.image.device))
