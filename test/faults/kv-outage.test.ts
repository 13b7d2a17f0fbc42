import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { hashSecret } from "../../src/keys/hash";
import { secretKey } from "../../src/store/kv-index";
import { admin, newConsumer, newKey } from "../support/api";
import { failing, faultSwitch } from "../support/faults";
import {
  expectKvMatchesD1,
  expectNothingToRetry,
  expectRevokedAndSettled,
  failingFor,
  frontDoor,
  kvRecordsOf,
  pendingRetries,
  runRetriesNow,
  stubOf,
  withCoordinatorBindings,
} from "./harness";

/**
 * KV failing while the coordinator projects a change. A change D1 holds is never undone
 * because KV failed; a secret KV does not hold is never handed out.
 */

async function d1Rows(keyId: string) {
  const [versions, rotations, audit] = await env.DB.batch([
    env.DB.prepare(
      "SELECT version, status FROM key_versions WHERE key_id = ? ORDER BY version",
    ).bind(keyId),
    env.DB.prepare("SELECT id, state FROM rotations WHERE key_id = ?").bind(keyId),
    env.DB.prepare("SELECT action FROM audit_events WHERE key_id = ? ORDER BY at").bind(keyId),
  ]);
  return { versions: versions!.results, rotations: rotations!.results, audit: audit!.results };
}

/** Fails the first call only: a blip the inline retry absorbs. */
function once(): () => boolean {
  let calls = 0;
  return () => calls++ === 0;
}

describe("a revocation while KV is down", () => {
  it("answers 200, is refused at once on strict routes, and on every route once the alarm's retry lands", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { KEYS: (kv) => failing(kv, ["put", "delete"], fault) },
      async () => {
        const res = await admin.post(`/keys/${issued.id}/revoke`);
        expect(res.status).toBe(200);
        expect(res.body.status).toBe("revoked");
        // tried more than once before giving the write to the alarm
        expect(fault.refused).toBeGreaterThan(1);
        expect((await frontDoor(issued.key, "/strict/x")).status).toBe(401);
        // the documented bound: until the alarm's retry succeeds
        expect((await frontDoor(issued.key)).status).toBe(200);
        expect(await pendingRetries(issued.consumerId)).toEqual({
          projections: [issued.id],
          unconfirmed: [],
        });
        expect(
          await runInDurableObject(stubOf(issued.consumerId), (_i, state) =>
            state.storage.getAlarm(),
          ),
        ).not.toBeNull();
        // an alarm while KV is still down keeps the work queued
        await runRetriesNow(issued.consumerId);
        expect((await pendingRetries(issued.consumerId)).projections).toEqual([issued.id]);
        fault.on = false;
        await runRetriesNow(issued.consumerId);
      },
    );
    await expectRevokedAndSettled(issued);
  });

  it("a retried revoke, once KV is back, makes KV forget the secret at once", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { KEYS: (kv) => failing(kv, ["put", "delete"], fault) },
      async () => {
        expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(200);
        fault.on = false;
        expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(200);
      },
    );
    await expectRevokedAndSettled(issued);
  });

  it("a KV blip is absorbed by the inline retry: nothing is left for the alarm", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { KEYS: (kv) => failingFor(kv, ["put"], once(), fault) },
      async () => {
        expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(200);
      },
    );
    expect(fault.refused).toBe(1);
    expect((await frontDoor(issued.key)).status).toBe(401);
    await expectNothingToRetry(issued.consumerId);
  });
});

describe("issuing a secret while KV is down", () => {
  it("a rotation answers 503 and changes nothing; the old secret stays active; the retry's secret verifies at once", async () => {
    const issued = await newKey();
    const before = await d1Rows(issued.id);
    const kvBefore = await kvRecordsOf(issued.consumerId);
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { KEYS: (kv) => failing(kv, ["put", "delete"], fault) },
      async () => {
        const res = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
        expect(res.status).toBe(503);
        expect(res.body.code).toBe("unavailable");
        expect(res.body.key).toBeUndefined();
        expect(await d1Rows(issued.id)).toEqual(before);
        const old = await frontDoor(issued.key);
        expect(old.status).toBe(200);
        expect(old.headers.get("Deprecation")).toBeNull();
        fault.on = false;
      },
    );
    expect(await kvRecordsOf(issued.consumerId)).toEqual(kvBefore);
    const retry = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
    expect(retry.status).toBe(201);
    expect(retry.body.version).toBe(2);
    expect((await frontDoor(retry.body.key as string)).status).toBe(200);
    await expectKvMatchesD1(issued.id);
    await expectNothingToRetry(issued.consumerId);
  });

  it("a key creation answers 503 and creates nothing; the alarm removes a record the failed put may have left", async () => {
    const consumerId = await newConsumer();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      consumerId,
      { KEYS: (kv) => failing(kv, ["put", "delete"], fault) },
      async () => {
        const res = await admin.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] });
        expect(res.status).toBe(503);
        expect(res.body.key).toBeUndefined();
        expect((await admin.get(`/consumers/${consumerId}/keys`)).body.items).toEqual([]);
        expect((await pendingRetries(consumerId)).unconfirmed).toHaveLength(1);
        fault.on = false;
        await runRetriesNow(consumerId);
      },
    );
    await expectNothingToRetry(consumerId);
    expect(await kvRecordsOf(consumerId)).toEqual([]);
    const retry = await admin.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] });
    expect(retry.status).toBe(201);
    expect((await frontDoor(retry.body.key as string, "/prices/eur")).status).toBe(200);
  });

  it("a KV blip on the new secret is absorbed by the inline retry: 201 and the secret verifies at once", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    const rotated = await withCoordinatorBindings(
      issued.consumerId,
      { KEYS: (kv) => failingFor(kv, ["put"], once(), fault) },
      () => admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 }),
    );
    expect(fault.refused).toBe(1);
    expect(rotated.status).toBe(201);
    expect((await frontDoor(rotated.body.key as string)).status).toBe(200);
    await expectKvMatchesD1(issued.id);
  });

  it("a rotation whose old-version update fails answers 201: the new secret verifies at once, the old one gets its grace record from the alarm", async () => {
    const issued = await newKey();
    const oldRecord = secretKey(hashSecret(issued.key));
    const fault = faultSwitch();
    const rotated = await withCoordinatorBindings(
      issued.consumerId,
      { KEYS: (kv) => failingFor(kv, ["put"], (key) => key === oldRecord, fault) },
      async () => {
        const res = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
        expect(res.status).toBe(201);
        expect((await frontDoor(res.body.key as string)).status).toBe(200);
        // KV still holds the old secret as active: no Sunset until the retry lands
        expect((await frontDoor(issued.key)).headers.get("Sunset")).toBeNull();
        fault.on = false;
        await runRetriesNow(issued.consumerId);
        return res;
      },
    );
    expect(fault.refused).toBeGreaterThan(0);
    expect((await frontDoor(rotated.body.key as string)).status).toBe(200);
    const old = await frontDoor(issued.key);
    expect(old.status).toBe(200);
    expect(old.headers.get("Sunset")).toBeTruthy();
    await expectKvMatchesD1(issued.id);
  });
});
