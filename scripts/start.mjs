#!/usr/bin/env node
// Local start: make sure .dev.vars holds an ADMIN_TOKEN, apply D1 migrations to the local
// database, then serve the Worker with wrangler dev on 127.0.0.1:8787. No Cloudflare account.
import { spawnSync, spawn } from "node:child_process";
import { existsSync, readFileSync, appendFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const env = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  // Miniflare fetches a sample `request.cf` from workers.cloudflare.com at start and prints a
  // stack trace when offline. Keygate reads nothing from `request.cf`, so the built-in
  // placeholder serves as well, with no network.
  CLOUDFLARE_CF_FETCH_ENABLED: process.env.CLOUDFLARE_CF_FETCH_ENABLED ?? "false",
};
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
  const line = /^ADMIN_TOKEN[ \t]*=[ \t]*(.*)$/m.exec(current);
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

/**
 * What `wrangler d1 migrations apply` printed, cut to one table: wrangler prints the pending
 * migrations, then the whole table again after each one it applies; the last of those says
 * it all. Output it does not recognise is passed through whole.
 * @param {string} output
 * @returns {string}
 */
export function migrationSummary(output) {
  if (/No migrations to apply/.test(output)) {
    return "keygate: the local D1 database is up to date (no migrations to apply)";
  }
  const lines = output.split("\n");
  const top = lines.findLastIndex((line) => line.startsWith("┌"));
  const bottom = lines.findIndex((line, i) => i > top && line.startsWith("└"));
  if (top < 0 || bottom < 0) return output.trimEnd();
  return ["keygate: applied the D1 migrations to the local database:"]
    .concat(lines.slice(top, bottom + 1))
    .join("\n");
}

/** Said before wrangler dev starts: what a local Keygate does not do by itself. */
export const CRON_NOTE =
  "keygate: the cron in wrangler.toml does not run locally; `npx keygate maintenance run`\n" +
  "  does its work (close ended rotations, expire keys, send reminders, reconcile KV with D1,\n" +
  "  prune) whenever you run it. Signing keys rotate on their own.";

/**
 * Stops wrangler dev (and with it its workerd processes) when this script is told to stop,
 * or when its parent goes: `npm start` runs it through `sh -c`, and killing npm ends the
 * shell without signalling this process, which is then re-parented and would serve on.
 * @param {import("node:child_process").ChildProcess} dev
 */
function stopWith(dev) {
  /** @param {NodeJS.Signals} signal */
  const stop = (signal) => {
    if (dev.exitCode === null && dev.signalCode === null) dev.kill(signal);
  };
  for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM", "SIGHUP"])) {
    process.on(signal, () => stop(signal));
  }
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    stop("SIGTERM");
  }, 500);
  dev.on("exit", () => clearInterval(watch));
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
    { stdio: ["ignore", "pipe", "pipe"], env, encoding: "utf8" },
  );
  if (migrate.status !== 0) {
    process.stderr.write(`${migrate.stdout ?? ""}${migrate.stderr ?? ""}`);
    console.error("keygate: applying the local D1 migrations failed");
    process.exit(migrate.status ?? 1);
  }
  console.log(migrationSummary(migrate.stdout));
  if (migrate.stderr) process.stderr.write(migrate.stderr);
  console.log(CRON_NOTE);
  if (port !== "8787") console.log(`  export KEYGATE_URL=http://127.0.0.1:${port}`);
  const dev = spawn(
    process.execPath,
    [...wrangler, "dev", "--ip", "127.0.0.1", "--port", port, ...process.argv.slice(2)],
    { stdio: "inherit", env },
  );
  stopWith(dev);
  dev.on("exit", (code) => process.exit(code ?? 0));
}

// run only as a script: the test suite imports ensureAdminToken and migrationSummary
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) start();
