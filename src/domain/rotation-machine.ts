import { duration } from "../duration";
import {
  findVersion,
  verifiesAt,
  versionStatus,
  type KeyState,
  type KeyVersion,
  type Rotation,
  type RotationEndReason,
} from "./key-state";

/**
 * The rotation state machine: pure transitions over a `KeyState`.
 *
 *   (none) --start--> in_progress --complete | grace end | idle--> completed
 *                          |  \--rollback--> rolled_back
 *                          \--revoke key--> completed (reason revoked)
 *   (none) --start with grace 0 (emergency) or an already expired old version--> completed
 *
 * Every transition first settles the state at `now` (a grace window that has passed has
 * ended, whether or not an alarm has run), then applies the change. A transition never
 * mutates its input.
 */

export interface DomainEvent {
  action: string;
  details: Record<string, unknown>;
}

export type TransitionError = {
  ok: false;
  code: "rotation_in_progress" | "conflict" | "not_found" | "validation_failed";
  detail: string;
};

export type Transition =
  | {
      ok: true;
      state: KeyState;
      /** rotations created or changed, closed ones included */
      rotations: Rotation[];
      events: DomainEvent[];
    }
  | TransitionError;

function fail(code: TransitionError["code"], detail: string): TransitionError {
  return { ok: false, code, detail };
}

function clone(state: KeyState): KeyState {
  return {
    key: { ...state.key },
    versions: state.versions.map((v) => ({ ...v, scopes: [...v.scopes] })),
    rotation: state.rotation ? { ...state.rotation } : null,
  };
}

function replaceVersion(state: KeyState, next: KeyVersion): void {
  state.versions = state.versions.map((v) => (v.version === next.version ? next : v));
}

function minTime(a: number, b: number | null): number {
  return b === null ? a : Math.min(a, b);
}

/** Closes the open rotation of `state` (mutating the clone), retiring the old version. */
function close(
  state: KeyState,
  reason: RotationEndReason,
  at: number,
  events: DomainEvent[],
): Rotation {
  const rotation = state.rotation;
  if (!rotation) throw new Error("no open rotation");
  const old = findVersion(state, rotation.fromVersion);
  if (old && (old.status === "grace" || old.status === "active")) {
    replaceVersion(state, {
      ...old,
      status: "expired",
      graceUntil: old.graceUntil === null ? at : Math.min(old.graceUntil, at),
      retiredAt: at,
    });
  }
  const closed: Rotation = {
    ...rotation,
    state: reason === "rolled_back" ? "rolled_back" : "completed",
    endedAt: at,
    endReason: reason,
  };
  state.rotation = null;
  events.push({
    action: reason === "rolled_back" ? "rotation.rolled_back" : "rotation.completed",
    details: {
      rotationId: rotation.id,
      fromVersion: rotation.fromVersion,
      toVersion: rotation.toVersion,
      reason,
    },
  });
  return closed;
}

/** When the open rotation's idle rule would complete it, or null when it cannot yet tell. */
export function idleDeadline(state: KeyState): number | null {
  const rotation = state.rotation;
  if (!rotation || rotation.completeWhenIdleMs === null || rotation.firstUsedAt === null) {
    return null;
  }
  const old = findVersion(state, rotation.fromVersion);
  const lastOldUse = Math.max(old?.lastUsedAt ?? 0, rotation.startedAt);
  return lastOldUse + rotation.completeWhenIdleMs;
}

/**
 * Applies what time alone decides: a rotation whose grace window has passed is completed at
 * `graceUntil`, and one whose old version has been idle long enough (`completeWhenIdleSeconds`)
 * is completed at `now`. Returns the settled state and the rotations it closed.
 */
export function settle(state: KeyState, now: number): Transition {
  const next = clone(state);
  const events: DomainEvent[] = [];
  const rotations: Rotation[] = [];
  const rotation = next.rotation;
  if (rotation) {
    // the earliest deadline that has passed decides how, and when, the rotation ended
    const old = findVersion(next, rotation.fromVersion);
    const candidates: [number, RotationEndReason][] = [];
    if (rotation.graceUntil !== null) candidates.push([rotation.graceUntil, "grace_ended"]);
    if (old?.expiresAt != null) candidates.push([old.expiresAt, "grace_ended"]);
    const idle = idleDeadline(next);
    if (idle !== null) candidates.push([idle, "idle"]);
    const due = candidates.filter(([at]) => at <= now).sort((a, b) => a[0] - b[0])[0];
    if (due) rotations.push(close(next, due[1], due[0], events));
  }
  return { ok: true, state: next, rotations, events };
}

/** The next instant at which `settle` would change something, or null. */
export function nextDeadline(state: KeyState): number | null {
  const rotation = state.rotation;
  if (!rotation) return null;
  const old = findVersion(state, rotation.fromVersion);
  let at: number | null = rotation.graceUntil;
  if (old?.expiresAt != null) at = minTime(old.expiresAt, at);
  const idle = idleDeadline(state);
  if (idle !== null) at = minTime(idle, at);
  return at;
}

/** Runs `settle`, then `apply` on the settled state, merging what both did. */
function afterSettling(
  state: KeyState,
  now: number,
  apply: (
    settled: KeyState,
    events: DomainEvent[],
    rotations: Rotation[],
  ) => TransitionError | void,
): Transition {
  const settled = settle(state, now);
  if (!settled.ok) return settled;
  const next = clone(settled.state);
  const events = [...settled.events];
  const rotations = [...settled.rotations];
  const error = apply(next, events, rotations);
  if (error) return error;
  return { ok: true, state: next, rotations: dedupe(rotations), events };
}

function dedupe(rotations: Rotation[]): Rotation[] {
  const byId = new Map<string, Rotation>();
  for (const r of rotations) byId.set(r.id, r);
  return [...byId.values()];
}

export interface StartRotationInput {
  rotationId: string;
  /** the new version, prepared by the caller: number, hash, hint, scopes, expiry */
  newVersion: KeyVersion;
  gracePeriodMs: number;
  graceStartsOnFirstUse: boolean;
  completeWhenIdleMs: number | null;
  now: number;
}

/**
 * Starts a rotation: the new version becomes `active` and the current one enters `grace`
 * until `now + grace` (never past its own expiry). Grace 0 is an emergency rotation: the old
 * version is revoked at once and the rotation is completed.
 */
export function startRotation(state: KeyState, input: StartRotationInput): Transition {
  const { now } = input;
  return afterSettling(state, now, (next, events, rotations) => {
    if (next.key.status === "revoked") return fail("conflict", "the key is revoked");
    if (next.rotation) {
      return fail(
        "rotation_in_progress",
        `rotation ${next.rotation.id} of this key is still in progress; complete, roll back or wait for it first`,
      );
    }
    const old = findVersion(next, next.key.currentVersion);
    if (!old) return fail("conflict", "the key has no current version");
    if (input.newVersion.version !== Math.max(...next.versions.map((v) => v.version)) + 1) {
      return fail("conflict", "the new version number is not the next one");
    }
    const emergency = input.gracePeriodMs === 0;
    const oldStillValid = verifiesAt(old, now);
    const rotation: Rotation = {
      id: input.rotationId,
      keyId: next.key.id,
      consumerId: next.key.consumerId,
      state: "in_progress",
      fromVersion: old.version,
      toVersion: input.newVersion.version,
      startedAt: now,
      gracePeriodMs: input.gracePeriodMs,
      graceUntil: null,
      graceStartsOnFirstUse: input.graceStartsOnFirstUse && !emergency,
      completeWhenIdleMs: input.completeWhenIdleMs,
      firstUsedAt: null,
      endedAt: null,
      endReason: null,
    };
    next.versions.push({
      ...input.newVersion,
      status: "active",
      graceUntil: null,
      retiredAt: null,
    });
    next.key.currentVersion = input.newVersion.version;
    next.key.updatedAt = now;
    events.push({
      action: "rotation.started",
      details: {
        rotationId: rotation.id,
        fromVersion: rotation.fromVersion,
        toVersion: rotation.toVersion,
        gracePeriodSeconds: Math.round(input.gracePeriodMs / 1000),
        graceStartsOnFirstUse: rotation.graceStartsOnFirstUse,
        emergency,
      },
    });
    if (emergency) {
      replaceVersion(next, { ...old, status: "revoked", retiredAt: now, graceUntil: now });
      rotations.push({
        ...rotation,
        graceUntil: now,
        state: "completed",
        endedAt: now,
        endReason: "emergency",
      });
      events.push({
        action: "rotation.completed",
        details: {
          rotationId: rotation.id,
          fromVersion: rotation.fromVersion,
          toVersion: rotation.toVersion,
          reason: "emergency",
        },
      });
      return;
    }
    if (!oldStillValid) {
      // nothing to overlap with: the old version had already expired
      const at = old.expiresAt ?? now;
      rotations.push({
        ...rotation,
        graceUntil: at,
        state: "completed",
        endedAt: now,
        endReason: "grace_ended",
      });
      events.push({
        action: "rotation.completed",
        details: {
          rotationId: rotation.id,
          fromVersion: rotation.fromVersion,
          toVersion: rotation.toVersion,
          reason: "grace_ended",
        },
      });
      return;
    }
    const graceUntil = rotation.graceStartsOnFirstUse
      ? null
      : minTime(now + input.gracePeriodMs, old.expiresAt);
    replaceVersion(next, { ...old, status: "grace", graceUntil });
    rotation.graceUntil = graceUntil;
    next.rotation = rotation;
    rotations.push(rotation);
  });
}

/**
 * Records that a version was used at `at`. For the new version of an open rotation this is
 * the first use: with `graceStartsOnFirstUse` the grace clock starts now.
 */
export function markUsed(state: KeyState, version: number, at: number, now: number): Transition {
  // a use is often reported late (usage is batched): judge it at the time it happened, then
  // bring the state up to `now`
  const usedAt = Math.min(at, now);
  const recorded = afterSettling(state, usedAt, (next, events, rotations) => {
    const used = findVersion(next, version);
    if (!used) return;
    if (used.lastUsedAt === null || used.lastUsedAt < usedAt) {
      replaceVersion(next, { ...used, lastUsedAt: usedAt });
    }
    const rotation = next.rotation;
    if (!rotation || rotation.toVersion !== version || rotation.firstUsedAt !== null) return;
    rotation.firstUsedAt = usedAt;
    if (rotation.graceStartsOnFirstUse && rotation.graceUntil === null) {
      const old = findVersion(next, rotation.fromVersion);
      const graceUntil = minTime(usedAt + rotation.gracePeriodMs, old?.expiresAt ?? null);
      rotation.graceUntil = graceUntil;
      if (old) replaceVersion(next, { ...old, graceUntil });
      events.push({
        action: "rotation.grace_started",
        details: { rotationId: rotation.id, graceUntil },
      });
    }
    rotations.push({ ...rotation });
  });
  if (!recorded.ok) return recorded;
  const settled = settle(recorded.state, now);
  if (!settled.ok) return settled;
  return {
    ok: true,
    state: settled.state,
    rotations: dedupe([...recorded.rotations, ...settled.rotations]),
    events: [...recorded.events, ...settled.events],
  };
}

function openRotation(state: KeyState, rotationId: string): TransitionError | null {
  if (state.rotation?.id === rotationId) return null;
  return fail("conflict", `rotation ${rotationId} is not in progress`);
}

/** Retires the old version now (`POST /rotations/:id/complete`). */
export function completeRotation(state: KeyState, rotationId: string, now: number): Transition {
  return afterSettling(state, now, (next, events, rotations) => {
    const error = openRotation(next, rotationId);
    if (error) return error;
    rotations.push(close(next, "completed", now, events));
  });
}

/** Revokes the new version and restores the old one to `active`. */
export function rollbackRotation(state: KeyState, rotationId: string, now: number): Transition {
  return afterSettling(state, now, (next, events, rotations) => {
    const error = openRotation(next, rotationId);
    if (error) return error;
    const rotation = next.rotation!;
    const old = findVersion(next, rotation.fromVersion);
    const fresh = findVersion(next, rotation.toVersion);
    if (!old || !fresh) return fail("conflict", "the rotation's versions are missing");
    replaceVersion(next, { ...fresh, status: "revoked", retiredAt: now });
    replaceVersion(next, { ...old, status: "active", graceUntil: null });
    next.key.currentVersion = old.version;
    next.key.updatedAt = now;
    const closed: Rotation = {
      ...rotation,
      state: "rolled_back",
      endedAt: now,
      endReason: "rolled_back",
    };
    next.rotation = null;
    rotations.push(closed);
    events.push({
      action: "rotation.rolled_back",
      details: { rotationId, restoredVersion: old.version, revokedVersion: fresh.version },
    });
  });
}

/**
 * Moves `graceUntil` later by `extraMs` (or lengthens a first-use grace not yet started).
 * The window may not outlive the old version's expiry nor exceed `maxGraceMs` in total.
 */
export function extendRotation(
  state: KeyState,
  rotationId: string,
  extraMs: number,
  maxGraceMs: number,
  now: number,
): Transition {
  return afterSettling(state, now, (next, events, rotations) => {
    const error = openRotation(next, rotationId);
    if (error) return error;
    if (extraMs <= 0) return fail("validation_failed", "gracePeriodSeconds must be positive");
    const rotation = next.rotation!;
    const old = findVersion(next, rotation.fromVersion)!;
    const gracePeriodMs = rotation.gracePeriodMs + extraMs;
    if (gracePeriodMs > maxGraceMs) {
      return fail(
        "validation_failed",
        `the grace window would last ${duration(gracePeriodMs / 1000)}, over MAX_GRACE_SECONDS (${duration(maxGraceMs / 1000)})`,
      );
    }
    rotation.gracePeriodMs = gracePeriodMs;
    if (rotation.graceUntil !== null) {
      const wanted = rotation.graceUntil + extraMs;
      if (old.expiresAt !== null && wanted > old.expiresAt) {
        return fail(
          "validation_failed",
          `the old version expires at ${new Date(old.expiresAt).toISOString()}; a grace window cannot outlive it`,
        );
      }
      rotation.graceUntil = wanted;
      replaceVersion(next, { ...old, graceUntil: wanted });
    }
    rotations.push({ ...rotation });
    events.push({
      action: "rotation.extended",
      details: {
        rotationId,
        graceUntil: rotation.graceUntil,
        gracePeriodSeconds: Math.round(gracePeriodMs / 1000),
      },
    });
  });
}

/** Revokes every version of the key and closes its open rotation. Idempotent. */
export function revokeKey(state: KeyState, reason: string | null, now: number): Transition {
  return afterSettling(state, now, (next, events, rotations) => {
    if (next.key.status === "revoked") return;
    if (next.rotation) {
      const closed: Rotation = {
        ...next.rotation,
        state: "completed",
        endedAt: now,
        endReason: "revoked",
      };
      next.rotation = null;
      rotations.push(closed);
      events.push({
        action: "rotation.completed",
        details: {
          rotationId: closed.id,
          fromVersion: closed.fromVersion,
          toVersion: closed.toVersion,
          reason: "revoked",
        },
      });
    }
    next.versions = next.versions.map((v) =>
      v.status === "revoked" ? v : { ...v, status: "revoked", retiredAt: v.retiredAt ?? now },
    );
    next.key.status = "revoked";
    next.key.revokedAt = now;
    next.key.revokeReason = reason;
    next.key.updatedAt = now;
    events.push({ action: "key.revoked", details: { reason } });
  });
}

/** The versions that verify at `now` (at most two). */
export function liveVersions(state: KeyState, now: number): KeyVersion[] {
  return state.versions.filter((v) => verifiesAt(v, now));
}

export { versionStatus };
