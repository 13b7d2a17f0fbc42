/**
 * Cuts off a client that sprays keys: after `FAILURE_THRESHOLD` unknown credentials from one
 * address (`CF-Connecting-IP`; IPv6 counted per /64) within `WINDOW_MS`, this isolate refuses
 * that address's uncached credentials for `BLOCK_MS` before any KV read (429 `rate_limited`).
 *
 * Only unknown credentials count: a secret Keygate knows as expired or revoked is stale use of
 * a real key (a rotation's straggler), never spraying. And a blocked address is never refused
 * for a key this isolate has seen: its secret is still read, so one customer's fleet behind a
 * NAT, or a valid owner behind a CGNAT shared with a sprayer, keeps working. Reads for a seen
 * key from a blocked address are capped as well, per address and key, so knowing one key id
 * does not buy unlimited KV reads.
 *
 * Knowing a key id must not buy a lock-out of its owner either: a secret storage has matched in
 * this isolate (valid, or stale since) is never refused by the guard and never counted, so
 * made-up secrets for that key id only cut off further made-up secrets. Only its hash is kept,
 * which a client cannot produce without the secret.
 */
export const FAILURE_THRESHOLD = 20;
export const WINDOW_MS = 60_000;
export const BLOCK_MS = 60_000;
/** How long a key stays "seen" after this isolate last found a record of it. */
export const SEEN_KEY_MS = 3_600_000;
const MAX_ADDRESSES = 10_000;
const MAX_SEEN_KEYS = 10_000;
const MAX_SEEN_SECRETS = 20_000;

interface Entry {
  failures: number;
  windowStart: number;
  blockedUntil: number;
}

const entries = new Map<string, Entry>();
const seenKeys = new Map<string, number>();
const seenSecrets = new Map<string, number>();

/**
 * The unit an address is counted in: an IPv4 address as it is, an IPv6 address by its /64
 * (one subscriber's prefix), an IPv4-mapped IPv6 address as its IPv4 address.
 */
export function addressKey(ip: string): string {
  if (!ip.includes(":")) return ip;
  const lower = ip.toLowerCase().replace(/%.*$/, "");
  const mapped = /^(?:0{0,4}:){0,5}(?:::)?ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(lower);
  if (mapped) return mapped[1]!;
  const halves = lower.split("::");
  if (halves.length > 2) return lower;
  const head0 = halves[0] === "" ? 0 : halves[0]!.split(":").length;
  const tail0 = halves.length === 2 && halves[1] !== "" ? halves[1]!.split(":").length : 0;
  // not an IPv6 address at all (too many groups): counted as the string it is
  if (head0 + tail0 > (halves.length === 2 ? 7 : 8)) return lower;
  const head = halves[0] === "" ? [] : halves[0]!.split(":");
  const tail = halves.length === 2 && halves[1] !== "" ? halves[1]!.split(":") : [];
  const groups =
    halves.length === 2
      ? [...head, ...Array<string>(8 - head.length - tail.length).fill("0"), ...tail]
      : head;
  return (
    groups
      .slice(0, 4)
      .map((group) => group.replace(/^0+(?=.)/, ""))
      .join(":") + "::/64"
  );
}

function blockedAt(key: string, now: number): number | null {
  const entry = entries.get(key);
  return entry && entry.blockedUntil > now ? entry.blockedUntil : null;
}

function countFailure(key: string, now: number): void {
  let entry = entries.get(key);
  if (!entry || now - entry.windowStart >= WINDOW_MS) {
    if (!entry && entries.size >= MAX_ADDRESSES) entries.delete(entries.keys().next().value!);
    entry = { failures: 0, windowStart: now, blockedUntil: entry?.blockedUntil ?? 0 };
    entries.set(key, entry);
  }
  entry.failures++;
  if (entry.failures >= FAILURE_THRESHOLD) entry.blockedUntil = now + BLOCK_MS;
}

/**
 * Until when an uncached credential of `keyId` (secret hash `hash`) from `ip` is refused
 * without a read, or null. A secret storage has matched here is never refused; a key this
 * isolate has seen passes a blocked address, unless that address has itself presented too
 * many unknown secrets of that very key.
 */
export function blockedUntil(ip: string, keyId: string, hash: string, now: number): number | null {
  const address = addressKey(ip);
  const until = blockedAt(address, now);
  if (until === null || isKnownSecret(hash, now)) return null;
  return isRecent(seenKeys, keyId, now) ? blockedAt(`${address} ${keyId}`, now) : until;
}

/**
 * Counts one credential storage does not hold (null `keyId`: not even well-formed) from `ip`.
 * A secret storage once matched here never gets this far: it is cached as a tombstone.
 */
export function recordFailure(ip: string, keyId: string | null, now: number): void {
  const address = addressKey(ip);
  countFailure(address, now);
  if (keyId !== null && isRecent(seenKeys, keyId, now)) countFailure(`${address} ${keyId}`, now);
}

/**
 * Notes that storage holds a record of `keyId` (valid or not): the key exists; and, when
 * given, that `hash` is one of its secrets.
 */
export function rememberKey(keyId: string, now: number, hash?: string): void {
  touch(seenKeys, keyId, now, MAX_SEEN_KEYS);
  if (hash !== undefined) touch(seenSecrets, hash, now, MAX_SEEN_SECRETS);
}

/** Sets `key` to `now` as the newest entry, dropping the oldest past `max`. */
function touch(map: Map<string, number>, key: string, now: number, max: number): void {
  if (map.has(key)) map.delete(key);
  else if (map.size >= max) map.delete(map.keys().next().value!);
  map.set(key, now);
}

/** Whether storage has matched this secret hash in this isolate lately. */
export function isKnownSecret(hash: string, now: number): boolean {
  return isRecent(seenSecrets, hash, now);
}

function isRecent(map: Map<string, number>, key: string, now: number): boolean {
  const at = map.get(key);
  return at !== undefined && now - at < SEEN_KEY_MS;
}

/** Forgets every address and key (tests). */
export function resetGuard(): void {
  entries.clear();
  seenKeys.clear();
  seenSecrets.clear();
}
