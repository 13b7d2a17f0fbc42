import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCli, keygateJson, startKeygateCli, type CliOptions } from "./cli-harness.js";
import { managementApi, request } from "./support/http.js";
import { startKeygate, type Keygate } from "./support/worker.js";

/**
 * `keygate keys rotate ID --wait-idle`: rotate, watch the rotation's traffic, and complete it
 * once the new secret is in use and the old one has gone quiet. The test plays the API
 * consumer: it keeps using the old secret, then switches to the new one and stops.
 */

interface Issued {
  id: string;
  key: string;
  rotation: { id: string; state: string } | null;
}

let kg: Keygate;
let as: CliOptions;

beforeAll(async () => {
  await buildCli();
  kg = await startKeygate();
  as = { url: kg.url, token: kg.adminToken };
});
afterAll(() => kg?.stop());

const call = (secret: string) =>
  request(kg.url, "GET", "/anything", { headers: { Authorization: `Bearer ${secret}` } });

async function freshKey(): Promise<Issued> {
  const consumer = await keygateJson<{ id: string }>(["consumers", "create", "Acme"], as);
  return keygateJson<Issued>(["keys", "create", consumer.id], as);
}

describe("keygate keys rotate --wait-idle", () => {
  it("completes the rotation once the new secret is used and the old one goes quiet", async () => {
    const key = await freshKey();
    const cli = startKeygateCli(
      [
        "keys",
        "rotate",
        key.id,
        "--wait-idle",
        "--idle-seconds",
        "2",
        "--interval",
        "0.2",
        "--json",
      ],
      as,
    );
    const rotated = JSON.parse(await cli.nextLine()) as Issued;
    expect(rotated.rotation).toMatchObject({ state: "in_progress" });
    const rotationId = rotated.rotation!.id;

    // the consumer still calls with the old secret only: the CLI must not complete
    for (let i = 0; i < 3; i++) expect((await call(key.key)).status).toBe(200);
    const api = managementApi(kg.url, kg.adminToken);
    const watched = await api.get(`/rotations/${rotationId}`);
    expect(watched.body).toMatchObject({ state: "in_progress", usage: { old: { requests: 3 } } });

    // it switches to the new secret and never uses the old one again
    for (let i = 0; i < 3; i++) expect((await call(rotated.key)).status).toBe(200);

    const done = await cli.exited;
    expect(done.code, done.stderr).toBe(0);
    const lines = done.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1]!)).toMatchObject({ id: rotationId, state: "completed" });
    // the secret was printed once, in the rotate answer
    expect(done.stdout.split(rotated.key)).toHaveLength(2);

    expect((await call(key.key)).status).toBe(401);
    expect((await call(rotated.key)).status).toBe(200);
    const audit = await api.get(`/audit?keyId=${key.id}`);
    const actions = (audit.body.items as { action: string }[]).map((e) => e.action);
    expect(actions.some((a) => a.includes("complete"))).toBe(true);
  });

  it("gives up after --timeout while the new secret is unused, leaving the rotation open", async () => {
    const key = await freshKey();
    const cli = startKeygateCli(
      ["keys", "rotate", key.id, "--wait-idle", "--timeout", "1", "--interval", "0.2", "--json"],
      as,
    );
    const rotated = JSON.parse(await cli.nextLine()) as Issued;
    const done = await cli.exited;
    expect(done.code).toBe(1);
    expect(done.stderr).toContain("timed out after 1s");
    expect(done.stderr).toContain("waiting for the new secret's first use");
    expect(done.stderr).toContain(`keygate keys complete ${rotated.rotation!.id}`);
    const rotation = await managementApi(kg.url, kg.adminToken).get(
      `/rotations/${rotated.rotation!.id}`,
    );
    expect(rotation.body.state).toBe("in_progress");
  });

  it("stops, without completing, when the rotation is rolled back meanwhile", async () => {
    const key = await freshKey();
    const cli = startKeygateCli(
      ["keys", "rotate", key.id, "--wait-idle", "--interval", "0.2", "--json"],
      as,
    );
    const rotated = JSON.parse(await cli.nextLine()) as Issued;
    const api = managementApi(kg.url, kg.adminToken);
    expect((await api.post(`/rotations/${rotated.rotation!.id}/rollback`)).status).toBe(200);
    const done = await cli.exited;
    expect(done.code).toBe(1);
    expect(done.stderr).toContain("was rolled back");
    expect((await call(key.key)).status).toBe(200);
  });
});
