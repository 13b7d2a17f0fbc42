#!/usr/bin/env node
// Builds the keygate command (src/cli, TypeScript) into one Node 20 ES module,
// dist/cli/keygate.mjs, the package's bin. Runs as the npm `prepare` script, so a fresh
// `npm install` or `npm ci` leaves `npx keygate` working.
import { chmod } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outfile = join(root, "dist", "cli", "keygate.mjs");

await build({
  entryPoints: [join(root, "src", "cli", "main.ts")],
  outfile,
  bundle: true,
  // dependencies stay in node_modules; only the project's own modules are bundled
  packages: "external",
  platform: "node",
  format: "esm",
  target: "node20",
  banner: { js: "#!/usr/bin/env node" },
  logLevel: "warning",
});
await chmod(outfile, 0o755);
