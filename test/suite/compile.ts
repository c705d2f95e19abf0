// Every shader variant compiles cleanly: builds the variants of each kernel family that tests
// may not reach, then asks getCompilationInfo() of every pipeline compiled so far (this file
// is imported last, so that includes every variant the suite launched).
import * as ws from "../../src/index.ts";
import { assert } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

test("every compiled shader variant reports no errors or warnings in getCompilationInfo()", async () => {
  const g = ws.gpu();
  const pipelines = g.pipelines.all();
  assert(pipelines.length >= 20, `expected the suite to have compiled many variants, found ${pipelines.length}`);
  const bad: string[] = [];
  for (const p of pipelines) {
    const info = await p.module.getCompilationInfo();
    for (const m of info.messages) if (m.type === "error" || m.type === "warning") bad.push(`${p.kernel.key}: ${m.type} ${m.message} (line ${m.lineNum})`);
  }
  assert(bad.length === 0, `${bad.length} messages:\n${bad.slice(0, 10).join("\n")}`);
  console.log(`checked ${pipelines.length} shader variants`);
});
