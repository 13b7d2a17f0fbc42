/**
 * The idempotency store in D1 (`idempotency_records`): one record per caller and
 * `Idempotency-Key`, first `pending` while its request runs, then `done` with the response to
 * replay (routes/idempotency.ts decides what is kept and answered).
 */

/** How long a kept response answers replays of its `Idempotency-Key`. */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
/** A pending record older than this is taken to belong to a request that died. */
export const PENDING_TIMEOUT_MS = 60_000;

export interface IdempotencyRecord {
  fingerprint: string;
  state: "pending" | "done";
  status: number | null;
  body: string | null;
  created_at: number;
}

/** The caller's record of `key`, or null; one past its TTL is deleted and reads as none. */
export async function readIdempotency(
  db: D1Database,
  scope: string,
  key: string,
  now: number,
): Promise<IdempotencyRecord | null> {
  const existing = await db
    .prepare(
      "SELECT fingerprint, state, status, body, created_at FROM idempotency_records WHERE scope = ? AND key = ?",
    )
    .bind(scope, key)
    .first<IdempotencyRecord>();
  if (existing && existing.created_at < now - IDEMPOTENCY_TTL_MS) {
    await db
      .prepare("DELETE FROM idempotency_records WHERE scope = ? AND key = ?")
      .bind(scope, key)
      .run();
    return null;
  }
  return existing;
}

/**
 * Claims `key` for a request about to run: a new pending record, or one whose request timed
 * out. False when another request holds it.
 */
export async function claimIdempotency(
  db: D1Database,
  scope: string,
  key: string,
  fingerprint: string,
  now: number,
): Promise<boolean> {
  const claimed = await db
    .prepare(
      `INSERT INTO idempotency_records (scope, key, fingerprint, state, created_at)
       VALUES (?, ?, ?, 'pending', ?)
       ON CONFLICT (scope, key) DO UPDATE SET created_at = excluded.created_at
         WHERE idempotency_records.state = 'pending' AND idempotency_records.created_at <= ?`,
    )
    .bind(scope, key, fingerprint, now, now - PENDING_TIMEOUT_MS)
    .run();
  return claimed.meta.changes === 1;
}

/** Marks the request done, keeping `body` to replay (null: applied, but nothing kept). */
export async function finishIdempotency(
  db: D1Database,
  scope: string,
  key: string,
  status: number,
  body: string | null,
): Promise<void> {
  await db
    .prepare(
      "UPDATE idempotency_records SET state = 'done', status = ?, body = ? WHERE scope = ? AND key = ?",
    )
    .bind(status, body, scope, key)
    .run();
}

/** Drops a pending claim, so a retry of a request that failed can run. */
export async function releaseIdempotency(
  db: D1Database,
  scope: string,
  key: string,
): Promise<void> {
  await db
    .prepare("DELETE FROM idempotency_records WHERE scope = ? AND key = ? AND state = 'pending'")
    .bind(scope, key)
    .run();
}
