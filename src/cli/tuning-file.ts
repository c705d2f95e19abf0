// `train --tune`'s file: the measured 2:4 kernel choices of a SLoPe run (spmm's and sddmm's tables,
// src/sparse/*-tune.ts) saved as DIR/tuning.json, so a resumed run on the same adapter runs the
// same kernels as the run it continues (no re-measurement, the same rounding). Written atomically
// (a temporary file renamed over it), as the checkpoint is.
import { readFile, rename, writeFile } from "node:fs/promises";
import { clearSpmmTuning, loadSpmmTuning, spmmShapesOf, spmmTuning, type SpmmTuning, tuneSpmmShapes } from "../sparse/spmm-tune.ts";
import { loadSddmmTuning, sddmmShapesOf, sddmmTuning, type SddmmTuning, tuneSddmmShapes } from "../sparse/sddmm-tune.ts";

export interface TuningFile {
  /** The step from which the run used these choices (its first step ran the rules, to find the shapes). */
  fromStep: number;
  spmm: SpmmTuning;
  sddmm: SddmmTuning;
}

/**
 * Loads DIR/tuning.json: "loaded" (both tables apply to this adapter), "absent" (no file), or
 * "other-adapter" (measured elsewhere: nothing loaded). A file that is not a tuning file throws
 * (the ValueError of the table loaders, or a SyntaxError for bad JSON) and leaves both tables as they were.
 */
export async function loadTuningFile(path: string): Promise<"loaded" | "absent" | "other-adapter"> {
  let text: string;
  try { text = await readFile(path, "utf8"); } catch { return "absent"; }
  const t = JSON.parse(text) as TuningFile;
  // both are validated before either is applied: a half-loaded pair would mix two measurements
  if (t?.spmm?.adapter !== t?.sddmm?.adapter) return "other-adapter";
  const saved = spmmTuning();
  if (!loadSpmmTuning(t.spmm)) return "other-adapter";
  try {
    loadSddmmTuning(t.sddmm); // the same adapter as the spmm table, which matched
  } catch (e) {
    clearSpmmTuning(); // back to the spmm table as it was before this file
    loadSpmmTuning(saved);
    throw e;
  }
  return "loaded";
}

/**
 * Runs `step` (one training step) logging its 2:4 product and weight-gradient shapes, tunes each
 * (tuneSpmmShapes, tuneSddmmShapes), writes DIR/tuning.json atomically and returns the file's content.
 */
export async function tuneAndSave(path: string, step: () => void, fromStep: number): Promise<TuningFile> {
  let spmmKeys: string[] = [];
  const sddmmKeys = sddmmShapesOf(() => { spmmKeys = spmmShapesOf(step); });
  await tuneSpmmShapes(spmmKeys);
  await tuneSddmmShapes(sddmmKeys);
  const file: TuningFile = { fromStep, spmm: spmmTuning(), sddmm: sddmmTuning() };
  await writeFile(`${path}.tmp`, JSON.stringify(file, null, 1) + "\n");
  await rename(`${path}.tmp`, path);
  return file;
}
