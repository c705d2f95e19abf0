// Finite-difference gradient checks: the GPU backward of an op is compared with central
// differences of its float64 CPU reference, through a random projection of the output.
import { type Tensor, noGrad, tidy } from "../../src/index.ts";
import { assertClose } from "../lib/assert.ts";
import { type Arr, randArr } from "./cpu.ts";
import { fromArr } from "./convert.ts";

export interface GradCheck {
  /** Inputs, as float64 arrays (kept small: 2·numel reference evaluations each). */
  inputs: Arr[];
  /** The op on the GPU. */
  gpu: (xs: Tensor[]) => Tensor;
  /** The same op on float64 arrays. */
  ref: (xs: Arr[]) => Arr;
  /** Which inputs to check (default all). */
  wrt?: number[];
  eps?: number;
  rtol?: number;
  atol?: number;
  seed?: number;
}

export async function gradCheck(c: GradCheck): Promise<void> {
  const wrt = c.wrt ?? c.inputs.map((_, i) => i);
  const eps = c.eps ?? 1e-6;
  const out0 = c.ref(c.inputs);
  const proj = randArr(out0.shape, c.seed ?? 99, -1, 1);
  const loss = (xs: Arr[]) => { const y = c.ref(xs); let s = 0; for (let i = 0; i < y.data.length; i++) s += y.data[i]! * proj.data[i]!; return s; };
  const ts = c.inputs.map((a, i) => fromArr(a, { requiresGrad: wrt.includes(i) }));
  const projT = fromArr(proj);
  tidy(() => { const y = c.gpu(ts); y.mul(projT).sum().backward(); });
  for (const i of wrt) {
    const x = c.inputs[i]!;
    const num = new Float64Array(x.data.length);
    for (let k = 0; k < x.data.length; k++) {
      const orig = x.data[k]!;
      x.data[k] = orig + eps; const lp = loss(c.inputs);
      x.data[k] = orig - eps; const lm = loss(c.inputs);
      x.data[k] = orig;
      num[k] = (lp - lm) / (2 * eps);
    }
    const g = ts[i]!.grad;
    if (!g) throw new Error(`input ${i} received no gradient`);
    assertClose(await g.toArray(), num, { rtol: c.rtol ?? 2e-3, atol: c.atol ?? 2e-4, msg: `d/dinput${i}` });
  }
  noGrad(() => { for (const t of ts) { t.grad?.dispose(); t.dispose(); } projT.dispose(); });
}
