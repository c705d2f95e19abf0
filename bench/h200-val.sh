#!/usr/bin/env bash
# The README's validation-loss table (issue 10): nanoGPT's shakespeare_char `small` config
# (6 × 384, block 256, batch 64, dropout 0.2, lr 1e-3, 5,000 steps), same seed, three runs:
# dense, SLoPe r = 0, SLoPe with lazy adapters r = 6.25% entering at 99%. Writes each run's
# summary.json (final loss, valLoss over 50 batches, tokens/s, peakBytes) and metrics.jsonl under
# $OUT/<run>/, then $OUT/h200-val.json with the three summaries. nanoGPT's own figure: val 1.4697.
# Usage: bash bench/h200-val.sh [DATA] [OUT]   (Node + Dawn on the GPU; about 3 × 19 min at 73k tok/s)
set -euo pipefail
DATA=${1:-../shared/data/tinyshakespeare.txt}
OUT=${2:-bench/results/h200-val}
STEPS=${STEPS:-5000}
mkdir -p "$OUT"
npm run -s cli:build
common=(--config small --steps "$STEPS" --data "$DATA" --seed 1337 --eval-every 500 --eval-batches 50 --checkpoint-every 1000)
node .cli-dist/main.mjs train --mode dense "${common[@]}" --out "$OUT/dense"
node .cli-dist/main.mjs train --mode slope "${common[@]}" --out "$OUT/slope-r0"
node .cli-dist/main.mjs train --mode slope --adapter-rank 6.25% "${common[@]}" --out "$OUT/slope-r6.25"
node -e '
const fs = require("fs"), out = process.argv[1];
const runs = ["dense", "slope-r0", "slope-r6.25"].map((r) => ({ run: r, ...JSON.parse(fs.readFileSync(`${out}/${r}/summary.json`, "utf8")) }));
fs.writeFileSync(`${out}/h200-val.json`, JSON.stringify({ nanoGPTVal: 1.4697, runs }, null, 2));
for (const r of runs) console.log(`${r.run}: val ${r.valLoss?.toFixed(4)}, ${r.tokensPerSec} tok/s, peak ${(r.peakBytes / 2 ** 30).toFixed(2)} GiB`);
' "$OUT"
