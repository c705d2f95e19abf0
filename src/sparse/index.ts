// The sparse core of SLoPe: the N:M format (sparse24.ts), the double-pruned transpose
// (double-prune.ts), spmm (spmm.ts), sddmm (sddmm.ts), their measured kernel choices (spmm-tune.ts,
// sddmm-tune.ts, sharing tuning.ts) and the sparseLinear autograd op (ops.ts).
import "../ops/register.ts";
export {
  compress24, decompress24, metaWords, parsePattern, Sparse24,
  type CompressOptions, type NM, type Pattern, type SparseLike,
} from "./sparse24.ts";
export { doublePrune, refreshTranspose, repruneTranspose } from "./double-prune.ts";
export { setSpmmKernel, spmm, type SpmmOptions } from "./spmm.ts";
export { clearSpmmTuning, loadSpmmTuning, spmmCandidates, spmmShapesOf, spmmTuning, tuneSpmm, tuneSpmmShapes, type SpmmChoice, type SpmmTuneOptions, type SpmmTuneResult, type SpmmTuning } from "./spmm-tune.ts";
export type { LanesVariant } from "../../shaders/spmm-lanes.wgsl.ts";
export { sddmm, setSddmmMethod, type SddmmMethod, type SddmmOptions } from "./sddmm.ts";
export { clearSddmmTuning, loadSddmmTuning, sddmmCandidates, sddmmShapesOf, sddmmTuning, tuneSddmm, tuneSddmmShapes, type SddmmChoice, type SddmmTuneOptions, type SddmmTuneResult, type SddmmTuning } from "./sddmm-tune.ts";
export type { TuneClock, TuningTable } from "./tuning.ts";
export type { SddmmTile } from "../../shaders/sddmm.wgsl.ts";
export { SDDMM_LANES, type SddmmLanesVariant } from "../../shaders/sddmm-lanes.wgsl.ts";
export type { ExpandTile } from "../../shaders/spmm.wgsl.ts";
export { sparseLinear } from "./ops.ts";
export { fusedDecodeApplies, fusedDecodeWins, mergedLinear, type MergedLinearOptions } from "./merged-linear.ts";
export { compressVector, sddmmVector, spmmVector, VECTOR_BLOCK, type VectorOptions, type VectorSddmmOptions } from "./vector24.ts";
export type { VectorTile } from "../../shaders/vector24.wgsl.ts";
