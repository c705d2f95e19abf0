// Every shader variant compiles cleanly: builds the variants of each kernel family that tests
// may not reach, then asks getCompilationInfo() of every pipeline compiled so far (this file
// is imported last, so that includes every variant the suite launched).
import * as ws from "../../src/index.ts";
import { assert } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { compress24, spmm } from "../../src/slope/index.ts";

test("every compiled shader variant reports no errors or warnings in getCompilationInfo()", async () => {
  const g = ws.gpu();
  // a representative spread of families, in case this case runs alone (a filtered run)
  ws.tidy(() => {
    const x = ws.randn([8, 16], { seed: 1 }), w = ws.randn([16, 16], { seed: 2 });
    x.add(w.sum(0)).gelu().matmul(w, { transB: true }).softmax(-1, { causal: false }).sum();
    ws.layerNorm(x, null, null).permute([1, 0]).max(1);
    spmm(x, compress24(w), null);
  });
  // The matrix-unit attention forward (where init found it): f32 at medium precision and f16, causal, full and dropout.
  if (g.matrixUnits.attention) {
    const prev = ws.getFloat32MatmulPrecision();
    ws.setFloat32MatmulPrecision("medium");
    try {
      ws.tidy(() => {
        const qkv = ws.randn([2, 9, 3 * 32], { seed: 3 });
        ws.qkvAttention(qkv, 2, { causal: true });
        ws.qkvAttention(qkv, 2, { causal: false, dropoutP: 0.1 });
        ws.qkvAttention(qkv.to("f16"), 2, { causal: true });
      });
    } finally {
      ws.setFloat32MatmulPrecision(prev);
    }
    assert(g.pipelines.all().some((p) => p.kernel.key.startsWith("attention_sgmat")), "the matrix-unit attention forward compiled no pipeline");
  }
  const pipelines = g.pipelines.all();
  assert(pipelines.length >= 10, `expected the suite to have compiled many variants, found ${pipelines.length}`);
  const bad: string[] = [];
  for (const p of pipelines) {
    const info = await p.module.getCompilationInfo();
    for (const m of info.messages) if (m.type === "error" || m.type === "warning") bad.push(`${p.kernel.key}: ${m.type} ${m.message} (line ${m.lineNum})`);
  }
  assert(bad.length === 0, `${bad.length} messages:\n${bad.slice(0, 10).join("\n")}`);
  console.log(`checked ${pipelines.length} shader variants`);
});

// Runs last of all: it destroys the device on purpose, then recovers with a fresh init().
test("device loss: the next op raises DeviceLostError, and init() afterwards gives a working device", async () => {
  const g = ws.gpu();
  const t = ws.ones([4]);
  g.device.destroy();
  await g.device.lost;
  let err: unknown = null;
  try { t.add(1); } catch (e) { err = e; }
  assert(err instanceof ws.DeviceLostError, `expected DeviceLostError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
  assert((err as Error).message.includes("init()"), "the message says how to recover");
  const g2 = await ws.init({ gpu: g.info.gpu });
  assert(g2 !== g, "a new context");
  const y = await ws.tensor([1, 2]).add(1).toArray();
  assert(y[0] === 2 && y[1] === 3, "the new device computes");
});
