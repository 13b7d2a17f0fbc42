import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import {
  expectKvMatchesD1,
  expectNothingToRetry,
  frontDoor,
  kvRecordsOf,
  runRetriesNow,
  withCoordinatorBindings,
} from "./faults/harness";
import { admin, newKey } from "./support/api";
import { failing, failingNamespace, faultSwitch } from "./support/faults";

/**
 * Storage failures: the data plane fails closed; the management plane leaves nothing
 * half-done. More in test/faults/: D1 failing after it committed, KV outages during changes,
 * consumer-wide changes and the idempotency store.
 */

const BASE = "https://keygate.test";

async function fetchWith(vars: Partial<typeof env>, path: string, init: RequestInit = {}) {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`${BASE}${path}`, init),
    { ...env, CACHE_TTL_SECONDS: "0", ...vars } as typeof env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

async function snapshot(keyId: string, consumerId: string) {
  const [versions, rotations, audit] = await env.DB.batch([
    env.DB.prepare(
      "SELECT version, status, grace_until FROM key_versions WHERE key_id = ? ORDER BY version",
    ).bind(keyId),
    env.DB.prepare("SELECT id, state FROM rotations WHERE key_id = ?").bind(keyId),
    env.DB.prepare("SELECT action FROM audit_events WHERE key_id = ? ORDER BY at").bind(keyId),
  ]);
  return {
    versions: versions!.results,
    rotations: rotations!.results,
    audit: audit!.results,
    kv: await kvRecordsOf(consumerId),
  };
}

describe("data plane fails closed", () => {
  it("answers 503 unavailable when KV fails, never letting the request through", async () => {
    const { key } = await newKey();
    const fault = faultSwitch();
    const res = await fetchWith({ KEYS: failing(env.KEYS, ["get"], fault) }, "/x", {
      headers: { Authorization: `Bearer ${key}` },
    });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("unavailable");
    expect(fault.refused).toBeGreaterThan(0);
  });

  it("refuses a malformed key without touching KV, even when KV is down", async () => {
    const fault = faultSwitch();
    const res = await fetchWith({ KEYS: failing(env.KEYS, ["get"], fault) }, "/x", {
      headers: { Authorization: "Bearer kg_nonsense" },
    });
    expect(res.status).toBe(401);
    expect(fault.refused).toBe(0);
  });

  it("answers 503 on a strict route when the coordinator is unreachable", async () => {
    const { key } = await newKey(["trade:write"]);
    const fault = faultSwitch();
    const res = await fetchWith(
      { COORDINATOR: failingNamespace(env.COORDINATOR, fault) },
      "/trade/buy",
      {
        method: "POST",
        headers: { Authorization: `Bearer ${key}` },
      },
    );
    expect(res.status).toBe(503);
    expect(fault.refused).toBeGreaterThan(0);
  });

  it("answers 503 for a rate-limited key when the coordinator cannot lease budget", async () => {
    const { key } = await newKey([], { rateLimit: { limit: 100, periodSeconds: 60 } });
    const fault = faultSwitch();
    const res = await fetchWith({ COORDINATOR: failingNamespace(env.COORDINATOR, fault) }, "/x", {
      headers: { Authorization: `Bearer ${key}` },
    });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("unavailable");
  });

  it("answers 503 on management reads when D1 fails", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    const res = await fetchWith(
      { DB: failing(env.DB, ["prepare", "batch"], fault) },
      `/_keygate/v1/keys/${issued.id}`,
      {
        headers: { Authorization: `Bearer ${env.ADMIN_TOKEN}` },
      },
    );
    expect(res.status).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("unavailable");
  });
});

describe("management plane leaves nothing half-done", () => {
  it("a D1 failure during a rotation changes nothing: no version, no rotation, no audit, no KV record", async () => {
    const issued = await newKey();
    const before = await snapshot(issued.id, issued.consumerId);
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => failing(db, ["batch"], fault) },
      async () => {
        const res = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
        expect(res.status).toBe(503);
        expect(res.body.code).toBe("unavailable");
        expect(res.body.key).toBeUndefined();
      },
    );
    expect(fault.refused).toBeGreaterThan(0);
    // the new secret's record, written ahead of D1, is gone again
    expect(await snapshot(issued.id, issued.consumerId)).toEqual(before);
    const old = await frontDoor(issued.key);
    expect(old.status).toBe(200);
    expect(old.headers.get("Deprecation")).toBeNull();
    // the alarm's second look finds nothing more to do
    await runRetriesNow(issued.consumerId);
    await expectNothingToRetry(issued.consumerId);
    expect(await snapshot(issued.id, issued.consumerId)).toEqual(before);
    // and the same request succeeds once D1 is back
    expect(
      (await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 })).status,
    ).toBe(201);
  });

  it("a D1 failure during a revocation leaves the key working and unrevoked", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => failing(db, ["batch"], fault) },
      async () => {
        expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(503);
      },
    );
    expect(fault.refused).toBeGreaterThan(0);
    expect((await admin.get(`/keys/${issued.id}`)).body.status).toBe("active");
    expect((await frontDoor(issued.key)).status).toBe(200);
    await expectKvMatchesD1(issued.id);
  });

  it("a coordinator failure answers 503 and writes nothing", async () => {
    const issued = await newKey();
    const before = await snapshot(issued.id, issued.consumerId);
    const fault = faultSwitch();
    const res = await fetchWith(
      { COORDINATOR: failingNamespace(env.COORDINATOR, fault) },
      `/_keygate/v1/keys/${issued.id}/rotate`,
      {
        method: "POST",
        headers: { Authorization: `Bearer ${env.ADMIN_TOKEN}`, "Content-Type": "application/json" },
        body: "{}",
      },
    );
    expect(res.status).toBe(503);
    expect(await snapshot(issued.id, issued.consumerId)).toEqual(before);
  });
});
