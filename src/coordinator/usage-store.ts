/**
 * Usage counters in the coordinator's own SQLite storage: the front door reports batches of
 * requests per key version here (never a D1 write per request), and the alarm rolls the
 * hourly buckets up into D1.
 */

import type { HourlyUsage } from "../store/usage";

export interface UsageReport {
  keyId: string;
  version: number;
  requests: number;
  firstAt: number;
  lastAt: number;
}

export interface VersionUsage {
  requests: number;
  lastUsedAt: number | null;
}

const HOUR = 3_600_000;

export function createUsageTables(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL, version INTEGER NOT NULL, requests INTEGER NOT NULL,
    last_used_at INTEGER, PRIMARY KEY (key_id, version))`);
  sql.exec(`CREATE TABLE IF NOT EXISTS usage_hours (
    key_id TEXT NOT NULL, version INTEGER NOT NULL, hour INTEGER NOT NULL,
    requests INTEGER NOT NULL, PRIMARY KEY (key_id, version, hour))`);
  sql.exec(`CREATE TABLE IF NOT EXISTS rotation_baseline (
    rotation_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, version INTEGER NOT NULL,
    requests INTEGER NOT NULL)`);
  sql.exec(`CREATE TABLE IF NOT EXISTS projection_queue (
    key_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL)`);
}

export function addUsage(sql: SqlStorage, report: UsageReport): void {
  sql.exec(
    `INSERT INTO usage (key_id, version, requests, last_used_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (key_id, version) DO UPDATE SET requests = requests + excluded.requests,
       last_used_at = MAX(COALESCE(last_used_at, 0), excluded.last_used_at)`,
    report.keyId,
    report.version,
    report.requests,
    report.lastAt,
  );
  sql.exec(
    `INSERT INTO usage_hours (key_id, version, hour, requests) VALUES (?, ?, ?, ?)
     ON CONFLICT (key_id, version, hour) DO UPDATE SET requests = requests + excluded.requests`,
    report.keyId,
    report.version,
    Math.floor(report.lastAt / HOUR) * HOUR,
    report.requests,
  );
}

export function usageOf(sql: SqlStorage, keyId: string, version: number): VersionUsage {
  const row = sql
    .exec<{ requests: number; last_used_at: number | null }>(
      "SELECT requests, last_used_at FROM usage WHERE key_id = ? AND version = ?",
      keyId,
      version,
    )
    .toArray()[0];
  return { requests: row?.requests ?? 0, lastUsedAt: row?.last_used_at ?? null };
}

export function saveBaseline(
  sql: SqlStorage,
  rotationId: string,
  keyId: string,
  version: number,
): void {
  sql.exec(
    `INSERT OR IGNORE INTO rotation_baseline (rotation_id, key_id, version, requests) VALUES (?, ?, ?, ?)`,
    rotationId,
    keyId,
    version,
    usageOf(sql, keyId, version).requests,
  );
}

export function addToBaseline(sql: SqlStorage, rotationId: string, requests: number): void {
  sql.exec(
    "UPDATE rotation_baseline SET requests = requests + ? WHERE rotation_id = ?",
    requests,
    rotationId,
  );
}

export function baselineOf(sql: SqlStorage, rotationId: string): number {
  const row = sql
    .exec<{ requests: number }>(
      "SELECT requests FROM rotation_baseline WHERE rotation_id = ?",
      rotationId,
    )
    .toArray()[0];
  return row?.requests ?? 0;
}

/** Hourly buckets not yet in D1; `clearHours` drops them once D1 has them. */
export function pendingHours(sql: SqlStorage): HourlyUsage[] {
  return sql
    .exec<{ key_id: string; version: number; hour: number; requests: number }>(
      "SELECT key_id, version, hour, requests FROM usage_hours",
    )
    .toArray()
    .map((r) => ({ keyId: r.key_id, version: r.version, hour: r.hour, requests: r.requests }));
}

export function clearHours(sql: SqlStorage, rows: HourlyUsage[]): void {
  for (const row of rows) {
    sql.exec(
      `UPDATE usage_hours SET requests = requests - ? WHERE key_id = ? AND version = ? AND hour = ?`,
      row.requests,
      row.keyId,
      row.version,
      row.hour,
    );
  }
  sql.exec("DELETE FROM usage_hours WHERE requests <= 0");
}

export function lastUsedByVersion(sql: SqlStorage, keyId: string): Map<number, number> {
  const rows = sql
    .exec<{ version: number; last_used_at: number | null }>(
      "SELECT version, last_used_at FROM usage WHERE key_id = ?",
      keyId,
    )
    .toArray();
  return new Map(
    rows.filter((r) => r.last_used_at !== null).map((r) => [r.version, r.last_used_at!]),
  );
}

/** The wait after the n-th failed try (1-based) before the alarm retries: 1 s, doubling to 60 s. */
export function retryDelayMs(attempts: number): number {
  return Math.min(60_000, 500 * 2 ** Math.min(attempts, 7));
}

export function queueProjection(sql: SqlStorage, keyId: string, now: number): number {
  const row = sql
    .exec<{ attempts: number }>("SELECT attempts FROM projection_queue WHERE key_id = ?", keyId)
    .toArray()[0];
  const attempts = (row?.attempts ?? 0) + 1;
  const nextAt = now + retryDelayMs(attempts);
  sql.exec(
    `INSERT INTO projection_queue (key_id, attempts, next_at) VALUES (?, ?, ?)
     ON CONFLICT (key_id) DO UPDATE SET attempts = excluded.attempts, next_at = excluded.next_at`,
    keyId,
    attempts,
    nextAt,
  );
  return nextAt;
}

export function dueProjections(sql: SqlStorage, now: number): string[] {
  return sql
    .exec<{ key_id: string }>("SELECT key_id FROM projection_queue WHERE next_at <= ?", now)
    .toArray()
    .map((r) => r.key_id);
}

export function nextProjectionAt(sql: SqlStorage): number | null {
  const row = sql
    .exec<{ at: number | null }>("SELECT MIN(next_at) AS at FROM projection_queue")
    .toArray()[0];
  return row?.at ?? null;
}

export function isQueued(sql: SqlStorage, keyId: string): boolean {
  return sql.exec("SELECT 1 FROM projection_queue WHERE key_id = ?", keyId).toArray().length > 0;
}

export function dropProjection(sql: SqlStorage, keyId: string): void {
  sql.exec("DELETE FROM projection_queue WHERE key_id = ?", keyId);
}

export function createCounterTable(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS counters (
    scope TEXT PRIMARY KEY, window INTEGER NOT NULL, used INTEGER NOT NULL)`);
}

/** Requests granted so far in `window` for `scope` (a scope's older windows read as 0). */
export function counterOf(sql: SqlStorage, scope: string, window: number): number {
  const row = sql
    .exec<{ window: number; used: number }>(
      "SELECT window, used FROM counters WHERE scope = ?",
      scope,
    )
    .toArray()[0];
  return row && row.window === window ? row.used : 0;
}

export function setCounter(sql: SqlStorage, scope: string, window: number, used: number): void {
  sql.exec(
    `INSERT INTO counters (scope, window, used) VALUES (?, ?, ?)
     ON CONFLICT (scope) DO UPDATE SET window = excluded.window, used = excluded.used`,
    scope,
    window,
    used,
  );
}
