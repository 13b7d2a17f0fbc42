#!/usr/bin/env node
// `npm run soak [-- --seconds <n> …]`: rotation correctness under churn (test/soak/main.ts;
// `npm run soak -- --help` lists the flags). Not part of `npm test`.
//
// Built and run the way scripts/bench.mjs runs the benchmark: test/soak/main.ts is bundled
// with esbuild into one ES module next to node_modules (so miniflare and esbuild resolve as
// usual), each bundled file keeping its own `import.meta.url`, then imported. The bundle also
// exports the server the soak starts, stops and restarts in a child process (server.ts), so
// it is passed its own URL.
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

process.env.WRANGLER_SEND_METRICS ??= "false";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "node_modules", ".cache", "keygate-soak");
// one bundle per run: two soaks started together must not rewrite each other's module
const outfile = join(outdir, `soak-${process.pid}.mjs`);

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
  entryPoints: [join(root, "test", "soak", "main.ts")],
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

const bundleUrl = pathToFileURL(outfile).href;
const { main } = await import(bundleUrl);
try {
  process.exitCode = await main(process.argv.slice(2), bundleUrl);
} finally {
  await rm(outfile, { force: true });
}
// Never linger: the server is stopped by now, so anything still holding the event loop is a
// leak, not work.
setTimeout(() => process.exit(), 5_000).unref();
