// Small models shared by the SLoPe and adapter tests: two SparseLinear layers d → h → d built
// from seeded dense weights (GELU fused after the first).
import * as ws from "../../src/index.ts";
import { Module, SparseLinear } from "../../src/nn/index.ts";

export class TwoLayer extends Module {
  l1: SparseLinear;
  l2: SparseLinear;
  constructor(d: number, h: number, { compress = true, seed = 11, bias1Std = 0 } = {}) {
    super();
    const w1 = ws.randn([h, d], { seed, std: 0.3 }), w2 = ws.randn([d, h], { seed: seed + 1, std: 0.3 });
    const b1 = bias1Std ? ws.randn([h], { seed: seed + 2, std: bias1Std }) : ws.zeros([h]);
    this.l1 = this.module("l1", new SparseLinear(d, h, w1, b1, { compress, activation: "gelu" }));
    this.l2 = this.module("l2", new SparseLinear(h, d, w2, ws.zeros([d]), { compress }));
    w1.dispose(); w2.dispose();
  }
  forward(x: ws.Tensor): ws.Tensor {
    const h = this.l1.forward(x);
    const y = this.l2.forward(h);
    h.dispose();
    return y;
  }
}
