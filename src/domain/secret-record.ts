import type { Limits } from "./limits";
import {
  versionStatus,
  type KeyRecord,
  type KeyVersion,
  type RateLimit,
  type Rotation,
} from "./key-state";

/**
 * What the edge index holds for one secret (store/kv-index.ts writes it to KV, the front door
 * judges it): pure values and the projection from D1's state to them.
 */

/**
 * How long a version that stopped verifying stays known to the edge: an expired one keeps
 * answering `key_expired`, a revoked one stays a tombstone, before either reads as unknown.
 */
export const EXPIRED_RETENTION_MS = 30 * 86_400_000;
/**
 * The latest KV `expiration` there is: workerd's binding takes it as a signed 32-bit number
 * of epoch seconds (2038-01-19T03:14:07Z) and throws on anything later, on every try.
 */
export const KV_MAX_EXPIRATION = 2 ** 31 - 1;

export interface SecretRecord {
  /**
   * SHA-256 of the secret, hex: compared again on read, in constant time. Empty in a revoked
   * version's tombstone, so that even code which knew no tombstones could never accept one.
   */
  hash: string;
  keyId: string;
  consumerId: string;
  version: number;
  /**
   * `revoked`: a tombstone. The secret is refused as `invalid_key`, like one never issued,
   * but the edge knows it as a real key's dead secret (stale use, not a client spraying).
   */
  status: "active" | "grace" | "expired" | "revoked";
  scopes: string[];
  expiresAt: number | null;
  graceUntil: number | null;
  /** start of the rotation that put this version in grace (the `Deprecation` date) */
  rotatedAt: number | null;
  /** this is the new version of an open rotation that has not been used yet */
  awaitingFirstUse: boolean;
  /** the key's rate limit (its own, else its consumer's default); null: unlimited */
  rateLimit: RateLimit | null;
  /** the consumer's monthly quota; null: unlimited */
  monthlyQuota: number | null;
}

/** A revoked version's record: no hash, no scopes, refused like a secret never issued. */
export function tombstoneRecord(keyId: string, consumerId: string, version: number): SecretRecord {
  return {
    hash: "",
    keyId,
    consumerId,
    version,
    status: "revoked",
    scopes: [],
    expiresAt: null,
    graceUntil: null,
    rotatedAt: null,
    awaitingFirstUse: false,
    rateLimit: null,
    monthlyQuota: null,
  };
}

export interface Projection {
  record: SecretRecord | null;
  /**
   * absolute expiry for KV, epoch seconds, at most `KV_MAX_EXPIRATION`; null to keep the
   * record until a projection removes it
   */
  expiration: number | null;
}

/**
 * What KV should hold for one version: a record, a tombstone (revoked), or nothing (never
 * verifying for longer than `EXPIRED_RETENTION_MS`). Pure: the same D1 state always projects
 * to the same KV state, so a retry is always safe.
 */
export function projectVersion(
  key: KeyRecord,
  version: KeyVersion,
  rotation: Rotation | null,
  now: number,
  limits: Limits,
): Projection {
  const status = key.status === "revoked" ? "revoked" : versionStatus(version, now);
  const endOfLife =
    status === "revoked"
      ? (version.retiredAt ?? key.revokedAt ?? now)
      : status === "expired"
        ? (version.retiredAt ?? version.graceUntil ?? version.expiresAt ?? now)
        : status === "grace"
          ? (version.graceUntil ?? version.expiresAt)
          : version.expiresAt;
  let expiration: number | null = null;
  if (endOfLife !== null) {
    const keepUntil = endOfLife + EXPIRED_RETENTION_MS;
    if (keepUntil <= now + 120_000) return { record: null, expiration: null };
    // KV's expiration is only hygiene (the edge judges expiresAt and graceUntil by the clock),
    // so a record kept past the latest one KV takes simply has none: maintenance removes it
    // once its retention is over, as it removes any record whose projection is nothing
    const seconds = Math.ceil(keepUntil / 1000);
    expiration = seconds <= KV_MAX_EXPIRATION ? seconds : null;
  }
  if (status === "revoked") {
    return { record: tombstoneRecord(key.id, key.consumerId, version.version), expiration };
  }
  const inRotation = rotation !== null && rotation.state === "in_progress";
  return {
    record: {
      hash: version.secretHash,
      keyId: key.id,
      consumerId: key.consumerId,
      version: version.version,
      status,
      scopes: version.scopes,
      expiresAt: version.expiresAt,
      graceUntil: status === "active" ? null : version.graceUntil,
      rotatedAt: inRotation && rotation.fromVersion === version.version ? rotation.startedAt : null,
      awaitingFirstUse:
        inRotation && rotation.toVersion === version.version && rotation.firstUsedAt === null,
      rateLimit: limits.rateLimit,
      monthlyQuota: limits.monthlyQuota,
    },
    expiration,
  };
}

/** A projection's record when it may verify (a tombstone is none), for callers judging it. */
export function liveRecord(projection: Projection): SecretRecord | null {
  const { record } = projection;
  return record === null || record.status === "revoked" ? null : record;
}
