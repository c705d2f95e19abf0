// Loads the training text: the tiny-Shakespeare corpus served by the dev server at
// /data/tinyshakespeare.txt (from ../shared/data, never bundled), or a file the user picks.

export async function loadDefaultCorpus(): Promise<string | null> {
  try {
    const res = await fetch("/data/tinyshakespeare.txt");
    if (!res.ok) return null;
    const text = await res.text();
    return text.length > 1000 ? text : null;
  } catch {
    return null;
  }
}

export function readFile(file: File): Promise<string> {
  return file.text();
}
