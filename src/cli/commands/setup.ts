import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { Option, type Command } from "commander";
import { contextOf } from "../context.js";
import { ensureDevAdminToken } from "../dev-vars.js";
import { CliError } from "../errors.js";
import { colors, print } from "../output.js";
import {
  d1Database,
  kvNamespace,
  PLACEHOLDER_D1_ID,
  PLACEHOLDER_KV_ID,
  readWranglerConfig,
  setBindingField,
  type WranglerConfig,
} from "../wrangler-config.js";
import { d1IdFrom, kvIdFrom, runOrFail, wranglerIn, type Wrangler } from "../wrangler.js";

/** One thing setup did, or with `--dry-run` would do. */
export type SetupStep =
  | { run: string; args: string[]; stdin?: "ADMIN_TOKEN" }
  | { write: string; what: string }
  | { skip: string; why: string };

export interface ProjectOptions {
  config: string;
}

/** The project a command works on: its wrangler config and the wrangler to run there. */
export function projectOf(options: ProjectOptions) {
  const configPath = resolve(options.config);
  const dir = dirname(configPath);
  const configArgs = basename(configPath) === "wrangler.toml" ? [] : ["--config", configPath];
  return { configPath, dir, wrangler: wranglerIn(dir, configArgs) };
}

const LOGIN_HINT =
  "wrangler needs a Cloudflare account: run npx wrangler login, or set CLOUDFLARE_API_TOKEN (and CLOUDFLARE_ACCOUNT_ID).";

interface SetupOptions extends ProjectOptions {
  local?: boolean;
  remote?: boolean;
  dryRun?: boolean;
  adminToken: boolean;
}

class Setup {
  readonly steps: SetupStep[] = [];
  constructor(
    readonly wrangler: Wrangler,
    readonly dryRun: boolean,
    readonly json: boolean,
  ) {}

  say(line: string): void {
    if (!this.json) print(line);
  }

  async run(args: string[], options: { input?: string; hint?: string } = {}): Promise<string> {
    const shown = this.wrangler.display(args);
    this.steps.push({
      run: shown,
      args,
      ...(options.input !== undefined ? { stdin: "ADMIN_TOKEN" as const } : {}),
    });
    const piped = options.input !== undefined ? "   (ADMIN_TOKEN on stdin)" : "";
    this.say(`${colors.dim("$")} ${shown}${piped}`);
    if (this.dryRun) return "";
    return (await runOrFail(this.wrangler, args, options)).stdout;
  }

  write(file: string, what: string, write: () => void): void {
    this.steps.push({ write: file, what });
    this.say(`${colors.dim(this.dryRun ? "would write" : "wrote")} ${what} to ${file}`);
    if (!this.dryRun) write();
  }

  skip(what: string, why: string): void {
    this.steps.push({ skip: what, why });
    this.say(`${colors.dim("skip")} ${what}: ${why}`);
  }
}

function requireBindings(config: WranglerConfig): void {
  const missing = [
    kvNamespace(config, "KEYS") ? null : "[[kv_namespaces]] binding KEYS",
    d1Database(config, "DB") ? null : "[[d1_databases]] binding DB",
  ].filter((m): m is string => m !== null);
  if (missing.length > 0) {
    throw new CliError(`${config.path} lacks ${missing.join(" and ")}`, {
      details: [
        "Restore them from the Keygate repository's wrangler.toml; keygate doctor lists what else is missing.",
      ],
    });
  }
}

/** Creates the KV namespace and D1 database wrangler.toml still has placeholder ids for. */
async function createResources(setup: Setup, start: WranglerConfig): Promise<void> {
  let config = start;
  const kvId = String(kvNamespace(config, "KEYS")?.id ?? "");
  if (kvId !== "" && kvId !== PLACEHOLDER_KV_ID) {
    setup.skip("KV namespace KEYS", `wrangler.toml already has id ${kvId}`);
  } else {
    const out = await setup.run(["kv", "namespace", "create", "KEYS"], { hint: LOGIN_HINT });
    const id = setup.dryRun ? "<id from wrangler>" : kvIdFrom(out);
    if (id === null)
      throw new CliError("wrangler created the KV namespace but printed no id I could read");
    setup.write(config.path, `the KV namespace id (${id})`, () => {
      config = setBindingField(config, "kv_namespaces", "KEYS", "id", id);
      writeFileSync(config.path, config.text);
    });
  }
  const db = d1Database(config, "DB")!;
  const dbId = String(db.database_id ?? "");
  const dbName = typeof db.database_name === "string" ? db.database_name : "keygate";
  if (dbId !== "" && dbId !== PLACEHOLDER_D1_ID) {
    setup.skip(`D1 database ${dbName}`, `wrangler.toml already has database_id ${dbId}`);
  } else {
    const out = await setup.run(["d1", "create", dbName], { hint: LOGIN_HINT });
    const id = setup.dryRun ? "<id from wrangler>" : d1IdFrom(out);
    if (id === null)
      throw new CliError("wrangler created the D1 database but printed no id I could read");
    setup.write(config.path, `the D1 database id (${id})`, () => {
      config = setBindingField(config, "d1_databases", "DB", "database_id", id);
      writeFileSync(config.path, config.text);
    });
  }
}

/** `keygate setup`: the wrangler set-up of a Keygate deployment, local or on Cloudflare. */
export function registerSetup(program: Command): void {
  program
    .command("setup")
    .description(
      "set Keygate up with wrangler: --local (migrations, .dev.vars) or --remote (KV, D1, migrations, ADMIN_TOKEN secret)",
    )
    .addOption(new Option("--local", "set up local development (the default)").conflicts("remote"))
    .addOption(new Option("--remote", "set up on Cloudflare (needs wrangler login)"))
    .option("--dry-run", "print the wrangler commands and edits without running them")
    .option("--config <path>", "the wrangler config", "wrangler.toml")
    .option("--no-admin-token", "leave ADMIN_TOKEN alone (--remote: it replaces any it finds)")
    .action(async (options: SetupOptions, command: Command) => {
      const { json } = contextOf(command);
      const remote = options.remote === true;
      const { configPath, dir, wrangler } = projectOf(options);
      const config = readWranglerConfig(configPath);
      requireBindings(config);
      const setup = new Setup(wrangler, options.dryRun === true, json);
      setup.say(
        colors.bold(
          `keygate setup ${remote ? "--remote" : "--local"}${setup.dryRun ? " (dry run: nothing runs)" : ""} in ${dir}`,
        ),
      );
      let adminToken: string | null = null;
      if (remote) {
        await createResources(setup, config);
        await setup.run(["d1", "migrations", "apply", "DB", "--remote"], { hint: LOGIN_HINT });
        if (options.adminToken) {
          const token = `kgadmin_${randomBytes(24).toString("base64url")}`;
          await setup.run(["secret", "put", "ADMIN_TOKEN"], { input: token, hint: LOGIN_HINT });
          if (!setup.dryRun) adminToken = token;
        } else {
          setup.skip("ADMIN_TOKEN", "--no-admin-token");
        }
      } else {
        await setup.run(["d1", "migrations", "apply", "DB", "--local"]);
        if (options.adminToken) {
          const result = ensureDevAdminToken(dir, setup.dryRun);
          if (result.action === "kept") setup.skip("ADMIN_TOKEN", ".dev.vars already has one");
          else setup.write(".dev.vars", "a random ADMIN_TOKEN", () => undefined);
          adminToken = result.token;
        } else {
          setup.skip("ADMIN_TOKEN", "--no-admin-token");
        }
      }
      const next = remote
        ? ["npx wrangler deploy", "keygate doctor --remote --url https://<your worker's URL>"]
        : [
            "npm start",
            "keygate doctor --local",
            "keygate setup --remote, then npx wrangler deploy",
          ];
      if (json) {
        print(
          JSON.stringify({
            mode: remote ? "remote" : "local",
            dryRun: setup.dryRun,
            steps: setup.steps,
            adminToken,
            next,
          }),
        );
        return;
      }
      if (adminToken !== null) {
        print(
          "",
          `ADMIN_TOKEN${remote ? " (a Worker secret now; shown once, store it)" : " (in .dev.vars)"}:`,
          `  export KEYGATE_ADMIN_TOKEN=${adminToken}`,
        );
      }
      print(
        "",
        remote ? "Deploy with:" : "Start it with:",
        ...next.slice(0, 1).map((line) => `  ${line}`),
        "then:",
        ...next.slice(1).map((line) => `  ${line}`),
      );
    });
}
