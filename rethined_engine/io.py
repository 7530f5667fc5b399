"""Input checking and conversion for `Engine.inpaint`, one pass per call.

Accepted images: numpy HWC (or BHWC) uint8/uint16/float; torch CHW or BCHW uint8/uint16/float (any device);
PIL RGB. Float images must lie in [0, 1]; 16-bit ones are computed as float32 (`as_float32`) and their results
returned as uint16. Masks: numpy, torch or PIL (any single-channel mode: 1, L, P,
I, I;16, F), shaped HW, HW1, 1HW, BHW, B1HW or BHW1 (a single mask is shared by a batch); bool/integer
masks fill where nonzero, float masks where value >= the threshold (0.5 by default). The result has the
input's type, dtype, layout and device; known (unmasked) pixels are copied from the input bit for bit.

Two entry points share every rule below: `prepare` (torch backends: a `Batch` of tensors) and
`host_inputs` (the torch-free deployed pipeline: a `HostBatch` of numpy arrays). numpy and PIL inputs
are checked and binarised in numpy, torch inputs in torch, each once. Importing this module imports
neither torch nor PIL (the TensorRT runtime runs without torch); `prepare` imports torch when called.
`exclude` (the known pixels a fill must not copy) is accepted and binarised as a mask is. Error messages name
the argument (`img`, `mask`, `exclude`) and say what to do.
"""
from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

NUMPY_IMAGE_DTYPES = (np.uint8, np.float16, np.float32, np.float64)
UINT8_MAX, UINT16_MAX = 255, 65535   # an 8-bit and a 16-bit sample's full scale
LEVEL_16_PER_8 = UINT16_MAX // UINT8_MAX    # 257: an 8-bit level as a 16-bit one
FULLY_MASKED_WARNING = "mask covers the whole image: nothing is known, the result is the coarse network's guess"


# --- the rules, each in one place -------------------------------------------------------------------

def _is_torch(x: Any) -> bool:
    """A torch object, told apart without importing torch."""
    return type(x).__module__.startswith("torch")


def _is_pil(x: Any) -> bool:
    """A PIL image, told apart without importing PIL where it was never imported."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


def _channel_hint(channels: int) -> str:
    if channels == 4:
        return " (RGBA: drop or composite the alpha channel first, e.g. img[..., :3] / pil.convert('RGB'))"
    if channels == 1:
        return " (grayscale: repeat it to 3 channels, e.g. np.repeat(img, 3, axis=-1) / pil.convert('RGB'))"
    return ""


def _numpy_image(img: np.ndarray) -> np.ndarray:
    """HWC or BHWC RGB uint8/float -> a contiguous, writeable BHWC array (the input itself where it is one)."""
    if img.ndim not in (3, 4):
        hint = _channel_hint(1) if img.ndim == 2 else ""
        raise ValueError(f"img: numpy images must be HWC or BHWC (ndim 3 or 4), got shape {img.shape}{hint}")
    if img.shape[-1] != 3:
        if img.ndim == 3 and img.shape[0] == 3:
            raise ValueError(f"img: numpy images are HWC; shape {img.shape} looks CHW, use img.transpose(1, 2, 0)")
        raise ValueError(f"img: expected 3 channels (RGB) in the last axis, got shape {img.shape}"
                         f"{_channel_hint(img.shape[-1])}")
    if img.dtype not in NUMPY_IMAGE_DTYPES:
        raise TypeError(f"img: unsupported numpy dtype {img.dtype}; expected uint8, uint16 or float16/32/64")
    arr = np.ascontiguousarray(img if img.ndim == 4 else img[None])
    if not arr.flags.writeable:  # e.g. np.asarray of a PIL image; torch cannot wrap read-only memory
        arr = arr.copy()
    return arr


def _pil_image(img) -> np.ndarray:
    """PIL RGB image -> a writeable (1, H, W, 3) uint8 array."""
    if img.mode != "RGB":
        hint = _channel_hint(4 if "A" in img.mode else 1)
        raise ValueError(f"img: PIL mode {img.mode!r} is not RGB; use img.convert('RGB'){hint}")
    return np.array(img)[None]


def _torch_image(img: "torch.Tensor") -> "torch.Tensor":
    """CHW or BCHW RGB uint8/float tensor -> BCHW (a view of the input)."""
    import torch

    if img.ndim not in (3, 4):
        raise ValueError(f"img: torch images must be CHW or BCHW (ndim 3 or 4), got shape {tuple(img.shape)}")
    channels = img.shape[-3]
    if channels != 3:
        if img.shape[-1] == 3:
            raise ValueError(f"img: torch images are CHW/BCHW; shape {tuple(img.shape)} looks channels-last, "
                             "use img.permute(2, 0, 1) (or (0, 3, 1, 2) for a batch)")
        raise ValueError(f"img: expected 3 channels (RGB) in dim -3, got shape {tuple(img.shape)}"
                         f"{_channel_hint(channels)}")
    if img.dtype not in (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"img: unsupported torch dtype {img.dtype}; expected uint8, uint16 or a float dtype")
    return img if img.ndim == 4 else img[None]


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """An image of more precision than 8 bits -> the nearest uint8 levels, same shape: uint16 levels (round(x * 255 /
    65535)), or floats in [0, 1] (as VapourSynth's RGBS/RGBH and ComfyUI's IMAGE hold them: round(x * 255), values
    outside clipped); a uint8 array is returned as it is."""
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return ((frame.astype(np.uint32) * UINT8_MAX + UINT16_MAX // 2) // UINT16_MAX).astype(np.uint8)
    return np.clip(np.rint(frame.astype(np.float32) * UINT8_MAX), 0, UINT8_MAX).astype(np.uint8)


def _float_to_uint16(out: np.ndarray) -> np.ndarray:
    """A float result in [0, 1] (the engine's: clamped) -> uint16, rounded to nearest; `out` is overwritten."""
    out = np.multiply(out, np.float32(UINT16_MAX), out=out) if out.dtype == np.float32 else out * UINT16_MAX
    return np.rint(out, out=out).astype(np.uint16)


def as_float32(img: Any) -> tuple[Any, Callable[[Any], Any]] | None:
    """A 16-bit image (numpy uint16 or torch uint16, any layout) -> (its values / 65535 as float32, of the same kind
    and device; a function taking a float result of the same shape back to uint16). float32 holds every 16-bit
    value exactly enough that the known pixels, which the engine returns bit for bit, come back unchanged.
    None for any other input."""
    if isinstance(img, np.ndarray) and img.dtype == np.uint16:
        return np.multiply(img, np.float32(1.0 / UINT16_MAX), dtype=np.float32), _float_to_uint16
    if _is_torch(img):
        import torch

        if isinstance(img, torch.Tensor) and img.dtype == torch.uint16:
            scale = torch.tensor(1.0 / UINT16_MAX, dtype=torch.float32, device=img.device)   # as numpy's
            return (img.to(torch.float32) * scale,
                    lambda out: (out.float() * UINT16_MAX).round().clamp(0, UINT16_MAX).to(torch.uint16))
    return None


def _check_not_empty(size: tuple[int, int, int], img: Any) -> None:
    """size: (batch, height, width) of the checked image."""
    if 0 in size:
        raise ValueError(f"img: empty image (shape {tuple(img.shape) if hasattr(img, 'shape') else img.size})")


def _check_float_range(image: Any) -> None:
    """Float images (numpy array or torch tensor) must be finite and lie in [0, 1]. min and max carry the
    whole check: NaN propagates into both, an infinity into one."""
    if isinstance(image, np.ndarray):
        lo, hi = float(image.min()), float(image.max())
    else:
        import torch

        lo, hi = torch.stack(torch.aminmax(image)).tolist()   # one device sync
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("img: contains NaN or infinite values")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"img: float images must lie in [0, 1], got values in [{lo:g}, {hi:g}]"
                         + (" (0..255 data? divide by 255)" if hi > 1.0 else ""))


def _numpy_mask(mask: Any, name: str) -> np.ndarray:
    """A numpy or PIL mask -> a numpy array (values untouched); errors name the argument `name`."""
    if _is_pil(mask):
        if len(mask.getbands()) != 1:
            raise ValueError(f"{name}: PIL mode {mask.mode!r} has several channels; use {name}.convert('L')")
        return np.asarray(mask.convert("L") if mask.mode == "P" else mask)
    if isinstance(mask, np.ndarray):
        if mask.dtype != np.bool_ and mask.dtype.kind not in "iuf":
            raise TypeError(f"{name}: unsupported numpy dtype {mask.dtype}")
        return mask
    raise TypeError(f"{name}: expected a numpy array, torch tensor or PIL image, got {type(mask).__name__}")


def _torch_mask(mask: Any, name: str) -> "torch.Tensor":
    """A torch mask: any real dtype (values untouched); errors name the argument `name`."""
    import torch

    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name}: expected a numpy array, torch tensor or PIL image, got {type(mask).__name__}")
    if mask.is_complex():
        raise TypeError(f"{name}: unsupported torch dtype {mask.dtype}")
    return mask


def _mask_batch_shape(shape: tuple[int, ...], batch: int, height: int, width: int,
                      name: str) -> tuple[int, int, int, int]:
    """Accepted mask layouts (HW, HW1, 1HW, BHW, B1HW, BHW1) -> the (B', 1, H, W) shape to reshape the
    mask to (B' = 1 or batch); raises ValueError naming the argument `name` otherwise."""
    core = tuple(shape)
    if len(core) >= 3 and core[-1] == 1 and core[-3:-1] == (height, width):
        core = core[:-1]                                           # HW1 / BHW1
    if len(core) < 2 or core[-2:] != (height, width):
        colour = (len(core) >= 3 and core[-1] in (3, 4) and core[-3:-1] == (height, width))
        hint = (f"; a colour mask: pass one channel, e.g. {name}[..., 0], or {name}.any(-1) for a hole wherever any "
                "channel is set") if colour else ""
        raise ValueError(f"{name}: shape {tuple(shape)} does not match the image size {height}x{width} "
                         f"(expected HW, HW1, 1HW, BHW or B1HW){hint}")
    lead = core[:-2]
    if len(lead) == 2 and lead[1] == 1:
        lead = lead[:1]                                            # B1HW
    if len(lead) > 1 or (lead and lead[0] not in (1, batch)):
        raise ValueError(f"{name}: shape {tuple(shape)} does not fit a batch of {batch} images of {height}x{width}")
    return (lead[0] if lead else 1, 1, height, width)


def _binarise(mask: Any, threshold: float, name: str) -> Any:
    """numpy array or torch tensor -> bool of the same kind: nonzero, or >= threshold for floats (NaN refused,
    naming the argument `name`)."""
    if isinstance(mask, np.ndarray):
        if mask.dtype == np.bool_:
            return mask
        floating = mask.dtype.kind == "f"
    else:
        import torch

        if mask.dtype == torch.bool:
            return mask
        floating = mask.is_floating_point()
    if floating:
        if bool((mask != mask).any()):
            raise ValueError(f"{name}: contains NaN")
        return mask >= threshold
    return mask != 0


def _mask(mask: Any, batch: int, height: int, width: int, threshold: float, name: str = "mask") -> Any:
    """Any accepted mask -> bool (B', 1, H, W), B' = 1 or batch: a torch tensor for a torch mask (on its
    device), else a numpy array. name: the argument it came as (`mask`, `exclude`), for error messages."""
    m = _torch_mask(mask, name) if _is_torch(mask) else _numpy_mask(mask, name)
    return _binarise(m.reshape(_mask_batch_shape(tuple(m.shape), batch, height, width, name)), threshold, name)


def warn_fully_masked(stacklevel: int) -> None:
    """The warning for an image whose mask covers all of it (stacklevel as `warnings.warn`'s, counted from
    the caller of this function)."""
    warnings.warn(FULLY_MASKED_WARNING, RuntimeWarning, stacklevel=stacklevel + 1)


# --- numpy / PIL images: checked in numpy ------------------------------------------------------------

def _host_image(img: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]] | None:
    """numpy or PIL image -> (checked (B, H, W, 3) array, restore: (B, H, W, 3) array -> the caller's type);
    None where `img` is neither."""
    if isinstance(img, np.ndarray):
        arr = _numpy_image(img)
        restore = (lambda out: out) if img.ndim == 4 else (lambda out: out[0])
    elif _is_pil(img):
        from PIL import Image

        arr = _pil_image(img)
        restore = lambda out: Image.fromarray(out[0], mode="RGB")  # noqa: E731
    else:
        return None
    _check_not_empty(arr.shape[:3], img)
    if arr.dtype != np.uint8:
        _check_float_range(arr)
    return arr, restore


class HostBatch(NamedTuple):
    images: np.ndarray                   # (B, H, W, 3) uint8 or float, values untouched
    masks: np.ndarray                    # (B, H, W) bool, True = fill
    restore: Callable[[np.ndarray], Any]  # (B, H, W, 3) -> the caller's type
    excludes: np.ndarray | None = None   # (B, H, W) bool, True = never a source of the fill; None: none excluded


def host_inputs(img: Any, mask: Any, threshold: float, exclude: Any = None) -> HostBatch:
    """The `Engine.inpaint` contract for numpy HWC/BHWC and PIL RGB images, without torch (the deployed
    pipeline): torch tensors are refused with how to convert them. exclude: a mask of the known pixels the
    fill must not copy, accepted as `mask` is, or None."""
    if _is_torch(img):
        raise TypeError("img: this backend takes numpy arrays (HWC/BHWC) or PIL images; convert torch tensors "
                        "with img.permute(1, 2, 0).cpu().numpy() or use backend='torch'")
    checked = _host_image(img)
    if checked is None:
        raise TypeError(f"img: expected a numpy array or PIL image, got {type(img).__name__}")
    arr, restore = checked
    batch, height, width = arr.shape[:3]

    def host_mask(given: Any, name: str) -> np.ndarray:
        """A mask argument -> (B, H, W) bool, torch tensors refused naming the argument."""
        if _is_torch(given):
            raise TypeError(f"{name}: this backend takes numpy arrays or PIL images; use {name}.cpu().numpy()")
        return np.broadcast_to(_mask(given, batch, height, width, threshold, name)[:, 0], (batch, height, width))

    masks = host_mask(mask, "mask")
    return HostBatch(arr, masks, restore, None if exclude is None else host_mask(exclude, "exclude"))


# --- torch backends ----------------------------------------------------------------------------------

@dataclass
class Batch:
    """A checked input: image (B, 3, H, W) on its own device, mask (B, 1, H, W) bool on the same device."""

    image: "torch.Tensor"             # original dtype (uint8 or float), values untouched
    mask: "torch.Tensor"
    restore: Callable[["torch.Tensor"], Any]  # (B, 3, H, W) tensor of the original dtype -> caller's type
    exclude: "torch.Tensor | None" = None     # (B, 1, H, W) bool: known pixels never copied; None: none

    def to(self, device: "torch.device") -> "Batch":
        """This batch with its tensors on `device` (the same objects where they are there already)."""
        exclude = None if self.exclude is None else self.exclude.to(device)
        return replace(self, image=self.image.to(device), mask=self.mask.to(device), exclude=exclude)

    def part(self, index: slice) -> "Batch":
        """The images `index` selects (a slice keeps the batch axis); `restore` stays the whole batch's."""
        exclude = None if self.exclude is None else self.exclude[index]
        return replace(self, image=self.image[index], mask=self.mask[index], exclude=exclude)

    def fully_masked(self) -> list[bool]:
        """Per image: does its mask cover all of it."""
        return self.mask.flatten(1).all(dim=1).tolist()

    def as_float(self, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
        """(B, 3, H, W) in [0, 1] (default float32)."""
        import torch

        dtype = dtype or torch.float32
        if self.image.dtype == torch.uint8:
            return self.image.to(dtype) / 255.0
        return self.image.to(dtype)

    def filled(self, result: "torch.Tensor") -> "torch.Tensor":
        """(B, 3, H, W) in the image's dtype and device: holes from `result` ((B, 3, H, W) float in [0, 1]),
        known pixels the input's."""
        import torch

        result = result.to(self.image.device)
        if self.image.dtype == torch.uint8:
            filled = (result.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        else:
            filled = result.to(self.image.dtype)
        return torch.where(self.mask, filled, self.image)

    def unchanged(self) -> Any:
        return self.restore(self.image.clone())


def _torch_bool_mask(mask: Any, batch: int, height: int, width: int, threshold: float, name: str,
                     device: "torch.device") -> "torch.Tensor":
    """`_mask` as a (B, 1, H, W) bool tensor on `device` (a numpy mask shares its memory where it can)."""
    import torch

    m = _mask(mask, batch, height, width, threshold, name)
    if isinstance(m, np.ndarray):
        m = np.ascontiguousarray(m)                  # no negative strides
        m = torch.from_numpy(m if m.flags.writeable else m.copy())
    return m.to(device).expand(batch, 1, height, width)


def prepare(img: Any, mask: Any, threshold: float = 0.5, exclude: Any = None) -> Batch:
    """Check `img` and `mask` (and `exclude`, the known pixels the fill must not copy, accepted as `mask` is)
    and bring them to a common (B, 3, H, W) / (B, 1, H, W) form: numpy and PIL inputs become tensors sharing
    their checked arrays' memory, torch inputs stay on their device."""
    import torch

    if isinstance(img, torch.Tensor):
        image = _torch_image(img)
        _check_not_empty((image.shape[0], *image.shape[2:]), img)
        if image.dtype != torch.uint8:
            _check_float_range(image)
        restore = (lambda out: out) if img.ndim == 4 else (lambda out: out[0])
    else:
        checked = _host_image(img)
        if checked is None:
            raise TypeError(f"img: expected a numpy array, torch tensor or PIL image, got {type(img).__name__}")
        arr, host_restore = checked
        image = torch.from_numpy(arr).permute(0, 3, 1, 2)
        restore = lambda out: host_restore(out.permute(0, 2, 3, 1).contiguous().numpy())  # noqa: E731
    batch, _, height, width = image.shape
    size = (batch, height, width, threshold)
    excluded = None if exclude is None else _torch_bool_mask(exclude, *size, "exclude", image.device)
    return Batch(image, _torch_bool_mask(mask, *size, "mask", image.device), restore, excluded)
