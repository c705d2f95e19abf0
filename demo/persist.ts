// The autosave, in IndexedDB (through idb): the latest checkpoint bytes of every run, the corpus
// text they train on, and a small summary the page shows before restoring. Written by the worker
// every N steps and on pause, so a reload (or a lost device) resumes where the run was.
import { openDB, type IDBPDatabase } from "idb";
import type { AutosaveSummary, DemoConfig } from "./protocol.ts";

export interface Autosave {
  summary: AutosaveSummary;
  config: DemoConfig;
  runs: Uint8Array[];
}

const DB = "webslope-demo", STORE = "autosave";
let db: Promise<IDBPDatabase> | null = null;

function open(): Promise<IDBPDatabase> {
  db ??= openDB(DB, 1, { upgrade: (d) => { d.createObjectStore(STORE); } });
  return db;
}

export async function saveAutosave(a: Autosave): Promise<void> {
  await (await open()).put(STORE, a, "current");
}

/** Stores the corpus once per run (the checkpoints reference it by name). */
export async function saveCorpus(name: string, text: string): Promise<void> {
  await (await open()).put(STORE, { name, text }, "corpus");
}

export async function loadAutosave(): Promise<{ save: Autosave; text: string } | null> {
  const d = await open();
  const save = (await d.get(STORE, "current")) as Autosave | undefined;
  const corpus = (await d.get(STORE, "corpus")) as { name: string; text: string } | undefined;
  if (!save || !corpus || corpus.name !== save.summary.corpusName) return null;
  return { save, text: corpus.text };
}

export async function clearAutosave(): Promise<void> {
  await (await open()).delete(STORE, "current");
}
