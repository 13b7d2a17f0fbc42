import type { RateLimit } from "../domain/key-state";
import { selectPage, toPage, type Page, type PageRequest } from "./pagination";
import { jsonOrNull, numberOrNull, stringOrNull, toJson } from "./rows";

export interface Consumer {
  id: string;
  name: string;
  metadata: Record<string, unknown> | null;
  rateLimit: RateLimit | null;
  monthlyQuota: number | null;
  webhookUrl: string | null;
  status: "active" | "deleted";
  createdAt: number;
  updatedAt: number;
  deletedAt: number | null;
}

function fromRow(row: Record<string, unknown>): Consumer {
  return {
    id: row.id as string,
    name: row.name as string,
    metadata: jsonOrNull(row.metadata),
    rateLimit: jsonOrNull(row.rate_limit),
    monthlyQuota: numberOrNull(row.monthly_quota),
    webhookUrl: stringOrNull(row.webhook_url),
    status: row.status as Consumer["status"],
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    deletedAt: numberOrNull(row.deleted_at),
  };
}

export async function getConsumer(db: D1Database, id: string): Promise<Consumer | null> {
  const row = await db.prepare("SELECT * FROM consumers WHERE id = ?").bind(id).first();
  return row ? fromRow(row) : null;
}

export async function listConsumers(db: D1Database, page: PageRequest): Promise<Page<Consumer>> {
  const rows = await selectPage(
    db,
    "SELECT * FROM consumers WHERE status = 'active'",
    [],
    "created_at",
    page,
  );
  return toPage(rows.map(fromRow), page.limit, (c) => ({ at: c.createdAt, id: c.id }));
}

export function upsertConsumer(db: D1Database, consumer: Consumer): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO consumers (id, name, metadata, rate_limit, monthly_quota, webhook_url, status,
         created_at, updated_at, deleted_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, metadata = excluded.metadata,
         rate_limit = excluded.rate_limit, monthly_quota = excluded.monthly_quota,
         webhook_url = excluded.webhook_url, status = excluded.status,
         updated_at = excluded.updated_at, deleted_at = excluded.deleted_at`,
    )
    .bind(
      consumer.id,
      consumer.name,
      toJson(consumer.metadata),
      toJson(consumer.rateLimit),
      consumer.monthlyQuota,
      consumer.webhookUrl,
      consumer.status,
      consumer.createdAt,
      consumer.updatedAt,
      consumer.deletedAt,
    );
}
