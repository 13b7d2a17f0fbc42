import { grant, monthWindow, rateWindow, type Grant, type Limits } from "../domain/limits";
import type { KeyState, Rotation } from "../domain/key-state";
import { addHourlyUsage, type HourlyUsage } from "../store/usage";
import {
  addToBaseline,
  addUsage,
  baselineOf,
  clearHours,
  counterOf,
  createCounterTable,
  createUsageTables,
  lastUsedByVersion,
  pendingHours,
  saveBaseline,
  setCounter,
  usageOf,
  type UsageReport,
  type VersionUsage,
} from "./usage-store";

/** A grant of budget, with when the windows it came from end. */
export type Lease = Grant & { rateResetAt: number | null; quotaResetAt: number | null };

export interface RotationUsage {
  old: VersionUsage;
  new: VersionUsage;
}

/**
 * The consumer's usage and rate-limit ledger, in the coordinator's own SQLite storage: the
 * front door's batched usage reports, each rotation's baseline, the rate-limit and quota
 * counters it leases budget from, and the hourly counts the alarm rolls up into D1.
 */
export class UsageLedger {
  constructor(private readonly sql: SqlStorage) {
    createUsageTables(sql);
    createCounterTable(sql);
  }

  /**
   * Counts reports of one key. Requests reported late but made before `rotation` began count
   * toward its baseline, not its traffic.
   */
  record(reports: UsageReport[], rotation: Rotation | null): void {
    for (const report of reports) {
      addUsage(this.sql, report);
      if (
        rotation &&
        report.version === rotation.fromVersion &&
        report.lastAt < rotation.startedAt
      ) {
        addToBaseline(this.sql, rotation.id, report.requests);
      }
    }
  }

  /** Marks where the old version's count stood when `rotation` began. */
  startBaseline(rotation: Rotation): void {
    saveBaseline(this.sql, rotation.id, rotation.keyId, rotation.fromVersion);
  }

  /** The state with the freshest `lastUsedAt` this ledger knows of (reports not yet in D1). */
  withLiveUsage(state: KeyState): KeyState {
    const live = lastUsedByVersion(this.sql, state.key.id);
    if (live.size === 0) return state;
    return {
      ...state,
      versions: state.versions.map((v) => {
        const at = live.get(v.version);
        return at !== undefined && (v.lastUsedAt === null || at > v.lastUsedAt)
          ? { ...v, lastUsedAt: at }
          : v;
      }),
    };
  }

  /** Usage of the old and new version since the rotation began. */
  rotationUsage(rotation: Rotation): RotationUsage {
    const old = usageOf(this.sql, rotation.keyId, rotation.fromVersion);
    const fresh = usageOf(this.sql, rotation.keyId, rotation.toVersion);
    const since = (at: number | null) => (at !== null && at >= rotation.startedAt ? at : null);
    return {
      old: {
        requests: Math.max(0, old.requests - baselineOf(this.sql, rotation.id)),
        lastUsedAt: since(old.lastUsedAt),
      },
      new: { requests: fresh.requests, lastUsedAt: fresh.lastUsedAt },
    };
  }

  /** Hourly counts not yet rolled up into D1 (of one key, or of all). */
  pending(keyId?: string): HourlyUsage[] {
    const hours = pendingHours(this.sql);
    return keyId === undefined ? hours : hours.filter((h) => h.keyId === keyId);
  }

  /** Moves the hourly counts into D1; they are dropped here only once D1 holds them. */
  async rollUp(db: D1Database): Promise<void> {
    const hours = pendingHours(this.sql);
    if (hours.length === 0) return;
    const lastUsed = [];
    for (const id of new Set(hours.map((h) => `${h.keyId}:${h.version}`))) {
      const [keyId, version] = id.split(":") as [string, string];
      const usage = usageOf(this.sql, keyId, Number(version));
      if (usage.lastUsedAt !== null)
        lastUsed.push({ keyId, version: Number(version), at: usage.lastUsedAt });
    }
    await addHourlyUsage(db, hours, lastUsed);
    clearHours(this.sql, hours);
  }

  /**
   * Hands out up to `want` requests of budget from the key's rate-limit window and the
   * consumer's monthly quota. Synchronous storage only, so no other call interleaves: the sum
   * of all grants in a window never exceeds the limit. `returned`: quota an isolate leased in
   * an earlier rate window of this month and never used.
   */
  lease(
    keyId: string,
    limits: Limits,
    want: number,
    returned: { month: number; count: number } | null,
    now: number,
  ): Lease {
    const sql = this.sql;
    const rate = limits.rateLimit ? rateWindow(now, limits.rateLimit) : null;
    const month = limits.monthlyQuota !== null ? monthWindow(now) : null;
    const rateScope = `rate:${keyId}`;
    const counters = {
      rateUsed: rate ? counterOf(sql, rateScope, rate.id) : 0,
      quotaUsed: month ? counterOf(sql, "quota", month.id) : 0,
    };
    const credit =
      month && returned && returned.month === month.id
        ? Math.min(Math.max(0, Math.floor(returned.count)), counters.quotaUsed)
        : 0;
    counters.quotaUsed -= credit;
    const result = grant(limits, counters, Math.max(1, Math.min(want, 1000)), now);
    if (rate && result.granted > 0) {
      setCounter(sql, rateScope, rate.id, counters.rateUsed + result.granted);
    }
    if (month && (result.granted > 0 || credit > 0)) {
      setCounter(sql, "quota", month.id, counters.quotaUsed + result.granted);
    }
    return { ...result, rateResetAt: rate?.endsAt ?? null, quotaResetAt: month?.endsAt ?? null };
  }
}
