import { newId } from "../keys/random";
import { decodeCursor, toPage, type Page, type PageRequest } from "./pagination";
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
  const where: string[] = [];
  const values: (string | number)[] = [];
  const add = (clause: string, ...bound: (string | number)[]) => {
    where.push(clause);
    values.push(...bound);
  };
  if (filter.consumerId) add("consumer_id = ?", filter.consumerId);
  if (filter.keyId) add("key_id = ?", filter.keyId);
  if (filter.action) add("action = ?", filter.action);
  const after = page.cursor ? decodeCursor(page.cursor) : null;
  if (after) add("(at, id) < (?, ?)", after.at, after.id);
  const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
  const rows = await db
    .prepare(`SELECT * FROM audit_events ${clause} ORDER BY at DESC, id DESC LIMIT ?`)
    .bind(...values, page.limit + 1)
    .all();
  return toPage(rows.results.map(fromRow), page.limit, (e) => ({ at: e.at, id: e.id }));
}
