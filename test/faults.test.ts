import {
  createExecutionContext,
  env,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyCoordinator } from "../src/coordinator/key-coordinator";
import worker from "../src/index";
import { admin, newKey, withKey } from "./support/api";
import { failing, failingNamespace, faultSwitch, type FaultSwitch } from "./support/faults";

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

function stubOf(consumerId: string) {
  return env.COORDINATOR.get(env.COORDINATOR.idFromName(consumerId));
}

/** Swaps the coordinator's own bindings for failing wrappers while `work` runs. */
async function withCoordinatorFault<T>(
  consumerId: string,
  binding: "DB" | "KEYS",
  methods: string[],
  work: (fault: FaultSwitch) => Promise<T>,
): Promise<T> {
  const fault = faultSwitch();
  const stub = stubOf(consumerId);
  let original: unknown;
  await runInDurableObject(stub, (instance: KeyCoordinator) => {
    const bindings = (instance as unknown as { env: Record<string, object> }).env;
    original = bindings[binding];
    bindings[binding] = failing(bindings[binding]!, methods, fault);
  });
  try {
    return await work(fault);
  } finally {
    await runInDurableObject(stub, (instance: KeyCoordinator) => {
      (instance as unknown as { env: Record<string, unknown> }).env[binding] = original;
    });
  }
}

async function snapshot(keyId: string) {
  const [versions, rotations, audit] = await env.DB.batch([
    env.DB.prepare(
      "SELECT version, status, grace_until FROM key_versions WHERE key_id = ? ORDER BY version",
    ).bind(keyId),
    env.DB.prepare("SELECT id, state FROM rotations WHERE key_id = ?").bind(keyId),
    env.DB.prepare("SELECT action FROM audit_events WHERE key_id = ? ORDER BY at").bind(keyId),
  ]);
  const kv = await env.KEYS.list({ prefix: "secret:v1:" });
  return {
    versions: versions!.results,
    rotations: rotations!.results,
    audit: audit!.results,
    kvKeys: kv.keys.length,
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
    const before = await snapshot(issued.id);
    await withCoordinatorFault(issued.consumerId, "DB", ["batch"], async (fault) => {
      const res = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
      expect(res.status).toBe(503);
      expect(res.body.code).toBe("unavailable");
      expect(fault.refused).toBe(1);
    });
    expect(await snapshot(issued.id)).toEqual(before);
    const old = await withKey(issued.key);
    expect(old.status).toBe(200);
    expect(old.headers.get("Deprecation")).toBeNull();
    // and the same request succeeds once D1 is back
    expect(
      (await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 })).status,
    ).toBe(201);
  });

  it("a D1 failure during a revocation leaves the key working and unrevoked", async () => {
    const issued = await newKey();
    await withCoordinatorFault(issued.consumerId, "DB", ["batch"], async () => {
      expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(503);
    });
    expect((await admin.get(`/keys/${issued.id}`)).body.status).toBe("active");
    expect((await withKey(issued.key)).status).toBe(200);
  });

  it("a KV failure after D1 committed is retried by the alarm until KV matches D1", async () => {
    const issued = await newKey();
    let rotated: { key: string; rotationId: string } | undefined;
    await withCoordinatorFault(issued.consumerId, "KEYS", ["put", "delete"], async (fault) => {
      const res = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
      expect(res.status).toBe(201);
      expect(fault.refused).toBeGreaterThan(0);
      rotated = {
        key: res.body.key as string,
        rotationId: (res.body.rotation as { id: string }).id,
      };
      // D1 holds the rotation; KV does not have the new secret yet
      expect((await withKey(rotated.key)).status).toBe(401);
      // an alarm while KV is still down keeps the work queued
      await runDurableObjectAlarm(stubOf(issued.consumerId));
    });
    await runInDurableObject(stubOf(issued.consumerId), async (_instance, state) => {
      const queued = state.storage.sql.exec("SELECT key_id FROM projection_queue").toArray();
      expect(queued).toEqual([{ key_id: issued.id }]);
      // make the retry due now instead of waiting for its backoff
      state.storage.sql.exec("UPDATE projection_queue SET next_at = 0");
    });
    expect(await runDurableObjectAlarm(stubOf(issued.consumerId))).toBe(true);
    expect((await withKey(rotated!.key)).status).toBe(200);
    const old = await withKey(issued.key);
    expect(old.status).toBe(200);
    expect(old.headers.get("Sunset")).toBeTruthy();
    await runInDurableObject(stubOf(issued.consumerId), async (_instance, state) => {
      expect(state.storage.sql.exec("SELECT key_id FROM projection_queue").toArray()).toEqual([]);
    });
  });

  it("a coordinator failure answers 503 and writes nothing", async () => {
    const issued = await newKey();
    const before = await snapshot(issued.id);
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
    expect(await snapshot(issued.id)).toEqual(before);
  });
});
