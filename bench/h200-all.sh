#!/usr/bin/env bash
# Every H200 measurement of one session in as few device calls as possible (GPU time is scarce, and
# a machine left idle for 30 s is taken back). Sections run in the order given, each under its own
# time limit, each writing its JSON and its log to $OUT as it ends, so a call cut short still
# returns what finished.
#   here:  bash ../shared/gpu/prepare.sh node && npm run gpu:build   (the benches into .bench-dist, the Node suite into .test-dist)
#   there: bash .gpu/run.sh bash bench/h200-all.sh train torch profile units suite kernels attention
#          (carry [".gpu", ".bench-dist", ".test-dist"])
#   Deno:  bash ../shared/gpu/prepare.sh deno, then: bash .gpu/run.sh bash bench/h200-all.sh deno-train deno-kernels
# Sections:
#   train       bench/train.ts, every config dense and SLoPe, Dawn with the H200 toggles
#   profile     one profiled small step (and gpt2), dense and SLoPe: table in the log, Chrome traces in $OUT
#   torch       bench/torch/gpt.py: the same GPT in PyTorch, fp32 (TF32 off), TF32, bf16 + SDPA
#   units-diag  compile every matrix-unit variant and print the compiler's messages
#   units       bench/matmul-units.ts (subgroup-matrix tiles against the f32 shader cores) and bench/torch/matmul.py
#   suite       the whole Node suite on the GPU with the matrix units on (WEBSLOPE_DAWN_FLAGS=matrix)
#   kernels     bench/matmul.ts (webslope only) and bench/sparse.ts, Dawn: the refactor's 3% check
#   suite-units the matrix-unit cases of the suite only
#   units-new   bench/matmul-units.ts on the double-buffered / f16-staged tiles and the two they derive from (not the whole sweep)
#   units-norobust  the same few tiles with Dawn's disable_robustness (unsafe: what index clamping costs; never the default)
#   sparse-units bench/sparse.ts --units (2:4 on the matrix units against dense on the matrix units)
#   old-vs-new  matmul and spmm from the pre-refactor commit's bundle (.bench-old) and today's, alternated
#   attention   bench/attention.ts: fused flash attention (fused and chunked backward; chunk budgets 128/256 MiB, causal panels of 512/1024 rows) against the unfused path, Dawn
#   attention-mu  the same at gpt2 with the chunked backward's products on the matrix units (precision medium)
#   attention-mu-fwd  bench/attention.ts at small and gpt2, precision medium: the forward on the matrix units (every row; tiles 4x32, 2x32)
#                 next to the f32 shader-core forward ("shader-core fwd + chunked bwd"), then the mixed-f16 train step small + gpt2 dense
#   train-attn  bench/train.ts dense small and gpt2 with the fused attention backward, and gpt2 with 128 MiB chunks (the default train section runs the chunked one at 64 MiB)
#   precision   bench/precision.ts: mid config, 2,000 steps, seed 1, f32 vs mixed-f16, validation loss of both (issue 8's 1% goal)
#   train-mixed bench/train.ts with --precision f32,mixed-f16: tokens/s of mixed precision next to f32, every config
#   final-*     the last call of 2026-12-02 (train f32 + mixed, torch, profiles, precision and pattern quality, sparse, attention)
#   deno-*      the same under Deno (wgpu): deno-train, deno-kernels, deno-attention
#   val-slope   bench/h200-val.sh slope: small, 5,000 steps, SLoPe r = 0 and r = 6.25% adapters, PyTorch parity + torchrun (needs .cli-dist, .data)
#   val-dense   bench/h200-val.sh dense: the same dense
#   profile-mixed  one profiled small step in mixed-f16, dense and SLoPe
#   suite-units-rest  the gated matrix-unit cases but the every-tile one (it alone took 126 s with 13 tiles)
#   train-last  small + gpt2 dense mixed-f16 at the defaults (a quick check of the tile and chunk choices)
#   train-chunks  small + gpt2 dense mixed-f16 with the attention backward's chunk budget at 128 and 256 MiB
#   sddmm-lanes bench/sparse.ts at d = 768, 1024, 2048, M = 4096: every variant of the lanes sddmm (warp-uniform pattern codes) beside the dense dYᵀX and the default sddmm, and sddmmVector with its split-K
#   sparse-now  bench/sparse.ts at d = 768, 2048, M = 4096 (spmm, vector-wise, sddmm with split-K against the dense dYᵀX)
#   spmm-lanes  bench/sparse.ts --lanes all --spmm-only at d = 768, 2048, M = 4096, f32: dense, the default 2:4 path, expand forced and every lanes variant, Dawn
#   decode      bench/decode.ts: whole-GPT decode (KV cache, batch 1, greedy), dense against merged SLoPe r = 1.56%, gpt2 and small, Dawn
#   decode-host  decode (gpt2, small; 5 reps) for its host-share figures (µs of host time per dispatch, the raw launcher floor)
#   decode-long  decode at gpt2 from a 900-token prompt (the cache near blockSize), 3 reps, with a profile of one position
#   decode-profile  the same at gpt2, 2 reps, with a GPU profile of one decode position per model (where the time goes)
#   mu-shapes   bench/matmul-shapes.ts: every matrix-unit product of one mixed-f16 small and gpt2 step (and square N), timed with every tile: the chooser's data
#   sparse-decode  bench/sparse.ts at d = 768, 2048, M = 8 and 1 (the decode goal's shapes), Dawn
#   train-rules  small + gpt2, dense and SLoPe, mixed-f16, under three matrix-unit tile rules (--mu-rule bigGrid:minFill)
#   units-packed bench/matmul-units.ts: the packedF16 tiles (f16 operands read as u32 words) beside their unpacked shapes, N = 2048, 4096, 8192
#   units-rules  bench/matmul-units.ts: the chooser's pick under the same rules, and six tiles forced, N = 2048, 4096, 8192
#   units-auto  bench/matmul-units.ts: the chooser's own pick (f32 and f16 in, default rule, packed tiles known to it) beside the three packed tiles forced, N = 2048, 4096, 8192
#   lowrank-decode  bench/lowrank.ts at d = 768, 2048, M = 1 and 8: the merged layer in one dispatch (fused decode) against its unfused form and the dense layer, Dawn
#   deno-decode  sparse-decode (d = 768), lowrank-decode (d = 768) and decode (gpt2) under Deno (wgpu)
#   deno-model-decode  decode (gpt2 and small, 5 reps) alone under Deno (wgpu)
#   deno-decode-long   decode-long under Deno (wgpu)
#   sparse-tune bench/sparse.ts --tune --spmm-only at d = 768, 2048, M = 4096, f32 and f16: tuneSpmm's measured choice per shape beside dense and the rule, Dawn
#   deno-sparse-tune  the same at d = 768 under Deno (wgpu)
#   train-tune  bench/train.ts small + gpt2, dense and SLoPe (f32, mixed-f16) with --tune: the SLoPe step on its measured spmm kernels
#   deno-train-tune  the same in f32 under Deno (wgpu)
#   sparse-units-ab  bench/sparse.ts --units --spmm-only (2:4 and dense both on the matrix units), the old bundle (.bench-old) and today's alternated
#   sddmm-ab    bench/sparse.ts at d = 768, 2048, M = 4096 (f32): the old bundle and today's alternated (the sddmm columns)
#   deno-sddmm-ab, deno-train-f32-ab  the same two under Deno (wgpu), sddmm at d = 768
#   sddmm-tune  bench/sparse.ts --tune at d = 768, 2048, M = 4096 (f32): tuneSpmm's and tuneSddmm's choices beside the rules, Dawn
#   train-tune-f32  bench/train.ts --tune small + gpt2, dense and SLoPe, f32: the SLoPe step on its measured spmm and sddmm kernels, Dawn
#   train-f32-ab  bench/train.ts small + gpt2 f32: SLoPe with the old bundle, then dense and SLoPe with today's
#   train-mixed-ab   bench/train.ts small + gpt2, dense and SLoPe, mixed-f16: the old bundle, then today's
#   profile-mixed-gpt2  one profiled gpt2 step in mixed-f16, dense and SLoPe
#   suite-units-sparse  the Node suite's 2:4 / sparse cases on the GPU with the matrix units on
#   train-now / torch-now  bench/train.ts small + gpt2 (dense, SLoPe; f32, mixed-f16) and PyTorch's figures for them
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
start=$(date +%s)
budget=${BUDGET_S:-100000} # the whole call's seconds: a section is cut to what is left, and skipped when under 15 s
sec() { # name limit_s command...
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  local left=$(( budget - (t0 - start) ))
  if [ "$left" -lt 15 ]; then echo "== $name skipped: ${left}s of the budget left"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s, at +$((t0 - start))s)"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc in $(( $(date +%s) - t0 ))s"; tail -n 25 "$out/$name.log"
}
for s in "$@"; do
  case $s in
    train) sec train 200 node .bench-dist/train.mjs --dawn-toggles --configs tiny,mid,small,gpt2 --modes dense,slope --json "$out/train-dawn.json" ;;
    profile) sec profile 120 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --profile --trace-dir "$out" --batches 3 --json "$out/train-dawn-profile.json" ;;
    torch) sec torch 200 python3 bench/torch/gpt.py --configs tiny,mid,small,gpt2 --precisions fp32,tf32,bf16 --json "$out/train-torch.json" ;;
    units-diag) sec units-diag 150 node .bench-dist/matmul-units.mjs --diagnose --sizes 4096 --json "$out/matmul-units-diag.json" ;;
    units)
      sec units 240 node .bench-dist/matmul-units.mjs --json "$out/matmul-units-dawn.json"
      sec units-torch 60 python3 bench/torch/matmul.py --json "$out/matmul-torch.json" ;;
    suite) sec suite 150 env WEBSLOPE_DAWN_FLAGS=matrix node --test .test-dist/node/suite.test.mjs ;;
    kernels)
      sec matmul 90 node .bench-dist/matmul.mjs --peers none --sizes 1024,2048,4096,8192 --json "$out/matmul-dawn.json"
      sec matmul-again 90 node .bench-dist/matmul.mjs --peers none --sizes 1024,2048,4096,8192 --json "$out/matmul-dawn-again.json"
      sec sparse 120 node .bench-dist/sparse.mjs --json "$out/spmm-dawn.json" ;;
    units-new) sec units-new 150 node .bench-dist/matmul-units.mjs --tiles 128x256s8,128x128s4,128x128s4d2,128x128s8d2,128x128s8k16d2,128x256s8k16d2,128x256s8h --json "$out/matmul-units-new.json" ;;
    units-norobust) sec units-norobust 120 node .bench-dist/matmul-units.mjs --no-robustness --tiles 128x256s8,128x128s4,128x128s4d2,128x256s8h --sizes 2048,8192 --json "$out/matmul-units-norobust.json" ;;
    suite-units) sec suite-units 150 env WEBSLOPE_DAWN_FLAGS=matrix node --test --test-name-pattern="matrix units|compiled shader" .test-dist/node/suite.test.mjs ;;
    sparse-units) sec sparse-units 120 node .bench-dist/sparse.mjs --units --d 768,2048 --m 4096 --json "$out/spmm-dawn-units.json" ;;
    old-vs-new) # the refactor's speed check: the pre-refactor bundle (.bench-old, built from 5f43fbe) and today's, alternated in one call
      for i in 1 2; do
        sec "matmul-old-$i" 60 node .bench-old/matmul.mjs --peers none --sizes 2048,4096 --json "$out/matmul-old-$i.json"
        sec "matmul-new-$i" 60 node .bench-dist/matmul.mjs --peers none --sizes 2048,4096 --json "$out/matmul-new-$i.json"
      done
      sec sparse-old 90 node .bench-old/sparse.mjs --d 768,1024 --json "$out/spmm-old.json"
      sec sparse-new 90 node .bench-dist/sparse.mjs --d 768,1024 --json "$out/spmm-new.json" ;;
    attention) sec attention 180 node .bench-dist/attention.mjs --chunk-mib 128,256 --panel-rows 512,1024 --json "$out/attention-dawn.json" ;;
    attention-mu-fwd)
      sec attention-mu-fwd 180 node .bench-dist/attention.mjs --dawn-toggles --precision medium --configs small,gpt2 --units-tiles 4x32,2x32 --json "$out/attention-dawn-mu-fwd.json"
      sec attention-mu-fwd-train 150 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense --precision mixed-f16 --json "$out/train-dawn-mu-fwd.json" ;;
    attention-mu) sec attention-mu 120 node .bench-dist/attention.mjs --dawn-toggles --precision medium --configs gpt2 --json "$out/attention-dawn-mu.json" ;;
    train-attn)
      sec train-attn-fused 150 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense --attn-backward fused --json "$out/train-attn-fused.json"
      sec train-attn-128 150 node .bench-dist/train.mjs --dawn-toggles --configs gpt2 --modes dense --attn-chunk-mib 128 --json "$out/train-attn-128.json" ;;
    precision) sec precision 590 node .bench-dist/precision.mjs --dawn-toggles --config mid --steps 2000 --seed 1 --json "$out/precision-mid-dawn.json" ;;
    train-mixed) sec train-mixed 300 node .bench-dist/train.mjs --dawn-toggles --configs tiny,mid,small,gpt2 --modes dense,slope --precision f32,mixed-f16 --json "$out/train-dawn-mixed.json" ;;
    # The final call of 2026-12-02 (the corpus travels in .data/, the CLI bundle in .cli-dist/):
    final-train) sec final-train 150 node .bench-dist/train.mjs --dawn-toggles --configs tiny,mid,small,gpt2 --modes dense,slope --precision f32,mixed-f16 --json "$out/train-dawn.json" ;;
    final-torch) sec final-torch 70 python3 bench/torch/gpt.py --configs mid,small,gpt2 --precisions fp32,tf32,bf16 --json "$out/train-torch.json" ;;
    final-profile) sec final-profile 75 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --precision f32,mixed-f16 --profile --trace-dir "$out/traces" --batches 3 --json "$out/train-dawn-profile.json" ;;
    final-precision) sec final-precision 80 node .bench-dist/precision.mjs --dawn-toggles --config mid --steps 2000 --seed 1 --data .data/tinyshakespeare.txt --json "$out/precision-mid-dawn.json" ;;
    final-pattern)
      for r in "slope-2of4:" "slope-vector64:--pattern vector --vector-block 64"; do
        # shellcheck disable=SC2086
        sec "pattern-${r%%:*}" 45 node .cli-dist/main.mjs train --mode slope ${r#*:} --config mid --steps 2000 --data .data/tinyshakespeare.txt --seed 1 --eval-every 500 --eval-batches 50 --out "$out/pattern/${r%%:*}"
      done ;;
    final-sparse) sec final-sparse 60 node .bench-dist/sparse.mjs --d 768,2048 --m 4096,8 --json "$out/spmm-dawn.json" ;;
    final-attention) sec final-attention 45 node .bench-dist/attention.mjs --json "$out/attention-dawn.json" ;;
    deno-train) sec deno-train 240 deno run -A .bench-dist/train.mjs --configs tiny,mid,small,gpt2 --modes dense,slope --json "$out/train-wgpu.json" ;;
    deno-kernels)
      sec deno-matmul 90 deno run -A .bench-dist/matmul.mjs --peers none --json "$out/matmul-wgpu.json"
      sec deno-sparse 120 deno run -A .bench-dist/sparse.mjs --json "$out/spmm-wgpu.json" ;;
    deno-attention) sec deno-attention 90 deno run -A .bench-dist/attention.mjs --json "$out/attention-wgpu.json" ;;
    val-slope) sec val-slope 560 bash bench/h200-val.sh slope "$out/val" ;;
    val-dense) sec val-dense 420 bash bench/h200-val.sh dense "$out/val" ;;
    train-now) sec train-now 150 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --precision f32,mixed-f16 --json "$out/train-dawn.json" ;;
    torch-now) sec torch-now 70 python3 bench/torch/gpt.py --configs small,gpt2 --precisions fp32,tf32,bf16 --json "$out/train-torch.json" ;;
    train-chunks) # the chunked attention backward's budget: 64 MiB (default) against 128 and 256 at small and gpt2, mixed-f16
      for mib in 128 256; do sec "train-chunks-$mib" 40 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense --precision mixed-f16 --attn-chunk-mib $mib --batches 3 --json "$out/train-dawn-chunks-$mib.json"; done ;;
    sddmm-lanes) sec sddmm-lanes 150 node .bench-dist/sparse.mjs --d 768,1024,2048 --m 4096 --shapes dxd,4dxd,dx4d --sddmm-lanes all --warmup 200 --batch-ms 150 --json "$out/sddmm-lanes.json" ;;
    sparse-now) sec sparse-now 90 node .bench-dist/sparse.mjs --d 768,2048 --m 4096 --warmup 200 --batch-ms 150 --json "$out/spmm-dawn.json" ;;
    spmm-lanes) sec spmm-lanes 150 node .bench-dist/sparse.mjs --d 768,2048 --m 4096 --shapes dxd,3dxd,4dxd,dx4d --lanes all --spmm-only --warmup 200 --batch-ms 150 --json "$out/spmm-lanes-dawn.json" ;;
    decode) sec decode 120 node .bench-dist/decode.mjs --dawn-toggles --configs gpt2,small --reps 9 --json "$out/decode-dawn.json" ;;
    decode-host) sec decode-host 100 node .bench-dist/decode.mjs --dawn-toggles --configs gpt2,small --reps 5 --json "$out/decode-host-dawn.json" ;;
    decode-long) sec decode-long 120 node .bench-dist/decode.mjs --dawn-toggles --configs gpt2 --prompt 900 --reps 3 --profile --json "$out/decode-long-dawn.json" ;;
    decode-profile) sec decode-profile 60 node .bench-dist/decode.mjs --dawn-toggles --configs gpt2 --reps 2 --profile --json "$out/decode-dawn-profile.json" ;;
    units-packed) sec units-packed 170 node .bench-dist/matmul-units.mjs --mu-rule 192:0.85 --tiles 128x256s8,256x128s8,128x256s8h,128x256s8p,256x128s8p,128x128s8d2,128x128s8d2p --json "$out/matmul-units-packed.json" ;;
    suite-units-rest) sec suite-units-rest 120 env WEBSLOPE_DAWN_FLAGS=matrix node --test --test-name-pattern="matrix units: [^e]|mixed-f16 on the matrix units|compiled shader" .test-dist/node/suite.test.mjs ;;
    train-last) sec train-last 60 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense --precision mixed-f16 --batches 3 --json "$out/train-dawn-last.json" ;;
    profile-mixed) sec profile-mixed 60 node .bench-dist/train.mjs --dawn-toggles --configs small --modes dense,slope --precision mixed-f16 --profile --trace-dir "$out/traces" --batches 3 --json "$out/train-dawn-profile-mixed.json" ;;
    mu-shapes) sec mu-shapes 330 node .bench-dist/matmul-shapes.mjs --configs small,gpt2 --json "$out/matmul-shapes.json" ;;
    sparse-decode) sec sparse-decode 90 node .bench-dist/sparse.mjs --d 768,2048 --m 8,1 --warmup 200 --batch-ms 150 --json "$out/spmm-decode-dawn.json" ;;
    lowrank-decode) sec lowrank-decode 60 node .bench-dist/lowrank.mjs --d 768,2048 --m 1,8 --json "$out/lowrank-decode-dawn.json" ;;
    deno-decode)
      sec deno-sparse-decode 100 deno run -A .bench-dist/sparse.mjs --d 768 --m 8,1 --warmup 200 --batch-ms 150 --json "$out/spmm-decode-wgpu.json"
      sec deno-lowrank-decode 60 deno run -A .bench-dist/lowrank.mjs --d 768 --m 1,8 --json "$out/lowrank-decode-wgpu.json"
      sec deno-decode 120 deno run -A .bench-dist/decode.mjs --configs gpt2 --reps 3 --json "$out/decode-wgpu.json" ;;
    deno-model-decode) sec deno-model-decode 150 deno run -A .bench-dist/decode.mjs --configs gpt2,small --reps 5 --json "$out/decode-wgpu.json" ;;
    deno-decode-long) sec deno-decode-long 150 deno run -A .bench-dist/decode.mjs --configs gpt2 --prompt 900 --reps 3 --profile --json "$out/decode-long-wgpu.json" ;;
    train-rules) sec train-rules 150 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --precision mixed-f16 --mu-rule 192:0,192:0.85,128:0.85 --batches 3 --json "$out/train-dawn-rules.json" ;;
    sparse-tune)
      sec sparse-tune 150 node .bench-dist/sparse.mjs --d 768,2048 --m 4096 --spmm-only --tune --warmup 200 --batch-ms 150 --json "$out/spmm-tune-dawn.json"
      sec sparse-tune-f16 120 node .bench-dist/sparse.mjs --dawn-toggles --dtype f16 --d 768,2048 --m 4096 --spmm-only --tune --warmup 200 --batch-ms 150 --json "$out/spmm-tune-dawn-f16.json" ;;
    train-tune) sec train-tune 200 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --precision f32,mixed-f16 --tune --json "$out/train-dawn-tune.json" ;;
    deno-train-tune) sec deno-train-tune 200 deno run -A .bench-dist/train.mjs --configs small,gpt2 --modes dense,slope --tune --json "$out/train-wgpu-tune.json" ;;
    deno-sparse-tune) sec deno-sparse-tune 150 deno run -A .bench-dist/sparse.mjs --d 768 --m 4096 --spmm-only --tune --warmup 200 --batch-ms 150 --json "$out/spmm-tune-wgpu.json" ;;
    units-auto) sec units-auto 120 node .bench-dist/matmul-units.mjs --mu-rule 192:0.85 --tiles 128x256s8p,256x128s8p,128x128s8d2p --json "$out/matmul-units-auto.json" ;;
    units-rules) sec units-rules 110 node .bench-dist/matmul-units.mjs --mu-rule 192:0,192:0.85,128:0.85 --tiles 128x256s8,256x128s8,128x128s4,128x128s8,128x64s4,128x256s8h --json "$out/matmul-units-rules.json" ;;
    sparse-units-ab) # the vec4 2:4 staging of the matrix-unit spmm (new) against the scalar one (.bench-old, built from b14b047), alternated ($AB_N times, default 1)
      for i in $(seq "${AB_N:-1}"); do
        sec "sparse-units-old-$i" 90 node .bench-old/sparse.mjs --units --spmm-only --d 768,2048 --m 16384 --warmup 200 --batch-ms 150 --json "$out/spmm-units-old-$i.json"
        sec "sparse-units-new-$i" 90 node .bench-dist/sparse.mjs --units --spmm-only --d 768,2048 --m 16384 --warmup 200 --batch-ms 150 --json "$out/spmm-units-new-$i.json"
      done ;;
    sddmm-ab) # the pipelined dense-tile sddmm (new) against the direct-load one (.bench-old), f32 shader cores, M = 4096, alternated ($AB_N times, default 1)
      for i in $(seq "${AB_N:-1}"); do
        sec "sddmm-old-$i" 100 node .bench-old/sparse.mjs --d 768,2048 --m 4096 --sddmm-lanes none --warmup 200 --batch-ms 150 --json "$out/sddmm-old-$i.json"
        sec "sddmm-new-$i" 100 node .bench-dist/sparse.mjs --d 768,2048 --m 4096 --sddmm-lanes none --warmup 200 --batch-ms 150 --json "$out/sddmm-new-$i.json"
      done ;;
    deno-sddmm-ab) # sddmm-ab under Deno (wgpu), d = 768
      sec deno-sddmm-old 100 deno run -A .bench-old/sparse.mjs --d 768 --m 4096 --sddmm-lanes none --warmup 200 --batch-ms 150 --json "$out/sddmm-wgpu-old.json"
      sec deno-sddmm-new 100 deno run -A .bench-dist/sparse.mjs --d 768 --m 4096 --sddmm-lanes none --warmup 200 --batch-ms 150 --json "$out/sddmm-wgpu-new.json" ;;
    deno-train-f32-ab) # the f32 step under Deno (wgpu), small and gpt2: SLoPe with the old bundle, dense and SLoPe with today's
      sec deno-train-f32-old 120 deno run -A .bench-old/train.mjs --configs small,gpt2 --modes slope --json "$out/train-wgpu-f32-old.json"
      sec deno-train-f32-new 150 deno run -A .bench-dist/train.mjs --configs small,gpt2 --modes dense,slope --json "$out/train-wgpu-f32-new.json" ;;
    sddmm-tune) sec sddmm-tune 150 node .bench-dist/sparse.mjs --tune --d 768,2048 --m 4096 --sddmm-lanes none --warmup 200 --batch-ms 150 --json "$out/sparse-tune-dawn.json" ;;
    train-tune-f32) sec train-tune-f32 150 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --tune --json "$out/train-dawn-tune-f32.json" ;;
    train-f32-ab) # the f32 step, small and gpt2, SLoPe (and dense once): .bench-old then today's bundle
      sec train-f32-old 120 node .bench-old/train.mjs --dawn-toggles --configs small,gpt2 --modes slope --json "$out/train-f32-old.json"
      sec train-f32-new 150 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --json "$out/train-f32-new.json" ;;
    train-mixed-ab) # the mixed-f16 step, small and gpt2, dense and SLoPe: .bench-old then today's bundle
      sec train-mixed-old 150 node .bench-old/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --precision mixed-f16 --json "$out/train-mixed-old.json"
      sec train-mixed-new 150 node .bench-dist/train.mjs --dawn-toggles --configs small,gpt2 --modes dense,slope --precision mixed-f16 --json "$out/train-mixed-new.json" ;;
    profile-mixed-gpt2) sec profile-mixed-gpt2 90 node .bench-dist/train.mjs --dawn-toggles --configs gpt2 --modes dense,slope --precision mixed-f16 --profile --batches 3 --json "$out/train-dawn-profile-mixed-gpt2.json" ;;
    suite-units-sparse) sec suite-units-sparse 90 env WEBSLOPE_DAWN_FLAGS=matrix node --test --test-name-pattern="2:4|sparse|spmm" .test-dist/node/suite.test.mjs ;;
    *) echo "unknown section $s" ;;
  esac
done
echo "== all done in $(( $(date +%s) - start ))s"
# At most 8 files come back from $OUT: pack them into one.
(cd "$out" && tar czf /tmp/results.tgz --exclude results.tgz --exclude '*.safetensors' . && rm -rf ./* && mv /tmp/results.tgz results.tgz)
