"""Hole-region image quality metrics. Images (B, 3, H, W) float in [0, 1]; masks (B, 1, H, W), 1 = hole."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _hole_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean of x (B, C, H, W) over hole pixels -> (B,)."""
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)


def hole_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _hole_mean((pred - target).abs(), mask)


def hole_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mse = _hole_mean((pred - target) ** 2, mask)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5), (B, 3, H, W)."""
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-0.5 * (coords / SSIM_SIGMA) ** 2)
    g = (g / g.sum()).to(pred)
    c = pred.shape[1]
    kh, kw = g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)
    pad = SSIM_WINDOW // 2

    def blur(x):
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)

    mu_x, mu_y = blur(pred), blur(target)
    var_x = blur(pred * pred) - mu_x ** 2
    var_y = blur(target * target) - mu_y ** 2
    cov = blur(pred * target) - mu_x * mu_y
    return ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2))


def hole_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over hole pixels, (B,). Computed in fp32: within 1e-7 of fp64 on a 2048^2 photo-sized
    input and 2.6x faster on the CPU (fp64 made 4K quality runs take minutes per image)."""
    return _hole_mean(ssim_map(pred.float(), target.float()), mask).double()


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Per-channel 3x3 Laplacian (4-neighbour), reflect-padded, same shape as x."""
    c = x.shape[1]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel.expand(c, 1, 3, 3), groups=c)


def hole_laplacian_energy(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared Laplacian of x (B, C, H, W) over hole pixels, (B,)."""
    return _hole_mean(laplacian(x) ** 2, mask)


def hole_sharpness(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """High-frequency energy (squared Laplacian) of pred over that of target, summed over hole pixels, (B,).

    1.0: as much fine detail as the ground truth; blur -> 0; noise or hard seams -> above 1.
    """
    pred, target = pred.double(), target.double()
    return hole_laplacian_energy(pred, mask) / hole_laplacian_energy(target, mask).clamp_min(1e-12)


def seam_free_hole(mask: torch.Tensor, grid_span: int) -> torch.Tensor:
    """Hole pixels (B, 1, H, W) bool whose 3x3 Laplacian straddles neither the hole's border (no known
    8-neighbour) nor a token-grid line (rows and columns at multiples of grid_span px, the HR token size
    s * P of our attention upscaling, which pastes each token's texture from its own source)."""
    hole = mask > 0
    inside = ~F.max_pool2d((~hole).to(torch.float32), 3, stride=1, padding=1).bool()
    rows = torch.arange(mask.shape[-2], device=mask.device) % grid_span
    cols = torch.arange(mask.shape[-1], device=mask.device) % grid_span
    on_line = ((rows == 0) | (rows == grid_span - 1))[:, None] | ((cols == 0) | (cols == grid_span - 1))[None, :]
    return hole & inside & ~on_line


def hole_sharpness_inner(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, grid_span: int) -> torch.Tensor:
    """`hole_sharpness` over `seam_free_hole` pixels only, (B,); NaN where there are none.

    Seams are high-frequency energy but not detail: a fill offset from the known pixels, or tokens pasted
    side by side, score as "sharp" in `hole_sharpness` (the same pixels are used for every method and the
    truth, so peers without seams score about the same in both)."""
    inner = seam_free_hole(mask, grid_span)
    ratio = hole_sharpness(pred, target, inner)
    return torch.where(inner.flatten(1).any(dim=1), ratio, torch.full_like(ratio, float("nan")))


def grid_seam_ratio(pred: torch.Tensor, mask: torch.Tensor, grid_span: int) -> torch.Tensor:
    """How much more pred changes across the token grid's lines than between other neighbouring pixels, in
    the hole, (B,): the mean absolute difference (over channels) of horizontally and vertically adjacent hole
    pixel pairs that straddle a grid line (between columns or rows k * grid_span - 1 and k * grid_span)
    over that of the pairs that do not. About 1 for a fill without seams on those lines (a real photo, a
    fill that ignores the grid); above 1 where blocks pasted side by side meet at a step (a staircase of
    token edges). NaN where the hole has no pair of either kind. pred (B, C, H, W), mask (B, 1, H, W)."""
    pred = pred.double()
    hole = mask > 0
    across_sum, across_count = pred.new_zeros(pred.shape[0]), pred.new_zeros(pred.shape[0])
    within_sum, within_count = pred.new_zeros(pred.shape[0]), pred.new_zeros(pred.shape[0])
    for dim in (-1, -2):
        size = pred.shape[dim]
        step = (pred.narrow(dim, 1, size - 1) - pred.narrow(dim, 0, size - 1)).abs().mean(dim=1, keepdim=True)
        both = hole.narrow(dim, 1, size - 1) & hole.narrow(dim, 0, size - 1)
        line = (torch.arange(size - 1, device=pred.device) % grid_span) == grid_span - 1
        line = line.view(-1, 1) if dim == -2 else line.view(1, -1)
        for on_line, sums, counts in ((line, across_sum, across_count), (~line, within_sum, within_count)):
            pairs = both & on_line
            sums += (step * pairs).flatten(1).sum(dim=1)
            counts += pairs.flatten(1).sum(dim=1)
    ratios = (across_sum / across_count) / (within_sum / within_count)
    return torch.where((across_count > 0) & (within_count > 0) & (within_sum > 0), ratios,
                       torch.full_like(ratios, float("nan")))


def hole_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 grid_span: int | None = None) -> dict[str, float]:
    """Mean over the batch of hole PSNR (dB), SSIM, L1 and sharpness ratio; with grid_span (px) also
    `sharpness_inner` (`hole_sharpness_inner`) and `seam_ratio` (`grid_seam_ratio`)."""
    scores = {"psnr": float(hole_psnr(pred, target, mask).mean()),
              "ssim": float(hole_ssim(pred, target, mask).mean()),
              "l1": float(hole_l1(pred, target, mask).mean()),
              "sharpness": float(hole_sharpness(pred, target, mask).mean())}
    if grid_span is not None:
        scores["sharpness_inner"] = float(hole_sharpness_inner(pred, target, mask, grid_span).mean())
        scores["seam_ratio"] = float(grid_seam_ratio(pred, mask, grid_span).mean())
    return scores


# --- Texture realism: sliced Wasserstein distance between patch sets of a Laplacian pyramid ---------------
# After Karras et al., "Progressive Growing of GANs", ICLR 2018 ("multi-scale statistical similarity"): the
# distribution of the output's local neighbourhoods at each pyramid level is compared with the truth's,
# with no trained network. Unlike PSNR/SSIM it does not reward the mean of plausible fills: a blurred fill
# is far from the truth's patch distribution at the fine levels; a colour cast shows at the coarse ones.

SWD_LEVELS = 4                          # pyramid levels; level 0 finest, the last the low-pass residual
SWD_PATCH = 7                           # px: descriptor = patch x patch x channels neighbourhood
SWD_PROJECTIONS = 256                   # random unit directions of the sliced distance
SWD_MAX_DESCRIPTORS = 2 ** 15           # per level and image: hole centres subsampled above this
SWD_SCALE = 1e3                         # reported x 10^3, as in Karras et al.
BINOMIAL_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)   # the pyramid's 5-tap Gaussian (normalised to sum 1)
BINOMIAL_RADIUS = len(BINOMIAL_TAPS) // 2
SWD_STD_FLOOR = 1e-6                    # per-dimension std floor of the descriptor normalisation


def _pad(x: torch.Tensor, dim: int, width: int) -> torch.Tensor:
    """x (B, C, H, W) reflect-padded by width samples at both ends of dim (2 or 3); replicate if it is too short."""
    pads = (width, width, 0, 0) if dim == 3 else (0, 0, width, width)
    return F.pad(x, pads, mode="reflect" if width < x.shape[dim] else "replicate")


def _every(x: torch.Tensor, dim: int, start: int, count: int, step: int = 1) -> torch.Tensor:
    """count samples of x along dim from start, step apart."""
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, start + step * (count - 1) + 1, step)
    return x[tuple(index)]


def _reduce(x: torch.Tensor, dim: int) -> torch.Tensor:
    """5-tap binomial blur along dim (2 or 3) of x (B, C, H, W), reflect-padded, kept at even positions:
    that dim n -> ceil(n / 2)."""
    taps = [t / sum(BINOMIAL_TAPS) for t in BINOMIAL_TAPS]
    count = (x.shape[dim] + 1) // 2
    padded = _pad(x, dim, BINOMIAL_RADIUS)
    out = _every(padded, dim, 0, count, 2) * taps[0]
    for k in range(1, len(taps)):
        out.add_(_every(padded, dim, k, count, 2), alpha=taps[k])
    return out


def _expand(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Inverse of `_reduce` along dim (2 or 3): samples m -> size (2m or 2m - 1), the 5-tap binomial of zeros
    inserted between samples at gain 2, in polyphase form: even outputs (x[i-1] + 6 x[i] + x[i+1]) / 8, odd
    outputs (x[i] + x[i+1]) / 2, x reflect-padded by one sample."""
    m = x.shape[dim]
    padded = _pad(x, dim, 1)
    left, centre, right = (_every(padded, dim, k, m) for k in range(3))
    even = torch.add(left, right).add_(centre, alpha=6.0).mul_(1.0 / 8.0)
    odd = torch.add(centre, right).mul_(0.5)
    out = torch.stack([even, odd], dim=dim + 1).flatten(dim, dim + 1)     # even, odd, even, ... (differentiable)
    return _every(out, dim, 0, size)


def laplacian_pyramid(x: torch.Tensor, levels: int = SWD_LEVELS) -> list[torch.Tensor]:
    """Laplacian pyramid of x (B, C, H, W): `levels` tensors, level l (B, C, ceil(H / 2^l), ceil(W / 2^l)).

    Gaussian levels G_{l+1} = `_reduce` of G_l along rows and columns (5-tap binomial blur, reflect padding,
    even samples kept); band l = G_l - `_expand`(G_{l+1}); the last level is the low-pass residual
    G_{levels-1} itself (local colour)."""
    bands = []
    for _ in range(levels - 1):
        low = _reduce(_reduce(x, 3), 2)
        bands.append(x - _expand(_expand(low, 2, x.shape[2]), 3, x.shape[3]))
        x = low
    bands.append(x)
    return bands


def hole_pyramid(mask: torch.Tensor, levels: int = SWD_LEVELS) -> list[torch.Tensor]:
    """mask (B, 1, H, W) -> `levels` bool masks matching `laplacian_pyramid`'s sizes: a level-l pixel is in the
    hole when any of the 2^l x 2^l full-resolution pixels it was decimated from is."""
    m = (mask > 0).to(torch.float32)
    out = [m > 0]
    for _ in range(levels - 1):
        m = F.max_pool2d(m, 2, stride=2, ceil_mode=True)
        out.append(m > 0)
    return out


def swd_reach(levels: int = SWD_LEVELS, patch: int = SWD_PATCH) -> int:
    """Full-resolution px (Chebyshev distance from the nearest hole pixel) beyond which no pixel of either image
    can change `swd_levels`: per level, the descriptor's extent (patch radius + one level-l pixel) x 2^l, plus
    the reach of the pyramid filters behind a level-l value (blur-and-decimate chain, and for band-pass levels
    the expansion from the next level)."""
    def gaussian_reach(level: int) -> int:       # G_level depends on full-res px within this of its centre
        return sum(BINOMIAL_RADIUS * 2 ** k for k in range(level))

    reach = 0
    for level in range(levels):
        if level == levels - 1:
            filters = gaussian_reach(level)
        else:
            filters = BINOMIAL_RADIUS * 2 ** level + gaussian_reach(level + 1)
        reach = max(reach, (patch // 2 + 1) * 2 ** level - 1 + filters)
    return reach


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices reflected into [0, size) about the first and last sample (as reflect padding), then clamped."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index).clamp(0, size - 1)


def _descriptors(band: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, patch: int) -> torch.Tensor:
    """band (C, H, W), centres (n,) rows and columns -> (n, C * patch * patch) neighbourhoods, the band
    reflected at its edges."""
    c, h, w = band.shape
    d = torch.arange(patch, device=band.device) - patch // 2
    rows = _reflect(ys[:, None] + d, h)                                   # (n, patch)
    cols = _reflect(xs[:, None] + d, w)
    planes = torch.arange(c, device=band.device) * (h * w)
    flat = planes[None, :, None, None] + rows[:, None, :, None] * w + cols[:, None, None, :]      # (n, C, patch, patch)
    return band.reshape(-1)[flat.reshape(len(ys), -1)]


def _level_generator(seed: int, level: int) -> torch.Generator:
    """A CPU generator per (seed, level): each level's draws do not depend on the other levels' hole sizes."""
    state = int(np.random.SeedSequence([seed, level]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(state)


def _sorted_rows(x: torch.Tensor) -> torch.Tensor:
    """x (P, n) with each row sorted. numpy's sort on the CPU (vectorised; ~10x torch.sort there)."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.sort(x.numpy(), axis=1))
    return torch.sort(x, dim=1).values


def swd_projection(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Point sets a and b (n, D) of equal size, unit directions (D, P) -> (mean (D,), weights (P, D)): each
    dimension normalised by the mean and std of both sets together, then projected on the directions, in one
    product: x's projections are weights @ (x - mean).T."""
    mean = (a.mean(0) + b.mean(0)) * 0.5
    var = ((a - mean).square().mean(0) + (b - mean).square().mean(0)) * 0.5
    scale = var.sqrt().clamp_min(SWD_STD_FLOOR).reciprocal()
    return mean, (directions * scale[:, None]).T


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int, generator: torch.Generator) -> torch.Tensor:
    """Sliced Wasserstein-1 distance between point sets a and b (n, D) of equal size: each dimension is
    normalised by the mean and std of both sets together, both are projected on `projections` random unit
    directions (drawn from generator), and the distance is the mean over directions of the mean absolute
    difference between the sorted projections (`swd_projection`). 0-dim tensor."""
    directions = torch.randn(a.shape[1], projections, generator=generator, dtype=torch.float64)
    mean, weights = swd_projection(a, b, (directions / directions.norm(dim=0, keepdim=True)).to(a))
    pa = _sorted_rows(weights @ (a - mean).T)          # (P, n)
    pb = _sorted_rows(weights @ (b - mean).T)
    return (pa - pb).abs().mean()


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    return x if x.dim() == 4 else x.reshape(1, *([1] * (3 - x.dim())), *x.shape)


def swd_levels(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, levels: int = SWD_LEVELS,
               patch: int = SWD_PATCH, projections: int = SWD_PROJECTIONS,
               max_descriptors: int = SWD_MAX_DESCRIPTORS, seed: int = 0) -> torch.Tensor:
    """Per-image, per-level texture realism of pred against target over the hole, (B, levels) float64, x 10^3.

    pred, target: (B, 3, H, W) or (3, H, W) float in [0, 1]; mask (B, 1, H, W), (H, W) or (1, H, W), > 0 = hole.
    Level l: `sliced_wasserstein` between pred's and target's patch x patch x 3 neighbourhoods of Laplacian
    level l (`laplacian_pyramid`) centred on the level's hole pixels (`hole_pyramid`); one random subset of
    at most max_descriptors centres, shared by both images, and the projections come from a generator seeded
    by (seed, level), the same for every image. Identical images give exactly 0. NaN for an image without a hole.
    Lower is better; pixels farther than `swd_reach` from the hole do not enter."""
    pred, target, mask = _as_batch(pred).float(), _as_batch(target).float(), _as_batch(mask)
    mask = mask.expand(pred.shape[0], 1, *mask.shape[-2:])
    pred_bands, target_bands = laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels)
    holes = hole_pyramid(mask, levels)
    out = torch.full((pred.shape[0], levels), float("nan"), dtype=torch.float64)
    for level in range(levels):
        for i in range(pred.shape[0]):
            ys, xs = torch.nonzero(holes[level][i, 0], as_tuple=True)
            if ys.numel() == 0:
                continue
            generator = _level_generator(seed, level)
            if ys.numel() > max_descriptors:
                keep = torch.randperm(ys.numel(), generator=generator)[:max_descriptors].to(ys.device)
                ys, xs = ys[keep], xs[keep]
            a = _descriptors(pred_bands[level][i], ys, xs, patch)
            b = _descriptors(target_bands[level][i], ys, xs, patch)
            out[i, level] = float(sliced_wasserstein(a, b, projections, generator)) * SWD_SCALE
    return out


def realism_swd(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, levels: int = SWD_LEVELS,
                patch: int = SWD_PATCH, projections: int = SWD_PROJECTIONS,
                max_descriptors: int = SWD_MAX_DESCRIPTORS, seed: int = 0) -> dict[str, float]:
    """`swd_levels` as {"swd_l0": ..., "swd_l{levels-1}": ..., "swd_mean": mean of the levels}, each the
    mean over the batch (x 10^3, lower is better). Shapes as in `swd_levels`."""
    per_level = swd_levels(pred, target, mask, levels, patch, projections, max_descriptors, seed)
    scores = {f"swd_l{level}": float(per_level[:, level].mean()) for level in range(levels)}
    scores["swd_mean"] = float(per_level.mean(1).mean())
    return scores


# --- temporal consistency (DESIGN.md section 9) ---------------------------------------------------------------

WARP_FLOW_PRESET = "medium"   # DIS preset of the flow on the true frames


def warping_error(frames: np.ndarray, outputs: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Warping error E_warp (Lai et al. 2018) of outputs by the motion of the true frames.

    frames, outputs: (T, H, W, 3) uint8 RGB, the truth and the result; masks: (T, H, W) or (H, W), nonzero = hole.
    For t < T-1: DIS flow (`video.flow.dis_flow`) on the truth from t to t+1 and back, outputs[t+1] warped to t
    with cv2.remap, and the squared difference to outputs[t], summed over channels in [0, 1], averaged over the
    non-occluded pixels (`video.flow.forward_backward_valid`) of the hole of frame t ("hole") and of the whole
    frame ("frame"); each is the mean over the frame pairs that have such pixels (NaN when none has). The
    truth's own E_warp is
    warping_error(frames, frames, masks)."""
    from .video.flow import dis_flow, forward_backward_valid, warp_back

    frames, outputs = np.asarray(frames), np.asarray(outputs)
    if frames.ndim != 4 or frames.shape[-1] != 3 or outputs.shape != frames.shape:
        raise ValueError(f"frames, outputs: expected two (T, H, W, 3) arrays of one shape, got {frames.shape} "
                         f"and {outputs.shape}")
    masks = np.broadcast_to(np.asarray(masks) != 0, frames.shape[:3])
    per_pair = {"hole": [], "frame": []}
    for t in range(len(frames) - 1):
        forward = dis_flow(frames[t], frames[t + 1], WARP_FLOW_PRESET)
        backward = dis_flow(frames[t + 1], frames[t], WARP_FLOW_PRESET)
        valid = forward_backward_valid(forward, backward)
        warped = warp_back(outputs[t + 1].astype(np.float32), forward) / 255.0
        error = np.square(outputs[t].astype(np.float32) / 255.0 - warped).sum(-1)
        for name, region in (("hole", valid & masks[t]), ("frame", valid)):
            if region.any():
                per_pair[name].append(float(error[region].mean()))
    return {name: float(np.mean(values)) if values else float("nan") for name, values in per_pair.items()}
