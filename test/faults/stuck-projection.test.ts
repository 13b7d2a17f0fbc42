import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { hashSecret } from "../../src/keys/hash";
import { secretKey } from "../../src/store/kv-index";
import { admin, newConsumer, newKey, type Json } from "../support/api";
import { faultSwitch } from "../support/faults";
import { kvRecordOf, runNow } from "../maintenance/support";
import {
  expectKvMatchesD1,
  expectNothingToRetry,
  failingFor,
  frontDoor,
  pendingRetries,
  runRetriesNow,
  withCoordinatorBindings,
} from "./harness";

/**
 * A KV write that fails for good (issue 11, finding 2: a record KV refused on every try). It
 * must not hold up any other write, a revocation or emergency rotation must still cut the
 * secrets it retires, and scheduled maintenance must say that it keeps failing.
 */

/** KV refusing every put of one secret's record while `fault.on`. */
function refusingPutsOf(secret: string, fault = faultSwitch()) {
  const record = secretKey(hashSecret(secret));
  return {
    fault,
    wrap: (kv: KVNamespace) => failingFor(kv, ["put"], (key) => key === record, fault),
  };
}

describe("a projection that KV refuses for good", () => {
  it("holds up no other secret's write, is reported by maintenance, and a revoke still cuts every secret", async () => {
    const consumerId = await newConsumer("stuck");
    const a = await newKey(["prices:read"], {}, consumerId);
    const b = await newKey(["prices:read"], {}, consumerId);
    const rotated = await admin.post(`/keys/${a.id}/rotate`, { gracePeriodSeconds: 3600 });
    expect(rotated.status).toBe(201);
    const aNew = rotated.body.key as string;
    const rotationId = (rotated.body.rotation as Json).id as string;
    const stuck = refusingPutsOf(a.key);

    await withCoordinatorBindings(consumerId, { KEYS: stuck.wrap }, async () => {
      // moves the old version's graceUntil: its record cannot be written
      const extended = await admin.post(`/rotations/${rotationId}/extend`, {
        gracePeriodSeconds: 600,
      });
      expect(extended.status).toBe(200);
      expect(stuck.fault.refused).toBeGreaterThan(0);
      expect((await pendingRetries(consumerId)).projections).toEqual([a.id]);
      await runRetriesNow(consumerId);
      expect((await pendingRetries(consumerId)).projections).toEqual([a.id]);

      // the same key's other secret follows its own change
      const narrowed = await admin.patch(`/keys/${a.id}`, { scopes: ["orders:read"] });
      expect(narrowed.status).toBe(200);
      expect((await frontDoor(aNew, "/prices/eur")).status).toBe(403);
      expect((await frontDoor(a.key, "/prices/eur")).status).toBe(200);

      // another key of the consumer follows its change
      expect((await admin.patch(`/keys/${b.id}`, { scopes: ["orders:read"] })).status).toBe(200);
      expect((await frontDoor(b.key, "/prices/eur")).status).toBe(403);
      await expectKvMatchesD1(b.id);

      // maintenance finds the drift, cannot fix it, and says so
      const report = await runNow();
      expect(report.failures).toContainEqual({
        step: "coordinator",
        consumerId,
        keyId: a.id,
        error: expect.stringContaining("injected put failure") as unknown,
      });

      // the revocation cuts both although the put stays refused: the refused tombstone's
      // record is deleted instead, and the other secret gets its tombstone
      const revoked = await admin.post(`/keys/${a.id}/revoke`, { reason: "stuck" });
      expect(revoked.status).toBe(200);
      expect((await frontDoor(a.key)).status).toBe(401);
      expect((await frontDoor(aNew)).status).toBe(401);
      expect(await env.KEYS.get(secretKey(hashSecret(a.key)))).toBeNull();
      expect(await kvRecordOf(aNew)).toMatchObject({ status: "revoked", hash: "" });
      await expectNothingToRetry(consumerId);
    });
  });

  it("an emergency rotation of a key whose record KV refuses answers 201 and cuts the old secret", async () => {
    const issued = await newKey(["prices:read"]);
    const stuck = refusingPutsOf(issued.key);
    await withCoordinatorBindings(issued.consumerId, { KEYS: stuck.wrap }, async () => {
      expect((await admin.patch(`/keys/${issued.id}`, { scopes: ["orders:read"] })).status).toBe(
        200,
      );
      expect((await pendingRetries(issued.consumerId)).projections).toEqual([issued.id]);
      const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 0 });
      expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
      expect((await frontDoor(issued.key)).status).toBe(401);
      expect((await frontDoor(rotated.body.key as string, "/orders/x")).status).toBe(200);
      // the old version's tombstone was refused: its record is gone instead
      expect(await env.KEYS.get(secretKey(hashSecret(issued.key)))).toBeNull();
      await expectNothingToRetry(issued.consumerId);
    });
  });

  it("once KV takes the write again, the alarm's retry lands and maintenance reports nothing", async () => {
    const issued = await newKey(["prices:read"]);
    const stuck = refusingPutsOf(issued.key);
    await withCoordinatorBindings(issued.consumerId, { KEYS: stuck.wrap }, async () => {
      expect((await admin.patch(`/keys/${issued.id}`, { scopes: ["orders:read"] })).status).toBe(
        200,
      );
      expect((await frontDoor(issued.key, "/prices/eur")).status).toBe(200);
      stuck.fault.on = false;
      await runRetriesNow(issued.consumerId);
      expect((await frontDoor(issued.key, "/prices/eur")).status).toBe(403);
      await expectKvMatchesD1(issued.id);
      await expectNothingToRetry(issued.consumerId);
      const report = await runNow();
      expect((report.failures as Json[]).filter((f) => f.consumerId === issued.consumerId)).toEqual(
        [],
      );
    });
  });
});
