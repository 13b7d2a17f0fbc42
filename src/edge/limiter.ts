import { coordinatorOf } from "../coordinator/client";
import type { Lease } from "../coordinator/usage-ledger";
import { leaseSize, monthWindow, rateWindow, type Limits } from "../domain/limits";
import type { Bindings } from "../env";
import type { SecretRecord } from "../domain/secret-record";
import type { WaitUntil } from "./usage-buffer";
import { logError } from "../log";

/**
 * Rate limits and quotas at the edge, decided locally against budget leased from the
 * consumer's coordinator. An isolate asks for a small lease (see `leaseSize`) when it runs
 * out, tops it up in the background when half is spent, and once the coordinator says the
 * window is used up it refuses locally until the window ends: a limited key costs no round
 * trip per request, admitted or refused. The coordinator never grants more than the limit in
 * a window, so admitted requests never exceed it; budget leased to an isolate and not used
 * before the window ends is lost, so under contention a little less than the limit may be
 * admitted (at most one lease per isolate).
 */

interface LocalLease {
  window: string;
  /** the calendar month (monthWindow id) the lease's quota budget belongs to, if any */
  month: number | null;
  tokens: number;
  /** budget of this month leased in an earlier window and not used: given back with the next refill */
  unused: number;
  rateRemaining: number | null;
  quotaRemaining: number | null;
  rateResetAt: number | null;
  quotaResetAt: number | null;
  refused: { code: "rate_limited" | "quota_exceeded"; until: number } | null;
  refill: Promise<void> | null;
  /** requests of this isolate waiting for the refill in flight */
  waiting: number;
}

export type Admission =
  | { ok: true; headers: Record<string, string> }
  | {
      ok: false;
      code: "rate_limited" | "quota_exceeded";
      headers: Record<string, string>;
    };

const MAX_LEASES = 10_000;

/** Whether a key has a rate limit or a quota: an unlimited key needs no admission at all. */
export function isLimited(record: SecretRecord): boolean {
  return (record.rateLimit ?? null) !== null || (record.monthlyQuota ?? null) !== null;
}

/** The admission of every unlimited key; shared, so never changed in place. */
export const UNLIMITED: Admission = Object.freeze({ ok: true, headers: Object.freeze({}) });

function limitsOf(record: SecretRecord): Limits {
  return { rateLimit: record.rateLimit ?? null, monthlyQuota: record.monthlyQuota ?? null };
}

function windowOf(limits: Limits, now: number): string {
  const rate = limits.rateLimit
    ? `${limits.rateLimit.limit}/${limits.rateLimit.periodSeconds}:${rateWindow(now, limits.rateLimit).id}`
    : "-";
  const quota =
    limits.monthlyQuota !== null ? `${limits.monthlyQuota}:${monthWindow(now).id}` : "-";
  return `${rate}|${quota}`;
}

/** `RateLimit-Policy` and `RateLimit` (IETF httpapi ratelimit-headers draft). */
function headersFor(
  limits: Limits,
  lease: LocalLease,
  now: number,
  refused: boolean,
): Record<string, string> {
  const policies: string[] = [];
  const states: string[] = [];
  const seconds = (at: number | null) => Math.max(0, Math.ceil(((at ?? now) - now) / 1000));
  if (limits.rateLimit) {
    policies.push(`"key";q=${limits.rateLimit.limit};w=${limits.rateLimit.periodSeconds}`);
    const left =
      refused && lease.refused?.code === "rate_limited"
        ? 0
        : (lease.rateRemaining ?? 0) + lease.tokens;
    states.push(`"key";r=${Math.max(0, left)};t=${seconds(lease.rateResetAt)}`);
  }
  if (limits.monthlyQuota !== null) {
    const month = monthWindow(now);
    policies.push(
      `"quota";q=${limits.monthlyQuota};w=${Math.round((month.endsAt - month.startsAt) / 1000)}`,
    );
    const left =
      refused && lease.refused?.code === "quota_exceeded"
        ? 0
        : (lease.quotaRemaining ?? 0) + lease.tokens;
    states.push(`"quota";r=${Math.max(0, left)};t=${seconds(lease.quotaResetAt)}`);
  }
  return { "RateLimit-Policy": policies.join(", "), RateLimit: states.join(", ") };
}

function apply(lease: LocalLease, result: Lease): void {
  lease.rateResetAt = result.rateResetAt;
  lease.quotaResetAt = result.quotaResetAt;
  if ("refused" in result) {
    lease.refused = { code: result.refused, until: result.retryAt };
    lease.rateRemaining = result.refused === "rate_limited" ? 0 : lease.rateRemaining;
    lease.quotaRemaining = result.refused === "quota_exceeded" ? 0 : lease.quotaRemaining;
    return;
  }
  lease.tokens += result.granted;
  lease.rateRemaining = result.rateRemaining;
  lease.quotaRemaining = result.quotaRemaining;
}

function refill(
  env: Bindings,
  record: SecretRecord,
  lease: LocalLease,
  limits: Limits,
): Promise<void> {
  const returned =
    lease.unused > 0 && lease.month !== null ? { month: lease.month, count: lease.unused } : null;
  lease.refill ??= coordinatorOf(env, record.consumerId)
    .lease(record.keyId, limits, Math.max(leaseSize(limits), lease.waiting + 1), returned)
    .then((result) => {
      if (returned) lease.unused -= returned.count;
      apply(lease, result);
    })
    .finally(() => {
      lease.refill = null;
    });
  return lease.refill;
}

/** One isolate's leases. The Worker uses the module's `limiter`; tests make several. */
export class Limiter {
  #leases = new Map<string, LocalLease>();

  /**
   * Admits or refuses one request of a verified key. Throws when the coordinator cannot be
   * reached and this isolate holds no budget: the caller answers 503 (fail closed).
   */
  async admit(
    env: Bindings,
    ctx: WaitUntil,
    record: SecretRecord,
    now: number,
  ): Promise<Admission> {
    if (!isLimited(record)) return UNLIMITED;
    const leases = this.#leases;
    const limits = limitsOf(record);
    const window = windowOf(limits, now);
    let lease = leases.get(record.keyId);
    if (!lease || lease.window !== window) {
      if (!lease && leases.size >= MAX_LEASES) leases.delete(leases.keys().next().value!);
      const month = limits.monthlyQuota === null ? null : monthWindow(now).id;
      // a new rate window (or new limits) strands what is left of the old lease: it was
      // counted against the month's quota, so it goes back with the next refill
      const unused =
        lease && month !== null && lease.month === month ? lease.tokens + lease.unused : 0;
      lease = {
        window,
        month,
        tokens: 0,
        unused,
        rateRemaining: null,
        quotaRemaining: null,
        rateResetAt: null,
        quotaResetAt: null,
        refused: null,
        refill: null,
        waiting: 0,
      };
      leases.set(record.keyId, lease);
    }
    // each refill grants at least one request or refuses, so this ends; the cap is a backstop
    for (let attempt = 0; attempt < 1000; attempt++) {
      if (lease.refused && lease.refused.until > now) {
        return {
          ok: false,
          code: lease.refused.code,
          headers: {
            ...headersFor(limits, lease, now, true),
            "Retry-After": String(Math.max(1, Math.ceil((lease.refused.until - now) / 1000))),
          },
        };
      }
      if (lease.tokens > 0) {
        lease.tokens--;
        const size = leaseSize(limits);
        if (
          size > 1 &&
          lease.tokens <= size / 2 &&
          lease.refill === null &&
          lease.refused === null
        ) {
          ctx.waitUntil(
            refill(env, record, lease, limits).catch((error: unknown) =>
              logError("lease_refill_failed", { keyId: record.keyId, error }),
            ),
          );
        }
        return { ok: true, headers: headersFor(limits, lease, now, false) };
      }
      lease.waiting++;
      try {
        await refill(env, record, lease, limits);
      } finally {
        lease.waiting--;
      }
    }
    return {
      ok: false,
      code: "rate_limited",
      headers: { ...headersFor(limits, lease, now, true), "Retry-After": "1" },
    };
  }

  /** Drops this isolate's lease of a key. */
  forget(keyId: string): void {
    this.#leases.delete(keyId);
  }
}

/** The isolate's limiter. */
export const limiter = new Limiter();
