// Learning-rate schedules as plain functions of the step (set `opt.lr = schedule(step)` each step).

/** Linear warm-up over warmupSteps, then linear decay to 0 at totalSteps (SLoPe's GPT recipe). */
export function linearWarmupDecay(step: number, { lr, warmupSteps, totalSteps }: { lr: number; warmupSteps: number; totalSteps: number }): number {
  if (warmupSteps > 0 && step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  return lr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}

/** Linear warm-up, then cosine decay to minLr at totalSteps. */
export function cosineWarmup(step: number, { lr, warmupSteps, totalSteps, minLr = 0 }: { lr: number; warmupSteps: number; totalSteps: number; minLr?: number }): number {
  if (warmupSteps > 0 && step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  const t = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * t));
}
