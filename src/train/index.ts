// webslope/train: tokenizer, corpus batches, the Trainer (dense or SLoPe) and text generation.
import "../ops/register.ts";
export { CharTokenizer } from "./tokenizer.ts";
export { Corpus, type Batch } from "./corpus.ts";
export { Trainer, type TrainerOptions, type SlopeOptions, type Precision } from "./trainer.ts";
export { generate, type GenerateOptions } from "./generate.ts";
export {
  checkpointToBytes, checkpointFromBytes, saveCheckpoint, loadCheckpoint, readCheckpointInfo, torchName,
  type CheckpointState, type LoadTarget, type LoadedCheckpoint,
} from "./checkpoint.ts";
