#!/usr/bin/env node
// `npm run bench [-- --json --duration <s> --connections <n> --rounds <n>]`
//
// The benchmark is TypeScript (test/bench/, type-checked by tsconfig.node.json) and Node 20
// cannot run TypeScript by itself. Rather than adding a loader dependency (tsx), this script
// bundles test/bench/main.ts with esbuild (already a dependency) into one ES module, next to
// node_modules so that its packages (miniflare, autocannon, esbuild) resolve as usual, and
// imports it. Every bundled file keeps its own `import.meta.url` (the benchmark and the e2e
// helper it reuses locate the repository and the peer Workers' sources through it).
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

process.env.WRANGLER_SEND_METRICS ??= "false";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "node_modules", ".cache", "keygate-bench");
const outfile = join(outdir, "bench.mjs");

/**
 * Replaces `import.meta.url` in each bundled TypeScript file with that file's own URL.
 * @type {import("esbuild").Plugin}
 */
const ownImportMetaUrl = {
  name: "own-import-meta-url",
  setup(esbuild) {
    esbuild.onLoad({ filter: /\.ts$/ }, async (args) => {
      const source = await readFile(args.path, "utf8");
      const url = JSON.stringify(pathToFileURL(args.path).href);
      return { contents: source.replaceAll("import.meta.url", url), loader: "ts" };
    });
  },
};

await mkdir(outdir, { recursive: true });
await build({
  entryPoints: [join(root, "test", "bench", "main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  sourcemap: "inline",
  logLevel: "warning",
  plugins: [ownImportMetaUrl],
});

const { main } = await import(pathToFileURL(outfile).href);
process.exitCode = await main(process.argv.slice(2));
// Never linger: the servers are stopped by now, so anything still holding the event loop is a
// leak, not work.
setTimeout(() => process.exit(), 5_000).unref();
