// The browser side of the Playwright runner: loads the shared suite in the page (served by Vite)
// and exposes window.webslopeTest so that test/browser/suite.spec.ts can init WebGPU, list the
// cases and run one case by name, getting back pass/fail and the failure's message.
import { init } from "../../src/index.ts";
import { cases, supported } from "../suite/index.ts";

export interface CaseInfo {
  name: string;
  needs: string[];
  browser: boolean;
}

export interface CaseResult {
  ok: boolean;
  /** "Name: message" of the failure; empty on success. */
  message: string;
  /** The failure's stack as the page saw it (starts with the message); empty on success. */
  stack: string;
  ms: number;
}

export interface WebslopeTestApi {
  init(): Promise<{ adapter: string; features: string[]; userAgent: string }>;
  list(): CaseInfo[];
  run(name: string): Promise<CaseResult>;
}

const log = document.getElementById("log");
let features: ReadonlySet<string> = new Set();

function describe(e: unknown): { message: string; stack: string } {
  if (!(e instanceof Error)) return { message: String(e), stack: String(e) };
  const message = `${e.name}: ${e.message}`;
  const stack = e.stack ?? "";
  return { message, stack: stack.includes(e.message) ? stack : `${message}\n${stack}` };
}

function fail(message: string): CaseResult {
  return { ok: false, message, stack: message, ms: 0 };
}

const api: WebslopeTestApi = {
  async init() {
    const ctx = await init();
    features = ctx.features;
    return { adapter: ctx.info.adapterName, features: [...ctx.features], userAgent: navigator.userAgent };
  },
  list() {
    return cases.map((c) => ({ name: c.name, needs: [...c.needs], browser: c.browser }));
  },
  async run(name) {
    const c = cases.find((x) => x.name === name);
    if (!c) return fail(`no case named ${JSON.stringify(name)} in the page's suite (sources edited mid-run?)`);
    if (!supported(c, features)) return fail(`the adapter lacks ${c.needs.join(", ")}`);
    const t0 = performance.now();
    try {
      await c.fn();
      const ms = performance.now() - t0;
      log?.append(`ok   ${name} (${ms.toFixed(0)} ms)\n`);
      return { ok: true, message: "", stack: "", ms };
    } catch (e) {
      const ms = performance.now() - t0;
      log?.append(`FAIL ${name}\n`);
      return { ok: false, ...describe(e), ms };
    }
  },
};

(window as unknown as { webslopeTest: WebslopeTestApi }).webslopeTest = api;
