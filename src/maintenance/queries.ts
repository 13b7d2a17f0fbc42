import type { KeyState } from "../domain/key-state";
import type { Limits } from "../domain/limits";
import { keyFromRow, keyStatesOf } from "../store/keys";
import { jsonOrNull, numberOrNull } from "../store/rows";
import type { NoticeKind } from "./plan";

/**
 * The D1 reads and writes of scheduled maintenance. Every read is bounded (`LIMIT`, or an
 * `IN` list of at most `IN_CHUNK` values: D1 binds at most 100 parameters per statement).
 */

export const IN_CHUNK = 90;

type Row = Record<string, unknown>;

function chunks<T>(values: T[], size = IN_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < values.length; i += size) out.push(values.slice(i, i + size));
  return out;
}

function marks(values: unknown[]): string {
  return values.map(() => "?").join(", ");
}

/** The rows of `sql(marks)` for every value, one statement per `IN_CHUNK` of them. */
async function allIn<T>(
  db: D1Database,
  values: string[],
  sql: (marks: string) => string,
): Promise<T[]> {
  const rows: T[] = [];
  for (const part of chunks(values)) {
    const result = await db
      .prepare(sql(marks(part)))
      .bind(...part)
      .all<T>();
    rows.push(...result.results);
  }
  return rows;
}

// ---- time-based work -----------------------------------------------------------------------

/** A key that time has caught up with: a rotation to close or a version to expire. */
export interface DueKey {
  consumerId: string;
  keyId: string;
  reason: "grace_ended" | "expired";
}

/** The keys `sql` (selecting `key_id, consumer_id`, bound to `now` and a limit) finds due. */
async function dueKeys(
  db: D1Database,
  sql: string,
  reason: DueKey["reason"],
  now: number,
  limit: number,
): Promise<DueKey[]> {
  const rows = await db
    .prepare(sql)
    .bind(now, limit)
    .all<{ key_id: string; consumer_id: string }>();
  return rows.results.map((r) => ({ consumerId: r.consumer_id, keyId: r.key_id, reason }));
}

/** Open rotations whose grace window ended by `now`, oldest first. */
export function rotationsPastGrace(db: D1Database, now: number, limit: number): Promise<DueKey[]> {
  return dueKeys(
    db,
    `SELECT key_id, consumer_id FROM rotations
     WHERE state = 'in_progress' AND grace_until IS NOT NULL AND grace_until <= ?
     ORDER BY grace_until LIMIT ?`,
    "grace_ended",
    now,
    limit,
  );
}

/** Versions still stored `active` or `grace` although their `expiresAt` has passed. */
export function versionsPastExpiry(db: D1Database, now: number, limit: number): Promise<DueKey[]> {
  return dueKeys(
    db,
    `SELECT v.key_id, k.consumer_id FROM key_versions v JOIN keys k ON k.id = v.key_id
     WHERE v.status IN ('active', 'grace') AND v.expires_at IS NOT NULL AND v.expires_at <= ?
       AND k.status = 'active'
     ORDER BY v.expires_at LIMIT ?`,
    "expired",
    now,
    limit,
  );
}

// ---- reminders -----------------------------------------------------------------------------

/** An open rotation whose grace ends soon, not yet reminded of. */
export interface GraceEndingRow {
  rotationId: string;
  keyId: string;
  consumerId: string;
  fromVersion: number;
  toVersion: number;
  graceUntil: number;
}

/** A key's current version, with what the reminders need, not yet reminded of. */
export interface CurrentVersionRow {
  keyId: string;
  consumerId: string;
  version: number;
  createdAt: number;
  expiresAt: number | null;
}

/** Open rotations whose grace ends after `after` and by `until`, not yet reminded of. */
export async function rotationsGraceEndingBetween(
  db: D1Database,
  after: number,
  until: number,
  limit: number,
): Promise<GraceEndingRow[]> {
  const rows = await db
    .prepare(
      `SELECT r.id, r.key_id, r.consumer_id, r.from_version, r.to_version, r.grace_until
       FROM rotations r
       WHERE r.state = 'in_progress' AND r.grace_until > ? AND r.grace_until <= ?
         AND NOT EXISTS (SELECT 1 FROM maintenance_notices n
                         WHERE n.kind = 'rotation.grace_ending' AND n.subject = r.id)
       ORDER BY r.grace_until LIMIT ?`,
    )
    .bind(after, until, limit)
    .all<Row>();
  return rows.results.map((r) => ({
    rotationId: r.id as string,
    keyId: r.key_id as string,
    consumerId: r.consumer_id as string,
    fromVersion: r.from_version as number,
    toVersion: r.to_version as number,
    graceUntil: r.grace_until as number,
  }));
}

const CURRENT_VERSION = `SELECT v.key_id, k.consumer_id, v.version, v.created_at, v.expires_at
  FROM key_versions v JOIN keys k ON k.id = v.key_id AND k.current_version = v.version
  JOIN consumers c ON c.id = k.consumer_id
  WHERE v.status = 'active' AND k.status = 'active' AND c.status = 'active'`;

function currentVersionFromRow(r: Row): CurrentVersionRow {
  return {
    keyId: r.key_id as string,
    consumerId: r.consumer_id as string,
    version: r.version as number,
    createdAt: r.created_at as number,
    expiresAt: numberOrNull(r.expires_at),
  };
}

function notNoticed(kind: NoticeKind): string {
  return `NOT EXISTS (SELECT 1 FROM maintenance_notices n
    WHERE n.kind = '${kind}' AND n.subject = v.key_id || ':' || v.version)`;
}

/** Current versions expiring after `after` and by `until`, not yet reminded of. */
export async function versionsExpiringBetween(
  db: D1Database,
  after: number,
  until: number,
  limit: number,
): Promise<CurrentVersionRow[]> {
  const rows = await db
    .prepare(
      `${CURRENT_VERSION} AND v.expires_at > ? AND v.expires_at <= ?
         AND ${notNoticed("key.expiring")}
       ORDER BY v.expires_at LIMIT ?`,
    )
    .bind(after, until, limit)
    .all<Row>();
  return rows.results.map(currentVersionFromRow);
}

/** Current versions created by `createdBy`, not yet flagged as due for rotation. */
export async function versionsCreatedBy(
  db: D1Database,
  createdBy: number,
  limit: number,
): Promise<CurrentVersionRow[]> {
  const rows = await db
    .prepare(
      `${CURRENT_VERSION} AND v.created_at <= ? AND ${notNoticed("key.rotation_due")}
       ORDER BY v.created_at LIMIT ?`,
    )
    .bind(createdBy, limit)
    .all<Row>();
  return rows.results.map(currentVersionFromRow);
}

/** A reminder as recorded: written with its audit event in one batch. */
export interface NoticeRow {
  kind: NoticeKind;
  subject: string;
  consumerId: string;
  keyId: string;
  auditEventId: string;
  sentAt: number;
}

export function insertNotice(db: D1Database, notice: NoticeRow): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO maintenance_notices (kind, subject, consumer_id, key_id, audit_event_id, sent_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      notice.kind,
      notice.subject,
      notice.consumerId,
      notice.keyId,
      notice.auditEventId,
      notice.sentAt,
    );
}

/** A reminder recorded but not yet handed to webhook delivery, with its audit details. */
export interface UnemittedNotice extends NoticeRow {
  details: Record<string, unknown>;
}

export async function unemittedNotices(db: D1Database, limit: number): Promise<UnemittedNotice[]> {
  const rows = await db
    .prepare(
      `SELECT n.kind, n.subject, n.consumer_id, n.key_id, n.audit_event_id, n.sent_at, a.details
       FROM maintenance_notices n JOIN audit_events a ON a.id = n.audit_event_id
       WHERE n.emitted_at IS NULL ORDER BY n.sent_at LIMIT ?`,
    )
    .bind(limit)
    .all<Row>();
  return rows.results.map((r) => ({
    kind: r.kind as NoticeKind,
    subject: r.subject as string,
    consumerId: r.consumer_id as string,
    keyId: r.key_id as string,
    auditEventId: r.audit_event_id as string,
    sentAt: r.sent_at as number,
    details: JSON.parse(r.details as string) as Record<string, unknown>,
  }));
}

export async function markEmitted(
  db: D1Database,
  notice: { kind: NoticeKind; subject: string },
  now: number,
): Promise<void> {
  await db
    .prepare("UPDATE maintenance_notices SET emitted_at = ? WHERE kind = ? AND subject = ?")
    .bind(now, notice.kind, notice.subject)
    .run();
}

// ---- reconciliation ------------------------------------------------------------------------

/** A page of active keys after `afterId`, by id, each with its versions and open rotation. */
export async function keyStatesAfter(
  db: D1Database,
  afterId: string,
  limit: number,
): Promise<KeyState[]> {
  const keys = await db
    .prepare("SELECT * FROM keys WHERE status = 'active' AND id > ? ORDER BY id LIMIT ?")
    .bind(afterId, Math.min(limit, IN_CHUNK))
    .all<Row>();
  return keyStatesOf(db, keys.results.map(keyFromRow));
}

/** The keys (with versions and open rotation) holding each of `hashes`, by hash. */
export async function keyStatesByHash(
  db: D1Database,
  hashes: string[],
): Promise<Map<string, KeyState>> {
  const found = await allIn<{ secret_hash: string; key_id: string }>(
    db,
    hashes,
    (m) => `SELECT secret_hash, key_id FROM key_versions WHERE secret_hash IN (${m})`,
  );
  const keyIdByHash = new Map(found.map((r) => [r.secret_hash, r.key_id]));
  const keyRows = await allIn<Row>(
    db,
    [...new Set(keyIdByHash.values())],
    (m) => `SELECT * FROM keys WHERE id IN (${m})`,
  );
  const states = new Map<string, KeyState>();
  for (const part of chunks(keyRows.map(keyFromRow))) {
    for (const state of await keyStatesOf(db, part)) states.set(state.key.id, state);
  }
  const byHash = new Map<string, KeyState>();
  for (const [hash, keyId] of keyIdByHash) {
    const state = states.get(keyId);
    if (state) byHash.set(hash, state);
  }
  return byHash;
}

/** The limits of each consumer, and which of them are active (deleted ones are absent). */
export async function consumerLimits(
  db: D1Database,
  consumerIds: string[],
): Promise<Map<string, Limits>> {
  const rows = await allIn<Row>(
    db,
    [...new Set(consumerIds)],
    (m) => `SELECT id, rate_limit, monthly_quota FROM consumers
            WHERE status = 'active' AND id IN (${m})`,
  );
  return new Map(
    rows.map((r): [string, Limits] => [
      r.id as string,
      { rateLimit: jsonOrNull(r.rate_limit), monthlyQuota: numberOrNull(r.monthly_quota) },
    ]),
  );
}

// ---- cursors -------------------------------------------------------------------------------

export type CursorName = "keys" | "kv";

export async function readCursor(db: D1Database, name: CursorName): Promise<string | null> {
  const row = await db
    .prepare("SELECT value FROM maintenance_cursors WHERE name = ?")
    .bind(name)
    .first<{ value: string }>();
  return row?.value ?? null;
}

/** Saves where a walk stopped; null: it reached the end, and the next run starts over. */
export async function saveCursor(
  db: D1Database,
  name: CursorName,
  value: string | null,
  now: number,
): Promise<void> {
  if (value === null) {
    await db.prepare("DELETE FROM maintenance_cursors WHERE name = ?").bind(name).run();
    return;
  }
  await db
    .prepare(
      `INSERT INTO maintenance_cursors (name, value, updated_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    )
    .bind(name, value, now)
    .run();
}

// ---- pruning -------------------------------------------------------------------------------

/**
 * What maintenance prunes: each table's age column, and which of its rows may go at all.
 * Idempotency records whose replay window has passed (the middleware already treats them as
 * absent), and webhook deliveries settled (delivered or given up) before the cut-off;
 * pending deliveries are never touched.
 */
const PRUNABLE = {
  idempotency_records: { age: "created_at", only: null },
  webhook_deliveries: { age: "updated_at", only: "status IN ('delivered', 'failed')" },
} as const;

/** Deletes up to `limit` rows of `table` that are over at `before`, oldest first; answers how many. */
export async function pruneRows(
  db: D1Database,
  table: keyof typeof PRUNABLE,
  before: number,
  limit: number,
): Promise<number> {
  const { age, only } = PRUNABLE[table];
  const over = only === null ? `${age} < ?` : `${only} AND ${age} < ?`;
  const result = await db
    .prepare(
      `DELETE FROM ${table} WHERE rowid IN (
         SELECT rowid FROM ${table} WHERE ${over} ORDER BY ${age} LIMIT ?)`,
    )
    .bind(before, limit)
    .run();
  return result.meta.changes;
}
