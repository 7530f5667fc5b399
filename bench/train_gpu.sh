#!/usr/bin/env bash
# bench/train_gpu.sh [BUDGET_S]: two fine-tunes of the shipped weights side by side on one GPU (the model is tiny; one run leaves it idle):
#   A: the v6 objective (LR crops), batch 32;  B: HR crops (2x) scored after attention upscaling, batch 16.
# Data: python -m rethined_engine.train.photos .gpu/train --pack-from PHOTOS/train (23.5 MiB; carried to the
# device with carry [".gpu"]); checkpoints and logs go to $OUT/gpuA, $OUT/gpuB (they come back).
# Each first times 40 steps (both at once, as they will run), then runs as many steps as fit BUDGET s.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
for pkg in kernels bench csrc; do [ -e "rethined_engine/$pkg" ] || ln -s "$PWD/$pkg" "rethined_engine/$pkg"; done
export PYTHONPATH=$PWD
BUDGET=${1:-450}
W=rethined_engine/weights/rethined_v0.safetensors
BASE="--data .gpu/train --init-from $W --device cuda --crop 256 --lr 0.0003 --ssim-weight 0.5 --photo-min 512 --photo-max 768 --warmup 100"
A="$BASE --batch 32"
B="$BASE --batch 16 --hr-scale 2 --hr-ssim-weight 1.0 --hr-sharpness-weight 0.03"
nvidia-smi --query-gpu=name --format=csv,noheader
python -m rethined_engine.train.train $A --out /tmp/calA --steps 40 --checkpoint-every 1000 > /tmp/calA.log 2>&1 &
python -m rethined_engine.train.train $B --out /tmp/calB --steps 40 --checkpoint-every 1000 > /tmp/calB.log 2>&1 &
wait
tail -n 2 /tmp/calA.log /tmp/calB.log
steps() {  # steps LOG -> how many steps fit BUDGET at the timed rate (steps 11-40), in hundreds
    python -c "import json,sys; L=[json.loads(l) for l in open('$1')]; s=(L[-1]['elapsed_s']-L[9]['elapsed_s'])/(len(L)-10); print(f'{s:.3f} s/step', file=sys.stderr); print(max(100, int($BUDGET/s)//100*100))"
}
NA=$(steps /tmp/calA/log.jsonl); NB=$(steps /tmp/calB/log.jsonl)
echo "A: $NA steps, B: $NB steps"
mkdir -p $OUT/gpuA $OUT/gpuB
python -m rethined_engine.train.train $A --out $OUT/gpuA --steps $NA --checkpoint-every 200 > $OUT/gpuA/stdout.txt 2>&1 &
python -m rethined_engine.train.train $B --out $OUT/gpuB --steps $NB --checkpoint-every 200 > $OUT/gpuB/stdout.txt 2>&1 &
wait
tail -n 3 $OUT/gpuA/stdout.txt $OUT/gpuB/stdout.txt
