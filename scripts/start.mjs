#!/usr/bin/env node
// Local start: make sure .dev.vars holds an ADMIN_TOKEN, apply D1 migrations to the local
// database, then serve the Worker with wrangler dev on 127.0.0.1:8787. No Cloudflare account.
import { spawnSync, spawn } from "node:child_process";
import { existsSync, readFileSync, appendFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
const wrangler = ["node_modules/wrangler/bin/wrangler.js"];
const port = process.env.PORT ?? "8787";

/** Keygate refuses an ADMIN_TOKEN shorter than this (src/config.ts). */
const MIN_ADMIN_TOKEN_LENGTH = 16;

/**
 * Makes sure `.dev.vars` (in `dir`) holds a usable ADMIN_TOKEN: writes a random one when there
 * is none or it is empty, refuses one Keygate would not accept. Returns what it did.
 * @param {string} dir
 * @returns {"kept" | "written"}
 */
export function ensureAdminToken(dir = ".") {
  const path = join(dir, ".dev.vars");
  const current = existsSync(path) ? readFileSync(path, "utf8") : "";
  const line = /^ADMIN_TOKEN\s*=\s*(.*)$/m.exec(current);
  const value = line ? (line[1] ?? "").trim().replace(/^(["'])(.*)\1$/, "$2") : "";
  if (line && value !== "") {
    if (value.length < MIN_ADMIN_TOKEN_LENGTH) {
      throw new Error(
        `ADMIN_TOKEN in ${path} is ${value.length} characters; Keygate needs at least ` +
          `${MIN_ADMIN_TOKEN_LENGTH}. Remove the line to have a random one written.`,
      );
    }
    return "kept";
  }
  const token = `kgadmin_${randomBytes(24).toString("base64url")}`;
  const entry = `ADMIN_TOKEN="${token}"`;
  if (line) writeFileSync(path, current.replace(line[0], entry));
  else if (current === "") writeFileSync(path, `${entry}\n`, { mode: 0o600 });
  else appendFileSync(path, (current.endsWith("\n") ? "" : "\n") + `${entry}\n`);
  console.log(`keygate: wrote a new ADMIN_TOKEN to ${path} (management API credential):`);
  console.log(`  export KEYGATE_ADMIN_TOKEN=${token}`);
  return "written";
}

function start() {
  try {
    ensureAdminToken();
  } catch (error) {
    console.error(`keygate: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
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
}

// run only as a script: the test suite imports ensureAdminToken
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) start();
