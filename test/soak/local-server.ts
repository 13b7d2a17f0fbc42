import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { bundleForWorkerd, bundleWorker } from "../e2e/support/worker.js";

/**
 * The soak's local Keygate: bundled once (so that edits others make to src/ during a run do
 * not reach it, and the restarted server runs the very same code), served by a child process
 * (server.ts) that can be stopped with SIGTERM and started again on the same state.
 */
export interface LocalServer {
  url: string;
  /** SIGTERM, then waits for the process to exit (SIGKILL after 15 s); returns how it ended */
  stop(): Promise<string>;
  /** the child's stdout and stderr (the Worker's console output) */
  logPath: string;
}

/** Bundles `entry` (default: this checkout's `src/index.ts`) into `<dir>/worker/index.js`. */
export async function bundleKeygate(dir: string, entry: string | null): Promise<void> {
  if (entry === null) await bundleWorker(join(dir, "worker"));
  else await bundleForWorkerd(resolve(entry), join(dir, "worker", "index.js"), true);
}

/**
 * Starts the server child on `port` with state in `dir`. `bundleUrl` is the soak's own
 * bundle, which exports `serve` (server.ts).
 */
export async function startServer(
  bundleUrl: string,
  dir: string,
  port: number,
  adminToken: string,
  migrate: boolean,
  log: WriteStream,
): Promise<LocalServer> {
  // a module of its own: `node --input-type=module -e` stalled in Miniflare's D1 calls here
  const launcher = join(dir, "serve.mjs");
  await writeFile(
    launcher,
    `import { serve } from ${JSON.stringify(bundleUrl)};\nawait serve(process.argv.slice(2));\n`,
  );
  const child: ChildProcess = spawn(
    process.execPath,
    [launcher, dir, String(port), migrate ? "1" : "0"],
    {
      env: { ...process.env, SOAK_ADMIN_TOKEN: adminToken, WRANGLER_SEND_METRICS: "false" },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    },
  );
  const exited = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => resolve(signal ? `signal ${signal}` : `code ${code}`)),
  );
  child.stderr!.pipe(log, { end: false });
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the server did not start in 60 s; see ${String(log.path)}`));
    }, 60_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      log.write(chunk);
      buffered += chunk.toString("utf8");
      const match = /\{"ready":"([^"]+)"\}/.exec(buffered);
      if (match) {
        clearTimeout(timer);
        buffered = "";
        resolve(match[1]!);
      }
    });
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`the server exited before serving (${how}); see ${log.path}`));
    });
  });
  return {
    url,
    logPath: String(log.path),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const how = await exited;
      clearTimeout(killer);
      return how;
    },
  };
}

export function openLog(dir: string): WriteStream {
  return createWriteStream(join(dir, "server.log"), { flags: "a" });
}
