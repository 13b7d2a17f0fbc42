import type { Bindings } from "../env";
import type { UsageReport } from "../coordinator/usage-store";
import type { SecretRecord } from "../domain/secret-record";
import { coordinatorOf } from "../coordinator/client";
import { forgetKey } from "./record-cache";
import { logError } from "../log";

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
    const changed = await coordinatorOf(env, consumerId).recordUsage(reports);
    for (const keyId of changed) forgetKey(keyId);
  } catch (error) {
    logError("usage_report_failed", { consumerId, error });
    for (const { keyId, version, requests, firstAt, lastAt } of reports) {
      add(consumerId, keyId, version, requests, firstAt, lastAt);
    }
  }
}

/**
 * Adds `requests` made with one key version, between `firstAt` and `lastAt`, to the
 * consumer's buffered report. The report is counted up in place: this runs on every request,
 * and allocates only for a version's first count in a batch.
 */
function add(
  consumerId: string,
  keyId: string,
  version: number,
  requests: number,
  firstAt: number,
  lastAt: number,
): void {
  let batch = pending.get(consumerId);
  if (!batch) pending.set(consumerId, (batch = new Map()));
  const id = `${keyId}:${version}`;
  const current = batch.get(id);
  if (current === undefined) {
    batch.set(id, { keyId, version, requests, firstAt, lastAt });
    return;
  }
  current.requests += requests;
  if (firstAt < current.firstAt) current.firstAt = firstAt;
  if (lastAt > current.lastAt) current.lastAt = lastAt;
}

/** Counts one request made with `record`'s version; schedules the report in `waitUntil`. */
export function countUse(env: Bindings, ctx: WaitUntil, record: SecretRecord, now: number): void {
  add(record.consumerId, record.keyId, record.version, 1, now, now);
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
