import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CliError } from "./errors.js";

/**
 * `.dev.vars`, the local vars and secrets file wrangler reads (dotenv syntax): read for
 * doctor, and given an `ADMIN_TOKEN` by setup, as `npm start` does (scripts/start.mjs).
 */

/** Keygate refuses an ADMIN_TOKEN shorter than this (src/config.ts). */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

export function devVarsPath(dir: string): string {
  return join(dir, ".dev.vars");
}

/** The variables of a dotenv text: quoted values (multi-line too) unquoted, comments dropped. */
export function parseDevVars(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(lines[i]!);
    if (!match) continue;
    let value = match[2]!;
    const quote = value[0];
    if (quote === '"' || quote === "'" || quote === "`") {
      let rest = value.slice(1);
      while (!new RegExp(`${quote}\\s*(#.*)?$`).test(rest) && i + 1 < lines.length) {
        rest += `\n${lines[++i]}`;
      }
      value = rest.replace(new RegExp(`${quote}\\s*(#.*)?$`), "");
      if (quote === '"') value = value.replace(/\\n/g, "\n");
    } else {
      value = value.replace(/\s+#.*$/, "").trim();
    }
    vars[match[1]!] = value;
  }
  return vars;
}

export function readDevVars(dir: string): Record<string, string> {
  const path = devVarsPath(dir);
  return existsSync(path) ? parseDevVars(readFileSync(path, "utf8")) : {};
}

/**
 * Makes sure `.dev.vars` holds a usable ADMIN_TOKEN: keeps one of 16 characters or more,
 * writes a random one when there is none or it is empty (other lines kept), refuses a short
 * one. With `dryRun`, only says what it would do.
 */
export function ensureDevAdminToken(
  dir: string,
  dryRun = false,
): { action: "kept" | "written"; token: string | null } {
  const path = devVarsPath(dir);
  const current = existsSync(path) ? readFileSync(path, "utf8") : "";
  const value = parseDevVars(current).ADMIN_TOKEN ?? "";
  if (value !== "") {
    if (value.length < MIN_ADMIN_TOKEN_LENGTH) {
      throw new CliError(
        `ADMIN_TOKEN in ${path} is ${value.length} characters; Keygate needs at least ${MIN_ADMIN_TOKEN_LENGTH}`,
        { details: ["Remove the line to have a random one written."] },
      );
    }
    return { action: "kept", token: null };
  }
  const token = `kgadmin_${randomBytes(24).toString("base64url")}`;
  if (dryRun) return { action: "written", token: null };
  const entry = `ADMIN_TOKEN="${token}"`;
  const line = /^\s*(?:export\s+)?ADMIN_TOKEN\s*=.*$/m;
  const next = line.test(current)
    ? current.replace(line, entry)
    : current === ""
      ? `${entry}\n`
      : `${current}${current.endsWith("\n") ? "" : "\n"}${entry}\n`;
  writeFileSync(path, next, { mode: 0o600 });
  return { action: "written", token };
}
