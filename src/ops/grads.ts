// The one typed record of backward rules. Its type lists every op of OpAttrs, so an op
// without a rule fails to compile; the rules themselves live next to their ops.
import type { RuleTable } from "../autograd/graph.ts";
import { attentionRules } from "./attention.ts";
import { elementwiseRules } from "./elementwise.ts";
import { layoutRules } from "./layout.ts";
import { matmulRules } from "./matmul.ts";
import { nnRules } from "./nn.ts";
import { reduceRules } from "./reduce.ts";
import { sparseRules } from "../sparse/ops.ts";
import { maskedLinearRules } from "../sparse/masked-linear.ts";

let table: RuleTable | null = null;

/** Built on first use: the op modules import each other in a cycle with Tensor. */
export function backwardRules(): RuleTable {
  return (table ??= {
    ...elementwiseRules,
    ...reduceRules,
    ...layoutRules,
    ...matmulRules,
    ...nnRules,
    ...attentionRules,
    ...sparseRules,
    ...maskedLinearRules,
  });
}
