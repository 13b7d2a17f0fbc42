import { execFile, spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./support/worker.js";

/**
 * Runs the built `keygate` command (dist/cli/keygate.mjs, as `npm install` leaves it) as a
 * subprocess, the way an operator or a script does. Shared by the cli-*.test.ts files.
 */

export const CLI = join(ROOT, "dist", "cli", "keygate.mjs");

const run = promisify(execFile);

/** Builds the CLI exactly as the npm `prepare` script does. */
export async function buildCli(): Promise<void> {
  await run(process.execPath, [join(ROOT, "scripts", "build-cli.mjs")], { cwd: ROOT });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Keygate's URL (`KEYGATE_URL`); left out: unset. */
  url?: string;
  /** Admin token (`KEYGATE_ADMIN_TOKEN`); left out: unset. */
  token?: string;
  cwd?: string;
  env?: Record<string, string>;
  input?: string;
}

function envFor(options: CliOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", WRANGLER_SEND_METRICS: "false" };
  delete env.KEYGATE_URL;
  delete env.KEYGATE_ADMIN_TOKEN;
  delete env.KEYGATE_WRANGLER;
  delete env.FORCE_COLOR;
  if (options.url !== undefined) env.KEYGATE_URL = options.url;
  if (options.token !== undefined) env.KEYGATE_ADMIN_TOKEN = options.token;
  return { ...env, ...options.env };
}

/** Runs `keygate ...args` to its end; never throws on a non-zero exit. */
export function keygate(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? ROOT,
      env: envFor(options),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdin.end(options.input ?? "");
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs `keygate ...args --json` that must succeed; answers its one JSON document. */
export async function keygateJson<T = Record<string, unknown>>(
  args: string[],
  options: CliOptions = {},
): Promise<T> {
  const result = await keygate([...args, "--json"], options);
  if (result.code !== 0) {
    throw new Error(`keygate ${args.join(" ")} exited ${result.code}:\n${result.stderr}`);
  }
  const lines = result.stdout.trim().split("\n");
  if (lines.length !== 1) throw new Error(`expected one JSON line, got:\n${result.stdout}`);
  return JSON.parse(lines[0]!) as T;
}

/** A running `keygate` whose stdout lines can be awaited one by one. */
export interface CliProcess {
  child: ChildProcess;
  /** The next line of stdout (waits for it). */
  nextLine(): Promise<string>;
  /** The exit, with everything it wrote. */
  exited: Promise<CliResult>;
}

export function startKeygateCli(args: string[], options: CliOptions = {}): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? ROOT,
    env: envFor(options),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let consumed = 0;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    wake();
  });
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  let closed = false;
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      closed = true;
      wake();
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
  return {
    child,
    exited,
    async nextLine() {
      for (;;) {
        const end = stdout.indexOf("\n", consumed);
        if (end !== -1) {
          const line = stdout.slice(consumed, end);
          consumed = end + 1;
          return line;
        }
        if (closed) throw new Error(`keygate exited before printing a line:\n${stderr}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}
