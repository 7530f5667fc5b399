#!/usr/bin/env bash
# Fine-tune the shipped weights on a GPU with v7's objective (HR crops 2x scored after attention
# upscaling, bench/results/training/README.md), resumable across the machine's 10-minute commands:
#
#   bash bench/train_gpu.sh NAME STEPS [SECONDS [TRAIN_ARGS...]]
#
# TRAIN_ARGS go to `rethined_engine.train.train` after v7's own (a repeated option takes the later value), e.g.
#   bash bench/train_gpu.sh m2 10000 540 --coarse-prefill membrane --object-share 0.3
# fine-tunes the coarse CNN to a membrane in the hole on v7's objective (run m1 did it on the CPU without the
# HR crops: bench/results/training/README.md), and
#   bash bench/train_gpu.sh a2 10000 540 --adversarial-weight 0.05
# adds the adversarial term (a patch discriminator on the hole; docs/training.md).
#
# The run lives in .gpu/runs/NAME (carry ".gpu" with the command); it resumes there if a checkpoint is
# present, trains towards STEPS (the cosine schedule's length: keep it the same across commands) for at
# most SECONDS (default 540), then copies the run to $OUT/NAME. To go on in the next command, copy
# $OUT/NAME back to .gpu/runs/NAME here first. On the H100 v7's setting ran ~0.1 s/step (two runs sharing
# the GPU), so STEPS = 10000 is about two commands. Photos: .gpu/train, made by
#   python -m rethined_engine.train.photos .gpu/train --pack-from PHOTOS/train
# The v7 and v7-lr runs were made by this script's first version (git show f59696b:bench/train_gpu.sh).
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
USAGE="usage: bench/train_gpu.sh NAME STEPS [SECONDS [TRAIN_ARGS...]]"
NAME=${1:?$USAGE}
STEPS=${2:?$USAGE}
SECONDS_LIMIT=${3:-540}
shift $(( $# < 3 ? $# : 3 ))
for pkg in kernels bench csrc; do [ -e "rethined_engine/$pkg" ] || ln -s "$PWD/$pkg" "rethined_engine/$pkg"; done
export PYTHONPATH=$PWD
RUN=.gpu/runs/$NAME
mkdir -p "$RUN"
nvidia-smi --query-gpu=name --format=csv,noheader
timeout "$SECONDS_LIMIT" python -m rethined_engine.train.train --data .gpu/train --out "$RUN" \
    --init-from rethined_engine/weights/rethined_v0.safetensors --device cuda --crop 256 --lr 0.0003 \
    --ssim-weight 0.5 --photo-min 512 --photo-max 768 --warmup 100 --batch 16 --hr-scale 2 \
    --hr-ssim-weight 1.0 --hr-sharpness-weight 0.03 --steps "$STEPS" --checkpoint-every 100 "$@" > "$RUN/stdout.txt" 2>&1
echo "train exit $? (124: stopped at the time limit; resume from the last checkpoint)"
tail -n 2 "$RUN/stdout.txt"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/$NAME" && cp "$RUN"/last.pt "$RUN"/log.jsonl "$RUN"/stdout.txt "$OUT/$NAME/"; fi
