import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCli, keygate, keygateJson, type CliOptions } from "./cli-harness.js";
import { CLOSED_PORT, request } from "./support/http.js";
import { ROOT, startKeygate, type Keygate } from "./support/worker.js";

/**
 * The built `keygate` command against Keygate in miniflare: every management command's
 * happy path (--json), the tables people read, and how each kind of error is reported.
 */

const SECRET = /^kg_[0-9a-hjkmnp-tv-z]{16}_[0-9A-Za-z]{38}$/;

interface Consumer {
  id: string;
  name: string;
  rateLimit: { limit: number; periodSeconds: number } | null;
  monthlyQuota: number | null;
}
interface Key {
  id: string;
  key?: string;
  consumerId: string;
  status: string;
  version: number;
  scopes: string[];
  name: string | null;
  rotation: Rotation | null;
  versions: { version: number; status: string }[];
}
interface Rotation {
  id: string;
  keyId: string;
  state: string;
  graceUntil: string | null;
  fromVersion: number;
  toVersion: number;
  usage?: { old: { requests: number }; new: { requests: number } };
}
interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

let kg: Keygate;
let as: CliOptions;

beforeAll(async () => {
  await buildCli();
  kg = await startKeygate({
    routeRules: [{ method: "GET", path: "/prices/*", scopes: ["prices:read"] }],
  });
  as = { url: kg.url, token: kg.adminToken };
});
afterAll(() => kg?.stop());

async function consumer(name = "Acme"): Promise<Consumer> {
  return keygateJson<Consumer>(["consumers", "create", name], as);
}

async function issuedKey(consumerId: string, ...args: string[]): Promise<Key & { key: string }> {
  return keygateJson<Key & { key: string }>(
    ["keys", "create", consumerId, "--scope", "prices:read", ...args],
    as,
  );
}

const call = (secret: string) =>
  request(kg.url, "GET", "/prices/eur", { headers: { Authorization: `Bearer ${secret}` } });

describe("keygate consumers", () => {
  it("creates, lists, shows, updates and deletes a consumer (--json)", async () => {
    const created = await keygateJson<Consumer>(
      [
        "consumers",
        "create",
        "Acme Corp",
        "--rate-limit",
        "100/1m",
        "--metadata",
        '{"plan":"pro"}',
      ],
      as,
    );
    expect(created).toMatchObject({
      name: "Acme Corp",
      rateLimit: { limit: 100, periodSeconds: 60 },
      metadata: { plan: "pro" },
    });
    expect(created.id).toMatch(/^csm_/);

    const got = await keygateJson<Consumer>(["consumers", "get", created.id], as);
    expect(got).toEqual(created);

    const listed = await keygateJson<Page<Consumer>>(["consumers", "list", "--all"], as);
    expect(listed.items.map((c) => c.id)).toContain(created.id);

    const updated = await keygateJson<Consumer>(
      ["consumers", "update", created.id, "--monthly-quota", "5000", "--rate-limit", "none"],
      as,
    );
    expect(updated).toMatchObject({ monthlyQuota: 5000, rateLimit: null, name: "Acme Corp" });

    const key = await issuedKey(created.id);
    const deleted = await keygateJson<{ deleted: boolean; revokedKeys: string[] }>(
      ["consumers", "delete", created.id, "--yes"],
      as,
    );
    expect(deleted).toMatchObject({ deleted: true, revokedKeys: [key.id] });
    expect((await call(key.key)).status).toBe(401);
  });

  it("pages with --limit and --cursor", async () => {
    await consumer("Page one");
    await consumer("Page two");
    const first = await keygateJson<Page<Consumer>>(["consumers", "list", "--limit", "1"], as);
    expect(first.items).toHaveLength(1);
    expect(first.nextCursor).not.toBeNull();
    const second = await keygateJson<Page<Consumer>>(
      ["consumers", "list", "--limit", "1", "--cursor", first.nextCursor!],
      as,
    );
    expect(second.items).toHaveLength(1);
    expect(second.items[0]!.id).not.toBe(first.items[0]!.id);
  });

  it("prints a table of consumers for people", async () => {
    const created = await consumer("Table Co");
    const result = await keygate(["consumers", "list"], as);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID\s+NAME\s+RATE LIMIT\s+QUOTA\s+CREATED$/);
    expect(lines.some((l) => l.startsWith(created.id) && l.includes("Table Co"))).toBe(true);
  });

  it("refuses to delete without --yes when there is no terminal to ask on", async () => {
    const created = await consumer("Keep me");
    const result = await keygate(["consumers", "delete", created.id], as);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Pass --yes to confirm");
    expect((await keygateJson<Consumer>(["consumers", "get", created.id], as)).id).toBe(created.id);
  });

  it("says what to pass when update is given nothing to change", async () => {
    const created = await consumer();
    const result = await keygate(["consumers", "update", created.id], as);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("nothing to update");
  });
});

describe("keygate keys", () => {
  it("issues a key whose secret is printed once, then never again", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId, "--name", "ci", "--expires-in", "30d");
    expect(key.key).toMatch(SECRET);
    expect(key).toMatchObject({ consumerId, name: "ci", version: 1, status: "active" });
    expect((await call(key.key)).status).toBe(200);

    const got = await keygate(["keys", "get", key.id, "--json"], as);
    const table = await keygate(["keys", "get", key.id], as);
    const listed = await keygate(["keys", "list", consumerId, "--json"], as);
    const audit = await keygate(["audit", "--key", key.id, "--json"], as);
    for (const output of [got, table, listed, audit]) {
      expect(output.code).toBe(0);
      expect(output.stdout + output.stderr).not.toContain(key.key);
    }
    expect(JSON.parse(got.stdout)).toMatchObject({ id: key.id, scopes: ["prices:read"] });
    expect((JSON.parse(listed.stdout) as Page<Key>).items.map((k) => k.id)).toEqual([key.id]);
  });

  it("shows the secret on its own line in the table output of create", async () => {
    const { id: consumerId } = await consumer();
    const result = await keygate(["keys", "create", consumerId, "--scope", "prices:read"], as);
    expect(result.code).toBe(0);
    const secrets = result.stdout.split("\n").filter((l) => SECRET.test(l.trim()));
    expect(secrets).toHaveLength(1);
    expect(result.stderr).toContain("only time the secret is shown");
    expect((await call(secrets[0]!.trim())).status).toBe(200);
  });

  it("shows a key with its versions as tables", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    await keygateJson(["keys", "rotate", key.id, "--grace", "1h"], as);
    const result = await keygate(["keys", "get", key.id], as);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^id\s+/m);
    expect(result.stdout).toMatch(/^VERSION\s+STATUS\s+HINT/m);
    expect(result.stdout).toMatch(/^2\s+active\s+…/m);
    expect(result.stdout).toMatch(/^1\s+grace\s+…/m);
    expect(result.stdout).toMatch(/^rotation\s+rot_/m);
  });

  it("updates a key's name and scopes", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    const updated = await keygateJson<Key>(
      ["keys", "update", key.id, "--name", "renamed", "--scope", "prices:read,trade:write"],
      as,
    );
    expect(updated).toMatchObject({ name: "renamed", scopes: ["prices:read", "trade:write"] });
  });

  it("rotates, extends and completes a rotation, the old secret then refused", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    const rotated = await keygateJson<Key & { key: string; rotation: Rotation }>(
      ["keys", "rotate", key.id, "--grace", "1h"],
      as,
    );
    expect(rotated.key).toMatch(SECRET);
    expect(rotated.key).not.toBe(key.key);
    expect(rotated).toMatchObject({
      version: 2,
      rotation: { state: "in_progress", fromVersion: 1 },
    });
    expect((await call(key.key)).status).toBe(200);
    expect((await call(rotated.key)).status).toBe(200);

    const status = await keygateJson<Rotation>(["rotations", "status", rotated.rotation.id], as);
    expect(status.usage).toMatchObject({ old: { requests: 1 }, new: { requests: 1 } });

    const extended = await keygateJson<Rotation>(["keys", "extend", key.id, "--by", "2h"], as);
    expect(Date.parse(extended.graceUntil!)).toBeGreaterThan(
      Date.parse(rotated.rotation.graceUntil!),
    );

    const completed = await keygateJson<Rotation>(["keys", "complete", key.id], as);
    expect(completed).toMatchObject({ id: rotated.rotation.id, state: "completed" });
    expect((await call(key.key)).status).toBe(401);
    expect((await call(rotated.key)).status).toBe(200);

    const listed = await keygateJson<Page<Rotation>>(["rotations", "list", key.id], as);
    expect(listed.items.map((r) => r.id)).toEqual([rotated.rotation.id]);
  });

  it("rolls a rotation back by its id: the new secret refused, the old one active", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    const rotated = await keygateJson<Key & { key: string; rotation: Rotation }>(
      ["keys", "rotate", key.id],
      as,
    );
    const rolledBack = await keygateJson<Rotation>(["keys", "rollback", rotated.rotation.id], as);
    expect(rolledBack.state).toBe("rolled_back");
    expect((await call(rotated.key)).status).toBe(401);
    expect((await call(key.key)).status).toBe(200);
  });

  it("rotates in an emergency: the old secret stops at once", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    const rotated = await keygateJson<Key & { key: string }>(
      ["keys", "rotate", key.id, "--emergency"],
      as,
    );
    expect((await call(key.key)).status).toBe(401);
    expect((await call(rotated.key)).status).toBe(200);
  });

  it("revokes a key with --yes", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    const revoked = await keygateJson<Key>(
      ["keys", "revoke", key.id, "--reason", "leaked in a log", "--yes"],
      as,
    );
    expect(revoked.status).toBe("revoked");
    expect((await call(key.key)).status).toBe(401);
  });
});

describe("keygate rotations status", () => {
  it("draws the old/new traffic share as bars", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    const rotated = await keygateJson<Key & { key: string }>(["keys", "rotate", key.id], as);
    await call(key.key);
    for (let i = 0; i < 3; i++) await call(rotated.key);
    const result = await keygate(["rotations", "status", key.id], as);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/old v1\s+█{7,8}░{22,23}\s+25%\s+1 requests/);
    expect(result.stdout).toMatch(/new v2\s+█{22,23}░{7,8}\s+75%\s+3 requests/);
  });
});

describe("keygate audit, usage, verify, token", () => {
  it("lists audit events, filtered by key and action", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    await keygateJson(["keys", "rotate", key.id], as);
    const all = await keygateJson<Page<{ action: string; actor: string }>>(
      ["audit", "--key", key.id],
      as,
    );
    expect(all.items.length).toBeGreaterThanOrEqual(2);
    expect(all.items.every((e) => e.actor === "admin")).toBe(true);
    const action = all.items[0]!.action;
    const filtered = await keygateJson<Page<{ action: string }>>(
      ["audit", "--key", key.id, "--action", action],
      as,
    );
    expect(filtered.items.every((e) => e.action === action)).toBe(true);

    const table = await keygate(["audit", "--consumer", consumerId], as);
    expect(table.stdout).toMatch(/^AT\s+ACTOR\s+ACTION\s+TARGET\s+REQUEST$/m);
  });

  it("shows a key's hourly usage per version", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    for (let i = 0; i < 3; i++) expect((await call(key.key)).status).toBe(200);
    const usage = await keygateJson<{
      total: number;
      items: { versions: Record<string, number> }[];
    }>(["usage", key.id, "--from", "2h"], as);
    expect(usage.total).toBe(3);
    expect(usage.items.at(-1)!.versions).toEqual({ 1: 3 });
    const table = await keygate(["usage", key.id], as);
    expect(table.stdout).toMatch(/^HOUR\s+REQUESTS\s+V1$/m);
    expect(table.stdout).toContain("total 3 requests");
  });

  it("verifies a key, and exits 1 for one that does not verify", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    const valid = await keygateJson<{ valid: boolean; keyId: string }>(
      ["verify", key.key, "--scope", "prices:read"],
      as,
    );
    expect(valid).toMatchObject({ valid: true, keyId: key.id });

    const fromStdin = await keygate(["verify", "--json"], { ...as, input: `${key.key}\n` });
    expect(JSON.parse(fromStdin.stdout)).toMatchObject({ valid: true });

    const typo = key.key.slice(0, -1) + (key.key.endsWith("x") ? "y" : "x");
    const invalid = await keygate(["verify", typo, "--json"], as);
    expect(invalid.code).toBe(1);
    expect(JSON.parse(invalid.stdout)).toMatchObject({ valid: false, code: "invalid_key" });
  });

  it("exchanges a key for an access token that the front door accepts", async () => {
    const { id: consumerId } = await consumer();
    const key = await issuedKey(consumerId);
    const token = await keygateJson<{ access_token: string; token_type: string; scope: string }>(
      ["token", key.key, "--scope", "prices:read"],
      { url: kg.url },
    );
    expect(token).toMatchObject({ token_type: "Bearer", scope: "prices:read" });
    expect((await call(token.access_token)).status).toBe(200);
  });
});

describe("keygate errors", () => {
  it("a refused token: exit 1, the problem's code, detail and request id, and a hint", async () => {
    const result = await keygate(["consumers", "list"], {
      url: kg.url,
      token: "not-the-admin-token-0123456789",
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/keygate: invalid_key \(401\): /);
    expect(result.stderr).toMatch(/request id: req_/);
    expect(result.stderr).toContain("check --token or KEYGATE_ADMIN_TOKEN");
    expect(result.stdout).toBe("");
  });

  it("an unknown key id: not_found with the server's detail", async () => {
    const result = await keygate(["keys", "get", "0000000000000000"], as);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/keygate: not_found \(404\): No key with that id\./);
    expect(result.stderr).toMatch(/request id: req_/);
  });

  it("a validation failure lists the fields", async () => {
    const { id: consumerId } = await consumer();
    const result = await keygate(["keys", "create", consumerId, "--scope", "NOT A SCOPE"], as);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/validation_failed \(400\)/);
    expect(result.stderr).toMatch(/scopes\.\d: /);
  });

  it("a server that is down: which URL failed and how to point elsewhere", async () => {
    const url = `http://127.0.0.1:${CLOSED_PORT}`;
    const result = await keygate(["consumers", "list"], { url, token: kg.adminToken });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`GET ${url}/_keygate/v1/consumers failed: connection refused`);
    expect(result.stderr).toContain("Set --url or KEYGATE_URL");
  });

  it("no token: says how to set one, exit 2", async () => {
    const result = await keygate(["consumers", "list"], { url: kg.url });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("no admin token");
    expect(result.stderr).toContain("KEYGATE_ADMIN_TOKEN");
  });

  it("--url and --token on the command line win over the environment", async () => {
    const result = await keygate(
      ["consumers", "list", "--url", kg.url, "--token", kg.adminToken, "--json"],
      { url: "http://127.0.0.1:9", token: "wrong-token-0123456789" },
    );
    expect(result.code).toBe(0);
  });

  it("invalid arguments: usage, exit 2", async () => {
    const missing = await keygate(["keys", "create"], as);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'consumer-id'");

    const badRate = await keygate(["consumers", "create", "X", "--rate-limit", "lots"], as);
    expect(badRate.code).toBe(2);
    expect(badRate.stderr).toContain("expected <limit>/<period>");

    const unknown = await keygate(["keys", "frobnicate"], as);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");

    const noCommand = await keygate(["keys"], as);
    expect(noCommand.code).toBe(2);
    expect(noCommand.stderr).toContain("Usage: keygate keys");

    const badUrl = await keygate(["consumers", "list", "--url", "ftp://x"], as);
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toContain("--url must be http or https");
  });

  it("--help and --version exit 0", async () => {
    const help = await keygate(["keys", "rotate", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--wait-idle");
    expect(help.stdout).toContain("KEYGATE_ADMIN_TOKEN");
    expect((await keygate(["--version"])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe("packaging", () => {
  it("npx keygate runs the package bin built by npm's prepare script", async () => {
    const { stdout } = await promisify(execFile)("npx", ["--no-install", "keygate", "--help"], {
      cwd: ROOT,
    });
    expect(stdout).toContain("Usage: keygate");
  });
});
