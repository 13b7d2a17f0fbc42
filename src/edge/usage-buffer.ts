import type { Bindings } from "../env";
import type { UsageReport } from "../coordinator/usage-store";
import type { SecretRecord } from "../store/kv-index";
import { coordinatorOf } from "../coordinator/client";
import { forgetKey } from "./record-cache";

/** What the usage buffer needs of the request context. */
export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

/**
 * Per-isolate usage counts, reported to each consumer's coordinator in batches: at most one
 * report per consumer per `FLUSH_INTERVAL_MS` from an isolate, and at once for the first use
 * of a rotation's new version (which may start its grace clock). No D1 write per request.
 */
export const FLUSH_INTERVAL_MS = 1000;

const pending = new Map<string, Map<string, UsageReport>>();
const scheduled = new Set<string>();

/** Sends what this isolate has counted for a consumer. Failures put the counts back. */
export async function flushUsage(env: Bindings, consumerId: string): Promise<void> {
  const batch = pending.get(consumerId);
  if (!batch || batch.size === 0) return;
  pending.delete(consumerId);
  const reports = [...batch.values()];
  try {
    const changed = await coordinatorOf(env, consumerId).recordUsage(consumerId, reports);
    for (const keyId of changed) forgetKey(keyId);
  } catch (error) {
    console.error(
      JSON.stringify({ event: "usage_report_failed", consumerId, error: String(error) }),
    );
    for (const report of reports) add(consumerId, report);
  }
}

function add(consumerId: string, report: UsageReport): void {
  let batch = pending.get(consumerId);
  if (!batch) pending.set(consumerId, (batch = new Map()));
  const id = `${report.keyId}:${report.version}`;
  const current = batch.get(id);
  batch.set(
    id,
    current
      ? {
          ...current,
          requests: current.requests + report.requests,
          firstAt: Math.min(current.firstAt, report.firstAt),
          lastAt: Math.max(current.lastAt, report.lastAt),
        }
      : report,
  );
}

/** Counts one request made with `record`'s version; schedules the report in `waitUntil`. */
export function countUse(env: Bindings, ctx: WaitUntil, record: SecretRecord, now: number): void {
  // on every request: the buffered report is counted up in place, nothing is allocated
  const counted = pending.get(record.consumerId)?.get(`${record.keyId}:${record.version}`);
  if (counted !== undefined) {
    counted.requests++;
    if (now > counted.lastAt) counted.lastAt = now;
  } else {
    add(record.consumerId, {
      keyId: record.keyId,
      version: record.version,
      requests: 1,
      firstAt: now,
      lastAt: now,
    });
  }
  if (record.awaitingFirstUse) {
    ctx.waitUntil(flushUsage(env, record.consumerId));
    return;
  }
  if (scheduled.has(record.consumerId)) return;
  scheduled.add(record.consumerId);
  ctx.waitUntil(
    new Promise<void>((resolve) => setTimeout(resolve, FLUSH_INTERVAL_MS)).then(() => {
      scheduled.delete(record.consumerId);
      return flushUsage(env, record.consumerId);
    }),
  );
}
