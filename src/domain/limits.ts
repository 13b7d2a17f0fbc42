import type { RateLimit } from "./key-state";

/**
 * Rate-limit and quota arithmetic. Pure: plain values and a `now`.
 *
 * A key's rate limit counts requests in fixed windows of `periodSeconds`, aligned to
 * multiples of the period since the epoch; all versions of a key share one counter, so a
 * rotation never resets it. A consumer's monthly quota counts requests per calendar month
 * (UTC). Both counters live in the consumer's coordinator, which hands budget out in leases:
 * it never grants more than the limit in a window, so admitted requests never exceed it.
 */

export interface Window {
  /** identifies the window: equal ids, same window */
  id: number;
  startsAt: number;
  endsAt: number;
}

export function rateWindow(now: number, limit: RateLimit): Window {
  const period = limit.periodSeconds * 1000;
  const id = Math.floor(now / period);
  return { id, startsAt: id * period, endsAt: (id + 1) * period };
}

export function monthWindow(now: number): Window {
  const date = new Date(now);
  const year = date.getUTCFullYear();
  const month = date.getUTCMonth();
  return {
    id: year * 12 + month,
    startsAt: Date.UTC(year, month, 1),
    endsAt: Date.UTC(year, month + 1, 1),
  };
}

export interface Limits {
  rateLimit: RateLimit | null;
  monthlyQuota: number | null;
}

export interface Counters {
  /** requests already granted in the current rate window */
  rateUsed: number;
  /** requests already granted this month */
  quotaUsed: number;
}

export type Grant =
  | {
      granted: number;
      /** what is left after this grant, or null when there is no such limit */
      rateRemaining: number | null;
      quotaRemaining: number | null;
    }
  | { granted: 0; refused: "rate_limited" | "quota_exceeded"; retryAt: number };

/** How many of `want` requests the counters allow now. */
export function grant(limits: Limits, counters: Counters, want: number, now: number): Grant {
  const rateLeft =
    limits.rateLimit === null ? null : Math.max(0, limits.rateLimit.limit - counters.rateUsed);
  const quotaLeft =
    limits.monthlyQuota === null ? null : Math.max(0, limits.monthlyQuota - counters.quotaUsed);
  if (quotaLeft === 0) {
    return { granted: 0, refused: "quota_exceeded", retryAt: monthWindow(now).endsAt };
  }
  if (rateLeft === 0) {
    return {
      granted: 0,
      refused: "rate_limited",
      retryAt: rateWindow(now, limits.rateLimit!).endsAt,
    };
  }
  const left = Math.min(rateLeft ?? Infinity, quotaLeft ?? Infinity);
  const granted = Number.isFinite(left) ? Math.min(left, shrinkNearEnd(want, left)) : want;
  return {
    granted,
    rateRemaining: rateLeft === null ? null : rateLeft - granted,
    quotaRemaining: quotaLeft === null ? null : quotaLeft - granted,
  };
}

/**
 * How much budget an isolate asks for at a time: about 2 % of the limit (so a busy key makes
 * one coordinator round trip per ~50 requests), at least 1 and at most 100, and never more
 * than a quarter of what is left, so little budget sits unused in one isolate near the end
 * of a window while another is refused.
 */
export function leaseSize(limits: Limits): number {
  const basis = Math.min(limits.rateLimit?.limit ?? Infinity, limits.monthlyQuota ?? Infinity);
  if (!Number.isFinite(basis)) return 100;
  return Math.max(1, Math.min(100, Math.ceil(basis / 50)));
}

/** A lease of at most a quarter of what is left (at least one request). */
export function shrinkNearEnd(want: number, remaining: number): number {
  return Math.max(1, Math.min(want, Math.floor(remaining / 4)));
}
