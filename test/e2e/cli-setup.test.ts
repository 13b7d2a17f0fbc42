import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCli, keygate, type CliOptions } from "./cli-harness.js";
import { CLOSED_PORT, startOrigin, type Origin } from "./support/http.js";
import { ROOT, startKeygate, type Keygate } from "./support/worker.js";

/**
 * `keygate setup` and `keygate doctor` on fresh copies of the project (node_modules shared).
 * The local path runs the real wrangler; the remote path is checked by the wrangler commands
 * it would run (--dry-run) and by running it against a stand-in wrangler (KEYGATE_WRANGLER)
 * that records its arguments and stdin and answers as wrangler does.
 */

const scratchDirs: string[] = [];
afterAll(() => Promise.all(scratchDirs.map((d) => rm(d, { recursive: true, force: true }))));

async function scratchProject(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "keygate-cli-setup-"));
  scratchDirs.push(dir);
  for (const entry of ["src", "migrations", "wrangler.toml", "package.json"]) {
    await cp(join(ROOT, entry), join(dir, entry), { recursive: true });
  }
  await symlink(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  return dir;
}

const KV_ID = "ab".repeat(16);
const D1_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

const FAKE_WRANGLER = `
import { appendFileSync, readFileSync } from "node:fs";
const args = process.argv.slice(2);
const stdin = readFileSync(0, "utf8");
appendFileSync(process.env.FAKE_WRANGLER_LOG, JSON.stringify({ args, stdin }) + "\\n");
const command = args.join(" ");
if (process.env.FAKE_WRANGLER_FAIL && command.startsWith(process.env.FAKE_WRANGLER_FAIL)) {
  console.error("✘ [ERROR] You are not logged in: run wrangler login.");
  process.exit(1);
}
if (command.startsWith("kv namespace create")) {
  console.log('🌀 Creating namespace with title "KEYS"\\n✨ Success!\\nTo access your new KV Namespace in your Worker, add the following snippet to your configuration file:\\n[[kv_namespaces]]\\nbinding = "KEYS"\\nid = "${KV_ID}"');
} else if (command.startsWith("d1 create")) {
  console.log("✅ Successfully created DB 'keygate'\\nCreated your new D1 database.\\n\\n[[d1_databases]]\\nbinding = \\"keygate\\"\\ndatabase_name = \\"keygate\\"\\ndatabase_id = \\"${D1_ID}\\"");
} else if (command.startsWith("d1 migrations list")) {
  console.log("✅ No migrations to apply!");
} else if (command.startsWith("secret list")) {
  const names = (process.env.FAKE_WRANGLER_SECRETS ?? "ADMIN_TOKEN").split(",");
  console.log(JSON.stringify(names.map((name) => ({ name, type: "secret_text" })), null, "  "));
} else {
  console.log("✨ Success!");
}
`;

interface WranglerCall {
  args: string[];
  stdin: string;
}

/** A stand-in wrangler in its own directory; `calls()` reads what it was asked. */
async function fakeWrangler(fail?: string, secrets?: string[]) {
  const dir = await mkdtemp(join(tmpdir(), "keygate-fake-wrangler-"));
  scratchDirs.push(dir);
  const script = join(dir, "wrangler.mjs");
  const log = join(dir, "calls.ndjson");
  await writeFile(script, FAKE_WRANGLER);
  await writeFile(log, "");
  return {
    env: {
      KEYGATE_WRANGLER: script,
      FAKE_WRANGLER_LOG: log,
      ...(fail ? { FAKE_WRANGLER_FAIL: fail } : {}),
      ...(secrets ? { FAKE_WRANGLER_SECRETS: secrets.join(",") } : {}),
    },
    async calls(): Promise<WranglerCall[]> {
      const text = await readFile(log, "utf8");
      return text
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as WranglerCall);
    },
  };
}

interface SetupReport {
  mode: string;
  dryRun: boolean;
  steps: ({ run: string } | { write: string } | { skip: string })[];
  adminToken: string | null;
  next: string[];
}

interface DoctorReport {
  ok: boolean;
  warnings: number;
  checks: { name: string; ok: boolean | null; detail: string; warn?: true }[];
}

const runs = (report: SetupReport) =>
  report.steps.filter((s): s is { run: string } => "run" in s).map((s) => s.run);

function checksOf(report: DoctorReport): Record<string, boolean | null> {
  return Object.fromEntries(report.checks.map((c) => [c.name, c.ok]));
}

beforeAll(buildCli);

describe("keygate setup --local", () => {
  let dir: string;

  it("applies the migrations for real and writes an ADMIN_TOKEN to .dev.vars", async () => {
    dir = await scratchProject();
    const result = await keygate(["setup", "--local"], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("$ wrangler d1 migrations apply DB --local");
    const token = /^ADMIN_TOKEN="(kgadmin_[\w-]{32})"$/m.exec(
      await readFile(join(dir, ".dev.vars"), "utf8"),
    )?.[1];
    expect(token).toBeDefined();
    expect(result.stdout).toContain(`export KEYGATE_ADMIN_TOKEN=${token}`);
    expect(result.stdout).toContain("npm start");

    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["node_modules/wrangler/bin/wrangler.js", "d1", "migrations", "list", "DB", "--local"],
      { cwd: dir, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
    );
    expect(stdout).toContain("No migrations to apply");
  }, 120_000);

  it("keeps the token on a second run", async () => {
    const before = await readFile(join(dir, ".dev.vars"), "utf8");
    const result = await keygate(["setup", "--local", "--json"], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as SetupReport;
    expect(report.adminToken).toBeNull();
    expect(report.steps).toContainEqual({ skip: "ADMIN_TOKEN", why: ".dev.vars already has one" });
    expect(await readFile(join(dir, ".dev.vars"), "utf8")).toBe(before);
  }, 120_000);
});

describe("keygate setup --remote", () => {
  it("--dry-run prints the wrangler commands in order and runs none of them", async () => {
    const dir = await scratchProject();
    const wrangler = await fakeWrangler();
    const before = await readFile(join(dir, "wrangler.toml"), "utf8");
    const human = await keygate(["setup", "--remote", "--dry-run"], {
      cwd: dir,
      env: wrangler.env,
    });
    expect(human.code, human.stderr).toBe(0);
    const commands = human.stdout
      .split("\n")
      .filter((l) => l.startsWith("$ "))
      .map((l) => l.slice(2).trim());
    expect(commands).toEqual([
      "wrangler kv namespace create KEYS",
      "wrangler d1 create keygate",
      "wrangler d1 migrations apply DB --remote",
      "wrangler secret put ADMIN_TOKEN   (ADMIN_TOKEN on stdin)",
    ]);
    expect(human.stdout).toContain("npx wrangler deploy");

    const json = await keygate(["setup", "--remote", "--dry-run", "--json"], {
      cwd: dir,
      env: wrangler.env,
    });
    const report = JSON.parse(json.stdout) as SetupReport;
    expect(report).toMatchObject({ mode: "remote", dryRun: true, adminToken: null });
    expect(runs(report)).toEqual([
      "wrangler kv namespace create KEYS",
      "wrangler d1 create keygate",
      "wrangler d1 migrations apply DB --remote",
      "wrangler secret put ADMIN_TOKEN",
    ]);
    expect(await wrangler.calls()).toEqual([]);
    expect(await readFile(join(dir, "wrangler.toml"), "utf8")).toBe(before);
  });

  it("creates KV and D1, writes their ids into wrangler.toml and sets ADMIN_TOKEN by stdin", async () => {
    const dir = await scratchProject();
    const wrangler = await fakeWrangler();
    const result = await keygate(["setup", "--remote", "--json"], { cwd: dir, env: wrangler.env });
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as SetupReport;
    expect(report.adminToken).toMatch(/^kgadmin_[\w-]{32}$/);
    expect(report.next).toContain("npx wrangler deploy");

    const calls = await wrangler.calls();
    expect(calls.map((c) => c.args.join(" "))).toEqual([
      "kv namespace create KEYS",
      "d1 create keygate",
      "d1 migrations apply DB --remote",
      "secret put ADMIN_TOKEN",
    ]);
    expect(calls[3]!.stdin).toBe(report.adminToken);
    expect(calls.slice(0, 3).every((c) => c.stdin === "")).toBe(true);

    const text = await readFile(join(dir, "wrangler.toml"), "utf8");
    const config = parse(text) as {
      kv_namespaces: { binding: string; id: string }[];
      d1_databases: { binding: string; database_id: string }[];
    };
    expect(config.kv_namespaces).toEqual([{ binding: "KEYS", id: KV_ID }]);
    expect(config.d1_databases[0]).toMatchObject({ binding: "DB", database_id: D1_ID });
    // only the two ids changed: comments and everything else as they were
    const original = await readFile(join(ROOT, "wrangler.toml"), "utf8");
    expect(text).toBe(
      original
        .replace("00000000000000000000000000000000", KV_ID)
        .replace("00000000-0000-0000-0000-000000000000", D1_ID),
    );

    // a second run finds the ids and creates nothing; --no-admin-token leaves the secret alone
    const again = await keygate(["setup", "--remote", "--no-admin-token", "--json"], {
      cwd: dir,
      env: wrangler.env,
    });
    expect(again.code, again.stderr).toBe(0);
    expect(runs(JSON.parse(again.stdout) as SetupReport)).toEqual([
      "wrangler d1 migrations apply DB --remote",
    ]);

    // doctor --remote is content with the result (Keygate itself not deployed: --no-api)
    const doctor = await keygate(["doctor", "--remote", "--no-api", "--json"], {
      cwd: dir,
      env: wrangler.env,
    });
    expect(doctor.code, doctor.stdout).toBe(0);
    // ...but says that wrangler.toml as shipped deploys the echo origin with no rules
    const doctorReport = JSON.parse(doctor.stdout) as DoctorReport;
    expect(doctorReport.warnings).toBe(2);
    expect(doctorReport.checks.filter((c) => c.warn).map((c) => c.name)).toEqual([
      "ROUTE_RULES",
      "ORIGIN_URL reachable",
    ]);
    expect((await wrangler.calls()).at(-1)!.args.join(" ")).toBe("d1 migrations list DB --remote");
  });

  it("a failing wrangler command stops the set-up, named, with how to log in", async () => {
    const dir = await scratchProject();
    const wrangler = await fakeWrangler("d1 create");
    const result = await keygate(["setup", "--remote"], { cwd: dir, env: wrangler.env });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("You are not logged in");
    expect(result.stderr).toContain("keygate: wrangler d1 create keygate failed (exit 1)");
    expect(result.stderr).toContain("npx wrangler login");
    expect((await wrangler.calls()).map((c) => c.args.join(" "))).toEqual([
      "kv namespace create KEYS",
      "d1 create keygate",
    ]);
  });
});

/** A scratch project whose wrangler.toml [vars] also holds `lines`, set up for --remote. */
async function deployedProject(lines: string[], devVars?: string): Promise<string> {
  const dir = await scratchProject();
  const path = join(dir, "wrangler.toml");
  const toml = (await readFile(path, "utf8"))
    .replace("00000000000000000000000000000000", KV_ID)
    .replace("00000000-0000-0000-0000-000000000000", D1_ID)
    .replace(
      '[vars]\nKEY_PREFIX = "kg"\n',
      ["[vars]", 'KEY_PREFIX = "kg"', ...lines, ""].join("\n"),
    );
  await writeFile(path, toml);
  if (devVars !== undefined) await writeFile(join(dir, ".dev.vars"), devVars);
  return dir;
}

async function doctorRemote(dir: string, wrangler: { env: Record<string, string> }) {
  const json = await keygate(["doctor", "--remote", "--no-api", "--json"], {
    cwd: dir,
    env: wrangler.env,
  });
  const human = await keygate(["doctor", "--remote", "--no-api"], { cwd: dir, env: wrangler.env });
  const report = JSON.parse(json.stdout) as DoctorReport;
  const check = (name: string) => report.checks.find((c) => c.name === name)!;
  return { code: json.code, report, human, check };
}

describe("keygate doctor --remote: what the deployment will run with", () => {
  it("warns, without failing, on an empty ORIGIN_URL and rules that are only in .dev.vars", async () => {
    const dir = await deployedProject(
      ['ORIGIN_URL = ""'],
      `ORIGIN_URL="http://127.0.0.1:${CLOSED_PORT}"\nROUTE_RULES='[{"path":"/prices/*","scopes":["prices:read"]}]'\n`,
    );
    const { code, report, human, check } = await doctorRemote(dir, await fakeWrangler());
    expect(code, human.stdout).toBe(0);
    expect(report).toMatchObject({ ok: true, warnings: 2 });
    expect(check("ROUTE_RULES")).toMatchObject({ ok: true, warn: true });
    expect(check("ROUTE_RULES").detail).toContain("only in .dev.vars");
    expect(check("ROUTE_RULES").detail).toContain("any key reaches all of the origin");
    expect(check("ORIGIN_URL reachable")).toMatchObject({ ok: true, warn: true });
    expect(check("ORIGIN_URL reachable").detail).toContain("built-in echo origin");
    expect(check("ORIGIN_URL reachable").detail).toContain(
      `.dev.vars sets http://127.0.0.1:${CLOSED_PORT}`,
    );
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^! ROUTE_RULES\s+only in \.dev\.vars/m);
    expect(human.stdout).toMatch(/^! ORIGIN_URL reachable\s+not set/m);
    expect(human.stdout).not.toContain("all checks passed");
    expect(human.stdout).toMatch(/^no check failed, 2 warnings$/m);
  });

  it("warns on a [vars] ROUTE_RULES that holds no rules", async () => {
    const dir = await deployedProject(["ROUTE_RULES = '[]'"]);
    const { code, check } = await doctorRemote(dir, await fakeWrangler());
    expect(code).toBe(0);
    expect(check("ROUTE_RULES")).toMatchObject({ ok: true, warn: true });
    expect(check("ROUTE_RULES").detail).toContain("[vars] holds an empty list");
  });

  it("passes with no warning when rules and origin are in [vars]", async () => {
    const origin = await startOrigin();
    try {
      const dir = await deployedProject([
        `ORIGIN_URL = "${origin.url}"`,
        `ROUTE_RULES = '[{"path":"/prices/*","scopes":["prices:read"]}]'`,
      ]);
      const { code, report, human } = await doctorRemote(dir, await fakeWrangler());
      expect(code).toBe(0);
      expect(report.warnings).toBe(0);
      expect(report.checks.filter((c) => c.ok === false || c.warn)).toEqual([]);
      expect(human.stdout).toContain("all checks passed");
    } finally {
      await origin.close();
    }
  });

  it("takes rules and origin set as secrets as set, unread", async () => {
    const dir = await deployedProject([]);
    const wrangler = await fakeWrangler(undefined, ["ADMIN_TOKEN", "ROUTE_RULES", "ORIGIN_URL"]);
    const { code, report, check } = await doctorRemote(dir, wrangler);
    expect(code).toBe(0);
    expect(report.warnings).toBe(0);
    expect(check("ROUTE_RULES")).toMatchObject({
      ok: true,
      detail: expect.stringContaining("secret"),
    });
    expect(check("ORIGIN_URL reachable")).toMatchObject({ ok: null });
    expect((await wrangler.calls()).map((c) => c.args.join(" "))).toContain(
      "secret list --format json",
    );
  });

  it("says when the secrets could not be listed", async () => {
    const dir = await deployedProject([]);
    const { code, check } = await doctorRemote(dir, await fakeWrangler("secret list"));
    expect(code).toBe(0);
    expect(check("ROUTE_RULES").warn).toBe(true);
    expect(check("ROUTE_RULES").detail).toContain(
      "the secrets could not be listed: wrangler secret list --format json failed, exit 1",
    );
  });
});

describe("keygate doctor", () => {
  let kg: Keygate;
  let origin: Origin;
  beforeAll(async () => {
    [kg, origin] = await Promise.all([startKeygate(), startOrigin()]);
  });
  afterAll(async () => {
    await kg?.stop();
    await origin?.close();
  });

  it("passes on a project set up with setup --local, Keygate running", async () => {
    const dir = await scratchProject();
    await writeFile(
      join(dir, ".dev.vars"),
      `ORIGIN_URL="${origin.url}"\nROUTE_RULES='[{"method":"GET","path":"/prices/*","scopes":["prices:read"]}]'\n`,
    );
    expect((await keygate(["setup", "--local"], { cwd: dir })).code).toBe(0);
    const as: CliOptions = { cwd: dir, url: kg.url, token: kg.adminToken };
    const result = await keygate(["doctor", "--json"], as);
    const report = JSON.parse(result.stdout) as DoctorReport;
    expect(report.checks.filter((c) => c.ok !== true)).toEqual([]);
    expect(result.code).toBe(0);
    expect(report.checks.find((c) => c.name === "ROUTE_RULES")!.detail).toContain("1 rules");
    expect(origin.seen.length).toBeGreaterThan(0);

    const human = await keygate(["doctor"], as);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^✓ binding COORDINATOR \(Durable Object\)/m);
    expect(human.stdout).toMatch(/^✓ D1 migrations applied\s+all applied \(local\)/m);
    expect(human.stdout).toContain("all checks passed");
  }, 120_000);

  it("fails, exit 1, listing each problem of a broken configuration", async () => {
    const dir = await scratchProject();
    const toml = await readFile(join(dir, "wrangler.toml"), "utf8");
    await writeFile(
      join(dir, "wrangler.toml"),
      toml.replace(
        /\[\[durable_objects\.bindings\]\]\nname = "SIGNER"\nclass_name = "TokenSigner"\n/,
        "",
      ),
    );
    const closed = CLOSED_PORT;
    await writeFile(
      join(dir, ".dev.vars"),
      `ADMIN_TOKEN=short\nORIGIN_URL=http://127.0.0.1:${closed}\nROUTE_RULES='[{"path":"no-slash"}]'\n`,
    );
    const as: CliOptions = { cwd: dir, url: `http://127.0.0.1:${closed}`, token: kg.adminToken };
    const result = await keygate(["doctor", "--json"], as);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as DoctorReport;
    expect(report.ok).toBe(false);
    expect(checksOf(report)).toMatchObject({
      "wrangler config": true,
      "binding KEYS (Workers KV)": true,
      "binding DB (D1)": true,
      "binding COORDINATOR (Durable Object)": true,
      "binding SIGNER (Durable Object)": false,
      ROUTE_RULES: false,
      ADMIN_TOKEN: false,
      "D1 migrations applied": false,
      "ORIGIN_URL reachable": false,
      "Keygate reachable": false,
    });
    const detail = (name: string) => report.checks.find((c) => c.name === name)!.detail;
    expect(detail("D1 migrations applied")).toContain("0001_core.sql");
    expect(detail("ROUTE_RULES")).toContain("ROUTE_RULES.0.path");
    expect(detail("binding SIGNER (Durable Object)")).toContain("missing");

    const human = await keygate(["doctor"], as);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/^✗ binding SIGNER \(Durable Object\)/m);
    expect(human.stdout).toMatch(
      /^✗ ORIGIN_URL reachable\s+http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/m,
    );
    expect(human.stdout).toMatch(/\d+ checks failed$/m);
  }, 120_000);

  it("a refused token fails the management API check", async () => {
    const dir = await scratchProject();
    expect((await keygate(["setup", "--local"], { cwd: dir })).code).toBe(0);
    const result = await keygate(["doctor", "--json"], {
      cwd: dir,
      url: kg.url,
      token: "not-the-admin-token-0123456789",
    });
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as DoctorReport;
    expect(checksOf(report)).toMatchObject({ "Keygate reachable": true, "management API": false });
    expect(report.checks.at(-1)!.detail).toContain("invalid_key (401)");
  }, 120_000);
});
