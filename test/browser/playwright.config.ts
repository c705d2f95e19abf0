// Playwright config of the browser runner: Debian's Chromium (/usr/bin/chromium; Playwright cannot
// download browsers here) with WebGPU on SwiftShader, a Vite dev server on 127.0.0.1 (WebGPU needs a
// secure context), one worker, and timeouts sized for a software GPU.
import { defineConfig } from "@playwright/test";
import { CHROMIUM, chromiumArgs } from "./chromium.ts";

const PORT = Number(process.env.WEBSLOPE_TEST_PORT ?? 41739);

export default defineConfig({
  testDir: ".",
  // the library's suite in one page, then the demo page as a user meets it (demo.spec.ts)
  testMatch: ["suite.spec.ts", "demo.spec.ts"],
  outputDir: "../../test-results",
  // One page runs the cases one after another; SwiftShader is a CPU rasteriser: cases are slow.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 10 * 60_000,
  globalTimeout: 60 * 60_000,
  expect: { timeout: 30_000 },
  reporter: [["list"]],
  forbidOnly: !!process.env.CI,
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    browserName: "chromium",
    launchOptions: {
      executablePath: CHROMIUM,
      // the tests always run on SwiftShader (the suite's expectations are set on the software adapters)
      args: chromiumArgs("swiftshader"),
    },
    trace: "off",
    screenshot: "off",
    video: "off",
  },
  webServer: {
    command: `npx vite --config vite.config.ts --host 127.0.0.1 --port ${PORT} --strictPort`,
    cwd: "../..",
    url: `http://127.0.0.1:${PORT}/test/browser/index.html`,
    // A fixed snapshot of the sources for the run: no HMR reloads of the shared page (vite.config.ts).
    env: { WEBSLOPE_VITE_NO_HMR: "1" },
    reuseExistingServer: !process.env.CI,
    timeout: 120_000,
    stdout: "ignore",
    stderr: "pipe",
  },
});
