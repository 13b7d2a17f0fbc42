import { spawn, type ChildProcess } from "node:child_process";
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureAdminToken } from "../../scripts/start.mjs";
import { freePort, managementApi, request, sleep, waitFor } from "./support/http.js";
import { ROOT } from "./support/worker.js";

/**
 * `npm start` as a new user runs it: in a fresh copy of the project (sharing node_modules), it
 * writes `.dev.vars`, applies the migrations to a local D1 and serves the Worker with wrangler
 * dev, with no Cloudflare account and no network.
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

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
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
    child = spawn(
      process.execPath,
      ["scripts/start.mjs", "--inspector-port", String(inspectorPort)],
      {
        cwd: dir,
        env: { ...process.env, PORT: String(port), CI: "true", NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      },
    );
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
    await sleep(0);
  }, 120_000);
});
