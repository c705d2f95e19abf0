// webslope/optim: AdamW, gradient clipping and learning-rate schedules and SLoPe's SparseAdamW.
import "../ops/register.ts";
export { AdamW, adamwUpdate, type AdamWOptions, type AdamWStateDict, type ParamGroup } from "./adamw.ts";
export { clipGradNorm } from "./clip.ts";
export { GradScaler, type GradScalerOptions, type GradScalerState } from "./grad-scaler.ts";
export { SparseAdamW, type SparseAdamWOptions } from "./sparse-adamw.ts";
export { linearWarmupDecay, cosineWarmup } from "./schedule.ts";
