import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { admin, newKey } from "../support/api";
import { failing, faultSwitch } from "../support/faults";
import {
  committingThenFailing,
  failingStatements,
  withCoordinatorBindings,
} from "../faults/harness";
import { consumerWithWebhook, deliverDue, deliveryRows, received, stubOf } from "./support";

/**
 * Deliveries are D1 rows written in the change's own batch: a change that did not land has
 * none, one that landed has exactly its own. D1 failing while the coordinator delivers loses
 * nothing: the alarm looks again, and a send whose record was lost is sent again (receivers
 * deduplicate on webhook-id).
 */

/** Waits until the alarm has met the fault and set itself again for the retry. */
async function untilRetrySet(consumerId: string, fault: { refused: number }): Promise<void> {
  await runDurableObjectAlarm(stubOf(consumerId));
  await vi.waitFor(async () => {
    expect(fault.refused).toBeGreaterThan(0);
    const alarm = await runInDurableObject(stubOf(consumerId), (_instance, state) =>
      state.storage.getAlarm(),
    );
    expect(alarm).toBeGreaterThan(Date.now());
  });
}

async function revokedRows(consumerId: string) {
  return (await deliveryRows(consumerId)).filter((r) => r.event_type === "key.revoked");
}

describe("webhooks when D1 fails", () => {
  it("a change whose batch fails enqueues nothing; its retry enqueues one event", async () => {
    const consumer = await consumerWithWebhook();
    const key = await newKey(["prices:read"], {}, consumer.id);
    const fault = faultSwitch();
    await withCoordinatorBindings(
      consumer.id,
      { DB: (db) => failing(db, ["batch"], fault) },
      async () => {
        expect((await admin.post(`/keys/${key.id}/revoke`)).status).toBe(503);
      },
    );
    expect(await revokedRows(consumer.id)).toEqual([]);
    expect((await admin.post(`/keys/${key.id}/revoke`)).status).toBe(200);
    await deliverDue(consumer.id);
    expect(await revokedRows(consumer.id)).toMatchObject([{ status: "delivered" }]);
  });

  it("a batch that committed but threw has its webhook, once", async () => {
    const consumer = await consumerWithWebhook();
    const key = await newKey(["prices:read"], {}, consumer.id);
    const fault = faultSwitch();
    await withCoordinatorBindings(
      consumer.id,
      { DB: (db) => committingThenFailing(db, fault) },
      async () => {
        expect((await admin.post(`/keys/${key.id}/revoke`)).status).toBe(200);
      },
    );
    expect(fault.refused).toBe(1);
    await deliverDue(consumer.id);
    expect(await revokedRows(consumer.id)).toMatchObject([{ status: "delivered", attempts: 1 }]);
  });

  it("D1 down when the alarm delivers: it looks again later and delivers", async () => {
    const consumer = await consumerWithWebhook();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      consumer.id,
      { DB: (db) => failingStatements(db, /FROM webhook_deliveries/, fault) },
      async () => {
        await newKey(["prices:read"], {}, consumer.id);
        await untilRetrySet(consumer.id, fault);
        expect(await deliveryRows(consumer.id)).toMatchObject([{ status: "pending", attempts: 0 }]);
        fault.on = false;
        // the alarm is set again for a few seconds later: fire it now
        expect(await runDurableObjectAlarm(stubOf(consumer.id))).toBe(true);
      },
    );
    expect(await deliverDue(consumer.id)).toMatchObject([{ status: "delivered", attempts: 1 }]);
    expect(await received(consumer.url)).toHaveLength(1);
  });

  it("a send whose record is lost is sent again: at least once, same webhook-id", async () => {
    const consumer = await consumerWithWebhook();
    const fault = faultSwitch();
    await withCoordinatorBindings(
      consumer.id,
      { DB: (db) => failingStatements(db, /^\s*UPDATE webhook_deliveries/, fault) },
      async () => {
        await newKey(["prices:read"], {}, consumer.id);
        await untilRetrySet(consumer.id, fault);
        expect(fault.refused).toBe(1);
        fault.on = false;
        expect(await runDurableObjectAlarm(stubOf(consumer.id))).toBe(true);
      },
    );
    expect(await deliverDue(consumer.id)).toMatchObject([{ status: "delivered", attempts: 1 }]);
    const requests = await received(consumer.url);
    expect(requests).toHaveLength(2);
    expect(requests[0]!.headers["webhook-id"]).toBe(requests[1]!.headers["webhook-id"]);
  });
});
