import type { AttemptOutcome, DeliveryProgress, DeliveryStatus } from "./events";
import { selectPage, toPage, type Page, type PageRequest } from "../store/pagination";
import { numberOrNull, stringOrNull } from "../store/rows";

/**
 * D1 `webhook_deliveries`: one row per delivery of an event to a consumer's webhookUrl, with
 * its attempts. Rows are inserted in the batch of the change they report; the consumer's
 * coordinator reads the due ones and records each attempt.
 */

/** How long a settled delivery (delivered or given up) is kept; maintenance deletes it after. */
export const WEBHOOK_DELIVERY_RETENTION_MS = 30 * 86_400_000;

export interface WebhookDelivery {
  id: string;
  consumerId: string;
  eventId: string;
  eventType: string;
  /** the exact JSON body that is signed and sent */
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: number | null;
  lastAttemptAt: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  url: string | null;
  redeliveryOf: string | null;
  createdAt: number;
  updatedAt: number;
  deliveredAt: number | null;
}

function fromRow(row: Record<string, unknown>): WebhookDelivery {
  return {
    id: row.id as string,
    consumerId: row.consumer_id as string,
    eventId: row.event_id as string,
    eventType: row.event_type as string,
    payload: row.payload as string,
    status: row.status as DeliveryStatus,
    attempts: row.attempts as number,
    nextAttemptAt: numberOrNull(row.next_attempt_at),
    lastAttemptAt: numberOrNull(row.last_attempt_at),
    lastStatusCode: numberOrNull(row.last_status_code),
    lastError: stringOrNull(row.last_error),
    url: stringOrNull(row.url),
    redeliveryOf: stringOrNull(row.redelivery_of),
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    deliveredAt: numberOrNull(row.delivered_at),
  };
}

export interface NewDelivery {
  id: string;
  consumerId: string;
  eventId: string;
  eventType: string;
  payload: string;
  redeliveryOf: string | null;
  createdAt: number;
}

/**
 * Enqueues a delivery, due at once. An event is enqueued once per consumer: inserting it
 * again (a retried change, a repeated reminder with the same event id) changes nothing.
 */
export function insertDelivery(db: D1Database, delivery: NewDelivery): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO webhook_deliveries (id, consumer_id, event_id, event_type, payload, status,
         attempts, next_attempt_at, redelivery_of, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)
       ON CONFLICT DO NOTHING`,
    )
    .bind(
      delivery.id,
      delivery.consumerId,
      delivery.eventId,
      delivery.eventType,
      delivery.payload,
      delivery.createdAt,
      delivery.redeliveryOf,
      delivery.createdAt,
      delivery.createdAt,
    );
}

export async function getDelivery(db: D1Database, id: string): Promise<WebhookDelivery | null> {
  const row = await db.prepare("SELECT * FROM webhook_deliveries WHERE id = ?").bind(id).first();
  return row ? fromRow(row) : null;
}

/** The first delivery of an event (not a redelivery), or null. */
export async function getDeliveryOfEvent(
  db: D1Database,
  consumerId: string,
  eventId: string,
): Promise<WebhookDelivery | null> {
  const row = await db
    .prepare(
      "SELECT * FROM webhook_deliveries WHERE consumer_id = ? AND event_id = ? AND redelivery_of IS NULL",
    )
    .bind(consumerId, eventId)
    .first();
  return row ? fromRow(row) : null;
}

/** A consumer's deliveries, newest first, optionally of one status. */
export async function listDeliveries(
  db: D1Database,
  consumerId: string,
  filter: { status?: DeliveryStatus | undefined },
  page: PageRequest,
): Promise<Page<WebhookDelivery>> {
  const where = ["consumer_id = ?"];
  const values: string[] = [consumerId];
  if (filter.status !== undefined) {
    where.push("status = ?");
    values.push(filter.status);
  }
  const rows = await selectPage(
    db,
    `SELECT * FROM webhook_deliveries WHERE ${where.join(" AND ")}`,
    values,
    "created_at",
    page,
  );
  return toPage(rows.map(fromRow), page.limit, (d) => ({ at: d.createdAt, id: d.id }));
}

/** Pending deliveries of a consumer due at `now`, oldest first. */
export async function dueDeliveries(
  db: D1Database,
  consumerId: string,
  now: number,
  limit: number,
): Promise<WebhookDelivery[]> {
  const rows = await db
    .prepare(
      `SELECT * FROM webhook_deliveries
       WHERE consumer_id = ? AND status = 'pending' AND next_attempt_at <= ?
       ORDER BY next_attempt_at, created_at, rowid LIMIT ?`,
    )
    .bind(consumerId, now, limit)
    .all();
  return rows.results.map(fromRow);
}

/** When the consumer's next pending delivery is due, or null when none is pending. */
export async function nextDeliveryAt(db: D1Database, consumerId: string): Promise<number | null> {
  const row = await db
    .prepare(
      "SELECT MIN(next_attempt_at) AS at FROM webhook_deliveries WHERE consumer_id = ? AND status = 'pending'",
    )
    .bind(consumerId)
    .first<{ at: number | null }>();
  return row?.at ?? null;
}

/** Records an attempt and where it leaves the delivery. */
export async function recordAttempt(
  db: D1Database,
  id: string,
  outcome: AttemptOutcome,
  progress: DeliveryProgress,
  now: number,
): Promise<void> {
  await db
    .prepare(
      `UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,
         last_attempt_at = COALESCE(?, last_attempt_at), last_status_code = ?, last_error = ?,
         url = COALESCE(?, url), delivered_at = ?, updated_at = ?
       WHERE id = ?`,
    )
    .bind(
      progress.status,
      progress.attempts,
      progress.nextAttemptAt,
      progress.lastAttemptAt,
      outcome.statusCode,
      outcome.error,
      outcome.url,
      progress.deliveredAt,
      now,
      id,
    )
    .run();
}
