// Vite serves the repository root in development (the demo at /demo/, the browser test page at
// /test/browser/) and builds the library: one ESM file per package.json "exports" entry in dist/,
// with wgsl-preprocessor left external as a runtime dependency. Declarations come from
// `tsc -p tsconfig.build.json` into dist/types/ (see the `build` script).
import { copyFileSync, createReadStream, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const root = dirname(fileURLToPath(import.meta.url));

/** Library entries: the key is the file in dist/ (dist/<key>.js), matching package.json "exports". */
const ENTRIES = {
  index: "src/index.ts",
  nn: "src/nn/index.ts",
  optim: "src/optim/index.ts",
  slope: "src/slope/index.ts",
  train: "src/train/index.ts",
} as const;

/**
 * tsc emits declarations under dist/types/src/ (src/ imports ../shaders/, so the declaration root is
 * the repository root); "exports" name dist/types/index.d.ts and dist/types/<sub>/index.d.ts. These
 * forwarders bridge the two, and each references dist/types/globals.d.ts (a copy of
 * src/globals.d.ts: the WebGPU types and Symbol.dispose), so that a consumer needs no `lib` or
 * `types` setting of its own.
 */
function typeForwarders(): Plugin {
  return {
    name: "webslope-type-forwarders",
    apply: "build",
    closeBundle() {
      mkdirSync(resolve(root, "dist/types"), { recursive: true });
      copyFileSync(resolve(root, "src/globals.d.ts"), resolve(root, "dist/types/globals.d.ts"));
      for (const [name, entry] of Object.entries(ENTRIES)) {
        const file = name === "index" ? "dist/types/index.d.ts" : `dist/types/${name}/index.d.ts`;
        const up = name === "index" ? "./" : "../";
        const target = up + entry.replace(/\.ts$/, ".js");
        mkdirSync(dirname(resolve(root, file)), { recursive: true });
        writeFileSync(resolve(root, file), `/// <reference path="${up}globals.d.ts" />\nexport * from "${target}";\n`);
      }
    },
  };
}

/**
 * The demo's corpus: /data/<file> is served from ../shared/data (the team's data folder beside
 * the checkout) or from WEBSLOPE_DATA_DIR, in development only, and /data/index.json lists the
 * text files there; the text is never bundled (without it the page downloads the public copy).
 */
function sharedData(): Plugin {
  const dir = process.env.WEBSLOPE_DATA_DIR ?? resolve(root, "../shared/data");
  return {
    name: "webslope-shared-data",
    configureServer(server) {
      server.middlewares.use("/data/", (req, res, next) => {
        const name = decodeURIComponent((req.url ?? "").split("?")[0]!.replace(/^\//, ""));
        if (name === "index.json") {
          // what is here, so that the page asks only for files that exist (no 404 in its console)
          const files = existsSync(dir) ? readdirSync(dir).filter((f) => /^[\w.-]+\.txt$/.test(f)) : [];
          res.setHeader("Content-Type", "application/json");
          res.end(JSON.stringify(files));
          return;
        }
        const file = resolve(dir, name);
        if (!/^[\w.-]+\.txt$/.test(name) || !file.startsWith(dir) || !existsSync(file)) return next();
        res.setHeader("Content-Type", "text/plain; charset=utf-8");
        createReadStream(file).pipe(res);
      });
    },
  };
}

/** The dev server's root is the demo: `npm run demo` prints http://127.0.0.1:5173/, which lands on /demo/. */
function rootToDemo(): Plugin {
  return {
    name: "webslope-root-to-demo",
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        if (req.url !== "/" && req.url !== "/index.html") return next();
        res.statusCode = 302;
        res.setHeader("Location", "/demo/");
        res.end();
      });
    },
  };
}

/** Set by the browser test runner: a page that runs for minutes must not be reloaded by an edit. */
const noHmr = !!process.env.WEBSLOPE_VITE_NO_HMR;

export default defineConfig({
  root,
  server: {
    host: "127.0.0.1",
    port: 5173,
    hmr: !noHmr,
    ...(noHmr ? { watch: null } : {}),
  },
  // Pre-bundle the runtime dependencies up front so the first page load does not trigger a
  // dependency re-optimisation and a full reload (which would drop a test page mid-run).
  optimizeDeps: {
    entries: ["demo/index.html", "test/browser/index.html"],
    include: ["wgsl-preprocessor/wgsl-preprocessor.js", "uplot", "idb"],
  },
  plugins: [typeForwarders(), sharedData(), rootToDemo()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    minify: false,
    lib: {
      entry: Object.fromEntries(Object.entries(ENTRIES).map(([k, v]) => [k, resolve(root, v)])),
      formats: ["es"],
      fileName: (_format, name) => `${name}.js`,
    },
    rolldownOptions: {
      external: [/^wgsl-preprocessor(\/.*)?$/],
      output: { chunkFileNames: "chunks/[name]-[hash].js" },
    },
  },
});
