// Bad input gets the typed error that names the op, the shapes and the fix — never a WebGPU
// validation crash or a silent NaN.
import * as ws from "../../src/index.ts";
import { requestDevice } from "../../src/gpu/device.ts";
import { assert, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

test("shape mismatch: ShapeError names the op and both shapes", async () => {
  const a = ws.zeros([2, 3]), b = ws.zeros([4, 3]);
  await assertThrows(() => a.add(b), ws.ShapeError, "add", "[2, 3]", "[4, 3]");
  await assertThrows(() => a.matmul(ws.zeros([4, 5])), ws.ShapeError, "matmul", "[2, 3]", "[4, 5]");
  await assertThrows(() => a.reshape([5]), ws.ShapeError, "reshape", "[2, 3]", "[5]");
  await assertThrows(() => ws.concat([a, ws.zeros([2, 4])], 0), ws.ShapeError, "concat", "[2, 3]", "[2, 4]");
  await assertThrows(() => a.sum(2), ws.ShapeError, "sum", "axis 2");
  await assertThrows(() => a.permute([0, 0]), ws.ShapeError, "permute");
});

test("dtype mismatch: DTypeError names the op and the dtypes", async () => {
  const f = ws.zeros([3]), i = ws.zeros([3], { dtype: "i32" });
  await assertThrows(() => f.add(i), ws.DTypeError, "add", "f32", "i32");
  await assertThrows(() => i.exp(), ws.DTypeError, "exp", "i32");
  await assertThrows(() => ws.zeros([2, 2]).matmul(ws.zeros([2, 2], { dtype: "i32" })), ws.DTypeError, "matmul");
});

test("f16 without shader-f16 is refused with a DTypeError, not a shader crash", async () => {
  await assertThrows(() => ws.tensor([1, 2], { dtype: "f16" }), ws.DTypeError, "shader-f16");
}, { absent: ["shader-f16"] });

test("a disposed tensor: DisposedTensorError on use, in ops and readback", async () => {
  const a = ws.ones([4]);
  a.dispose();
  await assertThrows(() => a.add(1), ws.DisposedTensorError, "disposed");
  await assertThrows(() => a.toArray(), ws.DisposedTensorError, "toArray");
  const b = ws.tidy(() => ws.ones([2]).mul(2));
  const c = ws.tidy(() => { const t = ws.ones([2]); return { keep: b, lost: t.add(0) }; });
  assert(!c.lost.isDisposed && !b.isDisposed, "tidy keeps returned tensors");
  let leaked: ws.Tensor | null = null;
  ws.tidy(() => { leaked = ws.ones([2]); });
  await assertThrows(() => leaked!.sum(), ws.DisposedTensorError, "sum");
});

test("a tensor larger than a storage binding: ResourceLimitError before any allocation", async () => {
  const lim = ws.gpu().limits;
  const cap = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  const elems = Math.floor(cap / 4) + 1;
  const before = ws.memoryStats().liveBytes;
  const err = await assertThrows(() => ws.zeros([elems]), ws.ResourceLimitError, "zeros", `[${elems}]`, "split");
  assert(/maxStorageBufferBindingSize|maxBufferSize/.test(err.message), `names the limit: ${err.message}`);
  await assertThrows(() => ws.zeros([2, Math.ceil(elems / 2)]).dispose(), ws.ResourceLimitError);
  assert(ws.memoryStats().liveBytes === before, "nothing was allocated");
});

test("no WebGPU: WebGPUUnavailableError names the runtime and how to enable it", async () => {
  const noAdapter = { requestAdapter: async () => null } as unknown as GPU;
  const err = await assertThrows(() => requestDevice({ gpu: noAdapter }), ws.WebGPUUnavailableError, "requestAdapter");
  assert(/Deno|Node|browser/.test(err.message), "names the runtime");
  if ((err as ws.WebGPUUnavailableError).runtime === "Node.js") {
    // Node's Dawn without a driver: the message names the ICD variable and SwiftShader's ICD path
    assert(err.message.includes("VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json"), `names the ICD path: ${err.message}`);
  }
});

test("backward misuse: AutogradError for a non-scalar without grad and for a freed graph", async () => {
  const w = ws.ones([3], { requiresGrad: true });
  const y = w.mul(2);
  await assertThrows(() => y.backward(), ws.AutogradError, "[3]");
  const l = w.mul(w).sum();
  l.backward();
  await assertThrows(() => l.backward(), ws.AutogradError, "freed");
  await assertThrows(() => ws.zeros([2]).sum().backward(), ws.AutogradError, "does not require grad");
});
