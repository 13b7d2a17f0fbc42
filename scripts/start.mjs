#!/usr/bin/env node
// Local start: make sure .dev.vars holds an ADMIN_TOKEN, apply D1 migrations to the local
// database, then serve the Worker with wrangler dev on 127.0.0.1:8787. No Cloudflare account.
import { spawnSync, spawn } from "node:child_process";
import { existsSync, readFileSync, appendFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";

const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
const wrangler = ["node_modules/wrangler/bin/wrangler.js"];
const port = process.env.PORT ?? "8787";

function ensureAdminToken() {
  const path = ".dev.vars";
  const current = existsSync(path) ? readFileSync(path, "utf8") : "";
  if (/^ADMIN_TOKEN\s*=/m.test(current)) return;
  const token = `kgadmin_${randomBytes(24).toString("base64url")}`;
  const line = `ADMIN_TOKEN="${token}"\n`;
  if (current === "") writeFileSync(path, line, { mode: 0o600 });
  else appendFileSync(path, (current.endsWith("\n") ? "" : "\n") + line);
  console.log(`keygate: wrote a new ADMIN_TOKEN to .dev.vars (management API credential):`);
  console.log(`  export KEYGATE_ADMIN_TOKEN=${token}`);
}

ensureAdminToken();
const migrate = spawnSync(
  process.execPath,
  [...wrangler, "d1", "migrations", "apply", "DB", "--local"],
  // stdin closed: wrangler takes its non-interactive default and applies without a prompt
  { stdio: ["ignore", "inherit", "inherit"], env },
);
if (migrate.status !== 0) {
  console.error("keygate: applying the local D1 migrations failed");
  process.exit(migrate.status ?? 1);
}
const dev = spawn(
  process.execPath,
  [...wrangler, "dev", "--ip", "127.0.0.1", "--port", port, ...process.argv.slice(2)],
  { stdio: "inherit", env },
);
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
  process.on(signal, () => dev.kill(signal));
}
dev.on("exit", (code) => process.exit(code ?? 0));
