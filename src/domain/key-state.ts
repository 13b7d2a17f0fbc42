/**
 * The domain model of a key and its versions. Plain values, times in epoch milliseconds;
 * no I/O and no Hono, so the transitions in `rotation-machine.ts` can be tested exhaustively.
 */

/** Stored status of a version. `expired` is also reached by time alone (see `versionStatus`). */
export type VersionStatus = "active" | "grace" | "expired" | "revoked";
export type RotationState = "in_progress" | "completed" | "rolled_back";
export type RotationEndReason =
  "completed" | "grace_ended" | "idle" | "emergency" | "rolled_back" | "revoked" | "superseded";

/**
 * The latest `expiresAt` a version may have: the last instant ISO-8601 writes with a
 * four-digit year (JSON shows times as ISO-8601). D1 holds any such epoch millisecond; KV's
 * expiration of the record is capped apart (`KV_MAX_EXPIRATION` in src/store/kv-index.ts).
 */
export const MAX_EXPIRES_AT = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

export interface RateLimit {
  limit: number;
  periodSeconds: number;
}

export interface KeyVersion {
  version: number;
  secretHash: string;
  hint: string;
  scopes: string[];
  status: VersionStatus;
  createdAt: number;
  expiresAt: number | null;
  /** for a version in grace: when it stops verifying; null while a first-use grace waits */
  graceUntil: number | null;
  /** when it stopped verifying by rotation, completion or revocation */
  retiredAt: number | null;
  lastUsedAt: number | null;
}

export interface Rotation {
  id: string;
  keyId: string;
  consumerId: string;
  state: RotationState;
  fromVersion: number;
  toVersion: number;
  startedAt: number;
  gracePeriodMs: number;
  graceUntil: number | null;
  graceStartsOnFirstUse: boolean;
  completeWhenIdleMs: number | null;
  /** first request seen with the new version */
  firstUsedAt: number | null;
  endedAt: number | null;
  endReason: RotationEndReason | null;
}

export interface KeyRecord {
  id: string;
  consumerId: string;
  name: string | null;
  metadata: Record<string, unknown> | null;
  rateLimit: RateLimit | null;
  status: "active" | "revoked";
  currentVersion: number;
  createdAt: number;
  updatedAt: number;
  revokedAt: number | null;
  revokeReason: string | null;
}

/** Everything a transition needs: the key, its versions and its open rotation, if any. */
export interface KeyState {
  key: KeyRecord;
  versions: KeyVersion[];
  rotation: Rotation | null;
}

/** The status a version has at `now`, with expiry and the end of grace applied by timestamp. */
export function versionStatus(version: KeyVersion, now: number): VersionStatus {
  if (version.status === "revoked" || version.status === "expired") return version.status;
  if (version.expiresAt !== null && version.expiresAt <= now) return "expired";
  if (version.status === "grace" && version.graceUntil !== null && version.graceUntil <= now) {
    return "expired";
  }
  return version.status;
}

/** Whether a version verifies at `now`. */
export function verifiesAt(version: KeyVersion, now: number): boolean {
  const status = versionStatus(version, now);
  return status === "active" || status === "grace";
}

export function findVersion(state: KeyState, version: number): KeyVersion | undefined {
  return state.versions.find((v) => v.version === version);
}

/** The earlier of two instants, either of which may be absent (null: no end). */
export function earliest(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null ? a : Math.min(a, b);
}
