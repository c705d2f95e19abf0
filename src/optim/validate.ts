// The hyperparameter ranges AdamW and SparseAdamW share, checked when an optimizer is made: a
// NaN lr or a beta of 1 would otherwise train silently into NaN weights.
import { ValueError } from "../errors.ts";
import { checkNumber } from "../validate.ts";

export interface AdamHyper {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
}

export function checkAdamOptions(op: string, o: AdamHyper): void {
  checkNumber(op, "lr", o.lr, { min: 0 });
  if (!Array.isArray(o.betas) || o.betas.length !== 2) throw new ValueError(op, `betas must be a pair [beta1, beta2], got ${JSON.stringify(o.betas)}`);
  checkNumber(op, "betas[0]", o.betas[0], { min: 0, below: 1 });
  checkNumber(op, "betas[1]", o.betas[1], { min: 0, below: 1 });
  checkNumber(op, "eps", o.eps, { above: 0 });
  checkNumber(op, "weightDecay", o.weightDecay, { min: 0 });
}
