#!/usr/bin/env node
// Builds the keygate command (src/cli, TypeScript) into one Node 20 ES module,
// dist/cli/keygate.mjs, the package's bin. Runs as the npm `prepare` script, so a fresh
// `npm install` or `npm ci` leaves `npx keygate` working.
import { mkdir, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outfile = join(root, "dist", "cli", "keygate.mjs");

const result = await build({
  entryPoints: [join(root, "src", "cli", "main.ts")],
  outfile,
  write: false,
  bundle: true,
  // dependencies stay in node_modules; only the project's own modules are bundled
  packages: "external",
  platform: "node",
  format: "esm",
  target: "node20",
  banner: { js: "#!/usr/bin/env node" },
  logLevel: "warning",
});
// written aside and renamed into place: a keygate running meanwhile never reads half a file
await mkdir(dirname(outfile), { recursive: true });
const partial = `${outfile}.${process.pid}.tmp`;
const [bundle] = result.outputFiles;
if (!bundle) throw new Error("esbuild produced no output");
await writeFile(partial, bundle.contents, { mode: 0o755 });
await rename(partial, outfile);
