import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, newConsumer, newKey } from "../support/api";
import { faultSwitch } from "../support/faults";
import {
  committingThenFailing,
  expectKvMatchesD1,
  expectNothingToRetry,
  expectRevokedAndSettled,
  frontDoor,
  kvRecordsOf,
  pendingRetries,
  runRetriesNow,
  withCoordinatorBindings,
} from "./harness";

/**
 * D1 can throw after it has committed (the answer is lost on the way back). The coordinator
 * asks D1 whether the batch landed; when D1 cannot answer either, it answers 503 and queues
 * the key, so a retry or the alarm brings KV to whatever D1 holds.
 */

async function auditActions(keyId: string): Promise<string[]> {
  const rows = await env.DB.prepare("SELECT action FROM audit_events WHERE key_id = ? ORDER BY at")
    .bind(keyId)
    .all<{ action: string }>();
  return rows.results.map((r) => r.action);
}

async function rotationsOf(keyId: string) {
  const rows = await env.DB.prepare(
    "SELECT state, to_version FROM rotations WHERE key_id = ? ORDER BY started_at",
  )
    .bind(keyId)
    .all<{ state: string; to_version: number }>();
  return rows.results;
}

describe("a revocation whose D1 batch commits and then throws", () => {
  it("answers 200 when D1 confirms the batch landed, and the secret stops verifying", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => committingThenFailing(db, fault) },
      async () => {
        expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(200);
      },
    );
    expect(fault.refused).toBe(1);
    expect((await frontDoor(issued.key)).status).toBe(401);
    await expectKvMatchesD1(issued.id);
    expect(await auditActions(issued.id)).toEqual(["key.created", "key.revoked"]);
  });

  it("answers 503 when D1 cannot say; a retried revoke then answers 200 and the secret stops verifying on non-strict routes", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => committingThenFailing(db, fault, true) },
      async () => {
        const res = await admin.post(`/keys/${issued.id}/revoke`);
        expect(res.status).toBe(503);
        expect(res.body.code).toBe("unavailable");
        // D1 holds the revocation; KV has not heard of it yet
        expect((await admin.get(`/keys/${issued.id}`)).body.status).toBe("revoked");
        expect(await pendingRetries(issued.consumerId)).toEqual({
          projections: [issued.id],
          unconfirmed: [],
        });
        fault.on = false;
        const retry = await admin.post(`/keys/${issued.id}/revoke`);
        expect(retry.status).toBe(200);
        expect(retry.body.status).toBe("revoked");
      },
    );
    expect((await frontDoor(issued.key, "/strict/x")).status).toBe(401);
    await expectRevokedAndSettled(issued);
    // the retry changed nothing in D1: one revocation, audited once
    expect(await auditActions(issued.id)).toEqual(["key.created", "key.revoked"]);
  });

  it("answers 503 when D1 cannot say; with no retry, the alarm makes KV match D1", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => committingThenFailing(db, fault, true) },
      async () => {
        expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(503);
        // an alarm while D1 is still down keeps the key queued
        await runRetriesNow(issued.consumerId);
        expect((await pendingRetries(issued.consumerId)).projections).toEqual([issued.id]);
        fault.on = false;
        await runRetriesNow(issued.consumerId);
      },
    );
    await expectRevokedAndSettled(issued);
  });
});

describe("a rotation whose D1 batch commits and then throws", () => {
  it("answers 201 when D1 confirms the batch landed, and the new secret verifies at once", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    const rotated = await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => committingThenFailing(db, fault) },
      () => admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 }),
    );
    expect(fault.refused).toBe(1);
    expect(rotated.status).toBe(201);
    expect((await frontDoor(rotated.body.key as string)).status).toBe(200);
    const old = await frontDoor(issued.key);
    expect(old.status).toBe(200);
    expect(old.headers.get("Sunset")).toBeTruthy();
    await expectKvMatchesD1(issued.id);
    await expectNothingToRetry(issued.consumerId);
  });

  it("answers 503 when D1 cannot say; the alarm then withdraws the version nobody received and the old secret stays active", async () => {
    const issued = await newKey();
    const before = await kvRecordsOf(issued.consumerId);
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => committingThenFailing(db, fault, true) },
      async () => {
        const res = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
        expect(res.status).toBe(503);
        expect(res.body.key).toBeUndefined();
        // D1 holds a rotation to a secret no client has
        expect(await rotationsOf(issued.id)).toEqual([{ state: "in_progress", to_version: 2 }]);
        fault.on = false;
        await runRetriesNow(issued.consumerId);
      },
    );
    expect(await rotationsOf(issued.id)).toEqual([{ state: "rolled_back", to_version: 2 }]);
    const old = await frontDoor(issued.key);
    expect(old.status).toBe(200);
    expect(old.headers.get("Deprecation")).toBeNull();
    await expectKvMatchesD1(issued.id);
    expect(await kvRecordsOf(issued.consumerId)).toEqual(before);
    await expectNothingToRetry(issued.consumerId);
    // and a new rotation goes through
    const retry = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
    expect(retry.status).toBe(201);
    expect((await frontDoor(retry.body.key as string)).status).toBe(200);
  });

  it("a retried rotate settles the half-issued one first, then answers 201 (not 409)", async () => {
    const issued = await newKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => committingThenFailing(db, fault, true) },
      async () => {
        expect(
          (await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 })).status,
        ).toBe(503);
        fault.on = false;
      },
    );
    const retry = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
    expect(retry.status).toBe(201);
    expect(retry.body.version).toBe(3);
    expect(await rotationsOf(issued.id)).toEqual([
      { state: "rolled_back", to_version: 2 },
      { state: "in_progress", to_version: 3 },
    ]);
    expect((await frontDoor(retry.body.key as string)).status).toBe(200);
    expect((await frontDoor(issued.key)).headers.get("Sunset")).toBeTruthy();
    await expectKvMatchesD1(issued.id);
  });
});

describe("a key creation whose D1 batch commits and then throws", () => {
  it("answers 201 when D1 confirms the batch landed, and the secret verifies at once", async () => {
    const consumerId = await newConsumer();
    const fault = faultSwitch();
    const created = await withCoordinatorBindings(
      consumerId,
      { DB: (db) => committingThenFailing(db, fault) },
      () => admin.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] }),
    );
    expect(fault.refused).toBe(1);
    expect(created.status).toBe(201);
    expect((await frontDoor(created.body.key as string)).status).toBe(200);
    await expectKvMatchesD1(created.body.id as string);
  });

  it("answers 503 when D1 cannot say; the alarm revokes the key nobody received and removes its KV record", async () => {
    const consumerId = await newConsumer();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      consumerId,
      { DB: (db) => committingThenFailing(db, fault, true) },
      async () => {
        const res = await admin.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] });
        expect(res.status).toBe(503);
        expect(res.body.key).toBeUndefined();
        fault.on = false;
        await runRetriesNow(consumerId);
      },
    );
    const keys = (await admin.get(`/consumers/${consumerId}/keys`)).body.items as {
      id: string;
      status: string;
    }[];
    expect(keys.map((k) => k.status)).toEqual(["revoked"]);
    await expectKvMatchesD1(keys[0]!.id);
    expect(await kvRecordsOf(consumerId)).toEqual([]);
    await expectNothingToRetry(consumerId);
  });
});
