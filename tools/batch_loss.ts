// webslope's loss on a fixed batch of a checkpoint, for tools/torch_parity.py: the first B
// windows of the validation split (10% tail of --data), written as JSON {x, y, loss}.
//   deno run -A tools/batch_loss.ts --ckpt out/ckpt.safetensors --data input.txt --out batch.json [--batch-size 8]
//   (or in Node: npm run gpu:build bundles it as .bench-dist/batch_loss.mjs)
import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { init, noGrad, tensor } from "../src/index.ts";
import { Corpus, loadCheckpoint } from "../src/train/index.ts";

const f = parseArgs({ options: { ckpt: { type: "string" }, data: { type: "string" }, out: { type: "string" }, "batch-size": { type: "string" } } }).values;
if (!f.ckpt || !f.data || !f.out) { console.error("usage: batch_loss.ts --ckpt FILE --data FILE --out batch.json [--batch-size B]"); process.exit(2); }
await init();
const { model, tokenizer } = await loadCheckpoint(f.ckpt);
if (!tokenizer) throw new Error("the checkpoint has no tokenizer");
const corpus = new Corpus(tokenizer.encode(await readFile(f.data, "utf8")));
const B = Number(f["batch-size"] ?? 8), T = model.config.blockSize;
const x: number[][] = [], y: number[][] = [];
for (let b = 0; b < B; b++) {
  x.push(Array.from(corpus.val.subarray(b * T, b * T + T)));
  y.push(Array.from(corpus.val.subarray(b * T + 1, b * T + T + 1)));
}
model.eval();
const loss = await noGrad(() => model.loss(tensor(Int32Array.from(x.flat()), [B, T]), tensor(Int32Array.from(y.flat()), [B, T]))).item();
await writeFile(f.out, JSON.stringify({ x, y, loss, step: 0 }));
console.log(JSON.stringify({ loss, batch: [B, T] }));
