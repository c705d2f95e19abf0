#!/usr/bin/env bash
# Quality of the opt-in vector-wise 2:4 pattern (issue 9): the validation loss of dense, SLoPe with
# the per-element 2:4 mask, and SLoPe with the vector-wise mask (one mask per block of 64 and of 128
# output rows, by summed |W|), same config and seed: the `mid` config (4 × 256, block 128, batch
# 32, dropout 0.1, lr 1e-3), 2,000 steps, seed 1. Each run's summary.json / metrics.jsonl go under
# $OUT/<run>/, then $OUT/pattern-quality.json holds the summaries and the vector-wise runs' gap to
# per-element 2:4 (the goal: within 1%).
# Usage: bash bench/pattern-quality.sh [DATA] [OUT]           (Node + Dawn: the H200 run)
#        bash bench/pattern-quality.sh --quick [DATA] [OUT]   (Deno, tiny config, 40 steps: a local smoke run)
set -euo pipefail
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
DATA=${1:-../shared/data/tinyshakespeare.txt}
OUT=${2:-bench/results/pattern-quality}
mkdir -p "$OUT"
if [ "$QUICK" = 1 ]; then
  run=(npx deno run -A src/cli/main.ts train)
  common=(--config tiny --steps "${STEPS:-40}" --data "$DATA" --seed 1 --eval-every 20 --eval-batches 4)
else
  npm run -s cli:build
  run=(node .cli-dist/main.mjs train)
  common=(--config mid --steps "${STEPS:-2000}" --data "$DATA" --seed 1 --eval-every 200 --eval-batches 50 --checkpoint-every 1000)
fi
"${run[@]}" --mode dense "${common[@]}" --out "$OUT/dense"
"${run[@]}" --mode slope "${common[@]}" --out "$OUT/slope-2of4"
"${run[@]}" --mode slope --pattern vector --vector-block 64 "${common[@]}" --out "$OUT/slope-vector64"
"${run[@]}" --mode slope --pattern vector --vector-block 128 "${common[@]}" --out "$OUT/slope-vector128"
node -e '
const fs = require("fs"), out = process.argv[1];
const runs = ["dense", "slope-2of4", "slope-vector64", "slope-vector128"].map((r) => ({ run: r, ...JSON.parse(fs.readFileSync(`${out}/${r}/summary.json`, "utf8")) }));
const ref = runs[1].valLoss;
for (const r of runs.slice(2)) r.gapToElementwisePct = 100 * (r.valLoss - ref) / ref;
fs.writeFileSync(`${out}/pattern-quality.json`, JSON.stringify({ runs }, null, 2));
for (const r of runs) console.log(`${r.run}: val ${r.valLoss?.toFixed(4)}${r.gapToElementwisePct === undefined ? "" : ` (${r.gapToElementwisePct >= 0 ? "+" : ""}${r.gapToElementwisePct.toFixed(2)}% vs per-element 2:4)`}, ${r.tokensPerSec} tok/s`);
' "$OUT"
