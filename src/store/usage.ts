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
