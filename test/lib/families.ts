// The kernel families a piece of GPU work dispatched (from a profile without timing): how tests
// see which kernel a call chose, e.g. a tuned choice against the rule.
import * as ws from "../../src/index.ts";

export async function familiesOf(fn: () => void): Promise<string[]> {
  const p = await ws.profile(fn, { timing: false });
  return [...new Set(p.events.map((e) => e.family))];
}
