import type { JWK } from "jose";

/**
 * The signing-key ring: pure. Three roles, so that no valid token ever fails:
 *
 * - `next`: published in the JWKS before it signs anything, so every verifier has it by the
 *   time it starts signing;
 * - `current`: signs every new token;
 * - `previous`: retired signers, still published until the longest token they may have
 *   signed has expired (`dropAfter`).
 *
 * A rotation promotes next to current, retires current into previous, and makes a new next.
 * An emergency rotation drops current at once instead: its tokens stop verifying.
 */

export type SigningAlgorithm = "ES256" | "EdDSA";

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  publicJwk: JWK;
  /** never leaves the signer's Durable Object storage */
  privateJwk: JWK;
  createdAt: number;
  activatedAt: number | null;
  retiredAt: number | null;
  /** a retired key is dropped from the JWKS at this instant */
  dropAfter: number | null;
}

export interface KeyRing {
  next: SigningKey;
  current: SigningKey;
  previous: SigningKey[];
}

export function newRing(current: SigningKey, next: SigningKey, now: number): KeyRing {
  return { current: { ...current, activatedAt: now }, next, previous: [] };
}

/**
 * Rotates the ring. `keepMs` is how long a retired key stays published: the longest token
 * lifetime plus clock tolerance.
 */
export function rotateRing(
  ring: KeyRing,
  freshNext: SigningKey,
  now: number,
  keepMs: number,
  emergency: boolean,
): KeyRing {
  const retired: SigningKey[] = emergency
    ? []
    : [{ ...ring.current, retiredAt: now, dropAfter: now + keepMs }];
  return {
    current: { ...ring.next, activatedAt: now },
    next: freshNext,
    previous: [...retired, ...pruneKeys(ring.previous, now)],
  };
}

function pruneKeys(keys: SigningKey[], now: number): SigningKey[] {
  return keys.filter((k) => k.dropAfter === null || k.dropAfter > now);
}

/** The ring without retired keys whose tokens have all expired. */
export function pruneRing(ring: KeyRing, now: number): KeyRing {
  return { ...ring, previous: pruneKeys(ring.previous, now) };
}

/** Whether the current key is older than the rotation period. */
export function rotationDue(ring: KeyRing, now: number, periodMs: number): boolean {
  return now - (ring.current.activatedAt ?? ring.current.createdAt) >= periodMs;
}

/** The public JWKS: next, current and previous keys, private parts never included. */
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
