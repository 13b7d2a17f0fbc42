import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cp, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, request, waitFor } from "./http.js";
import { ROOT } from "./worker.js";

/**
 * `npm start` (wrangler dev) on a fresh copy of the project, for what only wrangler's local
 * server shows: it puts a proxy Worker in front of Keygate, which miniflare alone does not.
 */
export interface WranglerDev {
  url: string;
  adminToken: string;
  /** what wrangler printed so far */
  output(): string;
  stop(): Promise<void>;
}

export async function startWranglerDev(vars: Record<string, string> = {}): Promise<WranglerDev> {
  const dir = await mkdtemp(join(tmpdir(), "keygate-dev-"));
  for (const entry of ["src", "migrations", "scripts", "wrangler.toml", "package.json"]) {
    await cp(join(ROOT, entry), join(dir, entry), { recursive: true });
  }
  await symlink(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  const adminToken = `kgadmin_${randomBytes(24).toString("base64url")}`;
  const devVars = { ADMIN_TOKEN: adminToken, ...vars };
  await writeFile(
    join(dir, ".dev.vars"),
    Object.entries(devVars)
      .map(([name, value]) => `${name}=${JSON.stringify(value)}\n`)
      .join(""),
  );
  const port = await freePort();
  let output = "";
  const child: ChildProcess = spawn(process.execPath, ["scripts/start.mjs"], {
    cwd: dir,
    env: { ...process.env, PORT: String(port), CI: "true", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const stop = async () => {
    await new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.pid === undefined) return resolve();
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // already gone
        }
        resolve();
      }, 10_000);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        clearTimeout(timer);
        resolve();
      }
    });
    await rm(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      "wrangler dev to serve /_keygate/health",
      async () => {
        if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${output}`);
        const health = await request(url, "GET", "/_keygate/health", { timeoutMs: 2_000 }).catch(
          () => undefined,
        );
        return health?.status === 200 ? health : undefined;
      },
      90_000,
      250,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, adminToken, output: () => output, stop };
}
