// Reductions over one contiguous block of axes, seen as [outer, R, inner]. Two forms: a
// workgroup tree reduction per output when inner = 1 (the reduced elements are contiguous),
// and one invocation per output looping over R when inner > 1 (reads coalesce across inner).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { enables, kernelFamily, MAIN_ARGS, paramsDecl, storage } from "./kernel.ts";

export const REDUCE_WORKGROUP = 256;
export type ReduceOp = "sum" | "max";

/** Params: [0]=outer [1]=R [2]=inner [3]=scale bits (applied to sums: mean = sum·1/R). */
export const reduceKernel = kernelFamily("reduce", (op: ReduceOp, dtype: "f32" | "f16", contiguous: boolean) => {
  const init = op === "sum" ? "0.0" : "-3.4028234663852886e38";
  const combine = (a: string, b: string) => (op === "sum" ? `${a} + ${b}` : `max(${a}, ${b})`);
  const finish = op === "sum" ? "acc * pf(3u)" : "acc";
  const code = wgsl`${enables(dtype)}
${storage(0, "src", "read", `array<${dtype}>`)}
${storage(1, "dst", "rw", `array<${dtype}>`)}
${paramsDecl(2)}
#if ${contiguous}
var<workgroup> part: array<f32, ${REDUCE_WORKGROUP}>;
@compute @workgroup_size(${REDUCE_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let row = wid.y * nwg.x + wid.x;
  let R = pu(1u);
  let live = row < pu(0u);
  var acc: f32 = ${init};
  if (live) {
    let base = row * R;
    for (var k = lid.x; k < R; k = k + ${REDUCE_WORKGROUP}u) {
      acc = ${combine("acc", "f32(src[base + k])")};
    }
  }
  part[lid.x] = acc;
  workgroupBarrier();
  for (var w = ${REDUCE_WORKGROUP / 2}u; w > 0u; w = w >> 1u) {
    if (lid.x < w) { part[lid.x] = ${combine("part[lid.x]", "part[lid.x + w]")}; }
    workgroupBarrier();
  }
  if (live && lid.x == 0u) {
    let acc = part[0];
    dst[row] = ${dtype}(${finish});
  }
}
#else
@compute @workgroup_size(${REDUCE_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let o = (wid.y * nwg.x + wid.x) * ${REDUCE_WORKGROUP}u + lid.x;
  let R = pu(1u);
  let inner = pu(2u);
  if (o >= pu(0u) * inner) { return; }
  let outerIdx = o / inner;
  let j = o % inner;
  let base = outerIdx * R * inner + j;
  var acc: f32 = ${init};
  for (var k = 0u; k < R; k = k + 1u) {
    acc = ${combine("acc", "f32(src[base + k * inner])")};
  }
  dst[o] = ${dtype}(${finish});
}
#endif
`;
  return { code, bindings: ["read", "rw"], params: true };
});
