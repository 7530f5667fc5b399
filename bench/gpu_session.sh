#!/usr/bin/env bash
# Everything a lent GPU should run, correctness first, then numbers; results land in bench/results/
# and, when the device tool's $OUT is set, are copied there to come back.
#
#   bash bench/gpu_session.sh [quick]        # quick: tests + kernel bench + latency at 2048/4096 only
#
# The device image is offline (torch, triton, numpy preinstalled; maybe not safetensors/pillow/pytest):
# the environment report at the top says what is missing. The package is put on the path without pip
# (symlinks for the package_dir mapping), so nothing needs installing.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-full}

for pkg in kernels bench csrc; do                       # setup.py's package_dir, as symlinks
    [ -e "rethined_engine/$pkg" ] || ln -s "$ROOT/$pkg" "rethined_engine/$pkg"
done
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

echo "== environment"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
python - <<'EOF'
import importlib
for name in ("torch", "triton", "numpy", "safetensors", "PIL", "pytest", "cv2", "onnxruntime", "cupy"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:12s} {getattr(mod, '__version__', '?')}")
    except Exception as exc:
        print(f"{name:12s} MISSING ({exc.__class__.__name__})")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF

echo "== GPU correctness (kernels vs references at real sizes, backends end to end)"
python -m pytest -q -m gpu -x tests/test_kernel_prep.py tests/test_kernel_hr_upscale.py \
    tests/test_kernel_patch_projection.py tests/test_kernel_masked_attention.py tests/test_kernel_coherence.py \
    tests/test_triton_backend.py \
    tests/test_deploy.py 2>&1 | tail -25
python -m pytest -q -x tests/test_triton_backend.py 2>&1 | tail -5

echo "== kernel microbenchmarks"
if [ "$MODE" = quick ]; then SIZES="2048 4096"; else SIZES="2048 4096 8192"; fi
python -m bench.kernels --sizes $SIZES

echo "== end-to-end latency (GPU-resident uint8, 40 % mask)"
if [ "$MODE" = quick ]; then LSIZES="2048 4096"; else LSIZES="1024 2048 4096 8192"; fi
python -m bench.latency --device cuda --sizes $LSIZES --repeats 20 --warmup 3

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/results" && cp -r bench/results/kernels-*.json bench/results/latency-*.json "$OUT/results/" 2>/dev/null
    echo "copied results to $OUT/results"
fi
