/**
 * Cuts off a client that sprays keys: after `FAILURE_THRESHOLD` invalid credentials from one
 * address (`CF-Connecting-IP`) within `WINDOW_MS`, this isolate refuses that address's
 * uncached credentials for `BLOCK_MS` before any KV read (429 `rate_limited`). A credential
 * this isolate already holds as valid still works from that address, and other addresses are
 * never affected, so a key's owner is not locked out by someone guessing at it.
 */
export const FAILURE_THRESHOLD = 20;
export const WINDOW_MS = 60_000;
export const BLOCK_MS = 60_000;
const MAX_ADDRESSES = 10_000;

interface Entry {
  failures: number;
  windowStart: number;
  blockedUntil: number;
}

const entries = new Map<string, Entry>();

/** Until when `ip` is cut off, or null. */
export function blockedUntil(ip: string, now: number): number | null {
  const entry = entries.get(ip);
  return entry && entry.blockedUntil > now ? entry.blockedUntil : null;
}

/** Counts one invalid credential from `ip`. */
export function recordFailure(ip: string, now: number): void {
  let entry = entries.get(ip);
  if (!entry || now - entry.windowStart >= WINDOW_MS) {
    if (!entry && entries.size >= MAX_ADDRESSES) entries.delete(entries.keys().next().value!);
    entry = { failures: 0, windowStart: now, blockedUntil: entry?.blockedUntil ?? 0 };
    entries.set(ip, entry);
  }
  entry.failures++;
  if (entry.failures >= FAILURE_THRESHOLD) entry.blockedUntil = now + BLOCK_MS;
}

/** Forgets every address (tests). */
export function resetGuard(): void {
  entries.clear();
}
