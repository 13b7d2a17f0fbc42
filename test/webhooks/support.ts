import { env, runDurableObjectAlarm } from "cloudflare:test";
import { Webhook } from "standardwebhooks";
import { expect, vi } from "vitest";
import { stubOf } from "../faults/harness";
import { admin } from "../support/api";

/**
 * Helpers for the webhooks project: every outbound fetch goes to test/webhooks/receiver.mjs,
 * which records what it got. Time-based retries are made due by moving `next_attempt_at`
 * in D1 and firing the coordinator's alarm, never by waiting.
 */

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  answered: number;
}

/** A fresh endpoint URL on the receiver; `query` configures how it answers. */
export function endpoint(query = ""): string {
  const inbox = crypto.randomUUID();
  return `https://hooks.test/${inbox}${query ? `?${query}` : ""}`;
}

/** What the receiver got at `url` (host and path; the query is ignored). */
export async function received(url: string): Promise<ReceivedRequest[]> {
  const { host, pathname } = new URL(url);
  const res = await fetch(`https://receiver.control/${host}${pathname}`);
  return (await res.json()) as ReceivedRequest[];
}

export interface WebhookConsumer {
  id: string;
  secret: string;
  url: string;
}

export async function consumerWithWebhook(url = endpoint()): Promise<WebhookConsumer> {
  const created = await admin.post("/consumers", { name: "Hooked", webhookUrl: url });
  expect(created.status).toBe(201);
  const secret = created.body.webhookSecret as string;
  expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
  return { id: created.body.id as string, secret, url };
}

export { stubOf };

export interface DeliveryRow {
  id: string;
  event_id: string;
  event_type: string;
  payload: string;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  next_attempt_at: number | null;
  last_attempt_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
  url: string | null;
  redelivery_of: string | null;
  delivered_at: number | null;
}

/** The consumer's delivery rows in D1, oldest first. */
export async function deliveryRows(consumerId: string): Promise<DeliveryRow[]> {
  const rows = await env.DB.prepare(
    "SELECT * FROM webhook_deliveries WHERE consumer_id = ? ORDER BY created_at, rowid",
  )
    .bind(consumerId)
    .all<DeliveryRow>();
  return rows.results;
}

/**
 * Lets the consumer's coordinator deliver what is due: fires its alarm if one is set (it may
 * also have fired by itself), then waits until no pending delivery is due any more.
 */
export async function deliverDue(consumerId: string): Promise<DeliveryRow[]> {
  await runDurableObjectAlarm(stubOf(consumerId));
  return vi.waitFor(
    async () => {
      const rows = await deliveryRows(consumerId);
      const due = rows.filter(
        (r) =>
          r.status === "pending" && r.next_attempt_at !== null && r.next_attempt_at <= Date.now(),
      );
      if (due.length > 0) {
        await runDurableObjectAlarm(stubOf(consumerId));
        throw new Error(`${due.length} deliveries still due`);
      }
      return rows;
    },
    { timeout: 10_000, interval: 20 },
  );
}

/** Moves a pending delivery's next attempt to now, as if its backoff had passed. */
export async function makeDue(deliveryId: string): Promise<void> {
  await env.DB.prepare("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?")
    .bind(Date.now(), deliveryId)
    .run();
}

/** Verifies a received request as a consumer would, with the standardwebhooks package. */
export function verify(secret: string, request: ReceivedRequest): unknown {
  return new Webhook(secret).verify(request.body, request.headers);
}
