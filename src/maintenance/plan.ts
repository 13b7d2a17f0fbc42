import type { KeyState } from "../domain/key-state";
import type { Limits } from "../domain/limits";
import { projectVersion, type SecretRecord } from "../domain/secret-record";
import type { Orphan, RecordFix } from "../coordinator/consumer-upkeep";
import type { CurrentVersionRow, GraceEndingRow } from "./queries";

/**
 * Scheduled maintenance, the pure part: given rows read from D1 and KV and a `now`, which
 * reminders are due, which KV records have drifted from D1, and who must fix what. No I/O;
 * `run.ts` reads, calls these, and hands the changes to the consumers' coordinators.
 */

const DAY_MS = 86_400_000;

/** `rotation.grace_ending` is sent once a rotation's grace ends within this lead. */
export const GRACE_ENDING_LEAD_MS = DAY_MS;
/** `key.expiring` is sent once a key's current version expires within this lead. */
export const KEY_EXPIRING_LEAD_MS = 7 * DAY_MS;

export type NoticeKind = "rotation.grace_ending" | "key.expiring" | "key.rotation_due";

/** A reminder to send: an audit event (and a webhook), once per `kind` and `subject`. */
export interface Notice {
  kind: NoticeKind;
  /** what it is sent once for: the rotation id, or `<key id>:<version>` */
  subject: string;
  consumerId: string;
  keyId: string;
  version: number;
  rotationId: string | null;
  /** the audit event's details; times in epoch milliseconds */
  details: Record<string, unknown>;
}

export interface NoticeCandidates {
  graceEnding: GraceEndingRow[];
  expiring: CurrentVersionRow[];
  aged: CurrentVersionRow[];
}

/**
 * The reminders due at `now`: grace ending within `GRACE_ENDING_LEAD_MS`, a current version
 * expiring within `KEY_EXPIRING_LEAD_MS`, a current version older than `maxKeyAgeDays` (none
 * when it is null). Candidates already reminded of are left out by the queries; a deadline
 * that has passed gets no reminder (the rotation's completion, or the expiry, is the news).
 */
export function planNotices(
  candidates: NoticeCandidates,
  now: number,
  maxKeyAgeDays: number | null,
): Notice[] {
  const notices: Notice[] = [];
  for (const r of candidates.graceEnding) {
    if (r.graceUntil <= now || r.graceUntil > now + GRACE_ENDING_LEAD_MS) continue;
    notices.push({
      kind: "rotation.grace_ending",
      subject: r.rotationId,
      consumerId: r.consumerId,
      keyId: r.keyId,
      version: r.toVersion,
      rotationId: r.rotationId,
      details: {
        rotationId: r.rotationId,
        fromVersion: r.fromVersion,
        toVersion: r.toVersion,
        graceUntil: r.graceUntil,
      },
    });
  }
  for (const v of candidates.expiring) {
    if (v.expiresAt === null || v.expiresAt <= now || v.expiresAt > now + KEY_EXPIRING_LEAD_MS) {
      continue;
    }
    notices.push({
      kind: "key.expiring",
      subject: `${v.keyId}:${v.version}`,
      consumerId: v.consumerId,
      keyId: v.keyId,
      version: v.version,
      rotationId: null,
      details: { version: v.version, expiresAt: v.expiresAt },
    });
  }
  if (maxKeyAgeDays !== null) {
    for (const v of candidates.aged) {
      if (v.createdAt > rotationDueCutoff(now, maxKeyAgeDays)) continue;
      notices.push({
        kind: "key.rotation_due",
        subject: `${v.keyId}:${v.version}`,
        consumerId: v.consumerId,
        keyId: v.keyId,
        version: v.version,
        rotationId: null,
        details: {
          version: v.version,
          createdAt: v.createdAt,
          dueAt: v.createdAt + maxKeyAgeDays * DAY_MS,
          ageDays: Math.floor((now - v.createdAt) / DAY_MS),
          maxKeyAgeDays,
        },
      });
    }
  }
  return notices;
}

/**
 * What a reminder's webhook says (`KeyCoordinator.emitEvent` data), from its audit details:
 * the key and the version it is about (for a rotation, the new one), and the details but the
 * audit-only `createdAt`. Times stay epoch milliseconds; the payload makes them ISO-8601.
 */
export function webhookDataOf(
  keyId: string,
  details: Record<string, unknown>,
): { keyId: string; version: number; [field: string]: unknown } {
  const { createdAt: _createdAt, ...data } = details;
  const version = typeof details.toVersion === "number" ? details.toVersion : details.version;
  return { ...data, keyId, version: typeof version === "number" ? version : 0 };
}

/**
 * Whether a recorded reminder is still news at `now`: one whose hand-over to webhooks failed
 * is handed over again by a later run, but not once the deadline it announces (`graceUntil`,
 * `expiresAt`) has passed; `key.rotation_due` has none.
 */
export function stillNews(details: Record<string, unknown>, now: number): boolean {
  const deadline = details.graceUntil ?? details.expiresAt;
  return typeof deadline !== "number" || deadline > now;
}

/** The instant before which a current version is old enough to be due for rotation. */
export function rotationDueCutoff(now: number, maxKeyAgeDays: number): number {
  return now - maxKeyAgeDays * DAY_MS;
}

// ---- reconciliation ------------------------------------------------------------------------

/** A consumer without a rate limit or quota (or none D1 holds). */
export const NO_LIMITS: Limits = { rateLimit: null, monthlyQuota: null };

/** A version's KV record as D1 projects it. */
export interface ExpectedRecord {
  hash: string;
  version: number;
  record: SecretRecord;
}

/**
 * The records KV must hold for a key at `now`: one per version that verifies or still
 * answers `key_expired`. Versions that must have none (revoked, expired past retention) are
 * left to the KV walk, which finds any record they left behind.
 */
export function expectedRecords(state: KeyState, limits: Limits, now: number): ExpectedRecord[] {
  const out: ExpectedRecord[] = [];
  for (const version of state.versions) {
    const { record } = projectVersion(state.key, version, state.rotation, now, limits);
    if (record) out.push({ hash: version.secretHash, version: version.version, record });
  }
  return out;
}

/** A key some of whose KV records must change. */
export interface KeyToFix {
  consumerId: string;
  keyId: string;
}

/**
 * Sorts a page of listed KV records (by secret hash) against D1: records of versions that
 * must have none, or only a tombstone where the listing shows another record (`retired`:
 * their key's coordinator writes what D1 projects), and records D1 does not know
 * (`unknown`: orphans, or secrets being issued right now). Records of live versions are
 * checked by the D1 walk, which reads their content. `tombstones`: the listed hashes whose
 * metadata marks a tombstone.
 */
export function classifyListed(
  hashes: string[],
  known: Map<string, KeyState>,
  now: number,
  tombstones: ReadonlySet<string> = new Set(),
): { retired: KeyToFix[]; unknown: string[] } {
  const retired: KeyToFix[] = [];
  const unknown: string[] = [];
  for (const hash of hashes) {
    const state = known.get(hash);
    const version = state?.versions.find((v) => v.secretHash === hash);
    if (!state || !version) {
      unknown.push(hash);
      continue;
    }
    const { record } = projectVersion(state.key, version, state.rotation, now, NO_LIMITS);
    if (record === null || (record.status === "revoked" && !tombstones.has(hash))) {
      retired.push({ consumerId: state.key.consumerId, keyId: state.key.id });
    }
  }
  return { retired, unknown };
}

/**
 * Who removes each orphan: the coordinator of the consumer the record names, when that
 * consumer is active (it may be issuing that very secret, written to KV before D1, so only
 * it can tell); anything else (a consumer D1 does not hold or has deleted, a record that is
 * not ours) can never verify as a live key and is removed at once.
 */
export function assignOrphans(
  records: { hash: string; record: unknown }[],
  activeConsumers: Set<string>,
): { byConsumer: Map<string, Orphan[]>; removeNow: Orphan[] } {
  const byConsumer = new Map<string, Orphan[]>();
  const removeNow: Orphan[] = [];
  for (const { hash, record } of records) {
    if (record === null || record === undefined) continue; // gone since it was listed
    const fields = typeof record === "object" ? (record as Record<string, unknown>) : {};
    const orphan: Orphan = {
      hash,
      keyId: typeof fields.keyId === "string" ? fields.keyId : null,
      version: typeof fields.version === "number" ? fields.version : null,
    };
    const consumerId = typeof fields.consumerId === "string" ? fields.consumerId : null;
    if (consumerId !== null && activeConsumers.has(consumerId)) {
      const list = byConsumer.get(consumerId) ?? [];
      list.push(orphan);
      byConsumer.set(consumerId, list);
    } else {
      removeNow.push(orphan);
    }
  }
  return { byConsumer, removeNow };
}

/** What one consumer's coordinator is asked to do in a run. */
export interface ConsumerWork {
  consumerId: string;
  keyIds: string[];
  orphans: Orphan[];
}

/** Groups keys to fix and orphans by consumer, each key once. */
export function groupWork(keys: KeyToFix[], orphans: Map<string, Orphan[]>): ConsumerWork[] {
  const byConsumer = new Map<string, { keyIds: Set<string>; orphans: Orphan[] }>();
  const entry = (consumerId: string) => {
    let work = byConsumer.get(consumerId);
    if (!work) byConsumer.set(consumerId, (work = { keyIds: new Set(), orphans: [] }));
    return work;
  };
  for (const key of keys) entry(key.consumerId).keyIds.add(key.keyId);
  for (const [consumerId, list] of orphans) entry(consumerId).orphans.push(...list);
  return [...byConsumer].map(([consumerId, work]) => ({
    consumerId,
    keyIds: [...work.keyIds],
    orphans: work.orphans,
  }));
}

// ---- the report ----------------------------------------------------------------------------

export interface MaintenanceFailure {
  step: string;
  consumerId: string | null;
  keyId: string | null;
  error: string;
}

/** What a run did: the summary `POST /maintenance/run` answers and the cron logs. */
export interface MaintenanceReport {
  startedAt: number;
  finishedAt: number;
  rotationsCompleted: { consumerId: string; keyId: string; rotationId: string }[];
  versionsExpired: { consumerId: string; keyId: string; version: number }[];
  reminders: {
    type: NoticeKind;
    consumerId: string;
    keyId: string;
    version: number;
    rotationId: string | null;
  }[];
  reconciliation: {
    /** active keys whose records the D1 walk read this run */
    keysChecked: number;
    /** KV records the KV walk listed this run */
    recordsListed: number;
    fixed: RecordFix[];
    /** whether each walk reached its end (the next run starts over) or continues next run */
    keysWalk: "complete" | "continues";
    kvWalk: "complete" | "continues";
  };
  /** rows deleted because their time is over */
  pruned: {
    /** idempotency records past their 24-hour replay window */
    idempotencyRecords: number;
    /** webhook deliveries settled more than `WEBHOOK_DELIVERY_RETENTION_MS` ago */
    webhookDeliveries: number;
  };
  failures: MaintenanceFailure[];
}

/** How many things a run changed: 0 on a second run over the same data. */
export function changesIn(report: MaintenanceReport): number {
  return (
    report.rotationsCompleted.length +
    report.versionsExpired.length +
    report.reminders.length +
    report.reconciliation.fixed.length +
    report.pruned.idempotencyRecords +
    report.pruned.webhookDeliveries
  );
}
