// The CLI (issue 10), in-process: `train --config tiny` end to end (metrics JSONL, checkpoints,
// summary), an interrupted run (--until) resumed with --resume gives the uninterrupted run's
// losses bitwise, `generate` reads the checkpoint, bad flags exit 2 with the usage.
import { assert, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

type Cmd = (argv: string[], io: { out(s: string): void; err(s: string): void; tty: boolean }) => Promise<number>;

async function load(): Promise<{ train: Cmd; generate: Cmd; fs: typeof import("node:fs/promises"); tmp: string; join: (...p: string[]) => string }> {
  // Specifiers in variables: the browser bundler never sees the CLI (node:util, cli-progress).
  const [t, g, fs, os, path] = await Promise.all(["../../src/cli/train.ts", "../../src/cli/generate.ts", "node:fs/promises", "node:os", "node:path"]
    .map((m) => import(/* @vite-ignore */ m)));
  return { train: t.train, generate: g.generate, fs, tmp: os.tmpdir(), join: path.join };
}

const capture = () => {
  const o = { out: "", err: "", tty: false };
  return { io: { out: (s: string) => { o.out += s; }, err: (s: string) => { o.err += s; }, tty: false }, o };
};

test("CLI: train --config tiny end to end (metrics JSONL, checkpoints), --until + --resume equals uninterrupted (also with adapters added on resume), generate reads it, bad flags exit 2 (files and 16 steps: Deno only)", async () => {
  const { train, generate, fs, tmp, join } = await load();
  const dir = await fs.mkdtemp(join(tmp, "webslope-cli-"));
  try {
    const data = join(dir, "data.txt");
    await fs.writeFile(data, "ROMEO: but soft, what light through yonder window breaks? it is the east. ".repeat(40));
    const args = (out: string) => ["--mode", "slope", "--adapter-rank", "4", "--mask-change-freq", "2", "--config", "tiny", "--steps", "8",
      "--data", data, "--out", out, "--checkpoint-every", "4", "--eval-every", "4", "--eval-batches", "1"];
    const a = capture();
    assertEquals(await train(args(join(dir, "a")), a.io), 0, `train exit code (${a.o.err})`);
    const lines = (await fs.readFile(join(dir, "a", "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines.map((l) => l.step).join(), "0,1,2,3,4,5,6,7", "one metrics line per step");
    for (const l of lines) for (const k of ["loss", "valLoss", "lr", "tokensPerSec", "liveBytes"]) assert(k in l, `metrics has ${k}`);
    assert(typeof lines[3].valLoss === "number" && lines[2].valLoss === null, "valLoss at the eval steps");
    const summary = JSON.parse(await fs.readFile(join(dir, "a", "summary.json"), "utf8"));
    assertEquals(summary.steps, 8);

    const b = capture();
    assertEquals(await train([...args(join(dir, "b")), "--until", "4"], b.io), 0, b.o.err);
    assertEquals(await train(["--resume", "--data", data, "--out", join(dir, "b"), "--checkpoint-every", "4", "--eval-every", "4", "--eval-batches", "1"], b.io), 0, b.o.err);
    const linesB = (await fs.readFile(join(dir, "b", "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(linesB.map((l) => l.loss).join(), lines.map((l) => l.loss).join(), "resumed losses equal the uninterrupted run's");

    // Lazy adapters added on --resume to a SLoPe run saved without them, before their entry step
    // (floor(0.99 · 8) = 7): the same losses as the run started with them.
    const c = capture();
    const noAdapters = args(join(dir, "c")).filter((x, i, all) => x !== "--adapter-rank" && all[i - 1] !== "--adapter-rank");
    assertEquals(await train([...noAdapters, "--until", "7"], c.io), 0, c.o.err);
    assertEquals(await train(["--resume", "--adapter-rank", "4", "--data", data, "--out", join(dir, "c"), "--checkpoint-every", "4", "--eval-every", "4", "--eval-batches", "1"], c.io), 0, c.o.err);
    const c0 = capture();
    assertEquals(await train([...args(join(dir, "c0")).filter((x, i, all) => x !== "--adapter-rank" && all[i - 1] !== "--adapter-rank")], c0.io), 0, c0.o.err);
    const linesC = (await fs.readFile(join(dir, "c", "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(linesC.map((l) => l.loss).join(), lines.map((l) => l.loss).join(), "adapters added on resume: the losses of the run started with them");
    assertEquals(JSON.parse(await fs.readFile(join(dir, "c", "summary.json"), "utf8")).mode, "slope", "a resumed SLoPe run says slope");
    for (const [argv, frag, out] of [
      [["--resume", "--adapter-rank", "4"], "already has lazy adapters"], [["--resume", "--mode", "dense"], "differs from"],
      [["--resume", "--adapter-rank", "4"], "past the adapters' entry step 7", "c0"],
    ] as [string[], string, string?][]) {
      const e = capture();
      assertEquals(await train([...argv, "--data", data, "--out", join(dir, out ?? "b")], e.io), 2, `exit code of ${argv.join(" ")}`);
      assert(e.o.err.includes(frag), `"${frag}" in: ${e.o.err}`);
    }

    // --pattern vector: the vector-wise 2:4 run trains and says so in its saved options
    const v = capture();
    assertEquals(await train(["--mode", "slope", "--pattern", "vector", "--vector-block", "64", "--config", "tiny", "--steps", "4", "--data", data,
      "--out", join(dir, "v"), "--eval-every", "4", "--eval-batches", "1"], v.io), 0, v.o.err);
    const sv = JSON.parse(await fs.readFile(join(dir, "v", "summary.json"), "utf8"));
    assert(Number.isFinite(sv.valLoss), `vector-wise run valLoss ${sv.valLoss}`);

    const g = capture();
    assertEquals(await generate(["--ckpt", join(dir, "a", "ckpt.safetensors"), "--prompt", "ROMEO:", "--max-new-tokens", "12", "--temperature", "0"], g.io), 0, g.o.err);
    assert(g.o.out.startsWith("ROMEO:") && [...g.o.out].length === 6 + 12 + 1, `prompt + 12 tokens + newline: ${JSON.stringify(g.o.out)}`);

    for (const [cmd, argv, frag] of [
      [train, ["--bogus"], "Unknown option"], [train, ["--mode", "sparse", "--data", data, "--out", dir], "--mode must be dense or slope"],
      [train, ["--steps", "x", "--data", data, "--out", dir], "--steps must be an integer"],
      [train, ["--precision", "bf16", "--data", data, "--out", dir], "--precision must be f32 or mixed-f16"],
      [train, ["--pattern", "vector", "--data", data, "--out", dir], "SLoPe options"],
      [train, ["--mode", "slope", "--pattern", "1:2", "--data", data, "--out", dir], "--pattern must be 2:4 or vector"],
      [train, ["--mode", "slope", "--vector-block", "128", "--data", data, "--out", dir], "--vector-block needs --pattern vector"],
      [generate, ["--ckpt", "x", "--max-new-tokens", "-1"], "--max-new-tokens"], [generate, [], "--ckpt FILE is required"],
    ] as [Cmd, string[], string][]) {
      const c = capture();
      assertEquals(await cmd(argv, c.io), 2, `exit code of ${argv.join(" ")}`);
      assert(c.o.err.includes(frag) && c.o.err.includes("Usage: npm run"), `usage and "${frag}" in: ${c.o.err}`);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}, { runtimes: ["deno"] });

test("CLI: train --precision mixed-f16 logs the loss scale, says once that the matmuls stay f32 without matrix units, and resumes with the scaler (Deno only)", async () => {
  const { train, fs, tmp, join } = await load();
  const dir = await fs.mkdtemp(join(tmp, "webslope-cli-mixed-"));
  try {
    const data = join(dir, "data.txt");
    await fs.writeFile(data, "ROMEO: but soft, what light through yonder window breaks? it is the east. ".repeat(40));
    const args = (out: string) => ["--precision", "mixed-f16", "--config", "tiny", "--steps", "6", "--data", data, "--out", out, "--checkpoint-every", "3", "--eval-every", "3", "--eval-batches", "1"];
    const a = capture();
    assertEquals(await train(args(join(dir, "a")), a.io), 0, a.o.err);
    const summary = JSON.parse(await fs.readFile(join(dir, "a", "summary.json"), "utf8"));
    assertEquals(summary.trainer.precision, "mixed-f16");
    assertEquals(summary.scaler.scale, 2 ** 16);
    assertEquals(summary.scaler.skipped, 0);
    const lines = (await fs.readFile(join(dir, "a", "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assert(lines.slice(2).every((l) => l.lossScale === 2 ** 16 && l.skippedSteps === 0), `lossScale in metrics: ${JSON.stringify(lines.at(-1))}`);
    const notes = a.o.err.split("no usable matrix units").length - 1;
    assertEquals(notes, summary.precisionWarning ? 1 : 0, `the fallback is said once: ${a.o.err}`);
    const b = capture();
    assertEquals(await train([...args(join(dir, "b")), "--until", "3"], b.io), 0, b.o.err);
    assertEquals(await train(["--resume", "--data", data, "--out", join(dir, "b"), "--checkpoint-every", "3", "--eval-every", "3", "--eval-batches", "1"], b.io), 0, b.o.err);
    const linesB = (await fs.readFile(join(dir, "b", "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(linesB.map((l) => l.loss).join(), lines.map((l) => l.loss).join(), "resumed mixed losses equal the uninterrupted run's");
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}, { runtimes: ["deno"] });

test("CLI: train --tune (SLoPe) measures the 2:4 kernels after the first step into DIR/tuning.json, trains to the untuned run's losses up to rounding, a resume reuses the file; dense refused, a bad file typed (Deno only: tuning compiles every candidate)", async () => {
  const { train, fs, tmp, join } = await load();
  const dir = await fs.mkdtemp(join(tmp, "webslope-cli-tune-"));
  try {
    const data = join(dir, "data.txt");
    await fs.writeFile(data, "ROMEO: but soft, what light through yonder window breaks? it is the east. ".repeat(40));
    const args = (out: string) => ["--mode", "slope", "--config", "tiny", "--steps", "4", "--data", data, "--out", out, "--checkpoint-every", "2", "--eval-every", "4", "--eval-batches", "1"];
    const losses = async (out: string) => (await fs.readFile(join(dir, out, "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l).loss as number);
    const plain = capture();
    assertEquals(await train(args(join(dir, "plain")), plain.io), 0, plain.o.err);
    const t = capture();
    assertEquals(await train([...args(join(dir, "tuned")), "--tune", "--until", "2"], t.io), 0, t.o.err);
    assert(/tuned \d+ spmm and \d+ sddmm shapes/.test(t.o.err), `says what it tuned: ${t.o.err}`);
    const file = await fs.readFile(join(dir, "tuned", "tuning.json"), "utf8");
    const tf = JSON.parse(file);
    assertEquals(tf.fromStep, 1);
    assert(Object.keys(tf.spmm.entries).length > 0 && Object.keys(tf.sddmm.entries).length > 0, `both tables filled: ${file}`);
    assert(Object.keys(tf.sddmm.entries).every((k) => /^256x\d+x\d+\|f32\|highest$/.test(k)), `sddmm keys at the step's 8 × 32 rows: ${Object.keys(tf.sddmm.entries)}`);
    const r = capture();
    assertEquals(await train(["--resume", "--tune", "--data", data, "--out", join(dir, "tuned"), "--checkpoint-every", "2", "--eval-every", "4", "--eval-batches", "1"], r.io), 0, r.o.err);
    assert(r.o.err.includes("kernel choices:") && !r.o.err.includes("tuned "), `the resume loads the table and does not tune again: ${r.o.err}`);
    assertEquals(await fs.readFile(join(dir, "tuned", "tuning.json"), "utf8"), file, "the file is unchanged");
    const [a, b] = [await losses("plain"), await losses("tuned")];
    assertEquals(b.length, 4);
    for (let i = 0; i < 4; i++) assert(Math.abs(a[i]! - b[i]!) <= 1e-4 * Math.abs(a[i]!), `step ${i}: tuned loss ${b[i]} against ${a[i]}`);
    const d = capture();
    assertEquals(await train(["--config", "tiny", "--steps", "2", "--data", data, "--out", join(dir, "dense"), "--tune"], d.io), 2);
    assert(d.o.err.includes("--tune measures the 2:4 kernels"), d.o.err);
    await fs.mkdir(join(dir, "bad"));
    await fs.writeFile(join(dir, "bad", "tuning.json"), JSON.stringify({ fromStep: 1, spmm: { adapter: 1 }, sddmm: { adapter: 1 } }));
    const e = capture();
    assertEquals(await train(args(join(dir, "bad")), e.io), 2);
    assert(e.o.err.includes("is not a tuning file"), e.o.err);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}, { runtimes: ["deno"] });
