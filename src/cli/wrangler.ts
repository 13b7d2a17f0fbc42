import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { CliError } from "./errors.js";

/**
 * Runs wrangler, the deployment tool, the way an operator would: `node
 * node_modules/wrangler/bin/wrangler.js …` in the project directory. `KEYGATE_WRANGLER`
 * names another wrangler entry script (a test double, or a wrangler installed elsewhere).
 */
export interface WranglerResult {
  status: number;
  stdout: string;
  stderr: string;
}

export interface Wrangler {
  /** The command as an operator would type it: `wrangler d1 create keygate`. */
  display(args: string[]): string;
  /** Runs it; its output is returned and (unless `quiet`) echoed to stderr as it comes. */
  run(args: string[], options?: { input?: string; quiet?: boolean }): Promise<WranglerResult>;
}

function findWrangler(projectDir: string): string {
  const override = process.env.KEYGATE_WRANGLER;
  if (override) return resolve(override);
  for (let dir = resolve(projectDir); ; dir = dirname(dir)) {
    const entry = join(dir, "node_modules", "wrangler", "bin", "wrangler.js");
    if (existsSync(entry)) return entry;
    if (dirname(dir) === dir) break;
  }
  throw new CliError(`wrangler is not installed in ${projectDir}`, {
    details: ["Run npm install in the Keygate project first."],
  });
}

/** Wrangler for the project in `projectDir`, with `configArgs` (e.g. `--config x.toml`). */
export function wranglerIn(projectDir: string, configArgs: string[] = []): Wrangler {
  let entry: string | undefined;
  return {
    display: (args) => ["wrangler", ...args, ...configArgs].join(" "),
    run(args, options = {}) {
      entry ??= findWrangler(projectDir);
      const script = entry;
      return new Promise((resolveRun, reject) => {
        const child = spawn(process.execPath, [script, ...args, ...configArgs], {
          cwd: projectDir,
          env: {
            ...process.env,
            WRANGLER_SEND_METRICS: process.env.WRANGLER_SEND_METRICS ?? "false",
          },
          // stdin closed unless there is input: wrangler then takes its non-interactive defaults
          stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout!.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
          if (!options.quiet) process.stderr.write(chunk);
        });
        child.stderr!.on("data", (chunk: Buffer) => {
          stderr += chunk.toString();
          if (!options.quiet) process.stderr.write(chunk);
        });
        if (options.input !== undefined) child.stdin?.end(options.input);
        child.once("error", (error) =>
          reject(new CliError(`could not run wrangler (${script}): ${error.message}`)),
        );
        child.once("close", (code) => resolveRun({ status: code ?? 1, stdout, stderr }));
      });
    },
  };
}

/** Runs a wrangler command that must succeed; a failure names the command and how to go on. */
export async function runOrFail(
  wrangler: Wrangler,
  args: string[],
  options: { input?: string; hint?: string } = {},
): Promise<WranglerResult> {
  const result = await wrangler.run(args, options);
  if (result.status !== 0) {
    throw new CliError(
      `${wrangler.display(args)} failed (exit ${result.status}); its output is above`,
      {
        details: options.hint ? [options.hint] : [],
      },
    );
  }
  return result;
}

/** The id in wrangler's answer to `kv namespace create` (its TOML or JSON snippet). */
export function kvIdFrom(output: string): string | null {
  return /\bid"?\s*[=:]\s*"([0-9a-f]{32})"/.exec(output)?.[1] ?? null;
}

/** The database id in wrangler's answer to `d1 create`. */
export function d1IdFrom(output: string): string | null {
  return (
    /\bdatabase_id"?\s*[=:]\s*"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"/.exec(
      output,
    )?.[1] ?? null
  );
}

/**
 * Migrations `wrangler d1 migrations list` says are still to apply: empty when all are
 * applied, null when its output says neither.
 */
export function pendingMigrationsFrom(output: string): string[] | null {
  if (/No migrations to apply/i.test(output)) return [];
  const pending = [...output.matchAll(/│\s*(\d+_[^\s│]*)\s*│/g)].map((m) => m[1]!);
  return pending.length > 0 ? pending : null;
}
