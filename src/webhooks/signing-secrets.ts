/**
 * The consumer's webhook signing secret, in the coordinator's own SQLite storage. Unlike an
 * API key, it must be usable to sign, so it cannot be kept only as a hash: it lives here, in
 * the one place that signs (this consumer's Durable Object, private to it and encrypted at
 * rest by the platform), and nowhere else: not in D1, KV, logs or any later response. After a
 * rotation the previous secret keeps signing too (a second `v1,` signature) until it retires.
 */

/** `whsec_` and the base64 of 32 random bytes, as Standard Webhooks libraries expect. */
export function generateWebhookSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return `whsec_${btoa(String.fromCharCode(...bytes))}`;
}

export function createWebhookSecretTable(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS webhook_secrets (
    slot TEXT PRIMARY KEY CHECK (slot IN ('current', 'previous')),
    secret TEXT NOT NULL, created_at INTEGER NOT NULL, retires_at INTEGER)`);
}

export function hasWebhookSecret(sql: SqlStorage): boolean {
  return sql.exec("SELECT 1 FROM webhook_secrets WHERE slot = 'current'").toArray().length > 0;
}

/** The secrets that sign at `now`: the current one first, then a previous one not yet retired. */
export function signingSecrets(sql: SqlStorage, now: number): string[] {
  return sql
    .exec<{ secret: string; slot: string }>(
      `SELECT secret, slot FROM webhook_secrets
       WHERE slot = 'current' OR (retires_at IS NOT NULL AND retires_at > ?)
       ORDER BY slot = 'current' DESC`,
      now,
    )
    .toArray()
    .map((row) => row.secret);
}

/**
 * Makes `secret` the current one. The one it replaces keeps signing until `previousUntil`
 * (null or not later than `now`: it stops at once).
 */
export function setWebhookSecret(
  sql: SqlStorage,
  secret: string,
  now: number,
  previousUntil: number | null = null,
): void {
  sql.exec("DELETE FROM webhook_secrets WHERE slot = 'previous'");
  if (previousUntil !== null && previousUntil > now) {
    sql.exec(
      "UPDATE webhook_secrets SET slot = 'previous', retires_at = ? WHERE slot = 'current'",
      previousUntil,
    );
  }
  sql.exec(
    `INSERT OR REPLACE INTO webhook_secrets (slot, secret, created_at, retires_at)
     VALUES ('current', ?, ?, NULL)`,
    secret,
    now,
  );
}

export function clearWebhookSecrets(sql: SqlStorage): void {
  sql.exec("DELETE FROM webhook_secrets");
}
