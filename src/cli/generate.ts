// `webslope generate`: samples text from a checkpoint with the KV cache (temperature, top-k,
// seed). A compressed SLoPe checkpoint with adapters is merged first (mergeAdapters), so it
// decodes with the fused sparse kernels.
// Usage: npm run generate -- --ckpt FILE --prompt "ROMEO:" --max-new-tokens N --temperature T --top-k K
import { WebslopeError } from "../errors.ts";
import { SparseLinear } from "../nn/sparse-linear.ts";
import { mergeAdapters } from "../slope/adapters.ts";
import { loadCheckpoint } from "../train/checkpoint.ts";
import { generate as sampleTokens } from "../train/generate.ts";
import { type CliIO, num, parseFlags, UsageError } from "./io.ts";

export const GENERATE_USAGE = `Usage: npm run generate -- --ckpt FILE [--prompt TEXT] [options]

  --ckpt FILE            a checkpoint written by \`npm run train\` (or saveCheckpoint with a tokenizer)
  --prompt TEXT          the text to continue                                          ["\\n"]
  --max-new-tokens N     tokens to sample                                               [500]
  --temperature T        softmax temperature; 0 = greedy                                [0.8]
  --top-k K              sample among the K most likely tokens; 0 = all                 [200]
  --seed S               sampling seed                                                  [1337]
  --help                 this text
`;

const FLAGS = {
  ckpt: { type: "string" }, prompt: { type: "string" }, "max-new-tokens": { type: "string" }, temperature: { type: "string" },
  "top-k": { type: "string" }, seed: { type: "string" }, help: { type: "boolean" },
} as const;

/** Runs the command; returns the exit code (2: bad flags, 1: a bad checkpoint or prompt). */
export async function generate(argv: string[], io: CliIO): Promise<number> {
  let f;
  try {
    f = parseFlags(argv, FLAGS);
    if (f.help) { io.out(GENERATE_USAGE); return 0; }
    if (!f.ckpt) throw new UsageError("--ckpt FILE is required");
  } catch (e) {
    if (e instanceof UsageError) { io.err(`error: ${e.message}\n\n${GENERATE_USAGE}`); return 2; }
    throw e;
  }
  try {
    const maxNewTokens = num("max-new-tokens", f["max-new-tokens"], { min: 0, int: true }) ?? 500;
    const temperature = num("temperature", f.temperature, { min: 0 }) ?? 0.8;
    const topK = num("top-k", f["top-k"], { min: 0, int: true }) ?? 200;
    const seed = num("seed", f.seed, { min: 0, int: true }) ?? 1337;
    const { model, tokenizer } = await loadCheckpoint(f.ckpt);
    try {
      if (!tokenizer) throw new UsageError(`--ckpt ${f.ckpt} has no tokenizer (save it with { tokenizer })`);
      const layers = model.namedModules().map(([, m]) => m).filter((m): m is SparseLinear => m instanceof SparseLinear);
      if (layers.some((l) => l.adapter && l.compress)) mergeAdapters(model);
      const prompt = f.prompt ?? "\n";
      const ids = await sampleTokens(model, tokenizer.encode(prompt), { maxNewTokens, temperature, topK, seed });
      io.out(prompt + tokenizer.decode(ids) + "\n");
    } finally {
      model.dispose();
    }
    return 0;
  } catch (e) {
    if (e instanceof UsageError) { io.err(`error: ${e.message}\n\n${GENERATE_USAGE}`); return 2; }
    if (e instanceof WebslopeError) { io.err(`error: ${e.message}\n`); return 1; }
    throw e;
  }
}
