import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { hashSecret } from "../../src/keys/hash";
import { secretKey } from "../../src/store/kv-index";
import { admin, type IssuedKey, newConsumer, newKey } from "../support/api";
import { failing, faultSwitch } from "../support/faults";
import {
  adminWith,
  committingThenFailing,
  coordinatorsWith,
  expectKvMatchesD1,
  expectNothingToRetry,
  expectRevokedAndSettled,
  failingFor,
  frontDoor,
  kvRecordsOf,
  pendingRetries,
  runRetriesNow,
  withCoordinatorBindings,
} from "./harness";

/** Consumer-wide changes and key creation under D1 and KV failures. */

type Namespace = typeof env.COORDINATOR;

async function consumerRow(id: string) {
  return env.DB.prepare("SELECT status FROM consumers WHERE id = ?")
    .bind(id)
    .first<{ status: string }>();
}

async function consumerCount(): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM consumers").first<{ n: number }>();
  return row!.n;
}

/** Two keys of one new consumer: a consumer-wide change must reach both. */
async function twoKeysOfOneConsumer(): Promise<[IssuedKey, IssuedKey]> {
  const first = await newKey();
  return [first, await newKey(["prices:read"], {}, first.consumerId)];
}

describe("creating a consumer", () => {
  it("answers 503 and creates nothing when D1 refuses the write", async () => {
    const before = await consumerCount();
    const fault = faultSwitch();
    const res = await adminWith(
      {
        COORDINATOR: coordinatorsWith({
          DB: (db) => failing(db, ["batch"], fault),
        }) as Namespace,
      },
      "POST",
      "/consumers",
      { name: "Acme" },
    );
    expect(res.status).toBe(503);
    expect(res.body.code).toBe("unavailable");
    expect(fault.refused).toBe(1);
    expect(await consumerCount()).toBe(before);
  });

  it("answers 201 when the batch commits and then throws, as D1 confirms it landed", async () => {
    const fault = faultSwitch();
    const res = await adminWith(
      {
        COORDINATOR: coordinatorsWith({
          DB: (db) => committingThenFailing(db, fault),
        }) as Namespace,
      },
      "POST",
      "/consumers",
      { name: "Acme" },
    );
    expect(fault.refused).toBe(1);
    expect(res.status).toBe(201);
    expect((await consumerRow(res.body.id as string))?.status).toBe("active");
    expect(
      (await admin.post(`/consumers/${res.body.id as string}/keys`, { scopes: [] })).status,
    ).toBe(201);
  });
});

describe("creating a key", () => {
  it("answers 503 and leaves no key and no KV record when D1 refuses the write", async () => {
    const consumerId = await newConsumer();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      consumerId,
      { DB: (db) => failing(db, ["batch"], fault) },
      async () => {
        const res = await admin.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] });
        expect(res.status).toBe(503);
        expect(res.body.key).toBeUndefined();
      },
    );
    expect(fault.refused).toBeGreaterThan(0);
    expect((await admin.get(`/consumers/${consumerId}/keys`)).body.items).toEqual([]);
    expect(await kvRecordsOf(consumerId)).toEqual([]);
    await runRetriesNow(consumerId);
    await expectNothingToRetry(consumerId);
    expect(await kvRecordsOf(consumerId)).toEqual([]);
  });
});

describe("deleting a consumer", () => {
  it("answers 503 and changes nothing when D1 refuses the write: the consumer and its keys stay", async () => {
    const [first, second] = await twoKeysOfOneConsumer();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      first.consumerId,
      { DB: (db) => failing(db, ["batch"], fault) },
      async () => {
        expect((await admin.delete(`/consumers/${first.consumerId}`)).status).toBe(503);
      },
    );
    expect((await consumerRow(first.consumerId))?.status).toBe("active");
    for (const key of [first, second]) {
      expect((await frontDoor(key.key)).status).toBe(200);
      await expectKvMatchesD1(key.id);
    }
    await runRetriesNow(first.consumerId);
    for (const key of [first, second]) await expectKvMatchesD1(key.id);
  });

  it("whose batch commits and then throws, with D1 down after: 503, then the alarm revokes every key in KV", async () => {
    const [first, second] = await twoKeysOfOneConsumer();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      first.consumerId,
      { DB: (db) => committingThenFailing(db, fault, true) },
      async () => {
        expect((await admin.delete(`/consumers/${first.consumerId}`)).status).toBe(503);
        expect((await pendingRetries(first.consumerId)).projections).toEqual(
          [first.id, second.id].sort(),
        );
        fault.on = false;
        await runRetriesNow(first.consumerId);
      },
    );
    expect((await consumerRow(first.consumerId))?.status).toBe("deleted");
    await expectRevokedAndSettled(first, second);
  });

  it("whose batch landed unconfirmed: a retried delete answers 404 and revokes the keys in KV at once", async () => {
    const [first, second] = await twoKeysOfOneConsumer();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      first.consumerId,
      { DB: (db) => committingThenFailing(db, fault, true) },
      async () => {
        expect((await admin.delete(`/consumers/${first.consumerId}`)).status).toBe(503);
        fault.on = false;
        expect((await admin.delete(`/consumers/${first.consumerId}`)).status).toBe(404);
      },
    );
    await expectRevokedAndSettled(first, second);
  });

  it("when KV fails for some keys only: 200, the others at once, the rest once the alarm's retry lands", async () => {
    const [first, second] = await twoKeysOfOneConsumer();
    const stuck = secretKey(hashSecret(second.key));
    const fault = faultSwitch();
    await withCoordinatorBindings(
      first.consumerId,
      { KEYS: (kv) => failingFor(kv, ["put", "delete"], (key) => key === stuck, fault) },
      async () => {
        const res = await admin.delete(`/consumers/${first.consumerId}`);
        expect(res.status).toBe(200);
        expect((res.body.revokedKeys as string[]).sort()).toEqual([first.id, second.id].sort());
        expect(fault.refused).toBeGreaterThan(0);
        expect((await frontDoor(first.key)).status).toBe(401);
        expect((await frontDoor(second.key, "/strict/x")).status).toBe(401);
        // the documented bound: until the alarm's retry succeeds
        expect((await frontDoor(second.key)).status).toBe(200);
        expect((await pendingRetries(first.consumerId)).projections).toEqual([second.id]);
        fault.on = false;
        await runRetriesNow(first.consumerId);
      },
    );
    await expectRevokedAndSettled(first, second);
  });
});

describe("changing a consumer's limits", () => {
  it("while KV is down answers 200; every key's record carries the new limits once the alarm's retry lands", async () => {
    const [first, second] = await twoKeysOfOneConsumer();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      first.consumerId,
      { KEYS: (kv) => failing(kv, ["put"], fault) },
      async () => {
        const res = await admin.patch(`/consumers/${first.consumerId}`, {
          rateLimit: { limit: 1000, periodSeconds: 60 },
        });
        expect(res.status).toBe(200);
        expect((await pendingRetries(first.consumerId)).projections).toEqual(
          [first.id, second.id].sort(),
        );
        fault.on = false;
        await runRetriesNow(first.consumerId);
      },
    );
    for (const key of [first, second]) {
      await expectKvMatchesD1(key.id);
      const record = await env.KEYS.get<{ rateLimit: unknown }>(
        secretKey(hashSecret(key.key)),
        "json",
      );
      expect(record?.rateLimit).toEqual({ limit: 1000, periodSeconds: 60 });
    }
  });
});
