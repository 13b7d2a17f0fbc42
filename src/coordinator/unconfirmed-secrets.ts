import { retryDelayMs } from "./usage-store";

/**
 * Secrets written to KV ahead of the D1 write that issues them (create, rotate), kept in the
 * coordinator's own SQLite storage until that write is known to have landed. A row outlives a
 * failed call: the alarm (or the next change of the key) then reads D1 and either removes the
 * KV record of a secret that was never issued, or withdraws a version that D1 holds but whose
 * secret no client ever received. Only the secret's hash is kept, as everywhere else.
 */

const FIRST_CHECK_MS = 1_000;

export interface UnconfirmedSecret {
  secretHash: string;
  keyId: string;
  version: number;
  /** the rotation that issues it; null for a key's first version */
  rotationId: string | null;
  /** id of the audit event written in the same batch: present in D1 iff the batch landed */
  marker: string;
}

export function createUnconfirmedTable(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS unconfirmed_secrets (
    secret_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL, version INTEGER NOT NULL,
    rotation_id TEXT, marker TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL)`);
}

/** Due for a check one second from `now`: only if the call that adds it dies midway. */
export function addUnconfirmed(sql: SqlStorage, secret: UnconfirmedSecret, now: number): void {
  sql.exec(
    `INSERT OR REPLACE INTO unconfirmed_secrets
       (secret_hash, key_id, version, rotation_id, marker, attempts, next_at)
     VALUES (?, ?, ?, ?, ?, 0, ?)`,
    secret.secretHash,
    secret.keyId,
    secret.version,
    secret.rotationId,
    secret.marker,
    now + FIRST_CHECK_MS,
  );
}

/** Pushes the next check of a row back, with the same backoff as the projection queue. */
export function deferUnconfirmed(sql: SqlStorage, secretHash: string, now: number): void {
  const row = sql
    .exec<{
      attempts: number;
    }>("SELECT attempts FROM unconfirmed_secrets WHERE secret_hash = ?", secretHash)
    .toArray()[0];
  if (!row) return;
  const attempts = row.attempts + 1;
  sql.exec(
    "UPDATE unconfirmed_secrets SET attempts = ?, next_at = ? WHERE secret_hash = ?",
    attempts,
    now + retryDelayMs(attempts),
    secretHash,
  );
}

export function dropUnconfirmed(sql: SqlStorage, secretHash: string): void {
  sql.exec("DELETE FROM unconfirmed_secrets WHERE secret_hash = ?", secretHash);
}

type Row = {
  secret_hash: string;
  key_id: string;
  version: number;
  rotation_id: string | null;
  marker: string;
};

function fromRow(row: Row): UnconfirmedSecret {
  return {
    secretHash: row.secret_hash,
    keyId: row.key_id,
    version: row.version,
    rotationId: row.rotation_id,
    marker: row.marker,
  };
}

/** Rows due for a check at `now`, or every row of `keyId` whatever its time. */
export function unconfirmedSecrets(
  sql: SqlStorage,
  filter: { dueAt: number } | { keyId: string },
): UnconfirmedSecret[] {
  const rows =
    "keyId" in filter
      ? sql.exec<Row>("SELECT * FROM unconfirmed_secrets WHERE key_id = ?", filter.keyId)
      : sql.exec<Row>("SELECT * FROM unconfirmed_secrets WHERE next_at <= ?", filter.dueAt);
  return rows.toArray().map(fromRow);
}

export function nextUnconfirmedAt(sql: SqlStorage): number | null {
  const row = sql
    .exec<{ at: number | null }>("SELECT MIN(next_at) AS at FROM unconfirmed_secrets")
    .toArray()[0];
  return row?.at ?? null;
}
