// The whole op suite, shared by the Deno, Node and Chromium runners.
import "./elementwise.ts";

export { cases, supported, type TestCase } from "../lib/harness.ts";
