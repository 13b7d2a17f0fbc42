export interface HourlyUsage {
  keyId: string;
  version: number;
  /** epoch ms of the hour's start */
  hour: number;
  requests: number;
}

/** Hourly request counts of a key from D1 `usage_hourly`, hours in [from, to). */
export async function usageOfKey(
  db: D1Database,
  keyId: string,
  from: number,
  to: number,
): Promise<HourlyUsage[]> {
  const rows = await db
    .prepare(
      `SELECT version, hour, requests FROM usage_hourly
       WHERE key_id = ? AND hour >= ? AND hour < ? ORDER BY hour, version`,
    )
    .bind(keyId, from, to)
    .all<{ version: number; hour: number; requests: number }>();
  return rows.results.map((r) => ({ keyId, ...r }));
}

/**
 * Adds hourly counts to D1's `usage_hourly` and raises each touched version's `last_used_at`
 * (never lowers it): one batch, so a retry after a failure counts nothing twice only if the
 * caller drops its counts once this succeeds.
 */
export async function addHourlyUsage(
  db: D1Database,
  hours: HourlyUsage[],
  lastUsed: { keyId: string; version: number; at: number }[],
): Promise<void> {
  const statements = hours.map((h) =>
    db
      .prepare(
        `INSERT INTO usage_hourly (key_id, version, hour, requests) VALUES (?, ?, ?, ?)
         ON CONFLICT (key_id, version, hour) DO UPDATE SET requests = requests + excluded.requests`,
      )
      .bind(h.keyId, h.version, h.hour, h.requests),
  );
  for (const { keyId, version, at } of lastUsed) {
    statements.push(
      db
        .prepare(
          "UPDATE key_versions SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE key_id = ? AND version = ?",
        )
        .bind(at, keyId, version),
    );
  }
  await db.batch(statements);
}
