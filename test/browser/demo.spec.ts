// The demo page tried as a new user on a fresh clone would, in headless Chromium on SwiftShader:
// no dev-server corpus (/data/ is empty), the public Tiny Shakespeare address routed to a local
// copy (the test machine has no internet; a synthetic text when no copy exists), the tiny preset
// trained in the worker, then reload → autosave resume, a lost device → resume from the autosave,
// and download → upload into a fresh page.
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, expect, type Page, test } from "@playwright/test";
import { PUBLIC_URL } from "../../demo/corpus.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const STEPS = 40, TRAIN_TO = 30;

/** The corpus the routed public address serves: the team's copy, one beside the clone, or a made-up text. */
function corpusText(): { text: string; from: string } {
  for (const p of [process.env.WEBSLOPE_DATA_DIR ?? "", "/work/shared/data", resolve(root, "../shared/data")]) {
    const f = resolve(p, "tinyshakespeare.txt");
    if (p && existsSync(f)) return { text: readFileSync(f, "utf8"), from: f };
  }
  // a synthetic play: a small vocabulary in a repetitive structure a tiny model learns quickly
  const names = ["ROMEO", "JULIET", "NURSE", "MERCUTIO"], words = "the love night of my and thou art that is to be not sweet".split(" ");
  let s = "", x = 7;
  while (s.length < 300_000) {
    x = (x * 1103515245 + 12345) % 2147483648;
    s += `${names[x % 4]}:\n${Array.from({ length: 8 + (x % 9) }, (_, i) => words[(x >> (i + 3)) % words.length]).join(" ")}.\n\n`;
  }
  return { text: s, from: "synthetic" };
}

const CORPUS = corpusText();

async function routeCorpus(ctx: BrowserContext): Promise<void> {
  // a fresh clone: the dev server has no ../shared/data, so its listing is empty
  await ctx.route("**/data/index.json", (r) => r.fulfill({ status: 200, contentType: "application/json", body: "[]" }));
  await ctx.route(PUBLIC_URL, (r) => r.fulfill({ status: 200, contentType: "text/plain; charset=utf-8", body: CORPUS.text }));
}

function watchErrors(page: Page, errors: string[]): void {
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
}

const step = (page: Page) => page.evaluate(() => (window as unknown as { demo: { step: number } }).demo.step);
const demoState = (page: Page) => page.evaluate(() => (window as unknown as { demo: { state: string } }).demo.state);

async function waitForStep(page: Page, atLeast: number, timeout: number): Promise<void> {
  await page.waitForFunction((n) => (window as unknown as { demo: { step: number } }).demo.step >= n, atLeast, { timeout, polling: 250 });
}

/** Worst delay between a real key press and its handler on the main thread, over `n` presses. */
async function inputLatency(page: Page, n: number): Promise<number> {
  await page.evaluate(() => {
    const w = window as unknown as { lags: number[] };
    w.lags = [];
    document.addEventListener("keydown", (e) => w.lags.push(performance.now() - e.timeStamp));
  });
  for (let i = 0; i < n; i++) { await page.keyboard.press("Shift"); await page.waitForTimeout(150); }
  const lags = await page.evaluate(() => (window as unknown as { lags: number[] }).lags);
  expect(lags.length).toBe(n);
  return Math.max(...lags);
}

test("demo: fresh clone, tiny preset in a worker, autosave resume, device loss, checkpoint download and upload", async ({ browser }, info) => {
  test.setTimeout(8 * 60_000);
  console.log(`demo corpus: ${CORPUS.from} (${CORPUS.text.length} characters)`);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 }, acceptDownloads: true });
  await routeCorpus(ctx);
  const errors: string[] = [];
  const page = await ctx.newPage();
  watchErrors(page, errors);
  const t0 = Date.now();
  const lap = (what: string) => console.log(`demo: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  await page.goto("/demo/");
  await expect(page.locator("#data-status")).toContainText("now cached", { timeout: 60_000 });
  await expect(page.locator("#gpu-info")).toContainText("software adapter");
  await expect(page.locator("#preset")).toHaveValue("tiny");
  await expect(page.locator("#params")).toContainText("parameters");
  await expect(page.locator("#start")).toBeEnabled({ timeout: 60_000 });
  await page.fill("#steps", String(STEPS));
  await page.fill("#sample-every", "15");
  await page.fill("#autosave-every", "10");
  await page.click("#start");
  await expect(page.locator("#status")).toHaveAttribute("data-phase", /compiling|training/, { timeout: 60_000 });
  lap("started");

  await waitForStep(page, 3, 120_000);
  const lag = await inputLatency(page, 6);
  console.log(`demo: worst input delay while training ${lag.toFixed(1)} ms`);
  expect(lag).toBeLessThan(100);

  await waitForStep(page, TRAIN_TO, 300_000);
  lap(`step ${TRAIN_TO}`);
  await page.locator("#samples").scrollIntoViewIfNeeded();
  await page.screenshot({ path: info.outputPath("demo-training.png"), fullPage: true });
  await page.click("#pause");
  await expect.poll(() => demoState(page), { timeout: 60_000 }).toBe("paused");
  const saved = await step(page);
  lap(`paused at ${saved}`);

  // the loss falls, the legend shows numbers, samples appear
  for (const i of [0, 1]) {
    const curve = await page.evaluate((k) => (window as unknown as { demo: { curve(i: number): [number, number][] } }).demo.curve(k), i);
    expect(curve.length).toBeGreaterThanOrEqual(TRAIN_TO);
    const [first, last] = [curve[0]![1], curve.at(-1)![1]];
    console.log(`demo: run ${i} smoothed loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
    expect(last).toBeLessThan(first - 0.1);
  }
  const legend = await page.evaluate(() => (window as unknown as { demo: { legend(): string } }).demo.legend());
  // (uPlot draws the label's colon with CSS: textContent has none)
  expect(legend).toMatch(/Dense train\s*\d+\.\d{3}/);
  expect(legend).toMatch(/Dense val\s*\d+\.\d{3}/);
  expect(legend).toMatch(/SLoPe[^%]*% train\s*\d+\.\d{3}/);
  expect(legend).toMatch(/SLoPe[^%]*% val\s*\d+\.\d{3}/);
  expect(legend).not.toMatch(/--|…/);
  for (const i of [0, 1]) {
    await expect(page.locator(`#sample-${i}`)).toHaveAttribute("data-step", "30");
    expect((await page.locator(`#sample-${i}`).textContent())!.length).toBeGreaterThan(10);
  }
  await expect(page.locator("#card-1")).toContainText("W_RCᵀ");
  await expect(page.locator("#profile")).toContainText("dispatches");

  // a reload resumes from the autosave at the saved step, with its curves, and trains on
  await page.reload();
  await expect(page.locator("#status")).toContainText(`restored the autosave at step ${saved}`, { timeout: 120_000 });
  expect(await step(page)).toBe(saved);
  const restored = await page.evaluate(() => (window as unknown as { demo: { curve(i: number): unknown[] } }).demo.curve(0).length);
  expect(restored).toBe(saved);
  await expect(page.locator("#data-status")).toContainText("browser cache");
  await page.click("#resume");
  await waitForStep(page, saved + 1, 120_000);
  lap("resumed after reload");

  // download a checkpoint (mid-training), upload it into a fresh page (no autosave there)
  const dl = page.waitForEvent("download");
  await page.click('[data-download="0"]');
  const file = await dl;
  const ckpt = info.outputPath(file.suggestedFilename());
  await file.saveAs(ckpt);
  const ckptStep = Number(/step(\d+)/.exec(file.suggestedFilename())![1]);
  expect(ckptStep).toBeGreaterThan(saved);
  await page.click("#pause");
  await expect.poll(() => demoState(page), { timeout: 60_000 }).toBe("paused");
  const paused = await step(page);

  // a lost device: the page says so and resumes from the autosave in a new worker and device
  await page.evaluate(() => (window as unknown as { demo: { loseDevice(): void } }).demo.loseDevice());
  await expect(page.locator("#lost")).toBeVisible({ timeout: 30_000 });
  await expect(page.locator("#lost-detail")).toContainText(`The autosave has step ${paused}`);
  await page.click("#lost-resume");
  await expect(page.locator("#status")).toContainText(`restored the autosave at step ${paused}`, { timeout: 120_000 });
  expect(await step(page)).toBe(paused);
  lap("recovered from a lost device");
  expect(errors).toEqual([]);
  await ctx.close();

  const ctx2 = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  await routeCorpus(ctx2);
  const page2 = await ctx2.newPage();
  watchErrors(page2, errors);
  await page2.goto("/demo/");
  await expect(page2.locator("#start")).toBeEnabled({ timeout: 60_000 });
  expect(await step(page2)).toBe(0);
  await page2.setInputFiles("#ckpt-file", ckpt);
  await expect(page2.locator("#status")).toContainText(`at step ${ckptStep}`, { timeout: 120_000 });
  expect(await step(page2)).toBe(ckptStep);
  await expect(page2.locator("#card-0")).toContainText("Dense");
  await expect(page2.locator("#card-1")).toHaveCount(0);
  expect(errors).toEqual([]);
  lap("uploaded into a fresh page");
  await ctx2.close();
});
