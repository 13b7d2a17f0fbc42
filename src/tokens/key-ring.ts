import type { JWK } from "jose";

/**
 * The signing-key ring: pure. Three roles, so that no valid token ever fails:
 *
 * - `next`: published in the JWKS before it signs anything, and promoted only once it has
 *   been published for `minNextAgeMs` (every verifier has it by then);
 * - `current`: signs every new token and assertion;
 * - `previous`: retired signers, still published until the longest token they may have
 *   signed has expired (`dropAfter`, fixed when the key retires).
 *
 * A rotation promotes next to current, retires current into previous, and makes a new next.
 * An emergency rotation replaces the whole ring with fresh keys: every key the signer's
 * storage held may be compromised, its stored next included.
 */

export type SigningAlgorithm = "ES256" | "EdDSA";

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  publicJwk: JWK;
  /** never leaves the signer's Durable Object storage */
  privateJwk: JWK;
  createdAt: number;
  /** when a JWKS holding the key was first written to KV; null until then */
  publishedAt: number | null;
  activatedAt: number | null;
  /** the longest lifetime, in seconds, of anything the key has signed */
  longestTtlSeconds: number;
  retiredAt: number | null;
  /** a retired key is dropped from the JWKS at this instant */
  dropAfter: number | null;
}

export interface KeyRing {
  next: SigningKey;
  current: SigningKey;
  previous: SigningKey[];
}

/** How long retired keys stay published. */
export interface Retention {
  /** the longest lifetime a token may be issued with: max(MAX_TOKEN_TTL, assertion TTL) */
  maxTtlSeconds: number;
  /** clock skew verifiers allow past `exp` */
  toleranceSeconds: number;
}

/** Fills members that rings stored by earlier versions lack. */
export function normalizeRing(ring: KeyRing): KeyRing {
  const fill = (k: SigningKey): SigningKey => ({
    ...k,
    publishedAt: k.publishedAt === undefined ? k.createdAt : k.publishedAt,
    longestTtlSeconds: k.longestTtlSeconds ?? 0,
  });
  return { current: fill(ring.current), next: fill(ring.next), previous: ring.previous.map(fill) };
}

export function newRing(current: SigningKey, next: SigningKey, now: number): KeyRing {
  return { current: { ...current, activatedAt: now }, next, previous: [] };
}

/** When the ring's `next` may start signing (null: it has not been published yet). */
export function promotableAt(ring: KeyRing, minNextAgeMs: number): number | null {
  return ring.next.publishedAt === null ? null : ring.next.publishedAt + minNextAgeMs;
}

/** The instant a key retiring at `now` may be dropped: its longest token plus tolerance. */
export function dropTime(key: SigningKey, now: number, retention: Retention): number {
  const longest = Math.max(retention.maxTtlSeconds, key.longestTtlSeconds);
  return now + (longest + retention.toleranceSeconds) * 1000;
}

/**
 * A scheduled rotation: next starts signing, current retires and stays published until
 * `dropTime`. The caller checks `promotableAt` first.
 */
export function rotateRing(
  ring: KeyRing,
  freshNext: SigningKey,
  now: number,
  retention: Retention,
): KeyRing {
  const retired: SigningKey = {
    ...ring.current,
    retiredAt: now,
    dropAfter: dropTime(ring.current, now, retention),
  };
  return {
    current: { ...ring.next, activatedAt: now },
    next: freshNext,
    previous: [retired, ...pruneKeys(ring.previous, now)],
  };
}

/** An emergency rotation: every key of the ring is replaced by fresh ones, at once. */
export function replaceRing(
  ring: KeyRing,
  freshCurrent: SigningKey,
  freshNext: SigningKey,
  now: number,
): { ring: KeyRing; dropped: string[] } {
  return {
    ring: newRing(freshCurrent, freshNext, now),
    dropped: [ring.current, ring.next, ...ring.previous].map((k) => k.kid),
  };
}

/** Notes that `kid` signed something living `ttlSeconds` (null: no change needed). */
export function recordSigned(ring: KeyRing, kid: string, ttlSeconds: number): KeyRing | null {
  if (ring.current.kid !== kid || ring.current.longestTtlSeconds >= ttlSeconds) return null;
  return { ...ring, current: { ...ring.current, longestTtlSeconds: ttlSeconds } };
}

/** Marks every key not yet published as published at `at`. */
export function markPublished(ring: KeyRing, at: number): KeyRing {
  const mark = (k: SigningKey): SigningKey =>
    k.publishedAt === null ? { ...k, publishedAt: at } : k;
  return { current: mark(ring.current), next: mark(ring.next), previous: ring.previous.map(mark) };
}

function pruneKeys(keys: SigningKey[], now: number): SigningKey[] {
  return keys.filter((k) => k.dropAfter === null || k.dropAfter > now);
}

/** The ring without retired keys whose tokens have all expired. */
export function pruneRing(ring: KeyRing, now: number): { ring: KeyRing; dropped: string[] } {
  const kept = pruneKeys(ring.previous, now);
  const dropped = ring.previous.filter((k) => !kept.includes(k)).map((k) => k.kid);
  return { ring: { ...ring, previous: kept }, dropped };
}

/** Whether the current key is older than the rotation period. */
export function rotationDue(ring: KeyRing, now: number, periodMs: number): boolean {
  return now - (ring.current.activatedAt ?? ring.current.createdAt) >= periodMs;
}

/** The public JWKS: current, next and previous keys, private parts never included. */
export function publicJwks(ring: KeyRing): { keys: JWK[] } {
  return {
    keys: [ring.current, ring.next, ...ring.previous].map((k) => ({
      ...publicPart(k.publicJwk),
      kid: k.kid,
      alg: k.alg,
      use: "sig",
    })),
  };
}

const PUBLIC_MEMBERS = ["kty", "crv", "x", "y", "n", "e"] as const;

function publicPart(jwk: JWK): JWK {
  const out: JWK = {};
  for (const member of PUBLIC_MEMBERS) {
    if (jwk[member] !== undefined) out[member] = jwk[member];
  }
  return out;
}

/** The instant at which the ring next changes by time alone (a retired key is dropped). */
export function nextDrop(ring: KeyRing): number | null {
  const drops = ring.previous.map((k) => k.dropAfter).filter((at): at is number => at !== null);
  return drops.length ? Math.min(...drops) : null;
}
