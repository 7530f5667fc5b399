"""The native backend's four stages, timed against the torch backend's code for them.

    python -m bench.native_stages --sizes 2048 4096 --repeats 5

prep: HR uint8 image + mask -> LR input (torch: to float, pad, normalised Gaussian downsample; native:
`prepare_lr`). lr: the LR network with its top-K outputs (torch: the exported graph's dense attention,
`LRNetwork`; native: the same network in torch, channels-last, with the compact attention over hole rows x
allowed keys, `LRNetwork(compact=True)`). HR: LR result + attention -> HR uint8 result (torch: `attention_upscale`
top-K + uint8 rounding + composite; native: `hr_upscale`). seam: the seam blend on that uint8 result (torch:
`model.upscale.blend_seams`; native: `blend_seams`, only tiles meeting the hole border). join: the coarse CNN's
head input, its last decoder level upsampled 2x and concatenated with the CNN's input (torch:
`model.coarse.upsample_join`; native: `upsample_cat`). Same inputs: the sample photo at size x size, 40 % mask,
the shipped weights' real LR output. With lr_texture="copy" (the shipped styles but smooth) two steps inside the LR
network too: copy (`copy_tokens` with the settings' bands; native: `CopyKernels`) and border (`border_match`,
when copy_border_sigma > 0; native: `border_match` of csrc/native/lr_copy.cpp), on that network's real sources, and
the flat fill in each form (`flat:membrane`, `flat:continued`, `flat:continued_flat`; torch: `model.flat.flat_fill`;
native: `FlatFill`) on its composite and copies. Median ms, written to bench/results/native-stages-cpu.json with where it
ran (device, commit, `dirty`, versions, torch threads; `bench.env.run_environment`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .env import RESULTS, run_environment
from .latency import MASK_COVERAGE, MASK_SEED

SEAM_SIGMA = 2.0      # timed when the shipped file's seam_sigma is 0 (off)


def median_ms(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls of fn (ms), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def stages(size: int, **settings) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(stage, torch reference, native) for prep, lr, hr and seam at size x size, on the same inputs; call
    them under torch.inference_mode(). Each pair computes the same result (the hr pair with the engine's
    settings: hf_decay, hf_fine_decay, hf_mid_gain and hr_feather). settings: Engine keyword arguments (e.g.
    style="smooth"); default the shipped file's."""
    from PIL import Image

    from rethined_engine.backends.native_backend import NativeBackend
    from rethined_engine.backends.torch_backend import TorchBackend
    from rethined_engine.cli import SAMPLE_IMAGE
    from rethined_engine.deploy.onnx_export import LRNetwork
    from rethined_engine.geometry import pad_to, plan
    from rethined_engine.geometry import seam_taps
    from rethined_engine.model.upscale import attention_upscale, blend_seams, downsample
    from rethined_engine.train.masks import random_mask

    backend = NativeBackend(**settings)
    native, model, cfg = backend.native, TorchBackend(device="cpu", **settings).model, backend.config
    img = np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB").resize((size, size), Image.BICUBIC)).copy()
    mask = random_mask(size, size, np.random.default_rng(MASK_SEED), MASK_COVERAGE)
    mask_u8 = mask.astype(np.uint8)
    geom = plan(size, size, cfg)
    t_img = torch.from_numpy(img).permute(2, 0, 1)[None]
    t_mask = torch.from_numpy(mask)[None, None]

    def torch_prep():
        image = t_img.float() / 255.0
        m = t_mask.float()
        return downsample(pad_to(image * (1 - m), geom.padded_size), pad_to(m, geom.padded_size), geom.scale)

    def native_prep():
        return native.prepare_lr(img, mask_u8, geom.scale, geom.grid_h, geom.grid_w, geom.patch)

    with torch.inference_mode():
        lr_image, lr_mask = torch_prep()
        out = model.forward_lr(lr_image, lr_mask, geom.key_inside())
        key_inside = torch.from_numpy(geom.key_inside_grid().astype(np.float32))[None, None]
        dense_lr = LRNetwork(model, cfg.hr_topk)
        _, weight, fine_weight, index = dense_lr(lr_image, lr_mask, key_inside)
    lr_np, w_np, f_np, i_np = out.result.numpy(), weight[0].numpy(), fine_weight[0].numpy(), index[0].numpy()
    lr_image_nhwc, lr_mask_nhwc = (x.contiguous(memory_format=torch.channels_last) for x in (lr_image, lr_mask))

    def torch_lr():
        return dense_lr(lr_image, lr_mask, key_inside)

    def native_lr():
        return backend.lr_network(lr_image_nhwc, lr_mask_nhwc, key_inside)

    def torch_hr():
        image = t_img.float() / 255.0
        m = t_mask.float()
        hr = attention_upscale(pad_to(image * (1 - m), geom.padded_size), pad_to(m, geom.padded_size), out.result,
                               out.attn, out.query_masked, out.key_ok, geom.scale, cfg.patch_size, cfg.hr_topk,
                               hf_decay=cfg.hf_decay, hf_fine_decay=cfg.hf_fine_decay, hf_mid_gain=cfg.hf_mid_gain,
                               feather=cfg.hr_feather, reflect=cfg.hr_fade_reflect)
        filled = (hr[..., :size, :size] * 255.0).round().clamp(0, 255).to(torch.uint8)
        return torch.where(t_mask, filled, t_img)

    def native_hr():
        return native.hr_upscale(img, mask_u8, lr_np, w_np, f_np, i_np, geom.scale, geom.patch, geom.grid_h, geom.grid_w,
                                 cfg.hr_feather * geom.scale, cfg.hr_fade_reflect)

    hr_np = native_hr()
    t_hr, taps = torch.from_numpy(hr_np).permute(2, 0, 1)[None], seam_taps(cfg.seam_sigma or SEAM_SIGMA)

    def torch_seam():
        return blend_seams(t_img, t_mask, t_hr, torch.from_numpy(taps), cfg.seam_gain)

    def native_seam():
        return native.blend_seams(img, mask_u8, hr_np, taps, cfg.seam_gain)

    pairs = [("prep", torch_prep, native_prep), ("lr", torch_lr, native_lr), ("hr", torch_hr, native_hr),
             ("seam", torch_seam, native_seam)] + join_stage(backend, lr_image)
    return pairs + (copy_stages(model, backend, out, lr_image, lr_mask) if cfg.lr_texture == "copy" else [])


def join_stage(backend, lr_image: torch.Tensor) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(stage, torch reference, native) for the coarse CNN's largest decoder join (`CoarseNet.join` before the
    head: the first decoder level upsampled to the LR size with the CNN's 4 input channels after it),
    channels-last, on random values of those shapes (the cost does not depend on them); none when the native
    backend runs the torch join (a dtype other than float32)."""
    from rethined_engine.model.coarse import INPUT_CHANNELS, upsample_join

    net = backend.model.coarse_net
    if net.join_kernel is None:
        return []
    height, width = lr_image.shape[-2:]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, net.decoder[0].pointwise.out_ch, height // 2, width // 2, generator=g)
    skip = torch.rand(1, INPUT_CHANNELS, height, width, generator=g)
    x, skip = (t.contiguous(memory_format=torch.channels_last) for t in (x, skip))
    return [("join", lambda: upsample_join(x, skip), lambda: net.join_kernel(x, skip))]


def copy_stages(model, backend, out, lr_image: torch.Tensor, lr_mask: torch.Tensor
                ) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(stage, torch reference, native) for the LR copy steps on the LR network's own sources."""
    from rethined_engine.model import patchmatch as pm

    match, cfg = model.patch_match, model.cfg
    tokens = torch.arange(out.attn.index.shape[1])[None]
    source = torch.where(out.attn.weight[..., 0] > 0, out.attn.index[..., 0], tokens)
    composite = torch.where(lr_mask > 0, out.coarse, lr_image)            # as `Rethined.forward_lr` composites
    composite_nhwc = composite.contiguous(memory_format=torch.channels_last)
    kernels = backend.model.patch_match.copy_kernels             # the native backend's `CopyKernels`

    def torch_copy():
        return pm.copy_tokens(composite, 1.0 - lr_mask, source, match.patch, match.copy_feather,
                              base_feather=match.copy_base_feather, base_sigma=match.copy_base_sigma)

    def native_copy():
        return kernels(composite_nhwc, lr_mask, source, match.patch, match.copy_feather, match.copy_base_feather,
                       match.copy_base_sigma, 0.0)

    copied = torch_copy()
    pairs = [("copy", torch_copy, native_copy)]
    if cfg.copy_border_sigma > 0:
        copied_nhwc = copied.permute(0, 2, 3, 1).contiguous().numpy()
        image_nhwc, holes = composite.permute(0, 2, 3, 1).contiguous().numpy(), lr_mask[:, 0].contiguous().numpy()

        def torch_border():
            return pm.border_match(composite, lr_mask, copied, cfg.copy_border_sigma)

        def native_border():
            return kernels.border_match(image_nhwc, holes, copied_nhwc, cfg.copy_border_sigma)

        pairs.append(("border", torch_border, native_border))
    pairs += flat_stages(composite, lr_mask, copied)
    return pairs


def flat_stages(composite: torch.Tensor, lr_mask: torch.Tensor, copied: torch.Tensor
                ) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(stage, torch reference, native) for the flat fill in each of its forms (`config.FLAT_FILL_FORMS`), on the
    LR network's composite and copies."""
    from rethined_engine.backends.native_backend import FlatFill, require_native
    from rethined_engine.config import FLAT_FILL_FORMS
    from rethined_engine.model.flat import flat_fill

    native = require_native()
    pairs = []
    for form in FLAT_FILL_FORMS:
        kernel = FlatFill(native, form)
        pairs.append((f"flat:{form}", lambda form=form: flat_fill(composite, lr_mask, copied, form),
                      lambda kernel=kernel: kernel(composite, lr_mask, copied)))
    return pairs


@torch.inference_mode()
def measure(size: int, repeats: int) -> list[dict]:
    from rethined_engine.backends.native_backend import require_native

    threads = require_native().max_threads()
    rows = []
    for stage, reference, fast in stages(size):
        t_ref, t_fast = median_ms(reference, repeats), median_ms(fast, repeats)
        rows.append({"stage": stage, "size": size, "torch_ms": t_ref, "native_ms": t_fast, "speedup": t_ref / t_fast,
                     "threads": threads})
        print(f"{stage:20s} {size:5d}^2  torch {t_ref:8.1f} ms  native {t_fast:8.1f} ms  x{t_ref / t_fast:.1f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "native-stages-cpu.json",
                        help="result file (default %(default)s)")
    args = parser.parse_args(argv)
    env = run_environment("cpu")     # before any measuring: exits if the commit is unknown
    rows = [row for size in args.sizes for row in measure(size, args.repeats)]
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(env | {"rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
