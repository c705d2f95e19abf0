// Types of @pkgjs/parseargs, the polyfill of node:util's parseArgs that bench/env.ts uses in the browser.
declare module "@pkgjs/parseargs" {
  export const parseArgs: typeof import("node:util").parseArgs;
}
