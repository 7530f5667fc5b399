"""Host-side (numpy, no torch) halves of the deployed pipeline: HR -> LR preparation before the LR
network, and the HR attention-upscale stage after it. They compute what `Rethined.forward` computes
(float32) and are the reference the CUDA C kernel (`csrc/cuda/hr_upscale.cu`) is tested against.

Layouts: HR images (H, W, 3) uint8, or float in [0, 1]; masks (H, W) bool, True = hole; LR tensors (1, C, h, w) float32 as
the ONNX graph takes them; top-K weight/index (N, K) for the N = gh * gw tokens (row-major).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..geometry import FINE_TAPS, Geometry, gaussian_taps, pad_mode


class LRInputs(NamedTuple):
    image: np.ndarray       # (1, 3, h, w) float32 in [0, 1], 0 in holes
    mask: np.ndarray        # (1, 1, h, w) float32, 1 = hole
    key_inside: np.ndarray  # (1, 1, gh, gw) float32, 1 = may be a source token


def _pad(x: np.ndarray, geom: Geometry) -> np.ndarray:
    """(H, W, ...) -> (padded H, padded W, ...) bottom/right, as `geometry.pad_to`."""
    size = geom.padded_size
    pad = [(0, size[0] - x.shape[0]), (0, size[1] - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
    mode = "reflect" if pad_mode(x.shape[0], x.shape[1], size) == "reflect" else "edge"
    return np.pad(x, pad, mode=mode)


def _blur_down(x: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, C) float32 -> (H/s, W/s, C): reflect-padded separable Gaussian, stride s (as `downsample`)."""
    taps, radius = gaussian_taps(scale)
    taps = taps.astype(np.float32)
    out_h, out_w = x.shape[0] // scale, x.shape[1] // scale
    x = np.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = np.zeros((out_h, x.shape[1], x.shape[2]), np.float32)
    for t, tap in enumerate(taps):
        rows += tap * x[t:t + scale * out_h:scale]
    out = np.zeros((out_h, out_w, x.shape[2]), np.float32)
    for t, tap in enumerate(taps):
        out += tap * rows[:, t:t + scale * out_w:scale]
    return out


def unit_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> float32 / 255 (as `io.Batch.as_float`); float -> float32."""
    return image.astype(np.float32) / np.float32(255.0) if image.dtype == np.uint8 else image.astype(np.float32)


def prepare_lr(image: np.ndarray, mask: np.ndarray, geom: Geometry, exclude: np.ndarray | None = None) -> LRInputs:
    """HR image (H, W, 3) and bool mask (H, W) -> the LR network's inputs; exclude (H, W) bool: known pixels
    whose tokens are no sources (`Geometry.source_grid`), or None."""
    known = (~mask).astype(np.float32)
    hr = _pad(unit_float(image) * known[..., None], geom)
    hr_mask = _pad(mask.astype(np.float32), geom)
    s = geom.scale
    key_inside = geom.source_grid(exclude, image, mask).astype(np.float32)[None, None]
    if s == 1:
        return LRInputs(hr.transpose(2, 0, 1)[None].copy(), hr_mask[None, None].copy(), key_inside)
    hr_known = 1.0 - hr_mask
    num = _blur_down(np.concatenate([hr * hr_known[..., None], hr_known[..., None]], axis=-1), s)
    weight = num[..., 3:]
    lr = np.where(weight > 0, num[..., :3] / np.maximum(weight, 1e-12), 0.0).astype(np.float32)
    h, w = lr.shape[:2]
    lr_mask = hr_mask.reshape(h, s, w, s).max(axis=(1, 3))
    return LRInputs(lr.transpose(2, 0, 1)[None].copy(), lr_mask[None, None].astype(np.float32), key_inside)


def _bilinear_axis(n_out: int, n_in: int, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel bilinear taps along one axis (torch `interpolate(..., align_corners=False)`)."""
    src = np.maximum((np.arange(n_out, dtype=np.float32) + 0.5) / np.float32(scale) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def upsample(lr: np.ndarray, scale: int) -> np.ndarray:
    """(3, h, w) float32 -> (h*s, w*s, 3) bilinear (half-pixel centres)."""
    _, h, w = lr.shape
    y0, y1, ly = _bilinear_axis(h * scale, h, scale)
    x0, x1, lx = _bilinear_axis(w * scale, w, scale)
    rows = lr[:, y0] * (1 - ly)[None, :, None] + lr[:, y1] * ly[None, :, None]
    out = rows[:, :, x0] * (1 - lx) + rows[:, :, x1] * lx
    return out.transpose(1, 2, 0)


def fine_band(tokens: np.ndarray) -> np.ndarray:
    """(N, span, span, 3) -> each token minus its 3x3 binomial blur, edge pixels replicated inside the token
    (`model.upscale.fine_band`)."""
    taps = np.asarray(FINE_TAPS, np.float32)
    n = tokens.shape[1]
    padded = np.pad(tokens, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    rows = sum(t * padded[:, i:i + n] for i, t in enumerate(taps))
    return tokens - sum(t * rows[:, :, i:i + n] for i, t in enumerate(taps))


def known_tokens(mask: np.ndarray, geom: Geometry) -> np.ndarray:
    """(N,) bool: the tokens whose texture a feathered copy may read: wholly inside the image
    (`Geometry.inside_grid`) and without a hole pixel (the LR network's keys, and with `key_edge_tokens` the
    image's outermost tokens too, whose own texture a copy beside them fades into). mask (H, W) bool, True =
    hole."""
    return (geom.inside_grid() & ~geom.tokens_touching(mask)).reshape(-1)


def check_feather(feather: int, patch: int, topk: int, two_bands: bool) -> None:
    """The HR stages' feather (LR px, `ModelConfig.hr_feather`): an int in 0..patch // 2; > 0 needs one
    source per token (topk = K = 1) and one band (no fine weights). ValueError naming what is wrong."""
    if not (isinstance(feather, (int, np.integer)) and 0 <= feather <= patch // 2):
        raise ValueError(f"feather: expected an int in 0..{patch // 2} (LR px), got {feather!r}")
    if feather > 0 and topk != 1:
        raise ValueError(f"weight: feather > 0 needs one source per token, (N, 1) weights and indices; got K = {topk}")
    if feather > 0 and two_bands:
        raise ValueError("fine_weight: feather > 0 needs one band (hf_fine_decay=None): expected no fine weights "
                         "(zeros, or None for the Triton kernel)")


COPY_FLOOR = np.float32(1e-3)   # `model.patchmatch.COPY_FLOOR`: weight of a copy whose source pixel is not known


def feather_weight(offset: np.ndarray, span: int, feather: int) -> np.ndarray:
    """`model.patchmatch.feather_weight` for feather > 0 (HR px), float32."""
    rising, falling = offset + np.float32(feather + 0.5), np.float32(span + feather - 0.5) - offset
    return np.clip(np.minimum(rising, falling) / np.float32(2 * feather), 0.0, 1.0)


def mirror_offset(offset: np.ndarray, span: int) -> np.ndarray:
    """`model.patchmatch._mirror`: offsets (px from a token's first row / column) reflected into the token."""
    return np.where(offset >= span, 2 * span - 1 - offset, np.where(offset < 0, -1 - offset, offset))


def feathered_texture(hf: np.ndarray, known: np.ndarray, weight: np.ndarray, index: np.ndarray, geom: Geometry,
                      feather: int, ys: np.ndarray, xs: np.ndarray, reflect: bool = False) -> np.ndarray:
    """The cross-faded copied texture at HR pixels (ys, xs) (M,) of copying tokens: `model.upscale.feathered_texture`
    (`copy_tokens(keep_contrast=True)`). hf: padded (pH, pW, 3) image - bilinear(LR); known (N,) bool
    (`known_tokens`); weight, index (N, 1): a token with a nonzero weight copies token index, the others keep
    themselves; feather: HR px. The pixel's own token and the (up to) three neighbours on its side of the
    token's centre lines each bring their copy, weighted by `feather_weight` along both axes and by whether the
    pixel read lies in a known token; the weights of copies that move the pixel by the same offset add before
    squaring for the contrast norm. reflect (`ModelConfig.hr_fade_reflect`): where a copy's read lands in a token
    not known it reads the pixel mirrored about its source's edge (`copy_tokens(reflect_unknown=True)`). Returns
    (M, 3) float32."""
    span, grid_h, grid_w = geom.scale * geom.patch, geom.grid_h, geom.grid_w
    ty, tx = ys // span, xs // span
    oy, ox = (ys - ty * span).astype(np.float32), (xs - tx * span).astype(np.float32)
    side_y = np.where(span // 2 - (ys - ty * span) > 0, -1, 1)
    side_x = np.where(span // 2 - (xs - tx * span) > 0, -1, 1)
    weights, shifts, sides = [], [], []
    for ny, nx in ((0, 0), (side_y, 0), (0, side_x), (side_y, side_x)):
        uy, ux = ty + ny, tx + nx
        inside = (uy >= 0) & (uy < grid_h) & (ux >= 0) & (ux < grid_w)
        u = np.where(inside, uy * grid_w + ux, 0)
        fw = (feather_weight(oy - np.float32(span) * ny, span, feather)
              * feather_weight(ox - np.float32(span) * nx, span, feather) * inside)
        source = np.where(weight[u, 0] != 0, index[u, 0], u)
        weights.append(fw)
        shifts.append(((source // grid_w - u // grid_w) * span, (source % grid_w - u % grid_w) * span))
        sides.append((ny, nx))
    total = np.zeros((len(ys), 3), np.float32)
    max_y, max_x = grid_h * span - 1, grid_w * span - 1
    read_weights = []
    for fw, (dy, dx), (ny, nx) in zip(weights, shifts, sides):
        qy, qx = np.clip(ys + dy, 0, max_y), np.clip(xs + dx, 0, max_x)
        source_known = known[(qy // span) * grid_w + qx // span]
        if reflect:      # a read into a token not known: the pixel mirrored into the source token
            off_y, off_x = (ys - ty * span) - ny * span, (xs - tx * span) - nx * span
            my = np.clip(ys + dy - (off_y - mirror_offset(off_y, span)), 0, max_y)
            mx = np.clip(xs + dx - (off_x - mirror_offset(off_x, span)), 0, max_x)
            use = ~source_known & known[(my // span) * grid_w + mx // span]
            qy, qx = np.where(use, my, qy), np.where(use, mx, qx)
            source_known = source_known | use
        w = fw * (source_known + COPY_FLOOR)
        total += (w * source_known)[:, None] * hf[qy, qx]
        read_weights.append(w)
    squares = np.zeros(len(ys), np.float32)
    for w_i, (dy, dx) in zip(read_weights, shifts):      # copies with one offset continue each other: one weight
        for w_j, (sy, sx) in zip(read_weights, shifts):
            squares += w_i * w_j * ((dy == sy) & (dx == sx))
    return total / np.sqrt(squares)[:, None]


def upscale_hr(image: np.ndarray, mask: np.ndarray, lr_result: np.ndarray, weight: np.ndarray,
               fine_weight: np.ndarray, index: np.ndarray, geom: Geometry, feather: int = 0,
               reflect: bool = False) -> np.ndarray:
    """The HR stage: hole pixel p of token i becomes clamp(up_p + sum_k (w_ik HF_j(p) + fw_ik fine_j(p)))
    with j = index_ik, up = bilinear(lr_result), HF = image - up and fine = image - its 3x3 binomial blur
    (`fine_band`) of the source token at the same offset; known pixels are the input's. image (H, W, 3)
    uint8 or float, mask (H, W) bool, lr_result (1, 3, h, w), weight/fine_weight/index (N, K) -> (H, W, 3)
    of image's dtype (uint8: rounded to nearest, ties to even).
    feather: LR px (`ModelConfig.hr_feather`); > 0 needs K = 1 and zero fine weights: within feather * scale
    HR px of a token edge, HF_j(p) is the cross-faded texture of the neighbouring copies (`feathered_texture`;
    reflect: with its mirrored reads)."""
    s, span = geom.scale, geom.scale * geom.patch
    check_feather(feather, geom.patch, weight.shape[-1], bool(fine_weight.any()))
    up = upsample(lr_result[0], s)                                               # (pH, pW, 3)
    if s > 1:
        bilinear = up
        padded = _pad(unit_float(image) * (~mask)[..., None], geom)
        tokens = lambda x: x.reshape(geom.grid_h, span, geom.grid_w, span, 3).transpose(0, 2, 1, 3, 4).reshape(
            geom.grid_h * geom.grid_w, span, span, 3)
        hf_image = padded - up
        hf, out = tokens(hf_image), tokens(up).copy()
        fine = fine_band(tokens(padded)) if fine_weight.any() else None
        for k in range(weight.shape[-1]):
            w, fw = weight[:, k], fine_weight[:, k]
            live = w != 0
            out[live] += w[live, None, None, None] * hf[index[live, k]]
            live = fw != 0
            if live.any():
                out[live] += fw[live, None, None, None] * fine[index[live, k]]
        up = out.reshape(geom.grid_h, geom.grid_w, span, span, 3).transpose(0, 2, 1, 3, 4).reshape(up.shape)
        if feather > 0:   # the pixels within feather * s of a copying token's edge: the cross-faded texture instead
            hr_feather = feather * s
            ys, xs = np.nonzero(mask)
            oy, ox = ys % span, xs % span
            edge = (np.minimum(oy, span - 1 - oy) < hr_feather) | (np.minimum(ox, span - 1 - ox) < hr_feather)
            gain = weight[(ys // span) * geom.grid_w + xs // span, 0]
            ys, xs, gain = ys[edge & (gain != 0)], xs[edge & (gain != 0)], gain[edge & (gain != 0)]
            texture = feathered_texture(hf_image, known_tokens(mask, geom), weight, index, geom, hr_feather, ys, xs,
                                        reflect)
            up[ys, xs] = bilinear[ys, xs] + gain[:, None] * texture
    filled = np.clip(up[:geom.height, :geom.width], 0.0, 1.0)
    filled = np.rint(filled * 255.0).astype(np.uint8) if image.dtype == np.uint8 else filled.astype(image.dtype)
    return np.where(mask[..., None], filled, image)


def _filter_axis(x: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """Centred 1-D filter of x along `axis`, zero outside."""
    out = np.zeros_like(x)
    radius, n = len(taps) // 2, x.shape[axis]
    for t, tap in enumerate(taps):
        shift = t - radius
        lo, hi = max(0, -shift), min(n, n - shift)
        dst, src = [slice(None)] * x.ndim, [slice(None)] * x.ndim
        dst[axis], src[axis] = slice(lo, hi), slice(lo + shift, hi + shift)
        out[tuple(dst)] += tap * x[tuple(src)]
    return out


SEAM_TILE = (64, 256)   # rows, columns of the numpy seam blend's work unit (larger than C++'s: per-call overhead)


def blend_seams(image: np.ndarray, mask: np.ndarray, filled: np.ndarray, taps: np.ndarray, gain: float) -> np.ndarray:
    """`model.upscale.blend_seams` on (H, W, 3) uint8 or float32 arrays (mask (H, W) bool), tile by tile:
    only tiles with a hole pixel and a known pixel within the taps' reach are computed, each on its window
    (the tile and that reach around it). The deployed pipeline uses it when the native extension, whose
    `blend_seams` does the same in C++ (8 / 20 ms at 2048² / 4096² on 2 cores), was not built."""
    radius, (height, width) = len(taps) // 2, mask.shape
    out = filled.copy()
    for y0 in range(0, height, SEAM_TILE[0]):
        y1, wy0, wy1 = min(height, y0 + SEAM_TILE[0]), max(0, y0 - radius), min(height, y0 + SEAM_TILE[0] + radius)
        for x0 in range(0, width, SEAM_TILE[1]):
            x1, wx0, wx1 = min(width, x0 + SEAM_TILE[1]), max(0, x0 - radius), min(width, x0 + SEAM_TILE[1] + radius)
            hole = mask[y0:y1, x0:x1]
            if not hole.any() or mask[wy0:wy1, wx0:wx1].all():
                continue
            window = np.s_[wy0:wy1, wx0:wx1]
            known = (~mask[window]).astype(np.float32)[..., None]
            sums = _filter_axis(_filter_axis(np.concatenate([known, image[window].astype(np.float32) * known], axis=-1),
                                             taps, 1), taps, 0)[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
            den, num = sums[..., :1], sums[..., 1:]
            fill = filled[y0:y1, x0:x1].astype(np.float32)
            saturated = gain * den >= 1.0
            blended = np.where(saturated, num / np.where(saturated, den, 1.0), gain * num + (1.0 - gain * den) * fill)
            if image.dtype == np.uint8:
                blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
            else:
                blended = np.clip(blended, 0.0, 1.0).astype(image.dtype)
            out[y0:y1, x0:x1] = np.where(hole[..., None] & (den > 0), blended, filled[y0:y1, x0:x1])
    return out
