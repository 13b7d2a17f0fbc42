import { configFor } from "../config";
import type { KeyCoordinator } from "../coordinator/key-coordinator";
import type { WebhookEventData } from "../webhooks/events";
import type { Bindings } from "../env";
import { forgetKey } from "../edge/record-cache";
import { insertAudit, newAuditEvent, type AuditContext } from "../store/audit";
import {
  SECRET_KEY_PREFIX,
  isTombstoneListing,
  readSecretRecord,
  secretKey,
} from "../store/kv-index";
import { IDEMPOTENCY_TTL_MS } from "../store/idempotency";
import { WEBHOOK_DELIVERY_RETENTION_MS } from "../webhooks/deliveries";
import { recordDrift } from "../domain/key-upkeep";
import type { MaintenanceOutcome } from "../coordinator/consumer-upkeep";
import {
  assignOrphans,
  changesIn,
  classifyListed,
  expectedRecords,
  groupWork,
  GRACE_ENDING_LEAD_MS,
  KEY_EXPIRING_LEAD_MS,
  NO_LIMITS,
  planNotices,
  rotationDueCutoff,
  stillNews,
  type ConsumerWork,
  type KeyToFix,
  type MaintenanceReport,
  type Notice,
  webhookDataOf,
} from "./plan";
import { type Orphan } from "../coordinator/consumer-upkeep";
import {
  IN_CHUNK,
  consumerLimits,
  insertNotice,
  keyStatesAfter,
  keyStatesByHash,
  markEmitted,
  pruneRows,
  readCursor,
  rotationsGraceEndingBetween,
  rotationsPastGrace,
  saveCursor,
  versionsCreatedBy,
  versionsExpiringBetween,
  versionsPastExpiry,
  unemittedNotices,
  type UnemittedNotice,
} from "./queries";
import { logError, logInfo } from "../log";

/**
 * Scheduled maintenance, the I/O: reads D1 and KV in bounded pages, plans with `plan.ts`,
 * and hands every change of a key to its consumer's coordinator (`KeyCoordinator.maintain`),
 * which serialises it with the consumer's other changes. Run by the cron (src/index.ts) and
 * by `POST /_keygate/v1/maintenance/run`.
 */

/** How much one run may do; what is left waits for the next run (every 15 minutes). */
export interface MaintenanceLimits {
  /** rotations to close, versions to expire, and reminders of each kind, per run */
  dueRows: number;
  /** active keys whose KV records the D1 walk checks per run */
  keysPerRun: number;
  /** KV list pages the KV walk reads per run */
  kvPagesPerRun: number;
  /** keys per KV list page (KV allows up to 1000) */
  kvPageSize: number;
  /** rows of each kind deleted per run once their time is over */
  pruneRows: number;
}

export const DEFAULT_LIMITS: MaintenanceLimits = {
  dueRows: 100,
  keysPerRun: 200,
  kvPagesPerRun: 2,
  kvPageSize: 500,
  pruneRows: 1000,
};

export interface MaintenanceOptions {
  limits?: Partial<MaintenanceLimits>;
  /** who asked: the cron (`system`), or the management request that ran it */
  audit?: AuditContext;
}

const SYSTEM: AuditContext = { actor: "system", requestId: null };
/** Coordinators asked at once. */
const DISPATCH_CONCURRENCY = 4;

type MaintenanceCoordinator = Pick<KeyCoordinator, "maintain" | "emitEvent">;

function coordinatorOf(env: Bindings, consumerId: string): MaintenanceCoordinator {
  return env.COORDINATOR.get(
    env.COORDINATOR.idFromName(consumerId),
  ) as unknown as MaintenanceCoordinator;
}

/** Runs one maintenance pass and answers what it did. Never throws: failures are reported. */
export async function runMaintenance(
  env: Bindings,
  options: MaintenanceOptions = {},
): Promise<MaintenanceReport> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const audit = options.audit ?? SYSTEM;
  const startedAt = Date.now();
  const report: MaintenanceReport = {
    startedAt,
    finishedAt: startedAt,
    rotationsCompleted: [],
    versionsExpired: [],
    reminders: [],
    reconciliation: {
      keysChecked: 0,
      recordsListed: 0,
      fixed: [],
      keysWalk: "continues",
      kvWalk: "continues",
    },
    pruned: { idempotencyRecords: 0, webhookDeliveries: 0 },
    failures: [],
  };
  const step = async (name: string, work: () => Promise<void>) => {
    try {
      await work();
    } catch (error) {
      report.failures.push({ step: name, consumerId: null, keyId: null, error: String(error) });
    }
  };

  const keys: KeyToFix[] = [];
  const orphans = new Map<string, Orphan[]>();
  await step("due", async () => {
    keys.push(...(await rotationsPastGrace(env.DB, startedAt, limits.dueRows)));
    keys.push(...(await versionsPastExpiry(env.DB, startedAt, limits.dueRows)));
  });
  await step("keys_walk", async () => {
    const walk = await walkKeys(env, limits.keysPerRun, startedAt);
    report.reconciliation.keysChecked = walk.checked;
    report.reconciliation.keysWalk = walk.complete ? "complete" : "continues";
    keys.push(...walk.drifted);
  });
  await step("kv_walk", async () => {
    const walk = await walkKv(env, limits, startedAt);
    report.reconciliation.recordsListed = walk.listed;
    report.reconciliation.kvWalk = walk.complete ? "complete" : "continues";
    keys.push(...walk.retired);
    for (const [consumerId, list] of walk.orphans) orphans.set(consumerId, list);
    for (const orphan of walk.removed) {
      report.reconciliation.fixed.push({
        consumerId: null,
        keyId: orphan.keyId,
        version: orphan.version,
        drift: "orphan",
        queued: false,
      });
    }
  });
  await dispatch(env, groupWork(keys, orphans), audit, report);
  await step("reminders", () => sendReminders(env, limits.dueRows, audit, report));
  // what is kept only for a while: each table's rows past their time, a bounded batch per run
  const prunes = [
    ["idempotencyRecords", "idempotency_records", IDEMPOTENCY_TTL_MS],
    ["webhookDeliveries", "webhook_deliveries", WEBHOOK_DELIVERY_RETENTION_MS],
  ] as const;
  for (const [field, table, keptFor] of prunes) {
    await step(`prune_${table}`, async () => {
      report.pruned[field] = await pruneRows(env.DB, table, startedAt - keptFor, limits.pruneRows);
    });
  }

  report.finishedAt = Date.now();
  return report;
}

/**
 * The D1 walk: active keys in id order from where the last run stopped; every version that
 * must have a KV record is read and compared with its projection.
 */
async function walkKeys(
  env: Bindings,
  budget: number,
  now: number,
): Promise<{ checked: number; drifted: KeyToFix[]; complete: boolean }> {
  let cursor = (await readCursor(env.DB, "keys")) ?? "";
  const drifted: KeyToFix[] = [];
  let checked = 0;
  let complete = false;
  while (checked < budget) {
    const pageSize = Math.min(budget - checked, IN_CHUNK);
    const states = await keyStatesAfter(env.DB, cursor, pageSize);
    const limitsOf = await consumerLimits(
      env.DB,
      states.map((s) => s.key.consumerId),
    );
    await Promise.all(
      states.map(async (state) => {
        const limits = limitsOf.get(state.key.consumerId) ?? NO_LIMITS;
        for (const expected of expectedRecords(state, limits, now)) {
          const actual = await readSecretRecord(env.KEYS, expected.hash);
          if (recordDrift(actual, expected.record) !== null) {
            drifted.push({ consumerId: state.key.consumerId, keyId: state.key.id });
            return;
          }
        }
      }),
    );
    checked += states.length;
    const last = states.at(-1);
    if (last) cursor = last.key.id;
    if (states.length < pageSize || !last) {
      complete = true;
      break;
    }
  }
  await saveCursor(env.DB, "keys", complete ? null : cursor, now);
  return { checked, drifted, complete };
}

/**
 * The KV walk: secret records in list order from the cursor the last run saved. Records of
 * versions that must have none go to their key's coordinator; records D1 does not know go
 * to the coordinator of the consumer they name, or are removed at once when none can own them.
 */
async function walkKv(
  env: Bindings,
  limits: MaintenanceLimits,
  now: number,
): Promise<{
  listed: number;
  retired: KeyToFix[];
  orphans: Map<string, Orphan[]>;
  removed: Orphan[];
  complete: boolean;
}> {
  let cursor = await readCursor(env.DB, "kv");
  const retired: KeyToFix[] = [];
  const orphans = new Map<string, Orphan[]>();
  const removed: Orphan[] = [];
  let listed = 0;
  let complete = false;
  for (let page = 0; page < limits.kvPagesPerRun; page++) {
    let result: KVNamespaceListResult<unknown>;
    try {
      result = await env.KEYS.list({
        prefix: SECRET_KEY_PREFIX,
        limit: limits.kvPageSize,
        ...(cursor ? { cursor } : {}),
      });
    } catch (error) {
      if (!cursor) throw error;
      // a cursor KV no longer takes (they do not live for ever): start over
      logError("maintenance_kv_cursor_reset", { error });
      cursor = null;
      page--;
      continue;
    }
    const hashes = result.keys.map((k) => k.name.slice(SECRET_KEY_PREFIX.length));
    listed += hashes.length;
    const tombstones = new Set(
      result.keys
        .filter((k) => isTombstoneListing(k.metadata))
        .map((k) => k.name.slice(SECRET_KEY_PREFIX.length)),
    );
    const known = await keyStatesByHash(env.DB, hashes);
    const sorted = classifyListed(hashes, known, now, tombstones);
    retired.push(...sorted.retired);
    if (sorted.unknown.length > 0) {
      const records = await Promise.all(
        sorted.unknown.map(async (hash) => ({
          hash,
          record: await readSecretRecord(env.KEYS, hash).catch(() => ({})),
        })),
      );
      const named = records.flatMap(({ record }) => {
        const consumerId = (record as { consumerId?: unknown } | null)?.consumerId;
        return typeof consumerId === "string" ? [consumerId] : [];
      });
      const active = new Set((await consumerLimits(env.DB, named)).keys());
      const assigned = assignOrphans(records, active);
      for (const [consumerId, list] of assigned.byConsumer) {
        orphans.set(consumerId, [...(orphans.get(consumerId) ?? []), ...list]);
      }
      for (const orphan of assigned.removeNow) {
        await env.KEYS.delete(secretKey(orphan.hash));
        removed.push(orphan);
      }
    }
    if (result.list_complete) {
      cursor = null;
      complete = true;
      break;
    }
    cursor = result.cursor;
  }
  await saveCursor(env.DB, "kv", cursor, now);
  return { listed, retired, orphans, removed, complete };
}

/** Hands each consumer's work to its coordinator, a few at a time, and merges the outcomes. */
async function dispatch(
  env: Bindings,
  work: ConsumerWork[],
  audit: AuditContext,
  report: MaintenanceReport,
): Promise<void> {
  const queue = [...work];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const { consumerId, keyIds, orphans } = next;
      let outcome: MaintenanceOutcome;
      try {
        outcome = await coordinatorOf(env, consumerId).maintain({ keyIds, orphans }, audit);
      } catch (error) {
        report.failures.push({
          step: "coordinator",
          consumerId,
          keyId: null,
          error: String(error),
        });
        continue;
      }
      for (const r of outcome.rotationsCompleted)
        report.rotationsCompleted.push({ consumerId, ...r });
      for (const v of outcome.versionsExpired) report.versionsExpired.push({ consumerId, ...v });
      for (const fix of outcome.recordsFixed) {
        report.reconciliation.fixed.push({ consumerId, ...fix });
      }
      for (const failure of outcome.failures) {
        report.failures.push({ step: "coordinator", consumerId, ...failure });
      }
      // this isolate sees the fixes at once (an on-demand run); others within the cache TTL
      for (const keyId of keyIds) forgetKey(keyId);
    }
  };
  await Promise.all(Array.from({ length: DISPATCH_CONCURRENCY }, worker));
}

/**
 * Sends the reminders that are due, each once: its `maintenance_notices` row and its audit
 * event are written in one batch, and the row's primary key refuses a second (a run racing
 * another one sends nothing twice). Then the webhook is handed over.
 */
async function sendReminders(
  env: Bindings,
  dueRows: number,
  audit: AuditContext,
  report: MaintenanceReport,
): Promise<void> {
  const now = Date.now();
  const maxKeyAgeDays = configFor(env).maxKeyAgeDays;
  const [graceEnding, expiring, aged] = await Promise.all([
    rotationsGraceEndingBetween(env.DB, now, now + GRACE_ENDING_LEAD_MS, dueRows),
    versionsExpiringBetween(env.DB, now, now + KEY_EXPIRING_LEAD_MS, dueRows),
    maxKeyAgeDays === null
      ? Promise.resolve([])
      : versionsCreatedBy(env.DB, rotationDueCutoff(now, maxKeyAgeDays), dueRows),
  ]);
  for (const notice of planNotices({ graceEnding, expiring, aged }, now, maxKeyAgeDays)) {
    try {
      if (!(await recordNotice(env.DB, notice, audit, now))) continue;
      report.reminders.push({
        type: notice.kind,
        consumerId: notice.consumerId,
        keyId: notice.keyId,
        version: notice.version,
        rotationId: notice.rotationId,
      });
    } catch (error) {
      report.failures.push({
        step: "reminders",
        consumerId: notice.consumerId,
        keyId: notice.keyId,
        error: String(error),
      });
    }
  }
  // this run's reminders, and any an earlier run could not hand over; one the coordinator
  // refused is reported and not retried (it is refused for what it says, which stays)
  for (const notice of await unemittedNotices(env.DB, dueRows)) {
    try {
      const refused = stillNews(notice.details, Date.now()) ? await announce(env, notice) : null;
      if (refused !== null) {
        report.failures.push({
          step: "webhooks",
          consumerId: notice.consumerId,
          keyId: notice.keyId,
          error: refused,
        });
      }
      await markEmitted(env.DB, notice, Date.now());
    } catch (error) {
      report.failures.push({
        step: "webhooks",
        consumerId: notice.consumerId,
        keyId: notice.keyId,
        error: String(error),
      });
    }
  }
}

/** Writes a reminder and its audit event; false when it had already been sent. */
async function recordNotice(
  db: D1Database,
  notice: Notice,
  audit: AuditContext,
  now: number,
): Promise<boolean> {
  const event = newAuditEvent(
    audit,
    now,
    notice.kind,
    {
      consumerId: notice.consumerId,
      keyId: notice.keyId,
      target: notice.rotationId ? `rotation:${notice.rotationId}` : `key:${notice.keyId}`,
    },
    notice.details,
  );
  try {
    await db.batch([
      insertNotice(db, {
        kind: notice.kind,
        subject: notice.subject,
        consumerId: notice.consumerId,
        keyId: notice.keyId,
        auditEventId: event.id,
        sentAt: now,
      }),
      insertAudit(db, event),
    ]);
  } catch (error) {
    if (String((error as Error | undefined)?.message ?? error).includes("UNIQUE constraint")) {
      return false;
    }
    throw error;
  }
  return true;
}

/**
 * Hands a reminder to webhook delivery: the one place maintenance emits webhooks
 * (`rotation.grace_ending`, `key.expiring`, `key.rotation_due`). The event id is the audit
 * event's, so a repeated hand-over (the answer was lost) enqueues nothing twice, and the
 * `webhook-id` names the audit record. A consumer without a webhook URL gets none. Answers
 * why the coordinator refused it (logged as `maintenance_webhook_refused`), or null.
 */
async function announce(env: Bindings, notice: UnemittedNotice): Promise<string | null> {
  const result = await coordinatorOf(env, notice.consumerId).emitEvent(
    notice.kind,
    webhookDataOf(notice.keyId, notice.details) as WebhookEventData,
    { eventId: notice.auditEventId, at: notice.sentAt },
  );
  if (result.ok) return null;
  logError("maintenance_webhook_refused", {
    consumerId: notice.consumerId,
    keyId: notice.keyId,
    eventType: notice.kind,
    eventId: notice.auditEventId,
    code: result.code,
    detail: result.detail,
  });
  return `${result.code}: ${result.detail}`;
}

/**
 * Logs one structured line of what a run did (`maintenance_run`; `console.error` when a step
 * failed): counts, every record fixed (key ids, never a hash) and every failure.
 */
export function logMaintenance(report: MaintenanceReport, context: Record<string, unknown>): void {
  const fields = {
    ...context,
    changes: changesIn(report),
    rotationsCompleted: report.rotationsCompleted.length,
    versionsExpired: report.versionsExpired.length,
    reminders: report.reminders.length,
    keysChecked: report.reconciliation.keysChecked,
    recordsListed: report.reconciliation.recordsListed,
    keysWalk: report.reconciliation.keysWalk,
    kvWalk: report.reconciliation.kvWalk,
    pruned: report.pruned,
    recordsFixed: report.reconciliation.fixed,
    failures: report.failures,
    durationMs: report.finishedAt - report.startedAt,
  };
  if (report.failures.length > 0) logError("maintenance_run", fields);
  else logInfo("maintenance_run", fields);
}

/** The cron's entry: runs a pass, logs it, and fails the cron run when a step failed. */
export async function scheduledMaintenance(
  env: Bindings,
  scheduledTime: number,
): Promise<MaintenanceReport> {
  const report = await runMaintenance(env);
  logMaintenance(report, { trigger: "cron", scheduledTime: new Date(scheduledTime).toISOString() });
  if (report.failures.length > 0) {
    throw new Error(`maintenance: ${report.failures.length} failure(s); see maintenance_run`);
  }
  return report;
}
