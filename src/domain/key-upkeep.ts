import type { KeyState } from "./key-state";
import { settle, type DomainEvent, type Transition } from "./rotation-machine";
import type { SecretRecord } from "./secret-record";

/**
 * What scheduled maintenance does to one key inside its coordinator: pure values, no I/O. The
 * coordinator (`KeyCoordinator.maintain`) runs `upkeep` as a transition under its lock, then
 * compares the key's KV records with their projection (`recordDrift`).
 */

/**
 * What time alone decides, written down: a rotation whose grace has ended is completed (the
 * alarm's `settle`), then every version past its `expiresAt` that is still stored `active` or
 * `grace` is marked `expired`, with a `key.expired` audit event. The edge already refuses such
 * a version by timestamp; this makes D1 say so too. A revoked key is left alone.
 */
export function upkeep(state: KeyState, now: number): Transition {
  const settled = settle(state, now);
  if (!settled.ok || settled.state.key.status === "revoked") return settled;
  const events = [...settled.events];
  const versions = settled.state.versions.map((version) => {
    if (version.status !== "active" && version.status !== "grace") return version;
    if (version.expiresAt === null || version.expiresAt > now) return version;
    events.push({
      action: "key.expired",
      details: { version: version.version, expiresAt: version.expiresAt },
    });
    return { ...version, status: "expired" as const };
  });
  return {
    ok: true,
    state: { ...settled.state, versions },
    rotations: settled.rotations,
    events,
  };
}

/** A version that `upkeep` marked expired, or a rotation it completed. */
export interface UpkeepChange {
  rotationsCompleted: { rotationId: string; keyId: string }[];
  versionsExpired: { keyId: string; version: number }[];
}

/** Reads what `upkeep` did from the events it produced. */
export function upkeepChanges(keyId: string, events: DomainEvent[]): UpkeepChange {
  const change: UpkeepChange = { rotationsCompleted: [], versionsExpired: [] };
  for (const event of events) {
    if (event.action === "rotation.completed" && typeof event.details.rotationId === "string") {
      change.rotationsCompleted.push({ rotationId: event.details.rotationId, keyId });
    } else if (event.action === "key.expired" && typeof event.details.version === "number") {
      change.versionsExpired.push({ keyId, version: event.details.version });
    }
  }
  return change;
}

/** How a KV record differs from what D1 projects for it. */
export type Drift = "missing" | "stale" | "retired";

/**
 * Compares the record KV holds for a version (`actual`) with its projection (`expected`, null
 * when KV should hold nothing): `missing` (write it), `stale` (rewrite it), `retired` (remove
 * it: revoked, or expired past its retention), or null when they match. Field order does not
 * matter.
 */
export function recordDrift(actual: unknown, expected: SecretRecord | null): Drift | null {
  if (expected === null) return actual === null ? null : "retired";
  if (actual === null) return "missing";
  return canonical(actual) === canonical(expected) ? null : "stale";
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) =>
            a < b ? -1 : a > b ? 1 : 0,
          ),
        )
      : v,
  );
}
