import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, newConsumer, newKey } from "../support/api";
import { failing, faultSwitch } from "../support/faults";
import { adminWith, failingStatements, frontDoor, withCoordinatorBindings } from "./harness";

/**
 * The idempotency store (D1 `idempotency_records`, read and written by the Worker) failing
 * around a key creation: a failure before the change creates nothing; a failure after it
 * never turns the change into an error, and never lets a replay create a second key.
 */

async function keysOf(consumerId: string): Promise<unknown[]> {
  return (await admin.get(`/consumers/${consumerId}/keys`)).body.items as unknown[];
}

function idempotencyKey(): Record<string, string> {
  return { "Idempotency-Key": crypto.randomUUID() };
}

describe("the idempotency store failing", () => {
  it("to look the key up: 503, nothing created, and the same key works once D1 is back", async () => {
    const consumerId = await newConsumer();
    const headers = idempotencyKey();
    const fault = faultSwitch();
    const res = await adminWith(
      { DB: failingStatements(env.DB, /FROM idempotency_records/, fault) },
      "POST",
      `/consumers/${consumerId}/keys`,
      { scopes: [] },
      headers,
    );
    expect(res.status).toBe(503);
    expect(res.body.code).toBe("unavailable");
    expect(fault.refused).toBe(1);
    expect(await keysOf(consumerId)).toEqual([]);
    const retry = await admin.post(`/consumers/${consumerId}/keys`, { scopes: [] }, headers);
    expect(retry.status).toBe(201);
    expect(retry.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("to claim the key: 503 and nothing created", async () => {
    const consumerId = await newConsumer();
    const fault = faultSwitch();
    const res = await adminWith(
      { DB: failingStatements(env.DB, /INSERT INTO idempotency_records/, fault) },
      "POST",
      `/consumers/${consumerId}/keys`,
      { scopes: [] },
      idempotencyKey(),
    );
    expect(res.status).toBe(503);
    expect(fault.refused).toBe(1);
    expect(await keysOf(consumerId)).toEqual([]);
  });

  it("to keep the replay: the key is still created and its secret returned once; a replay never makes a second key", async () => {
    const consumerId = await newConsumer();
    const headers = idempotencyKey();
    const fault = faultSwitch();
    const res = await adminWith(
      { DB: failingStatements(env.DB, /UPDATE idempotency_records SET state = 'done'/, fault) },
      "POST",
      `/consumers/${consumerId}/keys`,
      { scopes: [] },
      headers,
    );
    expect(res.status).toBe(201);
    expect(fault.refused).toBeGreaterThan(0);
    expect((await frontDoor(res.body.key as string)).status).toBe(200);
    // whatever the replay answers (refused while the record is pending), it makes nothing
    const replay = await admin.post(`/consumers/${consumerId}/keys`, { scopes: [] }, headers);
    expect(replay.status).not.toBe(503);
    expect(replay.body.key).toBeUndefined();
    expect(await keysOf(consumerId)).toHaveLength(1);
  });

  it("a coordinator write that fails keeps nothing: the retry with the same key runs, not a replay of the 503", async () => {
    const issued = await newKey();
    const headers = idempotencyKey();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      issued.consumerId,
      { DB: (db) => failing(db, ["batch"], fault) },
      async () => {
        const res = await admin.post(`/keys/${issued.id}/rotate`, {}, headers);
        expect(res.status).toBe(503);
      },
    );
    const retry = await admin.post(`/keys/${issued.id}/rotate`, {}, headers);
    expect(retry.status).toBe(201);
    expect(retry.headers.get("Idempotent-Replayed")).toBeNull();
    expect((await frontDoor(retry.body.key as string)).status).toBe(200);
    const replay = await admin.post(`/keys/${issued.id}/rotate`, {}, headers);
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.body.key).toBeUndefined();
  });
});
