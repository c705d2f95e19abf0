// The browser runner: one Playwright test per suite case marked `browser: true`, all run in one
// page served by Vite (test/browser/index.html + page.ts). The case list comes from importing the
// suite here (Playwright's TypeScript loader handles its `.ts` imports; nothing touches WebGPU at
// import time); the cases themselves run inside Chromium, on SwiftShader's WebGPU.
import { type Page, test } from "@playwright/test";
import { cases } from "../suite/index.ts";
import type { WebslopeTestApi } from "./page.ts";

const browserCases = cases.filter((c) => c.browser);

let page: Page;
let features: Set<string>;

test.beforeAll(async ({ browser }) => {
  page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  await page.goto("/test/browser/index.html");
  await page.waitForFunction(() => "webslopeTest" in window, null, { timeout: 120_000 });
  const info = await page.evaluate(() => (window as unknown as { webslopeTest: WebslopeTestApi }).webslopeTest.init());
  features = new Set(info.features);
  console.log(`webslope tests in Chromium, adapter: ${info.adapter}; features: ${info.features.join(", ") || "none"}`);
  // A case missing from the page fails on its own ("no case named ..."); one the page has but this
  // process does not (sources edited mid-run) would silently not run: say so.
  const inPage = await page.evaluate(() => (window as unknown as { webslopeTest: WebslopeTestApi }).webslopeTest.list());
  const known = new Set(browserCases.map((c) => c.name));
  const extra = inPage.filter((c) => c.browser && !known.has(c.name)).map((c) => c.name);
  if (extra.length) console.warn(`the page has ${extra.length} browser case(s) this runner did not list: ${extra.join("; ")}`);
});

test.afterAll(async () => {
  await page?.close();
});

for (const c of browserCases) {
  test(c.name, async () => {
    const missing = c.needs.filter((f) => !features.has(f));
    test.skip(missing.length > 0, `the adapter lacks ${missing.join(", ")}`);
    const r = await page.evaluate(
      (name) => (window as unknown as { webslopeTest: WebslopeTestApi }).webslopeTest.run(name),
      c.name,
    );
    if (!r.ok) {
      // Report the page's stack (where the case failed), not this file's.
      const err = new Error(r.message);
      err.stack = r.stack || r.message;
      throw err;
    }
  });
}
