"""Kernel microbenchmarks on CUDA (`triton.testing.do_bench`, median ms): each Triton kernel vs its torch
reference at equal shapes, as GB/s (fraction of the device's measured copy bandwidth) or TFLOP/s.

    python -m bench.kernels [--sizes 2048 4096 8192]

Kernels: HR upscale (kernels/hr_upscale.py) per image size, K = 4 on a channels-last image (beside it the
CUDA C kernel of the TensorRT path, csrc/cuda/hr_upscale.cu, through CuPy when installed), as the
engine calls it ((3, H, W), the shipped K, both bands), and with the cross-faded texture (hr_feather = 1: one
copied source, one band; HWC with the CUDA C kernel, and CHW), and the seam blend (kernels/seam_blend.py)
per image size; at LR (64 x 64 tokens, the grid of every
square image >= 512 px, fp16) the patch projection (kernels/patch_projection.py), the coherence
epilogue (kernels/coherence.py) and the masked attention + mixing + top-K
(kernels/masked_attention.py), the latter also against
`F.scaled_dot_product_attention` on the already-compacted hole queries and allowed keys/values (equal
shapes, no masking, no gathers, no top-K: the unfused floor it must stay within 2x of), and the default's copy
steps (kernels/copy_candidates.py's candidate search, kernels/source_sweep.py's propagation updates,
kernels/blur.py's Gaussian means, kernels/membrane.py's membrane and border match, kernels/colour_anchor.py,
kernels/flat_fill.py) against their torch references.
Appends a run to bench/results/kernels-<gpu>.json: its rows, the copy bandwidth and where it ran (device,
commit, `dirty`, versions, threads; `bench.env.run_environment`).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from .env import RESULTS, run_environment

MASK_COVERAGE = 0.4
QUANTILES = [0.5, 0.2, 0.8]   # median, p20, p80 -> `_row`
TOPK = 4


def measured_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB: bytes read + written over the median time."""
    from triton.testing import do_bench

    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * src.numel() / ms / 1e6


def hr_upscale_case(size: int, rng: np.random.Generator, topk: int = TOPK, channels_last: bool = True):
    """Random uint8 image ((H, W, 3) if channels_last else (3, H, W), as the engine passes it), 40 % mask,
    random LR result, `topk` random known sources per token with weights summing to 1."""
    from rethined_engine.config import ModelConfig
    from rethined_engine.geometry import plan
    from rethined_engine.train.masks import random_mask

    geom = plan(size, size, ModelConfig())
    shape = (size, size, 3) if channels_last else (3, size, size)
    image = torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8)).cuda()
    mask = torch.from_numpy(random_mask(size, size, rng, (MASK_COVERAGE - 0.01, MASK_COVERAGE + 0.01))).cuda()
    tokens = geom.grid_h * geom.grid_w
    keys = torch.from_numpy(np.flatnonzero(geom.key_inside_grid().reshape(-1))).cuda()
    index = keys[torch.randint(0, keys.numel(), (tokens, topk), device="cuda")].int()
    weight = torch.rand(tokens, topk, device="cuda")
    weight /= weight.sum(-1, keepdim=True)
    lr = torch.rand(1, 3, *geom.lr_size, device="cuda")
    return geom, image, mask, lr, weight, index


def _row(kernel, impl, size, q, **extra) -> dict:
    return {"kernel": kernel, "impl": impl, "size": size, "median_ms": q[0], "p20_ms": q[1], "p80_ms": q[2], **extra}


def cuda_c_hr_upscale():
    """`hr_upscale`'s signature (channels-last only) over the CUDA C kernel launched by CuPy on the
    tensors' memory (no copies; the output is allocated like the Triton launcher's), or None without CuPy."""
    try:
        import cupy as cp
    except ImportError:
        return None
    from rethined_engine.deploy.cuda_kernels import launch_hr_upscale_cupy

    def run(image, mask, lr, weight, fine_weight, index, geom, channels_last, feather=0, known=None):
        out = torch.empty_like(image)
        known = torch.zeros(geom.grid_h * geom.grid_w, dtype=torch.uint8, device=image.device) if known is None else known
        launch_hr_upscale_cupy(*(cp.asarray(t.contiguous()) for t in (image, mask, lr, weight, fine_weight, index, known)),
                               cp.asarray(out), geom, feather)
        return out

    return run


def bench_hr_upscale(size: int, bandwidth: float, rng) -> list[dict]:
    """K = 4 random sources on a channels-last image (the rows kept since the first GPU measurements, 06321c4), and the
    engine's own call: (3, H, W) image, K = the shipped hr_topk, both bands."""
    from triton.testing import do_bench

    from rethined_engine.kernels.hr_upscale import hr_upscale, hr_upscale_reference
    from rethined_engine.weights import DEFAULT_WEIGHTS, read_config

    shipped_topk = read_config(DEFAULT_WEIGHTS).hr_topk
    cuda_c = cuda_c_hr_upscale()
    rows = []
    for topk, channels_last, label in ((TOPK, True, "hwc"), (shipped_topk, False, "engine_chw")):
        geom, image, mask, lr, weight, index = hr_upscale_case(size, rng, topk, channels_last)
        hole = float(mask.float().mean())
        # uint8 image read + mask read + uint8 write, plus K source pixels per hole pixel (LR reads and the
        # fine band's 3x3 neighbourhood come from cache)
        moved = size * size * (3 + 1 + 3) + hole * size * size * 3 * topk
        for bands, fine_weight in (("one_band", torch.zeros_like(weight)), ("two_band", weight)):
            if label == "engine_chw" and bands == "one_band":
                continue
            impls = [("triton", hr_upscale), ("torch_reference", hr_upscale_reference)]
            if channels_last and cuda_c is not None:
                impls.insert(1, ("cuda_c", cuda_c))
            for name, fn in impls:
                q = do_bench(lambda: fn(image, mask, lr, weight, fine_weight, index, geom, channels_last),
                             quantiles=QUANTILES)
                rows.append(_row("hr_upscale", name, size, q, bands=bands, layout=label, k=topk,
                                 gb_s=moved / q[0] / 1e6, fraction_of_copy_bw=moved / q[0] / 1e6 / bandwidth))
                print(f"hr_upscale {label:10s} K={topk} {bands} {name:16s} {size:5d}^2  {q[0]:8.3f} ms  "
                      f"{rows[-1]['gb_s']:7.1f} GB/s ({100 * rows[-1]['fraction_of_copy_bw']:.0f} % of copy)", flush=True)
    return rows + bench_hr_feather(size, bandwidth, rng, cuda_c)


HR_FEATHER = 1   # LR px: the setting the docs' rule picked


def bench_hr_feather(size: int, bandwidth: float, rng, cuda_c) -> list[dict]:
    """The cross-faded texture (feather = HR_FEATHER LR px): one random known source per token, one band,
    on HWC (Triton, CUDA C, torch reference) and CHW (Triton, torch reference) images. The byte floor counts
    one source read per hole pixel, as the pasted K = 1 kernel (the edge band's extra samples come from cache)."""
    from triton.testing import do_bench

    from rethined_engine.deploy.host import known_tokens
    from rethined_engine.kernels.hr_upscale import hr_upscale, hr_upscale_reference

    rows = []
    for channels_last, label in ((True, "hwc"), (False, "engine_chw")):
        geom, image, mask, lr, weight, index = hr_upscale_case(size, rng, 1, channels_last)
        known = torch.from_numpy(known_tokens(mask.cpu().numpy(), geom)).cuda()
        hole = float(mask.float().mean())
        moved = size * size * (3 + 1 + 3) + hole * size * size * 3
        impls = [("triton", hr_upscale), ("torch_reference", hr_upscale_reference)]
        if channels_last and cuda_c is not None:
            impls.insert(1, ("cuda_c", cuda_c))
        for name, fn in impls:
            fine_weight = torch.zeros_like(weight) if name == "cuda_c" else None
            q = do_bench(lambda: fn(image, mask, lr, weight, fine_weight, index, geom, channels_last,
                                    feather=HR_FEATHER, known=known), quantiles=QUANTILES)
            rows.append(_row("hr_upscale", name, size, q, bands="one_band", layout=label, k=1, feather=HR_FEATHER,
                             gb_s=moved / q[0] / 1e6, fraction_of_copy_bw=moved / q[0] / 1e6 / bandwidth))
            print(f"hr_upscale {label:10s} K=1 feather={HR_FEATHER} {name:16s} {size:5d}^2  {q[0]:8.3f} ms  "
                  f"{rows[-1]['gb_s']:7.1f} GB/s ({100 * rows[-1]['fraction_of_copy_bw']:.0f} % of copy)", flush=True)
    return rows


SEAM_SIGMA, SEAM_GAIN = 2.0, 8.0


def bench_seam_blend(size: int, bandwidth: float, rng) -> list[dict]:
    """The seam blend on a (3, H, W) uint8 result (as the triton backend calls it), 40 % mask."""
    from triton.testing import do_bench

    from rethined_engine.geometry import seam_taps
    from rethined_engine.kernels.seam_blend import seam_blend, seam_blend_reference

    _, image, mask, _, _, _ = hr_upscale_case(size, rng, 1, channels_last=False)
    filled = image.clone()
    taps = torch.from_numpy(seam_taps(SEAM_SIGMA)).cuda()
    # floor: read image + mask once (halo reloads hit the cache); the blended pixels are few
    moved = size * size * (3 + 1)
    rows = []
    for name, fn in (("triton", seam_blend), ("torch_reference", seam_blend_reference)):
        q = do_bench(lambda: fn(image, mask, filled, taps, SEAM_GAIN, False), quantiles=QUANTILES)
        rows.append(_row("seam_blend", name, size, q, gb_s=moved / q[0] / 1e6,
                         fraction_of_copy_bw=moved / q[0] / 1e6 / bandwidth))
        print(f"seam_blend {name:16s} {size:5d}^2  {q[0]:8.3f} ms  {rows[-1]['gb_s']:7.1f} GB/s "
              f"({100 * rows[-1]['fraction_of_copy_bw']:.0f} % of copy)", flush=True)
    return rows


def lr_case(hole: float, dtype=torch.float16, seed: int = 0):
    """LR inputs of the attention block at the 64 x 64 grid: composite image, features, weights of the
    shipped model, a free-form mask of `hole` coverage at token level."""
    from rethined_engine.model.patchmatch import token_mask
    from rethined_engine.train.masks import random_mask
    from rethined_engine.weights import load_model

    model = load_model(None, "cuda", dtype)
    cfg, pm = model.cfg, model.patch_match
    side = cfg.lr_long_side
    g = torch.Generator(device="cuda").manual_seed(seed)
    image = torch.rand(3, side, side, device="cuda", generator=g).to(dtype)
    features = torch.randn(model.coarse_net.feature_channels, side // cfg.patch_size, side // cfg.patch_size,
                           device="cuda", generator=g).to(dtype)
    mask = random_mask(side, side, np.random.default_rng(seed), (hole - 0.01, hole + 0.01))
    query_masked = token_mask(torch.from_numpy(mask).cuda()[None, None].float(), cfg.patch_size)[0]
    weights = (pm.to_q.weight, pm.to_q.bias, pm.to_k.weight, pm.to_k.bias)
    return image, features, weights, query_masked, float(pm.logit_scale().detach()), cfg


def bench_lr_kernels(hole: float = MASK_COVERAGE) -> list[dict]:
    import torch.nn.functional as F
    from triton.testing import do_bench

    from rethined_engine.kernels.masked_attention import masked_attention_topk, masked_attention_topk_reference
    from rethined_engine.kernels.patch_projection import patch_projection, patch_projection_reference
    from rethined_engine.model.patchmatch import patchify

    image, features, weights, query_masked, scale, cfg = lr_case(hole)
    p, n = cfg.patch_size, query_masked.numel()
    d, in_dim = weights[0].shape
    rows = []
    proj_flop = 2 * 2 * n * in_dim * d
    for name, fn in (("triton", patch_projection), ("torch_reference", patch_projection_reference)):
        q = do_bench(lambda: fn(image, features, *weights, p), quantiles=QUANTILES)
        rows.append(_row("patch_projection", name, n, q, tflop_s=proj_flop / q[0] / 1e9))
    qv, kv = patch_projection(image, features, *weights, p)
    key_inside = torch.ones_like(query_masked)
    m, keys = int(query_masked.sum()), int((~query_masked).sum())
    attn_flop = 2 * m * keys * (d + 3 * p * p)
    for name, fn in (("triton", masked_attention_topk), ("torch_reference", masked_attention_topk_reference)):
        q = do_bench(lambda: fn(qv, kv, image, query_masked, key_inside, scale, TOPK, p), quantiles=QUANTILES)
        rows.append(_row("masked_attention", name, n, q, hole_rows=m, keys=keys, tflop_s=attn_flop / q[0] / 1e9))
    tokens = patchify(image[None], p)[0]
    sq, sk, sv = (t[None, None].contiguous() for t in (qv[query_masked], kv[~query_masked], tokens[~query_masked]))
    sv = F.pad(sv, (0, 256 - sv.shape[-1])) if sv.shape[-1] not in (64, 128, 256) else sv   # flash head dims
    q = do_bench(lambda: F.scaled_dot_product_attention(sq, sk, sv, scale=scale), quantiles=QUANTILES)
    rows.append(_row("masked_attention", "sdpa_compacted", n, q, hole_rows=m, keys=keys, tflop_s=attn_flop / q[0] / 1e9))
    rows += bench_coherence_epilogue(image, cfg)
    rows += bench_copy_steps(image, features, weights, query_masked, cfg)
    for row in rows:
        print(f"{row['kernel']:19s} {row['impl']:16s} {row['median_ms']:8.3f} ms  {row.get('tflop_s', 0):7.2f} TFLOP/s"
              f"  {row.get('gb_s', 0):7.1f} GB/s", flush=True)
    return rows


def bench_coherence_epilogue(image: torch.Tensor, cfg) -> list[dict]:
    """Last coherence conv + residual + clamp + composite at LR vs the torch ops it replaces."""
    from triton.testing import do_bench

    from rethined_engine.kernels.coherence import coherence_epilogue, coherence_epilogue_reference

    _, h, w = image.shape
    c = cfg.coherence_hidden
    g = torch.Generator(device="cuda").manual_seed(1)
    hidden = torch.relu(torch.randn(c, h, w, device="cuda", generator=g)).to(image.dtype)
    weight = (torch.randn(3, c, 3, 3, device="cuda", generator=g) * 0.1).to(image.dtype)
    bias = torch.zeros(3, device="cuda", dtype=image.dtype)
    mixed = torch.rand(3, h, w, device="cuda", generator=g).to(image.dtype)
    mask = (torch.rand(h, w, device="cuda", generator=g) < MASK_COVERAGE).to(image.dtype)
    moved = (c + 3 + 3 + 1 + 3) * h * w * image.element_size()            # hidden, mixed, image, mask in; out
    rows = []
    for name, fn in (("triton", coherence_epilogue), ("torch_reference", coherence_epilogue_reference)):
        q = do_bench(lambda: fn(hidden, weight, bias, mixed, image, mask), quantiles=QUANTILES)
        rows.append(_row("coherence_epilogue", name, h * w, q, gb_s=moved / q[0] / 1e6))
    return rows


def bench_copy_steps(image: torch.Tensor, features: torch.Tensor, weights: tuple, query_masked: torch.Tensor,
                     cfg) -> list[dict]:
    """The shipped default's LR copy steps at the 64 x 64 grid, Triton against the torch reference (its dense,
    graph-capturable form where it has one): the candidate search and the propagation updates (the shipped
    model's q, k and dense candidates for the `lr_case` mask), the border match's Gaussian means (its 8-channel
    stack) and its membrane (BORDER_MATCH_LEVELS halvings), and the whole border match, colour anchor and flat
    fill on the float32 LR image with the `lr_case` hole (its tokens' pixels) filled by noise."""
    from triton.testing import do_bench

    from rethined_engine.kernels import blur, colour_anchor, copy_candidates, flat_fill, membrane, source_sweep
    from rethined_engine.kernels.patch_projection import patch_projection
    from rethined_engine.model import anchor
    from rethined_engine.model import patchmatch as pm

    p = cfg.patch_size
    q_lr, k_lr = (t[None] for t in patch_projection(image, features, *weights, p))   # the engine's dtype
    q, k = q_lr.float(), k_lr.float()
    hole = query_masked[None]
    key_ok = ~hole
    colours = pm.token_colours(image[None].float(), p).flatten(2).transpose(1, 2)
    candidates = pm.copy_candidates(q, k, colours, colours, hole, key_ok, cfg.copy_pool, 0.0, compact=False)
    source, own_score, valid, has_key = pm.start_sources(q, k, candidates, hole, key_ok, colours, colours, 0.0)
    updates = (q, k, candidates, own_score, valid, has_key, key_ok, source, image.shape[-1] // p, colours, colours,
               0.0, cfg.copy_sweeps, cfg.copy_continuity, cfg.copy_repeat_radius, cfg.copy_repeat_penalty,
               cfg.copy_border_continuity, cfg.copy_support_margin)
    g = torch.Generator(image.device).manual_seed(2)
    stack = torch.rand(1, 8, *image.shape[1:], device=image.device, generator=g)
    fixed = (stack[:, 3:4] > 0.7).float()
    search = (q_lr, k_lr, colours, colours, hole, key_ok, cfg.copy_pool, cfg.copy_colour_weight)
    cases = (("copy_candidates", lambda *a: copy_candidates.copy_candidates(*a, image.shape[-1] // p),
              lambda *a: pm.copy_candidates(*a, compact=False), search, {"hole_rows": int(hole.sum())}),
             ("propagate_sources", source_sweep.propagate_sources, source_sweep.propagate_sources_reference, updates,
              {"hole_rows": int(hole.sum()), "sweeps": cfg.copy_sweeps}),
             ("blur_base", blur.blur_base, blur.blur_base_reference, (stack, cfg.copy_border_sigma),
              {"channels": 8}),
             ("harmonic_fill", membrane.harmonic_fill, pm.harmonic_fill, (stack[:, :3], fixed, pm.BORDER_MATCH_LEVELS),
              {"levels": pm.BORDER_MATCH_LEVELS}))
    grid_h, grid_w = image.shape[1] // p, image.shape[2] // p
    mask = pm._per_pixel(hole.reshape(1, 1, grid_h, grid_w).float(), p)
    composite = image[None].float() * (1.0 - mask)
    filled = torch.where(mask > 0, torch.rand(composite.shape, device=image.device, generator=g), composite)
    steps = anchor.jump_steps(max(image.shape[1:]) // anchor.ANCHOR_CELL)
    hole_pixels = {"hole_pixels": int(mask.sum())}
    cases += (("border_match", membrane.border_match, membrane.border_match_reference,
               (composite, mask, filled, cfg.copy_border_sigma), hole_pixels),
              ("colour_anchor", colour_anchor.colour_anchor, colour_anchor.colour_anchor_reference,
               (composite, mask, filled, cfg.colour_anchor, cfg.colour_anchor_sigma, steps), hole_pixels),
              ("flat_fill", flat_fill.flat_fill, flat_fill.flat_fill_reference, (composite, mask, filled), hole_pixels))
    rows = []
    for kernel, triton_fn, reference, args, extra in cases:
        for name, fn in (("triton", triton_fn), ("torch_reference", reference)):
            q_ms = do_bench(lambda: fn(*args), quantiles=QUANTILES)  # noqa: B023 - run before the loop moves on
            rows.append(_row(kernel, name, image.shape[-1] * image.shape[-2], q_ms, **extra))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("error: bench.kernels measures CUDA kernels; no CUDA device here")
    import triton  # noqa: F401  (every kernel needs it: fail before measuring)

    env = run_environment("cuda")     # before any measuring: exits if the commit is unknown

    rng = np.random.default_rng(0)
    bandwidth = measured_bandwidth_gbs()
    print(f"measured copy bandwidth {bandwidth:.0f} GB/s")
    rows = [row for size in args.sizes for row in bench_hr_upscale(size, bandwidth, rng)]
    rows += [row for size in args.sizes for row in bench_seam_blend(size, bandwidth, rng)]
    rows += bench_lr_kernels()
    out = RESULTS / f"kernels-{env['device'].replace(' ', '_')}.json"
    runs = json.loads(out.read_text())["runs"] if out.is_file() else []
    runs.append(env | {"copy_bandwidth_gb_s": bandwidth, "rows": rows})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
