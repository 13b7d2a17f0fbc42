import type { Rotation } from "./api-types.js";

/**
 * Whether a rotation's old secret has gone quiet, as `keys rotate --wait-idle` decides it.
 * Pure: it takes what `GET /rotations/:id` answered and the local clock, so the rule is
 * testable apart from the polling.
 *
 * The rule mirrors the server's `completeWhenIdleSeconds`: the new secret has been used (its
 * holder has switched), and the old secret's request count has not grown for `idleMs`. Quiet
 * time is measured on the CLI's own clock between polls, never by comparing the server's
 * `lastUsedAt` with the local clock, so clock skew cannot complete a rotation early.
 */
export interface QuietWatch {
  oldRequests: number;
  /** Local time (ms) at which the old secret's count was last seen to change, or first seen. */
  quietSince: number;
}

export type IdleVerdict =
  | { kind: "ended"; state: "completed" | "rolled_back" }
  | { kind: "waiting_for_new"; oldRequests: number }
  | { kind: "old_in_use"; quietMs: number; newRequests: number }
  | { kind: "idle"; quietMs: number };

/** The watch after one more look at the rotation. */
export function observe(previous: QuietWatch | null, rotation: Rotation, now: number): QuietWatch {
  const oldRequests = rotation.usage?.old.requests ?? 0;
  if (previous === null || previous.oldRequests !== oldRequests) {
    return { oldRequests, quietSince: now };
  }
  return previous;
}

/** What to do now: stop (ended), keep waiting (and why), or complete (idle). */
export function idleVerdict(
  watch: QuietWatch,
  rotation: Rotation,
  now: number,
  idleMs: number,
): IdleVerdict {
  if (rotation.state !== "in_progress") return { kind: "ended", state: rotation.state };
  const newRequests = rotation.usage?.new.requests ?? 0;
  if (newRequests === 0) return { kind: "waiting_for_new", oldRequests: watch.oldRequests };
  const quietMs = now - watch.quietSince;
  if (quietMs >= idleMs) return { kind: "idle", quietMs };
  return { kind: "old_in_use", quietMs, newRequests };
}
