// Cross-entropy over the last axis, fused: a row-per-workgroup log-sum-exp + NLL (saving the
// row's log-sum-exp for the backward), a one-workgroup finisher that sums the row losses and
// counts the rows that count (mean = sum / max(count, 1), never NaN), and an elementwise
// backward dlogits = (softmax − onehot(target))·scale with scale from dy (and the count for
// mean). A row is skipped (loss 0, gradient 0, not counted) when its target is ignoreIndex or
// outside [0, C): an out-of-range target cannot be reported without a readback.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { LSE_SHARED, rowLogSumExp, sumReduce } from "./softmax.wgsl.ts";

type F = "f32" | "f16";

export const CE_FINISH_WORKGROUP = 256;
export const CE_GRAD_WORKGROUP = 256;

const VALID = `fn valid_target(t: i32, C: u32, ignore: i32) -> bool {
  return t != ignore && t >= 0 && u32(t) < C;
}`;

/**
 * Per-row loss. Bindings: logits, targets (read), loss, lse (rw, f32 per row).
 * Params: [0]=rows [1]=C [2]=ignoreIndex (i32).
 */
export const crossEntropyRowKernel = kernelFamily("crossEntropyRow", (dtype: F, wg: number) => {
  const g = bindGroup([
    { name: "x", access: "read", type: `array<${dtype}>` },
    { name: "targets", access: "read", type: "array<i32>" },
    { name: "loss", access: "rw", type: "array<f32>" },
    { name: "lseOut", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${LSE_SHARED(wg)}
${VALID}
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= pu(0u)) { return; }
  let C = pu(1u);
  let base = row * C;
${rowLogSumExp(wg, (k) => `f32(x[base + ${k}])`, "C")}
  if (lid.x == 0u) {
    let lse = mx + log(tot);
    let t = targets[row];
    var l: f32 = 0.0;
    if (valid_target(t, C, pi(2u))) { l = lse - f32(x[base + u32(t)]); }
    loss[row] = l;
    lseOut[row] = lse;
  }
}
`;
  return { code, group: g };
});

/**
 * Sum (or mean over counted rows) of the row losses, in a fixed order. Bindings: loss, targets
 * (read), out (rw, one element), count (rw, one f32). Params: [0]=rows [1]=C [2]=ignoreIndex [3]=mean (0/1).
 */
export const crossEntropyFinishKernel = kernelFamily("crossEntropyFinish", (dtype: F) => {
  const wg = CE_FINISH_WORKGROUP;
  const g = bindGroup([
    { name: "loss", access: "read", type: "array<f32>" },
    { name: "targets", access: "read", type: "array<i32>" },
    { name: "out", access: "rw", type: `array<${dtype}>` },
    { name: "count", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${VALID}
var<workgroup> redL: array<f32, ${wg}>;
var<workgroup> redC: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let rows = pu(0u);
  let C = pu(1u);
  var l: f32 = 0.0;
  var n: f32 = 0.0;
  for (var r = lid.x; r < rows; r = r + ${wg}u) {
    l = l + loss[r];
    if (valid_target(targets[r], C, pi(2u))) { n = n + 1.0; }
  }
  redL[lid.x] = l;
  redC[lid.x] = n;
${sumReduce(wg, "redL", "redC")}
  if (lid.x == 0u) {
    var v = redL[0];
    if (pu(3u) != 0u) { v = v / max(redC[0], 1.0); }
    out[0] = ${dtype}(v);
    count[0] = redC[0];
  }
}
`;
  return { code, group: g };
});

/**
 * dlogits[r, j] = (exp(x − lse[r]) − [j = target]) · scale, 0 on skipped rows; scale = dy[r]
 * (none), dy[0] (sum) or dy[0] / max(count, 1) (mean). Bindings: logits, targets, lse, dy,
 * count (read), dx (rw). Params: [0]=rows·C [1]=C [2]=ignoreIndex [3]=mode (0 mean, 1 sum, 2 none).
 */
export const crossEntropyGradKernel = kernelFamily("crossEntropyGrad", (dtype: F) => {
  const wg = CE_GRAD_WORKGROUP;
  const g = bindGroup([
    { name: "x", access: "read", type: `array<${dtype}>` },
    { name: "targets", access: "read", type: "array<i32>" },
    { name: "lse", access: "read", type: "array<f32>" },
    { name: "dy", access: "read", type: `array<${dtype}>` },
    { name: "count", access: "read", type: "array<f32>" },
    { name: "dx", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(wg)}
${VALID}
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
  let C = pu(1u);
  let r = i / C;
  let j = i % C;
  let t = targets[r];
  var v: f32 = 0.0;
  if (valid_target(t, C, pi(2u))) {
    let mode = pu(3u);
    var scale: f32;
    if (mode == 2u) { scale = f32(dy[r]); } else { scale = f32(dy[0]); }
    if (mode == 0u) { scale = scale / max(count[0], 1.0); }
    var p = exp(f32(x[i]) - lse[r]);
    if (u32(t) == j) { p = p - 1.0; }
    v = p * scale;
  }
  dx[i] = ${dtype}(v);
}
`;
  return { code, group: g };
});
