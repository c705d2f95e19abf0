#!/usr/bin/env bash
# The H200 recipe of the training benchmark, run on the GPU machine through ../shared/gpu's run.sh:
#   here:  bash ../shared/gpu/prepare.sh node && npm run bench:build
#   there: bash .gpu/run.sh bash bench/h200.sh        (carry [".gpu", ".bench-dist"]; JSON lands in $OUT)
# Runs every config dense and SLoPe under Dawn with the H200 toggles, then the --profile of one small step
# (table on stdout, Chrome trace in $OUT), then the same GPT in PyTorch on the same GPU (bench/torch/gpt.py:
# fp32 with TF32 off, TF32, bf16 autocast + SDPA), same JSON fields.
set -euo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
node .bench-dist/train.mjs --dawn-toggles --configs tiny,mid,small,gpt2 --modes dense,slope --json "$out/train-dawn.json"
node .bench-dist/train.mjs --dawn-toggles --configs small --modes dense,slope --profile --trace-dir "$out" --batches 3 --json "$out/train-dawn-profile.json"
python3 bench/torch/gpt.py --configs tiny,mid,small,gpt2 --precisions fp32,tf32,bf16 --json "$out/train-torch.json"
