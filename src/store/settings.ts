/**
 * Deployment-wide values Keygate makes for itself (migration 0005). `value` is stored unless
 * the setting already has one, and the stored value is returned: concurrent first calls, from
 * any isolate, all get the one that landed first.
 */
export async function settingOrInsert(
  db: D1Database,
  name: string,
  value: string,
  now = Date.now(),
): Promise<string> {
  const [, stored] = await db.batch<{ value: string }>([
    db
      .prepare("INSERT OR IGNORE INTO settings (name, value, created_at) VALUES (?, ?, ?)")
      .bind(name, value, now),
    db.prepare("SELECT value FROM settings WHERE name = ?").bind(name),
  ]);
  const row = stored?.results[0];
  if (!row) throw new Error(`setting ${name} missing after insert`);
  return row.value;
}
