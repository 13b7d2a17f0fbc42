import { versionStatus, type KeyState, type KeyVersion, type Rotation } from "../domain/key-state";
import type { RotationUsage } from "../coordinator/usage-ledger";
import type { Consumer } from "../store/consumers";

/** JSON views of domain values: ISO-8601 times, never a secret or a secret hash. */

export function iso(at: number | null): string | null {
  return at === null ? null : new Date(at).toISOString();
}

export function consumerView(consumer: Consumer) {
  return {
    id: consumer.id,
    name: consumer.name,
    metadata: consumer.metadata,
    rateLimit: consumer.rateLimit,
    monthlyQuota: consumer.monthlyQuota,
    webhookUrl: consumer.webhookUrl,
    createdAt: iso(consumer.createdAt)!,
    updatedAt: iso(consumer.updatedAt)!,
  };
}

export function versionView(version: KeyVersion, now: number) {
  return {
    version: version.version,
    status: versionStatus(version, now),
    hint: version.hint,
    scopes: version.scopes,
    createdAt: iso(version.createdAt)!,
    expiresAt: iso(version.expiresAt),
    graceUntil: iso(version.graceUntil),
    lastUsedAt: iso(version.lastUsedAt),
  };
}

export function rotationView(rotation: Rotation) {
  return {
    id: rotation.id,
    keyId: rotation.keyId,
    consumerId: rotation.consumerId,
    state: rotation.state,
    fromVersion: rotation.fromVersion,
    toVersion: rotation.toVersion,
    startedAt: iso(rotation.startedAt)!,
    graceUntil: iso(rotation.graceUntil),
    graceStartsOnFirstUse: rotation.graceStartsOnFirstUse,
    completeWhenIdleSeconds:
      rotation.completeWhenIdleMs === null ? null : Math.round(rotation.completeWhenIdleMs / 1000),
    firstUsedAt: iso(rotation.firstUsedAt),
    endedAt: iso(rotation.endedAt),
    endReason: rotation.endReason,
  };
}

/** A rotation with the traffic on its old and new version since it began. */
export function rotationReportView(rotation: Rotation, usage: RotationUsage) {
  return {
    ...rotationView(rotation),
    usage: {
      old: { requests: usage.old.requests, lastUsedAt: iso(usage.old.lastUsedAt) },
      new: { requests: usage.new.requests, lastUsedAt: iso(usage.new.lastUsedAt) },
    },
  };
}

export function keyView(state: KeyState, now: number) {
  const current = state.versions.find((v) => v.version === state.key.currentVersion)!;
  const versions = [...state.versions].sort((a, b) => b.version - a.version);
  return {
    id: state.key.id,
    consumerId: state.key.consumerId,
    name: state.key.name,
    metadata: state.key.metadata,
    rateLimit: state.key.rateLimit,
    status: state.key.status === "revoked" ? ("revoked" as const) : versionStatus(current, now),
    version: current.version,
    hint: current.hint,
    scopes: current.scopes,
    createdAt: iso(state.key.createdAt)!,
    updatedAt: iso(state.key.updatedAt)!,
    expiresAt: iso(current.expiresAt),
    revokedAt: iso(state.key.revokedAt),
    versions: versions.map((v) => versionView(v, now)),
    rotation: state.rotation ? rotationView(state.rotation) : null,
  };
}
