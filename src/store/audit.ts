import { newId } from "../keys/random";
import { selectPage, toPage, type Page, type PageRequest } from "./pagination";
import { stringOrNull } from "./rows";

export interface AuditEvent {
  id: string;
  at: number;
  actor: string;
  action: string;
  consumerId: string | null;
  keyId: string | null;
  target: string;
  details: Record<string, unknown>;
  requestId: string | null;
}

/** Who made a change and under which request: carried from the route to the coordinator. */
export interface AuditContext {
  actor: string;
  requestId: string | null;
}

export function newAuditEvent(
  context: AuditContext,
  at: number,
  action: string,
  target: { consumerId: string | null; keyId: string | null; target: string },
  details: Record<string, unknown>,
): AuditEvent {
  return {
    id: newId("evt"),
    at,
    actor: context.actor,
    action,
    ...target,
    details,
    requestId: context.requestId,
  };
}

export function insertAudit(db: D1Database, event: AuditEvent): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO audit_events (id, at, actor, action, consumer_id, key_id, target, details, request_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      event.id,
      event.at,
      event.actor,
      event.action,
      event.consumerId,
      event.keyId,
      event.target,
      JSON.stringify(event.details),
      event.requestId,
    );
}

/**
 * Whether D1 holds the audit event `id`. As a batch is one transaction, this tells whether a
 * batch that threw was committed after all: its audit row is there exactly when every other
 * row of it is. Throws when D1 cannot answer either: the outcome is then unknown.
 */
export async function auditEventExists(db: D1Database, id: string): Promise<boolean> {
  const row = await db.prepare("SELECT 1 AS found FROM audit_events WHERE id = ?").bind(id).first();
  return row !== null;
}

export interface AuditFilter {
  consumerId?: string | undefined;
  keyId?: string | undefined;
  action?: string | undefined;
}

function fromRow(row: Record<string, unknown>): AuditEvent {
  return {
    id: row.id as string,
    at: row.at as number,
    actor: row.actor as string,
    action: row.action as string,
    consumerId: stringOrNull(row.consumer_id),
    keyId: stringOrNull(row.key_id),
    target: row.target as string,
    details: JSON.parse(row.details as string) as Record<string, unknown>,
    requestId: stringOrNull(row.request_id),
  };
}

/** Audit events matching every given filter, newest first. */
export async function listAudit(
  db: D1Database,
  filter: AuditFilter,
  page: PageRequest,
): Promise<Page<AuditEvent>> {
  const where = ["1 = 1"];
  const values: string[] = [];
  for (const [column, value] of [
    ["consumer_id", filter.consumerId],
    ["key_id", filter.keyId],
    ["action", filter.action],
  ] as const) {
    if (value === undefined || value === "") continue;
    where.push(`${column} = ?`);
    values.push(value);
  }
  const rows = await selectPage(
    db,
    `SELECT * FROM audit_events WHERE ${where.join(" AND ")}`,
    values,
    "at",
    page,
  );
  return toPage(rows.map(fromRow), page.limit, (e) => ({ at: e.at, id: e.id }));
}
