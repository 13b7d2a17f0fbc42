import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CRON_NOTE, ensureAdminToken, migrationSummary } from "../../scripts/start.mjs";
import { freePort, managementApi, request, sleep, waitFor } from "./support/http.js";
import { ROOT } from "./support/worker.js";

/**
 * `npm start` as a new user runs it: in a fresh copy of the project (sharing node_modules), it
 * writes `.dev.vars`, applies the migrations to a local D1 and serves the Worker with wrangler
 * dev, with no Cloudflare account and no network; killing npm stops every process it started.
 */

const TOKEN_LINE = /^ADMIN_TOKEN="(kgadmin_[A-Za-z0-9_-]{32})"$/m;

async function scratch(devVars?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "keygate-start-"));
  if (devVars !== undefined) await writeFile(join(dir, ".dev.vars"), devVars);
  return dir;
}

describe("npm start: ADMIN_TOKEN in .dev.vars", () => {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it("writes a random token when .dev.vars does not exist", async () => {
    const dir = await scratch();
    dirs.push(dir);
    expect(ensureAdminToken(dir)).toBe("written");
    expect(await readFile(join(dir, ".dev.vars"), "utf8")).toMatch(TOKEN_LINE);
  });

  it("adds a token next to other variables and keeps them", async () => {
    const dir = await scratch('ORIGIN_URL="http://127.0.0.1:9"');
    dirs.push(dir);
    expect(ensureAdminToken(dir)).toBe("written");
    const text = await readFile(join(dir, ".dev.vars"), "utf8");
    expect(text).toContain('ORIGIN_URL="http://127.0.0.1:9"\n');
    expect(text).toMatch(TOKEN_LINE);
  });

  it("replaces an empty token instead of leaving the API with no credential", async () => {
    const dir = await scratch('ADMIN_TOKEN=""\nKEY_PREFIX="live"\n');
    dirs.push(dir);
    expect(ensureAdminToken(dir)).toBe("written");
    const text = await readFile(join(dir, ".dev.vars"), "utf8");
    expect(text).toMatch(TOKEN_LINE);
    expect(text.match(/ADMIN_TOKEN/g)).toHaveLength(1);
    expect(text).toContain('KEY_PREFIX="live"');
  });

  it("replaces a bare `ADMIN_TOKEN=`, never taking the next line for its value", async () => {
    const dir = await scratch(
      'ADMIN_TOKEN=\nORIGIN_URL="http://127.0.0.1:9/a-long-enough-value"\n',
    );
    dirs.push(dir);
    expect(ensureAdminToken(dir)).toBe("written");
    const text = await readFile(join(dir, ".dev.vars"), "utf8");
    expect(text).toMatch(TOKEN_LINE);
    expect(text).toContain('ORIGIN_URL="http://127.0.0.1:9/a-long-enough-value"\n');
  });

  it("keeps a token the operator chose", async () => {
    const dir = await scratch("ADMIN_TOKEN=my-own-admin-token-123\n");
    dirs.push(dir);
    expect(ensureAdminToken(dir)).toBe("kept");
    expect(await readFile(join(dir, ".dev.vars"), "utf8")).toBe(
      "ADMIN_TOKEN=my-own-admin-token-123\n",
    );
  });

  it("refuses a token Keygate would not accept, saying why", async () => {
    const dir = await scratch("ADMIN_TOKEN=short\n");
    dirs.push(dir);
    expect(() => ensureAdminToken(dir)).toThrow(/5 characters; Keygate needs at least 16/);
  });
});

/** What wrangler 4 prints applying two migrations: the pending list, then a table per step. */
const APPLY_OUTPUT = `
 ⛅️ wrangler 4.86.0
Migrations to be applied:
┌───────────────┐
│ name          │
├───────────────┤
│ 0001_core.sql │
├───────────────┤
│ 0002_more.sql │
└───────────────┘
🚣 18 commands executed successfully.
┌───────────────┬────────┐
│ name          │ status │
├───────────────┼────────┤
│ 0001_core.sql │ ✅     │
├───────────────┼────────┤
│ 0002_more.sql │ 🕒️    │
└───────────────┴────────┘
🚣 5 commands executed successfully.
┌───────────────┬────────┐
│ name          │ status │
├───────────────┼────────┤
│ 0001_core.sql │ ✅     │
├───────────────┼────────┤
│ 0002_more.sql │ ✅     │
└───────────────┴────────┘
`;

describe("npm start: the migrations it applied", () => {
  it("shows one table, the last, with every migration's status", () => {
    const summary = migrationSummary(APPLY_OUTPUT);
    expect(summary.match(/┌/g)).toHaveLength(1);
    expect(summary).toContain("│ 0002_more.sql │ ✅     │");
    expect(summary).not.toContain("🕒");
    expect(summary).not.toContain("wrangler 4.86.0");
  });

  it("says in one line that the database is up to date", () => {
    expect(migrationSummary("\n ⛅️ wrangler 4.86.0\n✅ No migrations to apply!\n")).toBe(
      "keygate: the local D1 database is up to date (no migrations to apply)",
    );
  });

  it("passes output it does not recognise through whole", () => {
    expect(migrationSummary("something else\n")).toBe("something else");
  });
});

/** The processes of a process group that have not exited (zombies are gone but unreaped). */
function livingProcesses(group: number): string[] {
  try {
    return execFileSync("ps", ["-o", "stat=,args=", "-g", String(group)], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim() !== "" && !line.trim().startsWith("Z"));
  } catch {
    return []; // ps exits 1 when the group is empty
  }
}

/** Stops what is left of the process group `child` leads, whether or not `child` has exited. */
async function stop(child: ChildProcess): Promise<void> {
  const group = child.pid;
  if (group === undefined) return;
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-group, name);
    } catch {
      // the group is gone
    }
  };
  signal("SIGTERM");
  const deadline = Date.now() + 10_000;
  while (livingProcesses(group).length > 0 && Date.now() < deadline) await sleep(100);
  signal("SIGKILL");
}

describe("npm start on a fresh copy of the project", () => {
  let dir: string | undefined;
  let child: ChildProcess | undefined;
  afterAll(async () => {
    if (child) await stop(child);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("applies the migrations, writes .dev.vars and serves a working Keygate", async () => {
    dir = await mkdtemp(join(tmpdir(), "keygate-fresh-"));
    for (const entry of ["src", "migrations", "scripts", "wrangler.toml", "package.json"]) {
      await cp(join(ROOT, entry), join(dir, entry), { recursive: true });
    }
    await symlink(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
    const port = await freePort();
    const inspectorPort = await freePort();
    let output = "";
    // npm, as a user runs it: npm puts a shell between itself and the script
    child = spawn("npm", ["start", "--", "--inspector-port", String(inspectorPort)], {
      cwd: dir,
      env: {
        ...process.env,
        PORT: String(port),
        CI: "true",
        NO_COLOR: "1",
        npm_config_update_notifier: "false",
      },
      stdio: ["ignore", "pipe", "pipe"],
      // its own process group, so that what is left of it after npm is killed can be listed
      detached: true,
    });
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const base = `http://127.0.0.1:${port}`;
    await waitFor(
      "npm start to serve /_keygate/health",
      async () => {
        if (child!.exitCode !== null) throw new Error(`npm start exited early:\n${output}`);
        const health = await request(base, "GET", "/_keygate/health", { timeoutMs: 2_000 }).catch(
          () => undefined,
        );
        return health?.status === 200 ? health : undefined;
      },
      90_000,
      250,
    );
    expect(output).toContain("wrote a new ADMIN_TOKEN");
    const token = TOKEN_LINE.exec(await readFile(join(dir, ".dev.vars"), "utf8"))?.[1];
    expect(token).toBeDefined();
    expect(output).toContain(`export KEYGATE_ADMIN_TOKEN=${token}`);

    // the quick start of the README: a consumer, a key, a verified request
    const api = managementApi(base, token!);
    const consumer = await api.post("/consumers", { name: "Acme" });
    expect(consumer.status).toBe(201);
    const key = await api.post(`/consumers/${String(consumer.body.id)}/keys`, {
      scopes: ["prices:read"],
    });
    expect(key.status).toBe(201);
    const echoed = await request(base, "GET", "/prices/eur", {
      headers: { Authorization: `Bearer ${String(key.body.key)}` },
    });
    expect(echoed.status).toBe(200);
    expect(echoed.body).toMatchObject({ origin: "keygate-echo", keyId: key.body.id });

    // the first hour's output: one migrations table, the cron note, no offline stack trace
    expect(output.match(/│ name/g)).toHaveLength(1);
    expect(output).toContain("│ 0001_core.sql");
    expect(output).toContain(CRON_NOTE);
    expect(output).toContain(`export KEYGATE_URL=${base}`);
    expect(output).not.toContain("ENOTFOUND");
    expect(output).not.toContain("Request.cf");

    // killing npm alone (not its group) stops wrangler and workerd too
    const group = child.pid!;
    process.kill(group, "SIGTERM");
    await waitFor(
      "every process npm start began to exit",
      () => {
        const left = livingProcesses(group);
        return left.length === 0 ? true : undefined;
      },
      20_000,
      250,
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; still running:\n${livingProcesses(group).join("\n")}`);
    });
    await expect(request(base, "GET", "/_keygate/health", { timeoutMs: 2_000 })).rejects.toThrow();
    await sleep(0);
  }, 120_000);
});
