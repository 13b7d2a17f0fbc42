import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { hashSecret } from "../../src/keys/hash";
import { admin, codeOf, newConsumer, newKey, type Json } from "../support/api";
import { expectKvMatchesD1, frontDoor, stubOf } from "../faults/harness";
import {
  DAY,
  auditActions,
  kvRecordOf,
  moveCreation,
  moveExpiry,
  moveGraceEnd,
  putRecord,
  randomHash,
  rotationState,
  runCron,
  versionStatus,
} from "./support";

async function rotate(keyId: string, body: Json = { gracePeriodSeconds: 3600 }) {
  const res = await admin.post(`/keys/${keyId}/rotate`, body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { secret: res.body.key as string, rotation: res.body.rotation as Json };
}

describe("scheduled maintenance (cron)", () => {
  it("closes a rotation whose grace ended that no alarm closed, once", async () => {
    const issued = await newKey();
    const { secret, rotation } = await rotate(issued.id);
    await moveGraceEnd(rotation, Date.now() - 60_000);

    const first = await runCron();
    expect(first.failures).toEqual([]);
    expect(first.rotationsCompleted).toBeGreaterThanOrEqual(1);
    expect(await rotationState(rotation.id as string)).toEqual({
      state: "completed",
      end_reason: "grace_ended",
    });
    expect(await versionStatus(issued.id, 1)).toBe("expired");
    const events = await auditActions(issued.id, "rotation.completed");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actor: "system" });
    expect((await kvRecordOf(issued.key))?.status).toBe("expired");
    expect(await codeOf(await frontDoor(issued.key))).toBe("key_expired");
    expect((await frontDoor(secret)).status).toBe(200);
    await expectKvMatchesD1(issued.id);

    const second = await runCron();
    expect(second.failures).toEqual([]);
    expect(await auditActions(issued.id, "rotation.completed")).toHaveLength(1);
  });

  it("marks a version past its expiresAt expired in D1, audited once, and KV follows", async () => {
    const issued = await newKey(["prices:read"], {
      expiresAt: new Date(Date.now() + 30 * DAY).toISOString(),
    });
    const expiresAt = Date.now() - 60_000;
    await moveExpiry(issued.id, 1, expiresAt);
    // KV still holds the old expiry, so the secret verifies until maintenance projects D1
    expect((await frontDoor(issued.key)).status).toBe(200);

    const first = await runCron();
    expect(first.failures).toEqual([]);
    expect(first.versionsExpired).toBeGreaterThanOrEqual(1);
    expect(await versionStatus(issued.id, 1)).toBe("expired");
    const events = await auditActions(issued.id, "key.expired");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actor: "system", details: { version: 1, expiresAt } });
    expect(await kvRecordOf(issued.key)).toMatchObject({ status: "expired", expiresAt });
    expect(await codeOf(await frontDoor(issued.key))).toBe("key_expired");
    const shown = await admin.get(`/keys/${issued.id}`);
    expect((shown.body.versions as Json[])[0]).toMatchObject({ version: 1, status: "expired" });

    await runCron();
    expect(await auditActions(issued.id, "key.expired")).toHaveLength(1);
    await expectKvMatchesD1(issued.id);
  });

  it("sends rotation.grace_ending, key.expiring and key.rotation_due once each", async () => {
    const consumer = await newConsumer("reminders");
    // grace ends within 24 h
    const rotated = await newKey(["prices:read"], {}, consumer);
    const { rotation } = await rotate(rotated.id, { gracePeriodSeconds: 6 * 3600 });
    // expires within 7 days
    const expiring = await newKey(
      ["prices:read"],
      { expiresAt: new Date(Date.now() + 3 * DAY).toISOString() },
      consumer,
    );
    // expires in 30 days: no reminder yet
    const later = await newKey(
      ["prices:read"],
      { expiresAt: new Date(Date.now() + 30 * DAY).toISOString() },
      consumer,
    );
    // 100 days old, with MAX_KEY_AGE_DAYS = 90
    const old = await newKey(["prices:read"], {}, consumer);
    const createdAt = Date.now() - 100 * DAY;
    await moveCreation(old.id, 1, createdAt);

    const vars = { MAX_KEY_AGE_DAYS: "90" };
    const first = await runCron(vars);
    expect(first.failures).toEqual([]);
    expect(first.reminders).toBeGreaterThanOrEqual(3);

    const [graceEnding] = await auditActions(rotated.id, "rotation.grace_ending");
    expect(graceEnding).toMatchObject({
      actor: "system",
      target: `rotation:${rotation.id as string}`,
      details: {
        rotationId: rotation.id,
        fromVersion: 1,
        toVersion: 2,
        graceUntil: Date.parse(rotation.graceUntil as string),
      },
    });
    const [expiringEvent] = await auditActions(expiring.id, "key.expiring");
    expect(expiringEvent).toMatchObject({
      target: `key:${expiring.id}`,
      details: { version: 1, expiresAt: Date.parse(expiring.body.expiresAt as string) },
    });
    expect(await auditActions(later.id, "key.expiring")).toEqual([]);
    const [due] = await auditActions(old.id, "key.rotation_due");
    expect(due).toMatchObject({
      details: { version: 1, createdAt, ageDays: 100, maxKeyAgeDays: 90 },
    });
    // only the old key is due
    for (const key of [rotated, expiring, later]) {
      expect(await auditActions(key.id, "key.rotation_due")).toEqual([]);
    }

    const second = await runCron(vars);
    expect(second.failures).toEqual([]);
    expect(await auditActions(rotated.id, "rotation.grace_ending")).toHaveLength(1);
    expect(await auditActions(expiring.id, "key.expiring")).toHaveLength(1);
    expect(await auditActions(old.id, "key.rotation_due")).toHaveLength(1);

    // the key's next version is young again; a rotation of the old key makes a new subject
    await rotate(old.id, { gracePeriodSeconds: 0 });
    await runCron(vars);
    expect(await auditActions(old.id, "key.rotation_due")).toHaveLength(1);
  });

  it("flags no key for rotation when MAX_KEY_AGE_DAYS is unset", async () => {
    const old = await newKey();
    await moveCreation(old.id, 1, Date.now() - 1000 * DAY);
    const run = await runCron();
    expect(run.failures).toEqual([]);
    expect(await auditActions(old.id, "key.rotation_due")).toEqual([]);
  });

  it("reconciles KV with D1: missing written back, stale rewritten, revoked tombstoned, orphans removed", async () => {
    const consumer = await newConsumer("drift");
    const missing = await newKey(["prices:read"], {}, consumer);
    const stale = await newKey(["prices:read"], {}, consumer);
    const revoked = await newKey(["prices:read"], {}, consumer);
    const missingHash = hashSecret(missing.key);
    const staleHash = hashSecret(stale.key);
    const revokedHash = hashSecret(revoked.key);

    // an active version missing from KV
    await env.KEYS.delete(`secret:v1:${missingHash}`);
    // a record that says more than D1 does
    const staleRecord = (await kvRecordOf(stale.key))!;
    await putRecord(staleHash, { ...staleRecord, scopes: ["*"] });
    // a revoked secret brought back to life in KV
    const revokedRecord = (await kvRecordOf(revoked.key))!;
    expect((await admin.post(`/keys/${revoked.id}/revoke`)).status).toBe(200);
    await putRecord(revokedHash, revokedRecord);
    // records D1 knows nothing of: one naming this consumer, one naming no consumer at all
    const orphanHash = randomHash();
    await putRecord(orphanHash, { ...staleRecord, hash: orphanHash, keyId: "ghostkey00000000" });
    const strayHash = randomHash();
    await putRecord(strayHash, { ...staleRecord, hash: strayHash, consumerId: "csm_nobody" });

    expect(await codeOf(await frontDoor(missing.key))).toBe("invalid_key");
    expect((await frontDoor(revoked.key)).status).toBe(200);

    const first = await runCron();
    expect(first.failures).toEqual([]);
    const fixed = first.recordsFixed.map((f) => [f.keyId, f.drift]);
    expect(fixed).toEqual(
      expect.arrayContaining([
        [missing.id, "missing"],
        [stale.id, "stale"],
        // its record is rewritten as the revoked version's tombstone
        [revoked.id, "stale"],
        ["ghostkey00000000", "orphan"],
        [staleRecord.keyId, "orphan"],
      ]),
    );
    expect(first.recordsFixed.find((f) => f.keyId === missing.id)).toMatchObject({
      consumerId: consumer,
    });

    expect(await kvRecordOf(missing.key)).not.toBeNull();
    expect((await frontDoor(missing.key, "/prices/x")).status).toBe(200);
    expect((await kvRecordOf(stale.key))?.scopes).toEqual(["prices:read"]);
    expect(await kvRecordOf(revoked.key)).toMatchObject({ status: "revoked", hash: "" });
    expect(await codeOf(await frontDoor(revoked.key))).toBe("invalid_key");
    expect(await env.KEYS.get(`secret:v1:${orphanHash}`)).toBeNull();
    expect(await env.KEYS.get(`secret:v1:${strayHash}`)).toBeNull();
    for (const key of [missing, stale, revoked]) await expectKvMatchesD1(key.id);

    // idempotent: a second run finds nothing to fix, anywhere
    const second = await runCron();
    expect(second.failures).toEqual([]);
    expect(second.recordsFixed).toEqual([]);
    expect(second.changes).toBe(0);
  });

  it("leaves alone a record whose secret is being issued (unconfirmed in the coordinator)", async () => {
    const issued = await newKey();
    const pendingHash = randomHash();
    const record = { ...(await kvRecordOf(issued.key))!, hash: pendingHash, version: 2 };
    await putRecord(pendingHash, record);
    await runInDurableObject(stubOf(issued.consumerId), (_instance, state) => {
      state.storage.sql.exec(
        `INSERT INTO unconfirmed_secrets (secret_hash, key_id, version, rotation_id, marker, attempts, next_at)
         VALUES (?, ?, 2, NULL, 'evt_never', 0, ?)`,
        pendingHash,
        issued.id,
        Date.now() + 3_600_000,
      );
    });
    const run = await runCron();
    expect(run.failures).toEqual([]);
    expect(run.recordsFixed.filter((f) => f.keyId === issued.id)).toEqual([]);
    expect(await env.KEYS.get(`secret:v1:${pendingHash}`)).not.toBeNull();
    await runInDurableObject(stubOf(issued.consumerId), (_instance, state) => {
      state.storage.sql.exec("DELETE FROM unconfirmed_secrets WHERE secret_hash = ?", pendingHash);
    });
    const after = await runCron();
    expect(after.recordsFixed.map((f) => [f.keyId, f.drift])).toContainEqual([issued.id, "orphan"]);
    expect(await env.KEYS.get(`secret:v1:${pendingHash}`)).toBeNull();
  });
});
