import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { build } from "esbuild";
import { Log, LogLevel, Miniflare } from "miniflare";

/**
 * Runs the Keygate Worker in miniflare (workerd) on a real loopback port, the way it is
 * deployed: the Worker bundled with esbuild, local KV, D1 (migrations applied) and the
 * coordinator Durable Object. Shared by the end-to-end suite and the benchmark.
 */

export const ROOT = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
export const COMPATIBILITY_DATE = "2026-04-20";

/** The runtime and the bindings of wrangler.toml, as Miniflare options (e2e, bench, soak). */
export const KEYGATE_RESOURCES = {
  compatibilityDate: COMPATIBILITY_DATE,
  compatibilityFlags: ["nodejs_compat"],
  kvNamespaces: ["KEYS"],
  d1Databases: ["DB"],
  durableObjects: {
    COORDINATOR: { className: "KeyCoordinator", useSQLite: true },
    SIGNER: { className: "TokenSigner", useSQLite: true },
  },
};

export interface KeygateOptions {
  /** Extra or overriding vars and secrets (e.g. `DEFAULT_GRACE_SECONDS`). */
  vars?: Record<string, string>;
  /** `ORIGIN_URL`; empty (the default) serves the built-in echo origin. */
  originUrl?: string;
  /** `ROUTE_RULES`, as rules or as their JSON text. */
  routeRules?: unknown[] | string;
  /** `CACHE_TTL_SECONDS`. */
  cacheTtlSeconds?: number;
  /** `ADMIN_TOKEN`; a random one when left out. */
  adminToken?: string;
  /** `KEY_PREFIX`. */
  keyPrefix?: string;
  /** Show the Worker's console output and miniflare's own log at this level. */
  logLevel?: LogLevel;
  /** Open workerd's DevTools inspector on this port (CPU profiles of the Worker). */
  inspectorPort?: number;
}

export interface Keygate {
  /** Base URL of the Worker, without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  url: string;
  adminToken: string;
  mf: Miniflare;
  stop(): Promise<void>;
}

/** Bundles a Worker's entry module for workerd into `outfile` (ESM, `cloudflare:*` external). */
export async function bundleForWorkerd(
  entry: string,
  outfile: string,
  sourcemap = false,
): Promise<string> {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    external: ["cloudflare:*", "node:*"],
    sourcemap: sourcemap ? "inline" : false,
    logLevel: "warning",
  });
  return outfile;
}

/** Bundles `src/index.ts` for workerd into `outdir`; returns the script path. */
export function bundleWorker(outdir: string): Promise<string> {
  return bundleForWorkerd(join(ROOT, "src/index.ts"), join(outdir, "index.js"), true);
}

/**
 * Splits a SQL migration into statements: `--` line comments and `/* *\/` block comments
 * removed, split on `;` outside quoted strings and identifiers.
 */
export function splitSql(sql: string): string[] {
  const statements: string[] = [];
  let current = "";
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i]!;
    const next = sql[i + 1];
    if (ch === "-" && next === "-") {
      const end = sql.indexOf("\n", i);
      i = end === -1 ? sql.length : end;
      continue;
    }
    if (ch === "/" && next === "*") {
      const end = sql.indexOf("*/", i + 2);
      i = end === -1 ? sql.length : end + 2;
      current += " ";
      continue;
    }
    if (ch === "'" || ch === '"' || ch === "`") {
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === ch) {
          if (sql[j + 1] === ch) j += 2;
          else break;
        } else j++;
      }
      current += sql.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    if (ch === ";") {
      if (current.trim() !== "") statements.push(current.trim());
      current = "";
      i++;
      continue;
    }
    current += ch;
    i++;
  }
  if (current.trim() !== "") statements.push(current.trim());
  return statements;
}

/** Applies `migrations/*.sql`, in name order, to the Worker's `DB` binding. */
export async function applyMigrations(mf: Miniflare, dir = join(ROOT, "migrations")) {
  const db = await mf.getD1Database("DB");
  const files = (await readdir(dir)).filter((name) => name.endsWith(".sql")).sort();
  for (const file of files) {
    const statements = splitSql(await readFile(join(dir, file), "utf8"));
    if (statements.length === 0) continue;
    await db.batch(statements.map((statement) => db.prepare(statement)));
  }
}

/** Starts Keygate in miniflare on `127.0.0.1` with a free port. */
export async function startKeygate(options: KeygateOptions = {}): Promise<Keygate> {
  const adminToken = options.adminToken ?? `kgadmin_e2e_${randomBytes(18).toString("base64url")}`;
  const dir = await mkdtemp(join(tmpdir(), "keygate-e2e-"));
  let mf: Miniflare | undefined;
  try {
    const scriptPath = await bundleWorker(dir);
    const routeRules =
      options.routeRules === undefined
        ? undefined
        : typeof options.routeRules === "string"
          ? options.routeRules
          : JSON.stringify(options.routeRules);
    const bindings: Record<string, string> = {
      ADMIN_TOKEN: adminToken,
      ORIGIN_URL: options.originUrl ?? "",
      ...(routeRules !== undefined ? { ROUTE_RULES: routeRules } : {}),
      ...(options.cacheTtlSeconds !== undefined
        ? { CACHE_TTL_SECONDS: String(options.cacheTtlSeconds) }
        : {}),
      ...(options.keyPrefix !== undefined ? { KEY_PREFIX: options.keyPrefix } : {}),
      ...options.vars,
    };
    mf = new Miniflare({
      modules: true,
      modulesRoot: dir,
      scriptPath,
      ...KEYGATE_RESOURCES,
      bindings,
      host: "127.0.0.1",
      port: 0,
      ...(options.logLevel !== undefined ? { log: new Log(options.logLevel) } : {}),
      ...(options.inspectorPort !== undefined ? { inspectorPort: options.inspectorPort } : {}),
    });
    const ready = await mf.ready;
    await applyMigrations(mf);
    const instance = mf;
    let stopped = false;
    return {
      url: ready.origin,
      adminToken,
      mf: instance,
      async stop() {
        if (stopped) return;
        stopped = true;
        try {
          await instance.dispose();
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (error) {
    await mf?.dispose().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
