import type { KeyRecord, KeyState, KeyVersion, Rotation } from "../domain/key-state";
import { selectPage, toPage, type Page, type PageRequest } from "./pagination";
import { jsonOrNull, numberOrNull, stringOrNull, toJson } from "./rows";

/** A `keys` row as a key record. */
export function keyFromRow(row: Record<string, unknown>): KeyRecord {
  return {
    id: row.id as string,
    consumerId: row.consumer_id as string,
    name: stringOrNull(row.name),
    metadata: jsonOrNull(row.metadata),
    rateLimit: jsonOrNull(row.rate_limit),
    status: row.status as KeyRecord["status"],
    currentVersion: row.current_version as number,
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    revokedAt: numberOrNull(row.revoked_at),
    revokeReason: stringOrNull(row.revoke_reason),
  };
}

function versionFromRow(row: Record<string, unknown>): KeyVersion {
  return {
    version: row.version as number,
    secretHash: row.secret_hash as string,
    hint: row.hint as string,
    scopes: JSON.parse(row.scopes as string) as string[],
    status: row.status as KeyVersion["status"],
    createdAt: row.created_at as number,
    expiresAt: numberOrNull(row.expires_at),
    graceUntil: numberOrNull(row.grace_until),
    retiredAt: numberOrNull(row.retired_at),
    lastUsedAt: numberOrNull(row.last_used_at),
  };
}

export function rotationFromRow(row: Record<string, unknown>): Rotation {
  return {
    id: row.id as string,
    keyId: row.key_id as string,
    consumerId: row.consumer_id as string,
    state: row.state as Rotation["state"],
    fromVersion: row.from_version as number,
    toVersion: row.to_version as number,
    startedAt: row.started_at as number,
    gracePeriodMs: row.grace_period_ms as number,
    graceUntil: numberOrNull(row.grace_until),
    graceStartsOnFirstUse: row.grace_starts_on_first_use === 1,
    completeWhenIdleMs: numberOrNull(row.complete_when_idle_ms),
    firstUsedAt: numberOrNull(row.first_used_at),
    endedAt: numberOrNull(row.ended_at),
    endReason: stringOrNull(row.end_reason) as Rotation["endReason"],
  };
}

/** A key with its versions (newest first) and its open rotation: what transitions need. */
export async function getKeyState(db: D1Database, keyId: string): Promise<KeyState | null> {
  const [keys, versions, rotations] = await db.batch([
    db.prepare("SELECT * FROM keys WHERE id = ?").bind(keyId),
    db.prepare("SELECT * FROM key_versions WHERE key_id = ? ORDER BY version DESC").bind(keyId),
    db.prepare("SELECT * FROM rotations WHERE key_id = ? AND state = 'in_progress'").bind(keyId),
  ]);
  const keyRow = keys?.results[0] as Record<string, unknown> | undefined;
  if (!keyRow) return null;
  const rotationRow = rotations?.results[0] as Record<string, unknown> | undefined;
  return {
    key: keyFromRow(keyRow),
    versions: (versions?.results ?? []).map((r) => versionFromRow(r as Record<string, unknown>)),
    rotation: rotationRow ? rotationFromRow(rotationRow) : null,
  };
}

/** The states of every key of a consumer (for consumer-wide changes). */
export async function getConsumerKeyIds(db: D1Database, consumerId: string): Promise<string[]> {
  const rows = await db
    .prepare("SELECT id FROM keys WHERE consumer_id = ? ORDER BY created_at")
    .bind(consumerId)
    .all<{ id: string }>();
  return rows.results.map((r) => r.id);
}

/** Keys of a consumer, newest first, each with its versions. */
export async function listKeyStates(
  db: D1Database,
  consumerId: string,
  page: PageRequest,
): Promise<Page<KeyState>> {
  const rows = await selectPage(
    db,
    "SELECT * FROM keys WHERE consumer_id = ?",
    [consumerId],
    "created_at",
    page,
  );
  const keys = rows.map(keyFromRow);
  const pageOfKeys = toPage(keys, page.limit, (k) => ({ at: k.createdAt, id: k.id }));
  if (pageOfKeys.items.length === 0) return { items: [], nextCursor: null };
  return {
    items: await keyStatesOf(db, pageOfKeys.items),
    nextCursor: pageOfKeys.nextCursor,
  };
}

/**
 * The states of `keys` (each with its versions, newest first, and its open rotation), in
 * their order. One batch whose statements bind every id: at most 100 keys (D1's bind limit).
 */
export async function keyStatesOf(db: D1Database, keys: KeyRecord[]): Promise<KeyState[]> {
  if (keys.length === 0) return [];
  const ids = keys.map((k) => k.id);
  const marks = ids.map(() => "?").join(", ");
  const [versions, rotations] = await db.batch([
    db
      .prepare(`SELECT * FROM key_versions WHERE key_id IN (${marks}) ORDER BY version DESC`)
      .bind(...ids),
    db
      .prepare(`SELECT * FROM rotations WHERE key_id IN (${marks}) AND state = 'in_progress'`)
      .bind(...ids),
  ]);
  const versionRows = (versions?.results ?? []) as Record<string, unknown>[];
  const rotationRows = ((rotations?.results ?? []) as Record<string, unknown>[]).map(
    rotationFromRow,
  );
  return keys.map((key) => ({
    key,
    versions: versionRows.filter((r) => r.key_id === key.id).map(versionFromRow),
    rotation: rotationRows.find((r) => r.keyId === key.id) ?? null,
  }));
}

export function upsertKey(db: D1Database, key: KeyRecord): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO keys (id, consumer_id, name, metadata, rate_limit, status, current_version,
         created_at, updated_at, revoked_at, revoke_reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, metadata = excluded.metadata,
         rate_limit = excluded.rate_limit, status = excluded.status,
         current_version = excluded.current_version, updated_at = excluded.updated_at,
         revoked_at = excluded.revoked_at, revoke_reason = excluded.revoke_reason`,
    )
    .bind(
      key.id,
      key.consumerId,
      key.name,
      toJson(key.metadata),
      toJson(key.rateLimit),
      key.status,
      key.currentVersion,
      key.createdAt,
      key.updatedAt,
      key.revokedAt,
      key.revokeReason,
    );
}

export function upsertVersion(
  db: D1Database,
  keyId: string,
  version: KeyVersion,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO key_versions (key_id, version, secret_hash, hint, scopes, status, created_at,
         expires_at, grace_until, retired_at, last_used_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (key_id, version) DO UPDATE SET scopes = excluded.scopes,
         status = excluded.status, expires_at = excluded.expires_at,
         grace_until = excluded.grace_until, retired_at = excluded.retired_at,
         last_used_at = NULLIF(MAX(COALESCE(key_versions.last_used_at, 0), COALESCE(excluded.last_used_at, 0)), 0)`,
    )
    .bind(
      keyId,
      version.version,
      version.secretHash,
      version.hint,
      JSON.stringify(version.scopes),
      version.status,
      version.createdAt,
      version.expiresAt,
      version.graceUntil,
      version.retiredAt,
      version.lastUsedAt,
    );
}

export function upsertRotation(db: D1Database, rotation: Rotation): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO rotations (id, key_id, consumer_id, state, from_version, to_version, started_at,
         grace_period_ms, grace_until, grace_starts_on_first_use, complete_when_idle_ms,
         first_used_at, ended_at, end_reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET state = excluded.state,
         grace_period_ms = excluded.grace_period_ms, grace_until = excluded.grace_until,
         first_used_at = excluded.first_used_at, ended_at = excluded.ended_at,
         end_reason = excluded.end_reason`,
    )
    .bind(
      rotation.id,
      rotation.keyId,
      rotation.consumerId,
      rotation.state,
      rotation.fromVersion,
      rotation.toVersion,
      rotation.startedAt,
      rotation.gracePeriodMs,
      rotation.graceUntil,
      rotation.graceStartsOnFirstUse ? 1 : 0,
      rotation.completeWhenIdleMs,
      rotation.firstUsedAt,
      rotation.endedAt,
      rotation.endReason,
    );
}

export async function getRotation(db: D1Database, id: string): Promise<Rotation | null> {
  const row = await db.prepare("SELECT * FROM rotations WHERE id = ?").bind(id).first();
  return row ? rotationFromRow(row) : null;
}

export async function listRotationsOfKey(
  db: D1Database,
  keyId: string,
  page: PageRequest,
): Promise<Page<Rotation>> {
  const rows = await selectPage(
    db,
    "SELECT * FROM rotations WHERE key_id = ?",
    [keyId],
    "started_at",
    page,
  );
  return toPage(rows.map(rotationFromRow), page.limit, (r) => ({
    at: r.startedAt,
    id: r.id,
  }));
}

/** Open rotations of a consumer: what its coordinator's alarm watches. */
export async function openRotationsOfConsumer(
  db: D1Database,
  consumerId: string,
): Promise<Rotation[]> {
  const rows = await db
    .prepare("SELECT * FROM rotations WHERE consumer_id = ? AND state = 'in_progress'")
    .bind(consumerId)
    .all();
  return rows.results.map(rotationFromRow);
}

/** Whether D1 holds a version with this secret hash. */
export async function secretKnown(db: D1Database, hash: string): Promise<boolean> {
  const row = await db
    .prepare("SELECT 1 AS found FROM key_versions WHERE secret_hash = ?")
    .bind(hash)
    .first();
  return row !== null;
}
