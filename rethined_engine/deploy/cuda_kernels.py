"""The CUDA C HR stage (`csrc/cuda/hr_upscale.cu`): source lookup, launch geometry, and launchers for
CuPy (GPU tests) and pycuda (the TensorRT runtime). Imports neither torch nor a CUDA library
until a launcher is called."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..geometry import Geometry
from .host import check_feather

KERNEL_NAME = "hr_upscale_u8"
BLOCK = (32, 8, 1)  # 256 threads; x runs along image rows (coalesced uint8 HWC reads and writes)
_SOURCE_PLACES = (Path(__file__).resolve().parents[1] / "csrc" / "cuda",    # installed: rethined_engine/csrc
                  Path(__file__).resolve().parents[2] / "csrc" / "cuda")    # source checkout


@lru_cache(maxsize=None)
def cuda_source(name: str = "hr_upscale.cu") -> str:
    for folder in _SOURCE_PLACES:
        if (folder / name).is_file():
            return (folder / name).read_text()
    raise FileNotFoundError(f"{name} not found in {[str(p) for p in _SOURCE_PLACES]}")


def launch_grid(geom: Geometry) -> tuple[int, int, int]:
    """Blocks covering the H x W image with `BLOCK` threads each."""
    return (-(-geom.width // BLOCK[0]), -(-geom.height // BLOCK[1]), 1)


def kernel_scalars(geom: Geometry, topk: int, feather: int = 0, reflect: bool = False) -> tuple[int, ...]:
    """The int arguments after the pointers: H, W, scale, patch, grid_h, grid_w, K, feather in HR px, reflect (feather:
    LR px, `ModelConfig.hr_feather`; reflect: `ModelConfig.hr_fade_reflect`)."""
    return (geom.height, geom.width, geom.scale, geom.patch, geom.grid_h, geom.grid_w, topk, feather * geom.scale,
            int(reflect))


@lru_cache(maxsize=None)
def cupy_kernel():
    """The kernel compiled by CuPy (NVRTC), once per process."""
    import cupy as cp

    return cp.RawKernel(cuda_source(), KERNEL_NAME)


def launch_hr_upscale_cupy(image, mask, lr, weight, fine_weight, index, known, out, geom: Geometry,
                           feather: int = 0, reflect: bool = False) -> None:
    """CuPy arrays: image/out (H, W, 3) uint8, mask (H, W) uint8 or bool, lr (1, 3, h, w) float32, weight
    and fine_weight (N, K) float32, index (N, K) int32, known (N,) uint8 or bool (`host.known_tokens`; read
    with feather > 0 only) (all C-contiguous), on CuPy's current stream. feather: LR px (`host.check_feather`;
    with feather > 0 the kernel reads no fine weights: one band); reflect: `ModelConfig.hr_fade_reflect`."""
    import cupy as cp

    check_feather(feather, geom.patch, weight.shape[-1], two_bands=False)
    scalars = tuple(cp.int32(v) for v in kernel_scalars(geom, weight.shape[-1], feather, reflect))
    cupy_kernel()(launch_grid(geom), BLOCK, (image, mask, lr, weight, fine_weight, index, known, out, *scalars))
