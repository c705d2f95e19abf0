// The peers a benchmark is measured against, loaded the same way in Node (Dawn through the npm
// `webgpu` package) and Deno (wgpu): TF.js 4.22 with its WebGPU backend and jax-js 0.1.25. Each
// peer sees the runtime's GPU through navigator.gpu, which must exist before the peer's modules
// are evaluated, so they are imported dynamically after setupNavigator(). Every result a peer
// computes is forced: TF.js runs eagerly in queue order, so reading one element of the last
// product waits for all of them; jax-js is lazy, so every product is realized with
// blockUntilReady() (a result disposed unrealized would never be computed).

/** A square-matmul runner of one library: set operands up once, then run batches of products. */
export interface MatmulPeer {
  name: string;
  version: string;
  /** Uploads A and B (N×N, row-major) and returns a batch runner; `run(n)` resolves when all n products are done. */
  prepare(N: number, a: Float32Array, b: Float32Array): Promise<{ run: (n: number) => Promise<void>; dispose: () => void }>;
  /** The product of small matrices, read back, to check the peer computes what we time. */
  check(M: number, K: number, N: number, a: Float32Array, b: Float32Array): Promise<Float32Array>;
}

type AnyObj = Record<string, unknown>;

/**
 * Puts `gpu` at navigator.gpu (Node has no navigator; Deno has one with gpu already). In Deno,
 * TF.js would take its Node platform (Deno defines `process`), which needs `require`; giving it a
 * `window` makes it pick the browser platform, which needs nothing more.
 */
export function setupNavigator(gpu: GPU, globals: AnyObj = {}): void {
  const g = globalThis as AnyObj;
  Object.assign(g, globals);
  const nav = g.navigator as AnyObj | undefined;
  if (!nav) g.navigator = { gpu, userAgent: "node", hardwareConcurrency: 4 };
  else if (!nav.gpu) Object.defineProperty(nav, "gpu", { value: gpu, configurable: true });
  if (typeof (g as { Deno?: unknown }).Deno === "object" && !g.window) g.window = g;
}

export async function tfjsPeer(): Promise<MatmulPeer> {
  const tf = await import("@tensorflow/tfjs-core");
  await import("@tensorflow/tfjs-backend-webgpu");
  if (!(await tf.setBackend("webgpu"))) throw new Error("TF.js: the webgpu backend did not initialise");
  await tf.ready();
  const product = (x: unknown, y: unknown) => tf.matMul(x as never, y as never);
  return {
    name: "tfjs-webgpu",
    version: tf.version_core,
    async prepare(N, a, b) {
      const A = tf.tensor2d(a, [N, N]), B = tf.tensor2d(b, [N, N]);
      return {
        async run(n) {
          let last = null as ReturnType<typeof tf.matMul> | null;
          for (let i = 0; i < n; i++) {
            const c = product(A, B);
            if (last) last.dispose();
            last = c;
          }
          const corner = tf.slice(last!, [0, 0], [1, 1]);
          await corner.data(); // in-order queue: waits for every product above
          corner.dispose();
          last!.dispose();
        },
        dispose() { A.dispose(); B.dispose(); },
      };
    },
    async check(M, K, N, a, b) {
      const A = tf.tensor2d(a, [M, K]), B = tf.tensor2d(b, [K, N]);
      const C = product(A, B);
      const out = (await C.data()) as Float32Array;
      A.dispose(); B.dispose(); C.dispose();
      return out;
    },
  };
}

export async function jaxPeer(): Promise<MatmulPeer> {
  const jax = await import("@jax-js/jax");
  const devices = await jax.init("webgpu");
  if (!devices.includes("webgpu")) throw new Error("jax-js: the webgpu device did not initialise");
  jax.defaultDevice("webgpu");
  const np = jax.numpy;
  const upload = async (x: Float32Array, shape: number[]) => {
    const t = np.array(x).reshape(shape);
    await t.blockUntilReady(); // does not consume t
    return t;
  };
  return {
    name: "jax-js",
    version: "0.1.25",
    async prepare(N, a, b) {
      const A = await upload(a, [N, N]), B = await upload(b, [N, N]);
      return {
        async run(n) {
          const outs = [];
          for (let i = 0; i < n; i++) outs.push(np.matmul(A.ref, B.ref));
          await jax.blockUntilReady(outs); // realizes every product
          for (const c of outs) c.dispose();
        },
        dispose() { A.dispose(); B.dispose(); },
      };
    },
    async check(M, K, N, a, b) {
      const A = await upload(a, [M, K]), B = await upload(b, [K, N]);
      return (await np.matmul(A, B).data()) as Float32Array;
    },
  };
}
