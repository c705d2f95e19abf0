// The autograd tape: each op run with grad enabled records a node (its op, saved tensors,
// attributes and the edges to its inputs). Nodes are reference counted, so a graph that is
// never backpropagated (eval without noGrad) is freed as soon as its tensors are disposed.
// The rules it runs come from the table in ./rules.ts, which the op modules fill.
import { AutogradError } from "../errors.ts";
import { endOp, isProfiling, setOpLabel } from "../gpu/profiler.ts";
import { isGradEnabled, keep, noGrad } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import type { OpAttrs, OpName, OpSaved, SavedOf } from "./ops.ts";
import { type NodeCtx, type Rule, ruleFor, tapeKernels } from "./rules.ts";

type Edge = { node: GraphNode } | { leaf: Tensor } | null;

let nextNodeId = 1;

export class GraphNode {
  readonly id = nextNodeId++;
  refs = 0;
  released = false;
  constructor(
    readonly op: OpName,
    readonly edges: Edge[],
    readonly ctx: NodeCtx<OpName>,
  ) {
    for (const e of edges) if (e && "node" in e) e.node.refs++;
  }

  /** Drops one reference; at zero the saved tensors and input edges are released. */
  unref(): void {
    if (--this.refs <= 0) this.release();
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    for (const t of Object.values(this.ctx.saved) as (Tensor | undefined)[]) t?.dispose();
    for (const e of this.edges) if (e && "node" in e) e.node.unref();
  }
}

/**
 * Records `op` producing `out` from `inputs` when any input requires grad. The `saved` record
 * (the op's OpSaved entry; none for an op that saves nothing) is aliased tensor by tensor (they
 * survive the user disposing the originals) and released with the node.
 */
export function record<K extends OpName>(
  op: K,
  inputs: readonly (Tensor | null)[],
  out: Tensor,
  attrs: OpAttrs[K],
  ...savedArg: K extends keyof OpSaved ? [saved: SavedOf<K>] : []
): void {
  endOp(op);
  const needsGrad = inputs.map((t) => !!t && t.requiresGrad);
  if (!needsGrad.some(Boolean)) return;
  const edges: Edge[] = inputs.map((t, i) => {
    if (!t || !needsGrad[i]) return null;
    const node = t.gradFn;
    return node ? { node } : { leaf: t };
  });
  const ctx: NodeCtx<K> = {
    attrs,
    saved: aliasSaved((savedArg[0] ?? {}) as Record<string, Tensor | undefined>) as SavedOf<K>,
    inputShapes: inputs.map((t) => t?.shape ?? []),
    needsGrad,
  };
  out.setGradFn(new GraphNode(op, edges, ctx as unknown as NodeCtx<OpName>));
}

function aliasSaved(saved: Record<string, Tensor | undefined>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(saved)) if (t) out[name] = keep(t.alias());
  return out;
}

/**
 * Tensor.backward(): backpropagates from `root`; leaf tensors with requiresGrad accumulate into
 * `.grad`. Without `grad` the root must hold one element (the loss), like PyTorch.
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!isGradEnabled()) throw new AutogradError("backward() inside noGrad()");
  const k = tapeKernels();
  let g = grad;
  if (!g) {
    if (root.size !== 1) {
      throw new AutogradError(`backward(): the tensor has shape [${root.shape.join(", ")}]; pass a gradient of that shape or call it on a scalar`);
    }
    g = k.fillLike(root, 1);
  } else if (g.shape.join() !== root.shape.join()) {
    throw new AutogradError(`backward(grad): grad has shape [${g.shape.join(", ")}], the tensor [${root.shape.join(", ")}]`);
  }
  const seed = grad ? g.alias() : g;
  keep(seed);
  runBackward(root, seed, (leaf, gi) => leaf.accumulateGrad(gi));
  seed.dispose();
}

/** Runs the backward pass from `root` and frees the graph (PyTorch's retain_graph=False). */
function runBackward(root: Tensor, grad: Tensor, accumulate: (leaf: Tensor, g: Tensor) => void): void {
  endOp("backward"); // the seed gradient
  const rootNode = root.gradFn;
  if (!rootNode) {
    if (root.requiresGrad) { accumulate(root, grad); return; }
    throw new AutogradError("backward(): the tensor does not require grad (no input had requiresGrad, or it was made under noGrad())");
  }
  if (rootNode.released) {
    throw new AutogradError("backward(): the graph was already freed (backward was called before, or its tensors were disposed)");
  }
  // Topological order: count, for each node, the edges pointing to it from nodes reachable from the root.
  const pending = new Map<GraphNode, number>();
  const stack = [rootNode];
  const seen = new Set([rootNode]);
  while (stack.length) {
    const n = stack.pop()!;
    for (const e of n.edges) {
      if (e && "node" in e) {
        pending.set(e.node, (pending.get(e.node) ?? 0) + 1);
        if (!seen.has(e.node)) { seen.add(e.node); stack.push(e.node); }
      }
    }
  }
  // Hold every reachable node while the pass runs: releasing a processed node unrefs its inputs.
  for (const n of seen) n.refs++;
  const grads = new Map<GraphNode, Tensor>([[rootNode, grad]]);
  const ready = [rootNode];
  try {
  noGrad(() => {
    while (ready.length) {
      const node = ready.pop()!;
      const g = grads.get(node)!;
      grads.delete(node);
      if (node.released) throw new AutogradError(`backward(): the graph through ${node.op} was already freed`);
      const rule = ruleFor(node.op) as Rule<OpName>;
      if (isProfiling()) setOpLabel(`${node.op}.backward`);
      // Rules may hand back g itself or one tensor for two inputs; alias those so each is owned once.
      const inGrads = rule(g, node.ctx).map((t, k, all) => (t && (t === g || all.indexOf(t) !== k) ? t.alias() : t));
      if (g !== grad) g.dispose();
      node.edges.forEach((e, i) => {
        const gi = inGrads[i];
        if (!e) { if (gi && gi !== g) gi.dispose(); return; }
        if (!gi) throw new AutogradError(`backward rule of ${node.op} returned no gradient for input ${i}`);
        if ("leaf" in e) { accumulate(e.leaf, gi); return; }
        const prev = grads.get(e.node);
        if (prev) { grads.set(e.node, tapeKernels().add(prev, gi)); prev.dispose(); gi.dispose(); }
        else grads.set(e.node, gi);
        const left = pending.get(e.node)! - 1;
        pending.set(e.node, left);
        if (left === 0) ready.push(e.node);
      });
      node.release();
    }
  });
  } finally {
    setOpLabel(null);
    for (const g of grads.values()) g.dispose();
    for (const n of seen) n.unref();
  }
}
