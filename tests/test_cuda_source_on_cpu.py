"""The CUDA C HR kernel (csrc/cuda/hr_upscale.cu) run on the CPU: its source compiled by the host C++
compiler with CUDA's built-ins defined (thread and block indices, `__global__`, min/max, rsqrtf), every
thread of the launch grid run in turn, against the numpy HR stage (`deploy.host.upscale_hr`), pasted and
cross-faded (feather > 0) texture. Checks the kernel's arithmetic and indexing where no GPU is; the GPU run
(test_deploy.py, CuPy) checks the rest."""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from rethined_engine.config import ModelConfig
from rethined_engine.deploy.cuda_kernels import BLOCK, KERNEL_NAME, cuda_source, kernel_scalars, launch_grid
from rethined_engine.deploy.host import known_tokens, upscale_hr
from rethined_engine.geometry import plan
from rethined_engine.train.masks import random_mask

from conftest import hr_key_tokens

COMPILER = shutil.which("c++") or shutil.which("g++")

PRELUDE = """
#include <math.h>
struct Dim3 { int x, y, z; };
static Dim3 blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }
"""

LAUNCHER = """
extern "C" void launch(const unsigned char* image, const unsigned char* mask, const float* lr, const float* weight,
                       const float* fine_weight, const int* index, const unsigned char* known, unsigned char* out,
                       const int* scalars, const int* grid, const int* block) {
    blockDim = {block[0], block[1], block[2]};
    for (int by = 0; by < grid[1]; ++by)
        for (int bx = 0; bx < grid[0]; ++bx)
            for (int ty = 0; ty < block[1]; ++ty)
                for (int tx = 0; tx < block[0]; ++tx) {
                    blockIdx = {bx, by, 0};
                    threadIdx = {tx, ty, 0};
                    KERNEL(image, mask, lr, weight, fine_weight, index, known, out, scalars[0], scalars[1],
                           scalars[2], scalars[3], scalars[4], scalars[5], scalars[6], scalars[7], scalars[8]);
                }
}
"""


@pytest.fixture(scope="module")
def cpu_kernel(tmp_path_factory):
    if COMPILER is None:
        pytest.skip("no C++ compiler")
    folder = tmp_path_factory.mktemp("cuda_on_cpu")
    source = folder / "kernel.cpp"
    source.write_text(PRELUDE + cuda_source() + LAUNCHER.replace("KERNEL", KERNEL_NAME))
    library = folder / "kernel.so"
    result = subprocess.run([COMPILER, "-O1", "-shared", "-fPIC", "-Wno-unknown-pragmas", "-o", str(library),
                             str(source)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(library)).launch


def run_on_cpu(kernel, image, mask, lr, weight, fine_weight, index, known, geom, feather, reflect=False):
    out = np.full(image.shape, 77, np.uint8)          # poisoned
    ints = lambda values: np.ascontiguousarray(values, np.int32)  # noqa: E731
    arrays = [np.ascontiguousarray(a) for a in (image, mask.astype(np.uint8), lr, weight, fine_weight, index,
                                                known.astype(np.uint8))]
    pointers = [a.ctypes.data_as(ctypes.c_void_p) for a in arrays + [out]]
    scalars = ints(kernel_scalars(geom, weight.shape[-1], feather, reflect))
    grid, block = ints(launch_grid(geom)), ints(BLOCK)
    kernel(*pointers, *(a.ctypes.data_as(ctypes.c_void_p) for a in (scalars, grid, block)))
    return out


@pytest.mark.parametrize("size,lr_long,feather,reflect", [((96, 200), 64, 0, False), ((96, 200), 64, 1, False),
                                                          ((130, 250), 64, 2, False), ((130, 250), 64, 2, True),
                                                          ((37, 53), 512, 1, False)])   # scales 4, 4, 4, 4, 1
def test_cuda_kernel_source_matches_host_on_cpu(cpu_kernel, size, lr_long, feather, reflect):
    rng = np.random.default_rng(feather + size[0])
    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = random_mask(h, w, rng).astype(bool)
    mask[:, :w // 2] = False                                   # known tokens to copy from
    geom = plan(h, w, ModelConfig(lr_long_side=lr_long))
    lr = rng.random((1, 3, *geom.lr_size), dtype=np.float32)
    tokens, k = geom.grid_h * geom.grid_w, 4 if feather == 0 else 1
    index = rng.choice(hr_key_tokens(mask, geom), (tokens, k)).astype(np.int32)
    weight = rng.random((tokens, k), dtype=np.float32)
    weight /= weight.sum(-1, keepdims=True)
    weight[::4, -1] = 0.0                                      # zero weights are skipped (no copy)
    fine_weight = weight * rng.uniform(-0.5, 2.0, (tokens, 1)).astype(np.float32)
    fine_weight[::3] = 0.0
    if feather > 0:                                            # one band, a texture gain
        weight *= rng.uniform(0.3, 1.0, (tokens, 1)).astype(np.float32)
        fine_weight = np.zeros_like(weight)
    ref = upscale_hr(image, mask, lr, weight, fine_weight, index, geom, feather, reflect)
    got = run_on_cpu(cpu_kernel, image, mask, lr, weight, fine_weight, index, known_tokens(mask, geom), geom, feather,
                     reflect)
    diff = np.abs(got.astype(np.int16) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (diff.max(), (diff > 0).mean())
    assert np.array_equal(got[~mask], image[~mask])
    if feather > 0 and geom.scale > 1:
        assert not np.array_equal(got, upscale_hr(image, mask, lr, weight, fine_weight, index, geom))
    if reflect:          # the mirrored reads change the fill
        assert not np.array_equal(got, upscale_hr(image, mask, lr, weight, fine_weight, index, geom, feather))
