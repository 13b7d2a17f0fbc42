import { existsSync } from "node:fs";
import { join } from "node:path";
import { Option, type Command } from "commander";
import { KeygateClient } from "../client.js";
import { contextOf } from "../context.js";
import { readDevVars, MIN_ADMIN_TOKEN_LENGTH } from "../dev-vars.js";
import { CliError, EXIT, NetworkError } from "../errors.js";
import { colors, mark, print } from "../output.js";
import { checkWorkerVars } from "../worker-config.js";
import {
  d1Database,
  declaresClass,
  durableObject,
  kvNamespace,
  PLACEHOLDER_D1_ID,
  PLACEHOLDER_KV_ID,
  readWranglerConfig,
  varsOf,
  type WranglerConfig,
} from "../wrangler-config.js";
import { pendingMigrationsFrom } from "../wrangler.js";
import { projectOf, type ProjectOptions } from "./setup.js";

/**
 * One line of the checklist. `ok: null` is a check that was skipped; `warn` marks one that
 * passes (it fails nothing) but names something the operator most likely did not mean.
 */
export interface Check {
  name: string;
  ok: boolean | null;
  detail: string;
  warn?: true;
}

interface DoctorOptions extends ProjectOptions {
  local?: boolean;
  remote?: boolean;
  api: boolean;
}

function bindingChecks(config: WranglerConfig, remote: boolean): Check[] {
  const checks: Check[] = [];
  const kv = kvNamespace(config, "KEYS");
  const kvId = String(kv?.id ?? "");
  checks.push({
    name: "binding KEYS (Workers KV)",
    ok: kv !== undefined && kvId !== "" && !(remote && kvId === PLACEHOLDER_KV_ID),
    detail: !kv
      ? 'missing: add a [[kv_namespaces]] entry with binding = "KEYS"'
      : kvId === ""
        ? "no id"
        : remote && kvId === PLACEHOLDER_KV_ID
          ? "placeholder id: run keygate setup --remote"
          : `id ${kvId}`,
  });
  const db = d1Database(config, "DB");
  const dbId = String(db?.database_id ?? "");
  const migrationsDir = join(
    config.path,
    "..",
    typeof db?.migrations_dir === "string" ? db.migrations_dir : "migrations",
  );
  checks.push({
    name: "binding DB (D1)",
    ok:
      db !== undefined &&
      dbId !== "" &&
      !(remote && dbId === PLACEHOLDER_D1_ID) &&
      existsSync(migrationsDir),
    detail: !db
      ? 'missing: add a [[d1_databases]] entry with binding = "DB"'
      : dbId === ""
        ? "no database_id"
        : remote && dbId === PLACEHOLDER_D1_ID
          ? "placeholder database_id: run keygate setup --remote"
          : !existsSync(migrationsDir)
            ? `no migrations directory at ${migrationsDir}`
            : `${String(db.database_name ?? "")} (${dbId})`,
  });
  for (const [name, className] of [
    ["COORDINATOR", "KeyCoordinator"],
    ["SIGNER", "TokenSigner"],
  ] as const) {
    const binding = durableObject(config, name);
    const ok = binding?.class_name === className && declaresClass(config, className);
    checks.push({
      name: `binding ${name} (Durable Object)`,
      ok,
      detail: !binding
        ? `missing: add [[durable_objects.bindings]] name = "${name}", class_name = "${className}"`
        : binding.class_name !== className
          ? `class_name is ${String(binding.class_name)}, not ${className}`
          : !declaresClass(config, className)
            ? `no [[migrations]] entry with new_sqlite_classes = ["${className}"]`
            : className,
    });
  }
  return checks;
}

function varsChecks(vars: Record<string, unknown>): [vars: Check, routeRules: Check] {
  const verdict = checkWorkerVars(vars);
  if (verdict.ok) {
    return [
      { name: "vars", ok: true, detail: `valid (KEY_PREFIX ${verdict.keyPrefix})` },
      { name: "ROUTE_RULES", ok: true, detail: `${verdict.routeRules} rules, valid` },
    ];
  }
  const routeProblems = verdict.problems.filter((p) => p.startsWith("ROUTE_RULES"));
  const other = verdict.problems.filter((p) => !p.startsWith("ROUTE_RULES"));
  return [
    { name: "vars", ok: other.length === 0, detail: other.length ? other.join("; ") : "valid" },
    {
      name: "ROUTE_RULES",
      ok: routeProblems.length === 0,
      detail: routeProblems.length ? routeProblems.join("; ") : "valid",
    },
  ];
}

/** How many ROUTE_RULES `vars` hold, read as the Worker reads them; null when invalid. */
function ruleCount(vars: Record<string, unknown>): number | null {
  const verdict = checkWorkerVars(vars);
  return verdict.ok ? verdict.routeRules : null;
}

/**
 * What a deployment reads its vars from: wrangler.toml's [vars] and the Worker's secrets
 * (names only; `null` when they could not be listed). `.dev.vars` is read only to say that
 * something set there never reaches Cloudflare: wrangler deploy does not upload it.
 */
interface Deployed {
  vars: Record<string, unknown>;
  secrets: Set<string> | null;
  secretsProblem: string;
  devVars: Record<string, string>;
}

/** The names of the Worker's secrets, by `wrangler secret list` (values are never returned). */
async function deployedSecrets(
  options: DoctorOptions,
): Promise<Pick<Deployed, "secrets" | "secretsProblem">> {
  const { wrangler } = projectOf(options);
  const args = ["secret", "list", "--format", "json"];
  const result = await wrangler.run(args, { quiet: true });
  const json = result.stdout.slice(result.stdout.indexOf("["));
  try {
    if (result.status !== 0) throw new Error(`exit ${result.status}`);
    const list = JSON.parse(json) as unknown;
    if (!Array.isArray(list)) throw new Error("not a list");
    const names = list.map((entry) => String((entry as { name?: unknown }).name));
    return { secrets: new Set(names), secretsProblem: "" };
  } catch (error) {
    const reason = error instanceof SyntaxError ? "unreadable output" : (error as Error).message;
    return {
      secrets: null,
      secretsProblem: ` (and the secrets could not be listed: ${wrangler.display(args)} failed, ${reason})`,
    };
  }
}

const isSet = (value: unknown) => value !== undefined && value !== null && value !== "";

const NO_RULES =
  "with no rules every path needs a valid key and no scope, so any key reaches all of the origin";

/** ROUTE_RULES as deployed: a valid but empty set, or one left in .dev.vars, is a warning. */
function deployedRouteRules(ruleCheck: Check, rules: number | null, d: Deployed): Check {
  const name = "ROUTE_RULES";
  if (ruleCheck.ok === false) return ruleCheck;
  if (isSet(d.vars.ROUTE_RULES)) {
    return rules === 0
      ? { name, ok: true, warn: true, detail: `[vars] holds an empty list: ${NO_RULES}` }
      : ruleCheck;
  }
  if (d.secrets?.has(name)) {
    return { name, ok: true, detail: "set as a secret (not readable here, so not checked)" };
  }
  const where = isSet(d.devVars.ROUTE_RULES)
    ? "only in .dev.vars, which wrangler deploy does not upload"
    : "none in wrangler.toml [vars] or the secrets";
  return {
    name,
    ok: true,
    warn: true,
    detail: `${where}${d.secretsProblem}: ${NO_RULES}; add them to [vars] in wrangler.toml`,
  };
}

/** ORIGIN_URL as deployed: unset means the echo origin answers in production, a warning. */
async function deployedOrigin(d: Deployed): Promise<Check> {
  const name = "ORIGIN_URL reachable";
  if (isSet(d.vars.ORIGIN_URL)) return originCheck(d.vars.ORIGIN_URL);
  if (d.secrets?.has("ORIGIN_URL")) {
    return { name, ok: null, detail: "set as a secret (not readable here, so not checked)" };
  }
  const local = isSet(d.devVars.ORIGIN_URL)
    ? `; .dev.vars sets ${d.devVars.ORIGIN_URL}, but wrangler deploy does not upload .dev.vars`
    : "";
  return {
    name,
    ok: true,
    warn: true,
    detail:
      `not set${d.secretsProblem}: the deployment answers with the built-in echo origin, ` +
      `not your API${local}; set ORIGIN_URL in [vars] in wrangler.toml`,
  };
}

async function originCheck(originUrl: unknown): Promise<Check> {
  const name = "ORIGIN_URL reachable";
  if (typeof originUrl !== "string" || originUrl === "") {
    return { name, ok: true, detail: "not set: the built-in echo origin answers" };
  }
  try {
    const response = await fetch(originUrl, {
      method: "GET",
      redirect: "manual",
      signal: AbortSignal.timeout(5_000),
    });
    await response.body?.cancel();
    return { name, ok: true, detail: `${originUrl} answered HTTP ${response.status}` };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    const reason = cause ?? (error instanceof Error ? error.message : String(error));
    return { name, ok: false, detail: `${originUrl}: ${reason}` };
  }
}

async function migrationsCheck(options: DoctorOptions, remote: boolean): Promise<Check> {
  const name = "D1 migrations applied";
  const { wrangler } = projectOf(options);
  const flag = remote ? "--remote" : "--local";
  const result = await wrangler.run(["d1", "migrations", "list", "DB", flag], { quiet: true });
  const pending = pendingMigrationsFrom(result.stdout + result.stderr);
  if (result.status !== 0 || pending === null) {
    return {
      name,
      ok: false,
      detail: `${wrangler.display(["d1", "migrations", "list", "DB", flag])} failed (exit ${result.status})`,
    };
  }
  return pending.length === 0
    ? { name, ok: true, detail: `all applied (${flag.slice(2)})` }
    : {
        name,
        ok: false,
        detail: `${pending.length} to apply (${pending.join(", ")}): keygate setup ${flag}`,
      };
}

async function apiChecks(client: KeygateClient, tokenSource: string): Promise<Check[]> {
  const checks: Check[] = [];
  try {
    const health = await client.request<{ status: string; version: string }>(
      "GET",
      "/_keygate/health",
    );
    checks.push({
      name: "Keygate reachable",
      ok: health.status === "ok",
      detail: `${client.baseUrl}: ${health.status}, version ${health.version}`,
    });
  } catch (error) {
    const problems = (error as { problem?: { problems?: string[] } }).problem?.problems;
    checks.push({
      name: "Keygate reachable",
      ok: false,
      detail: problems
        ? `misconfigured: ${problems.join("; ")}`
        : error instanceof NetworkError
          ? `${error.message}; start it (npm start), point --url at it, or skip with --no-api`
          : (error as Error).message,
    });
    return checks;
  }
  try {
    await client.management("GET", "/consumers", { query: { limit: 1 } });
    checks.push({
      name: "management API",
      ok: true,
      detail: `the token (${tokenSource}) is accepted`,
    });
  } catch (error) {
    const message =
      error instanceof CliError ? [error.message, ...error.details].join(" ") : String(error);
    checks.push({ name: "management API", ok: false, detail: message.replace(/\s+/g, " ").trim() });
  }
  return checks;
}

/** `keygate doctor`: is this configuration one Keygate can run with? */
export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description(
      "check a configuration: bindings, migrations, vars and ROUTE_RULES, ORIGIN_URL, the management API",
    )
    .addOption(new Option("--local", "check local development (the default)").conflicts("remote"))
    .addOption(new Option("--remote", "check the Cloudflare deployment (needs wrangler login)"))
    .option("--config <path>", "the wrangler config", "wrangler.toml")
    .option("--no-api", "skip the checks that need Keygate running (health, management API)")
    .action(async (options: DoctorOptions, command: Command) => {
      const ctx = contextOf(command);
      const remote = options.remote === true;
      const { configPath, dir } = projectOf(options);
      const checks: Check[] = [];
      let config: WranglerConfig | null = null;
      try {
        config = readWranglerConfig(configPath);
        checks.push({ name: "wrangler config", ok: true, detail: configPath });
      } catch (error) {
        checks.push({ name: "wrangler config", ok: false, detail: (error as Error).message });
      }
      const devVars = readDevVars(dir);
      if (config) {
        checks.push(...bindingChecks(config, remote));
        // locally .dev.vars overrides [vars]; a deployment never sees .dev.vars
        const vars = remote ? varsOf(config) : { ...varsOf(config), ...devVars };
        const deployed: Deployed | null = remote
          ? { vars, devVars, ...(await deployedSecrets(options)) }
          : null;
        const [varsCheck, rulesCheck] = varsChecks(vars);
        checks.push(
          varsCheck,
          deployed ? deployedRouteRules(rulesCheck, ruleCount(vars), deployed) : rulesCheck,
        );
        if (!remote) {
          const token = devVars.ADMIN_TOKEN ?? "";
          checks.push({
            name: "ADMIN_TOKEN",
            ok: token.length >= MIN_ADMIN_TOKEN_LENGTH,
            detail:
              token === ""
                ? "none in .dev.vars: keygate setup --local (or npm start) writes one"
                : token.length < MIN_ADMIN_TOKEN_LENGTH
                  ? `the one in .dev.vars is ${token.length} characters; at least ${MIN_ADMIN_TOKEN_LENGTH}`
                  : "set in .dev.vars",
          });
        }
        if (d1Database(config, "DB")) checks.push(await migrationsCheck(options, remote));
        checks.push(deployed ? await deployedOrigin(deployed) : await originCheck(vars.ORIGIN_URL));
      }
      if (options.api) {
        const explicit = command.optsWithGlobals<{ token?: string }>().token;
        const token = explicit ?? (remote ? undefined : devVars.ADMIN_TOKEN);
        const source = explicit !== undefined ? "--token/KEYGATE_ADMIN_TOKEN" : ".dev.vars";
        checks.push(...(await apiChecks(new KeygateClient(ctx.client.baseUrl, token), source)));
      } else {
        checks.push({ name: "Keygate reachable", ok: null, detail: "skipped (--no-api)" });
      }
      const failed = checks.filter((c) => c.ok === false);
      const warnings = checks.filter((c) => c.warn).length;
      if (ctx.json) {
        print(
          JSON.stringify({
            ok: failed.length === 0,
            mode: remote ? "remote" : "local",
            warnings,
            checks,
          }),
        );
      } else {
        print(colors.bold(`keygate doctor (${remote ? "remote" : "local"}, ${configPath})`));
        const width = Math.max(...checks.map((c) => c.name.length));
        for (const check of checks) {
          const sign =
            check.ok === null ? mark.skip : check.warn ? mark.warn : check.ok ? mark.ok : mark.fail;
          const loud = check.ok === false || check.warn;
          print(
            `${sign} ${check.name.padEnd(width)}  ${loud ? check.detail : colors.dim(check.detail)}`,
          );
        }
        const warned = warnings === 0 ? "" : `, ${warnings} warning${warnings === 1 ? "" : "s"}`;
        print(
          failed.length > 0
            ? colors.red(`${failed.length} check${failed.length === 1 ? "" : "s"} failed${warned}`)
            : warnings > 0
              ? colors.yellow(`no check failed${warned}`)
              : colors.green("all checks passed"),
        );
      }
      if (failed.length > 0) process.exitCode = EXIT.failure;
    });
}
