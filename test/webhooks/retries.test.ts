import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { MAX_WEBHOOK_ATTEMPTS, WEBHOOK_RETRY_DELAYS_MS } from "../../src/webhooks/events";
import { admin, newKey } from "../support/api";
import {
  consumerWithWebhook,
  deliverDue,
  deliveryRows,
  endpoint,
  makeDue,
  received,
  stubOf,
  verify,
} from "./support";

/** Makes the consumer's only delivery due and lets the coordinator attempt it. */
async function retry(consumerId: string) {
  const [row] = await deliveryRows(consumerId);
  await makeDue(row!.id);
  const rows = await deliverDue(consumerId);
  return rows[0]!;
}

describe("webhooks: retries and backoff", () => {
  it("retries a receiver that fails twice, 5 s then 30 s later, and delivers on the third attempt", async () => {
    const consumer = await consumerWithWebhook(endpoint("fail=2"));
    await newKey(["prices:read"], {}, consumer.id);
    const [first] = await deliverDue(consumer.id);
    expect(first).toMatchObject({
      status: "pending",
      attempts: 1,
      last_status_code: 500,
      last_error: "HTTP 500: not a 2xx answer",
    });
    expect(first!.next_attempt_at! - first!.last_attempt_at!).toBe(5_000);

    const second = await retry(consumer.id);
    expect(second).toMatchObject({ status: "pending", attempts: 2, last_status_code: 500 });
    expect(second.next_attempt_at! - second.last_attempt_at!).toBe(30_000);

    const third = await retry(consumer.id);
    expect(third).toMatchObject({
      status: "delivered",
      attempts: 3,
      last_status_code: 204,
      last_error: null,
      next_attempt_at: null,
    });
    expect(third.delivered_at).toBe(third.last_attempt_at);

    // the same message every time: one webhook-id, each attempt signed afresh
    const requests = await received(consumer.url);
    expect(requests.map((r) => r.answered)).toEqual([500, 500, 204]);
    expect(new Set(requests.map((r) => r.headers["webhook-id"])).size).toBe(1);
    for (const request of requests) {
      expect(verify(consumer.secret, request)).toMatchObject({ type: "key.created" });
    }
  });

  it(`gives up after ${MAX_WEBHOOK_ATTEMPTS} attempts, waiting longer each time`, async () => {
    const consumer = await consumerWithWebhook(endpoint("status=503"));
    await newKey(["prices:read"], {}, consumer.id);
    let row = (await deliverDue(consumer.id))[0]!;
    const waits: number[] = [row.next_attempt_at! - row.last_attempt_at!];
    while (row.status === "pending") {
      row = await retry(consumer.id);
      if (row.next_attempt_at !== null) waits.push(row.next_attempt_at - row.last_attempt_at!);
    }
    expect(waits).toEqual([...WEBHOOK_RETRY_DELAYS_MS]);
    expect(waits.slice(0, 5)).toEqual([5_000, 30_000, 120_000, 600_000, 3_600_000]);
    expect(row).toMatchObject({
      status: "failed",
      attempts: MAX_WEBHOOK_ATTEMPTS,
      next_attempt_at: null,
      last_status_code: 503,
    });
    expect(await received(consumer.url)).toHaveLength(MAX_WEBHOOK_ATTEMPTS);
    // nothing left to do: no alarm for webhooks
    expect(await runDurableObjectAlarm(stubOf(consumer.id))).toBe(false);
  });

  it("does not follow a redirect, to another host or any", async () => {
    const elsewhere = endpoint();
    const consumer = await consumerWithWebhook(
      endpoint(`redirect=${encodeURIComponent(elsewhere)}`),
    );
    await newKey(["prices:read"], {}, consumer.id);
    const [row] = await deliverDue(consumer.id);
    expect(row).toMatchObject({
      status: "pending",
      attempts: 1,
      last_status_code: 302,
      last_error: "HTTP 302: a redirect, not followed (webhooks go to webhookUrl only)",
    });
    expect(await received(consumer.url)).toHaveLength(1);
    expect(await received(elsewhere)).toEqual([]);
  });

  it("a failing receiver holds up neither key changes nor other consumers' webhooks", async () => {
    const failing = await consumerWithWebhook(endpoint("status=500"));
    const healthy = await consumerWithWebhook();
    await newKey(["prices:read"], {}, failing.id);
    await newKey(["prices:read"], {}, healthy.id);
    await deliverDue(failing.id);
    await deliverDue(healthy.id);
    expect((await newKey(["prices:read"], {}, failing.id)).key).toMatch(/^kg_/);
    expect((await deliveryRows(healthy.id))[0]).toMatchObject({ status: "delivered" });
  });

  it("goes to the consumer's current webhookUrl", async () => {
    const consumer = await consumerWithWebhook(endpoint("status=500"));
    await newKey(["prices:read"], {}, consumer.id);
    await deliverDue(consumer.id);
    const moved = endpoint();
    const patched = await admin.patch(`/consumers/${consumer.id}`, { webhookUrl: moved });
    expect(patched.status).toBe(200);
    // the consumer already has a secret: a new URL neither shows nor changes it
    expect(patched.body).not.toHaveProperty("webhookSecret");
    const delivered = await retry(consumer.id);
    expect(delivered).toMatchObject({ status: "delivered", attempts: 2, url: moved });
    expect(verify(consumer.secret, (await received(moved))[0]!)).toMatchObject({
      type: "key.created",
    });
  });

  it("gives a pending delivery up at once when the consumer no longer has a webhookUrl", async () => {
    const consumer = await consumerWithWebhook(endpoint("status=500"));
    await newKey(["prices:read"], {}, consumer.id);
    await deliverDue(consumer.id);
    expect((await admin.patch(`/consumers/${consumer.id}`, { webhookUrl: null })).status).toBe(200);
    const row = await retry(consumer.id);
    expect(row).toMatchObject({
      status: "failed",
      attempts: 1,
      last_error: "the consumer has no webhookUrl",
    });
    expect(await received(consumer.url)).toHaveLength(1);
  });
});
