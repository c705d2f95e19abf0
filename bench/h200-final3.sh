#!/usr/bin/env bash
# The third session's last H200 call (2026-12-02): the gated attention-on-matrix-units cases, the
# attention forward bench, the training step (dense, SLoPe; f32, mixed-f16) beside PyTorch, the new
# lanes kernels under Dawn and under Deno (wgpu). Same shape as bench/h200-all.sh's sections.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"; start=$(date +%s); budget=${BUDGET_S:-100000}
sec() { local name=$1 limit=$2; shift 2; local t0; t0=$(date +%s); local left=$(( budget - (t0 - start) ))
  if [ "$left" -lt 15 ]; then echo "== $name skipped"; return; fi; [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s, at +$((t0 - start))s)"; timeout "$limit" "$@" > "$out/$name.log" 2>&1
  echo "== $name rc=$? in $(( $(date +%s) - t0 ))s"; tail -n 30 "$out/$name.log"; }
sec suite-attn-units 70 env WEBSLOPE_DAWN_FLAGS=matrix node --test --test-name-pattern="\(matrix units\)|compiled shader" .test-dist/node/suite.test.mjs
sec attention-mu-fwd 60 node .bench-dist/attention.mjs --dawn-toggles --precision medium --configs small,gpt2 --units-tiles 4x32,2x32 --json "$out/attention-dawn-mu-fwd.json"
sec train-now 150 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --precision f32,mixed-f16 --batches 3 --json "$out/train-dawn.json"
sec torch-now 60 python3 bench/torch/gpt.py --configs small,gpt2 --precisions fp32,tf32,bf16 --json "$out/train-torch.json"
sec spmm-lanes 80 node .bench-dist/sparse.mjs --d 768,2048 --m 4096 --shapes dxd,4dxd,dx4d --lanes all --spmm-only --warmup 200 --batch-ms 120 --json "$out/spmm-lanes-dawn.json"
sec sddmm-lanes 70 node .bench-dist/sparse.mjs --d 768,2048 --m 4096 --shapes dxd,4dxd,dx4d --sddmm-lanes all --warmup 200 --batch-ms 120 --json "$out/sddmm-lanes-dawn.json"
sec deno-lanes 90 deno run -A .bench-dist/sparse.mjs --d 768 --m 4096 --shapes dxd,4dxd,dx4d --lanes all --sddmm-lanes all --warmup 200 --batch-ms 120 --json "$out/lanes-wgpu.json"
echo "== all done in $(( $(date +%s) - start ))s"
(cd "$out" && tar czf /tmp/results.tgz --exclude results.tgz . && rm -rf ./* && mv /tmp/results.tgz results.tgz)
