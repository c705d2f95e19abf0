// Public entry point of webslope: runtime, tensors, ops, autograd scopes and errors.
import "./ops/register.ts";
export { Tensor, type TensorLike } from "./tensor.ts";
export { init, flush, memoryStats, resetPeakMemory, gpu, type GpuContext } from "./gpu/context.ts";
export {
  profile, startProfile, Profile, type ProfileSession, type ProfileOptions, type ProfileEvent, type ProfileRow, type ProfileGrouping,
} from "./gpu/profiler.ts";
export { dawnFlags, type InitOptions, type SubgroupMatrixConfig } from "./gpu/device.ts";
export type { MatrixUnits } from "./gpu/matrix-units.ts";
export type { BufferRange, MemoryStats } from "./gpu/pool.ts";
export type { DType } from "./dtype.ts";
export { tidy, noGrad, keep, isGradEnabled } from "./scope.ts";
export { manualSeed, Generator } from "./random.ts";
export { tensor, zeros, ones, full, zerosLike, onesLike, arange, randn, rand } from "./ops/creation.ts";
export type { CreateOptions, RandomOptions } from "./ops/creation.ts";
export {
  add, sub, mul, div, neg, exp, log, sqrt, rsqrt, tanh, relu, gelu, pow, where, maskedFill, cast, compare,
} from "./ops/elementwise.ts";
export { sum, mean, max, argmax } from "./ops/reduce.ts";
export { reshape, permute, transpose, slice, narrow, concat, split, expand } from "./ops/layout.ts";
export { matmul, type MatmulOptions, setFloat32MatmulPrecision, getFloat32MatmulPrecision, type MatmulPrecision, setMatrixUnitRule, getMatrixUnitRule, type MatrixUnitRule } from "./ops/matmul.ts";
export { softmax, logSoftmax, type SoftmaxOptions } from "./ops/softmax.ts";
export { layerNorm } from "./ops/layernorm.ts";
export { embedding } from "./ops/embedding.ts";
export { crossEntropy, type CrossEntropyOptions, type Reduction } from "./ops/crossentropy.ts";
export { dropout, type DropoutOptions } from "./ops/dropout.ts";
export { scaledDotProductAttention, qkvAttention, setAttentionBackward, setAttentionMatrixUnits, getAttentionMatrixUnits, type AttentionBackward, type AttentionOptions } from "./ops/attention.ts";
export { setAttentionChunkBytes } from "./ops/attention-chunked.ts";
export type { Activation, OpName } from "./autograd/ops.ts";
export * from "./errors.ts";
