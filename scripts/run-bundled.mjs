// Runs one of the TypeScript programs under test/ (the benchmark, the soak) from node.
//
// Node 20 cannot run TypeScript by itself. Rather than adding a loader dependency (tsx), the
// program is bundled with esbuild (already a dependency) into one ES module next to
// node_modules, so that its packages (miniflare, autocannon, esbuild) resolve as usual, and
// imported. Every bundled file keeps its own `import.meta.url` (the programs and the e2e
// helpers they reuse locate the repository and the peer Workers' sources through it).
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

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

/**
 * Bundles `entry` (a path under the repository) into `node_modules/.cache/<cacheDir>/<file>`
 * and answers the bundle's URL, ready to import.
 * @param {string} entry
 * @param {string} cacheDir
 * @param {string} file
 */
export async function bundle(entry, cacheDir, file) {
  const outdir = join(root, "node_modules", ".cache", cacheDir);
  const outfile = join(outdir, file);
  await mkdir(outdir, { recursive: true });
  await build({
    entryPoints: [join(root, entry)],
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
  return pathToFileURL(outfile).href;
}
