#!/usr/bin/env bash
# The GPU checks, correctness first, then numbers; results land in bench/results/ and, when $OUT is
# set (a folder copied back from a remote machine), are copied there too.
#
#   bash bench/gpu_bench.sh [quick]        # quick: tests + kernel bench + latency at 2048/4096 only
#   STEPS="tests latency" bash bench/gpu_bench.sh   # only these steps (names below; default: all)
#   ISIZES="2048 4096 8192" ...                     # the interleaved styles step's sizes (default 2048 4096)
# The step limits add up to more than 10 minutes: where a command is cut at 10 minutes, run it as two,
#   STEPS="tests backend kernels latency profile" ...   then   STEPS=compile ...
# (on the H100, 2026-11-25: tests on 8 workers 72 s, kernels 30 s, latency 3 backends x 4 sizes ~130 s,
# profile ~40 s; torch.compile ~100 s per size, mostly compiling. On the H200, 2026-11-26, `quick` with
# tests, backend, kernels, latency and profile took 221 s including a cold start; latency now has a 4th
# backend, triton+noseam (the seam blend off; until 7672712 the extra backend was "triton+seam",
# the blend on), so the full size list may need its step run alone). Then bench/train_gpu.sh.
# On the H200, 2026-12-04, `quick` with STEPS="tests interleave latency video batch profile kernels",
# LSIZES="2048 4096 8192" and LBACKENDS="triton triton@smooth triton_eager torch" took 491 s plus the
# machine's start: tests 71 s, interleave 36, latency 128, video 97, batch 28, profile 105, kernels 19.
#
# The GPU machine may be offline (torch, triton, numpy preinstalled; maybe not safetensors/pillow/pytest):
# the environment report at the top says what is missing. The package is put on the path without pip
# (the source checkout maps its package_dir folders itself), so nothing needs installing.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-full}

export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}   # rethined_engine maps kernels/, bench/, csrc/ itself
# Result files record the commit: a copy of the tree without .git must say which commit it is.
if ! git rev-parse HEAD > /dev/null 2>&1 && [ -z "${BENCH_COMMIT:-}" ]; then
    echo "error: no .git here; run as BENCH_COMMIT=<hash> BENCH_DIRTY=0|1 bash bench/gpu_bench.sh" >&2; exit 2
fi

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

# Each step has a time limit (a remote command may be cut at 10 minutes) and its results are copied
# to $OUT as soon as it ends, so a step cut short loses only itself.
STEPS=${STEPS:-"tests backend kernels latency interleave batch video flow compile profile"}
STAMP=$(mktemp); touch "$STAMP"   # result files newer than this one were written by this run
step() {   # step NAME SECONDS LABEL CMD...
    local name=$1 limit=$2 label=$3; shift 3
    case " $STEPS " in *" $name "*) ;; *) echo "== $label: skipped (STEPS)"; return 0;; esac
    echo "== $label (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@"; local rc=$?
    echo "-- $label: exit $rc after $((SECONDS - t0)) s"
    if [ -n "${OUT:-}" ]; then   # the result files this run wrote (a remote machine returns only a few files)
        mkdir -p "$OUT/results" && find bench/results -maxdepth 1 -type f -newer "$STAMP" -exec cp {} "$OUT/results/" \;
    fi
    return 0
}

if [ "$MODE" = quick ]; then SIZES="2048 4096"; LSIZES=${LSIZES:-"2048 4096"}; else SIZES="2048 4096 8192"; LSIZES=${LSIZES:-"1024 2048 4096 8192"}; fi
LBACKENDS=${LBACKENDS:-"triton triton@fast triton@smooth triton_eager triton+noseam torch"}
# 8 workers: a cold machine spends most of this compiling and autotuning Triton kernels (CPU-bound)
step tests 200 "GPU correctness (kernels vs references at real sizes, backends end to end)" \
    python -m pytest -q -n 8 -p no:cacheprovider --maxfail=10 -m gpu tests/test_kernel_prep.py tests/test_kernel_hr_upscale.py \
    tests/test_kernel_patch_projection.py tests/test_kernel_masked_attention.py tests/test_kernel_coherence.py tests/test_kernel_seam_blend.py tests/test_kernel_membrane.py \
    tests/test_kernel_source_sweep.py tests/test_kernel_blur.py tests/test_kernel_copy_candidates.py tests/test_kernel_token_copy.py \
    tests/test_kernel_colour_anchor.py tests/test_kernel_flat_fill.py \
    tests/test_triton_backend.py tests/test_deploy.py tests/test_engine.py \
    tests/test_kernel_dis_search.py tests/test_kernel_flow_refinement.py tests/test_video_dis_torch.py tests/test_video_flow_refinement.py \
    tests/test_video_device_temporal.py
step backend 120 "triton backend vs torch backend (CUDA)" python -m pytest -q -p no:cacheprovider -m '' tests/test_triton_backend.py
step interleave 200 "the default against the smooth style (the default until the realistic style), fast, the default without the mirrored fades, without the colour anchor, without the frame-line check, without the flat fill, without the support gate, with copy_detail_weight 0.03 and with copy_border_continuity 1, interleaved in one process" \
    python -m bench.latency --device cuda --backends triton@smooth triton@fast triton triton@hr_fade_reflect=false triton@colour_anchor=0 triton@key_frame_lines=false triton@colour_anchor_flat=false triton@copy_support_margin=0 triton@copy_detail_weight=0.03 triton@copy_border_continuity=1 --sizes ${ISIZES:-2048 4096} --repeats 30 --warmup 3 --interleave \
    --out bench/results/latency-styles-cuda.json
step latency 200 "end-to-end latency, triton (graphed: default, fast and smooth styles; eager; graphed without the seam blend) + torch eager (GPU-resident uint8, 40 % mask)" \
    python -m bench.latency --device cuda --backends $LBACKENDS --sizes $LSIZES --repeats 20 --warmup 3 --append
# video needs photos/train/enlightenment-data__Lichen-Branches.png (bench.video.SPEED_PHOTO; photos/ is not in git)
step video 240 "frames/s of VideoInpainter.push at 3840x2160: temporal off, on (the host path), and on the device path without and with the files' lookahead of 16; frames in host memory and on the GPU" \
    python -m bench.video --parts throughput --device cuda --throughput-heights 2160 --throughput-frames 30 \
    --modes off on on+temporal_device=engine on+temporal_device=engine,lookahead=16
step flow 90 "TorchDIS with its Triton kernels against known motions (the carried photo), beside OpenCV's DIS on the CPU" \
    python -m bench.flow_accuracy --device cuda --photos photos/train --limit 1
# video-thin (only when named in STEPS) needs clips/cup.mp4 (python -m bench.video_clips; clips/ is not in git)
step video-thin 240 "a thin hole on the GPU: cup-watermark end to end, the engine's cut-out as it is and rounded to 64 px (the CUDA default: fewer shapes, fewer CUDA graph captures), host and device paths" \
    python -m bench.video --parts quality --device cuda --cases cup-watermark --modes on+engine_box_multiple=1 on \
    on+temporal_device=engine,engine_box_multiple=1 on+temporal_device=engine --out bench/results/video-engine-box-cuda.json
step batch 150 "frames/s of 8-frame batches at 3840x2160 (one (8, 3, H, W) uint8 call each; triton graphed, torch eager)" \
    python -m bench.latency --device cuda --backends triton torch --sizes 3840x2160 --batch 8 --repeats 10 --warmup 3 --append
step profile 120 "profile (where a call's time goes)" python -m bench.profile_engine --backend triton triton@smooth triton_eager torch --sizes 2048 4096 8192
step kernels 120 "kernel microbenchmarks" python -m bench.kernels --sizes $SIZES
step compile 240 "end-to-end latency, torch.compile at 4096 and 2048 (each size compiles for ~100 s in its warm-up)" \
    python -m bench.latency --device cuda --backends torch_compile --sizes 4096 2048 --repeats 20 --warmup 3 --append
# scale (only when named in STEPS) needs >= 10 photos in $SCALE_PHOTOS (default photos/heldout, not in git)
step scale 150 "files per second: local loop vs Ray Data with one GPU actor (decode/encode on the CPUs)" \
    python -m bench.scale --device cuda --gpus-per-worker 1 --workers 1 --cpus-per-worker 1 --photos "${SCALE_PHOTOS:-photos/heldout}"
