// Where the training text comes from, in order: the dev server's local copy (/data/, from
// ../shared/data, development only), the browser's Cache Storage (a previous visit's download),
// then Tiny Shakespeare's public address, downloaded with progress and cached so later visits
// work offline; or any text file the user picks or drops. Never bundled.

export const PUBLIC_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
export const CORPUS_NAME = "tinyshakespeare.txt";
const CACHE = "webslope-corpus";

export interface LoadedCorpus {
  name: string;
  text: string;
  /** How it was found, for the status line. */
  source: string;
}

async function readWithProgress(res: Response, onProgress: (loaded: number, total: number | null) => void): Promise<string> {
  const total = Number(res.headers.get("content-length")) || null;
  if (!res.body) return res.text();
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress(loaded, total);
  }
  const all = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { all.set(c, at); at += c.length; }
  return new TextDecoder().decode(all);
}

/** The default corpus, or null with the reason when no source has it. */
export async function loadDefaultCorpus(onProgress: (msg: string) => void): Promise<LoadedCorpus | { error: string }> {
  try {
    const list = await fetch("/data/index.json");
    const files = list.ok && (list.headers.get("content-type") ?? "").startsWith("application/json") ? ((await list.json()) as string[]) : [];
    const local = files.includes(CORPUS_NAME) ? await fetch(`/data/${CORPUS_NAME}`) : null;
    if (local?.ok && (local.headers.get("content-type") ?? "").startsWith("text/plain")) {
      const text = await local.text();
      if (text.length > 1000) return { name: CORPUS_NAME, text, source: "the dev server's local copy" };
    }
  } catch { /* no dev server copy */ }
  const cache = typeof caches === "undefined" ? null : await caches.open(CACHE).catch(() => null);
  const hit = await cache?.match(PUBLIC_URL);
  if (hit) return { name: CORPUS_NAME, text: await hit.text(), source: "the browser cache (downloaded on an earlier visit)" };
  try {
    onProgress(`Downloading Tiny Shakespeare from ${new URL(PUBLIC_URL).host}…`);
    const res = await fetch(PUBLIC_URL);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const text = await readWithProgress(res, (n, total) =>
      onProgress(`Downloading Tiny Shakespeare: ${(n / 1e6).toFixed(2)}${total ? ` / ${(total / 1e6).toFixed(2)}` : ""} MB…`));
    await cache?.put(PUBLIC_URL, new Response(text, { headers: { "content-type": "text/plain; charset=utf-8" } })).catch(() => {});
    return { name: CORPUS_NAME, text, source: `${new URL(PUBLIC_URL).host} (now cached for offline visits)` };
  } catch (e) {
    return { error: `Could not download Tiny Shakespeare (${(e as Error).message}); you may be offline.` };
  }
}

/** Characters a corpus needs: 10% is held out and must still hold one context window plus two. */
export function minChars(blockSize: number): number {
  return Math.ceil((blockSize + 3) / 0.1) + blockSize;
}
