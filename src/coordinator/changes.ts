import type { AuditContext, AuditEvent } from "../store/audit";
import type { Consumer } from "../store/consumers";
import { insertAudit, newAuditEvent } from "../store/audit";
import { upsertKey, upsertRotation, upsertVersion } from "../store/keys";
import { projectVersion } from "../domain/secret-record";
import { writeProjection } from "../store/kv-index";
import type { KeyState, Rotation } from "../domain/key-state";
import type { Limits } from "../domain/limits";
import {
  revokeKey,
  rollbackRotation,
  type DomainEvent,
  type Transition,
} from "../domain/rotation-machine";

/**
 * Turning a transition into storage writes: the D1 statements (rows that changed plus one
 * audit row per event, for one `batch()`), and the KV projection of the versions it touched.
 */

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function auditEventsFor(
  state: KeyState,
  events: DomainEvent[],
  audit: AuditContext,
  now: number,
): AuditEvent[] {
  return events.map((event) => {
    const rotationId = event.details.rotationId;
    return newAuditEvent(
      audit,
      now,
      event.action,
      {
        consumerId: state.key.consumerId,
        keyId: state.key.id,
        target: typeof rotationId === "string" ? `rotation:${rotationId}` : `key:${state.key.id}`,
      },
      event.details,
    );
  });
}

/** D1 statements that take `before` to `after`, with the audit rows, for one batch. */
export function statementsFor(
  db: D1Database,
  before: KeyState | null,
  after: KeyState,
  rotations: Rotation[],
  events: AuditEvent[],
): D1PreparedStatement[] {
  const statements: D1PreparedStatement[] = [];
  if (!before || !same(before.key, after.key)) statements.push(upsertKey(db, after.key));
  for (const version of after.versions) {
    const previous = before?.versions.find((v) => v.version === version.version);
    if (!previous || !same(previous, version)) {
      statements.push(upsertVersion(db, after.key.id, version));
    }
  }
  // a rotation that is closed must be written before one that opens (one open per key)
  const ordered = [...rotations].sort(
    (a, b) => Number(a.state === "in_progress") - Number(b.state === "in_progress"),
  );
  for (const rotation of ordered) statements.push(upsertRotation(db, rotation));
  for (const event of events) statements.push(insertAudit(db, event));
  return statements;
}

/** The versions whose KV record may differ between `before` and `after`. */
export function touchedVersions(
  before: KeyState | null,
  after: KeyState,
  rotations: Rotation[],
): number[] {
  const touched = new Set<number>();
  const keyChanged = !before || before.key.status !== after.key.status;
  for (const version of after.versions) {
    const previous = before?.versions.find((v) => v.version === version.version);
    if (keyChanged || !previous || !same(previous, version)) touched.add(version.version);
  }
  for (const rotation of rotations) {
    touched.add(rotation.fromVersion);
    touched.add(rotation.toVersion);
  }
  return [...touched];
}

/** KV refused the records of some versions; the others were written. */
export class ProjectionError extends Error {
  override name = "ProjectionError";

  constructor(readonly failures: { version: number; error: unknown }[]) {
    super(failures.map((f) => `version ${f.version}: ${String(f.error)}`).join("; "), {
      cause: failures[0]?.error,
    });
  }

  get versions(): number[] {
    return this.failures.map((f) => f.version);
  }
}

/**
 * Writes the KV projection of the given versions (all of them when `versions` is omitted).
 * Every write runs to its end, whatever the others do: a record KV refuses never keeps
 * another from landing (a revocation's delete beside it, say). Throws `ProjectionError`
 * naming the versions not written.
 */
export async function projectKey(
  kv: KVNamespace,
  state: KeyState,
  limits: Limits,
  now: number,
  versions?: number[],
): Promise<void> {
  const wanted = versions ? new Set(versions) : null;
  const targets = state.versions.filter((v) => wanted === null || wanted.has(v.version));
  const outcomes = await Promise.allSettled(
    targets.map((v) =>
      writeProjection(kv, v.secretHash, projectVersion(state.key, v, state.rotation, now, limits)),
    ),
  );
  const failures = outcomes.flatMap((outcome, i) =>
    outcome.status === "rejected" ? [{ version: targets[i]!.version, error: outcome.reason }] : [],
  );
  if (failures.length > 0) throw new ProjectionError(failures);
}

/** The limits a key's requests are counted against: its own rate limit, else its consumer's. */
export function limitsOf(state: KeyState, consumer: Consumer | null): Limits {
  return {
    rateLimit: state.key.rateLimit ?? consumer?.rateLimit ?? null,
    monthlyQuota: consumer?.monthlyQuota ?? null,
  };
}

/** Runs `work` up to `attempts` times, waiting a little longer before each new try. */
export async function withRetries<T>(attempts: number, work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 * 4 ** (attempt - 1)));
    }
  }
}

/**
 * The transition that withdraws a version D1 holds but whose secret never reached a client
 * (the response that would have carried it failed): its rotation is rolled back, or a key
 * whose only secret it is gets revoked. Null when nothing is to be done: the key has moved on
 * (the rotation ended, or the key was rotated since), and its next rotation retires it.
 */
export function withdrawUnissued(
  state: KeyState,
  unissued: { version: number; rotationId: string | null },
  now: number,
): Transition | null {
  if (unissued.rotationId !== null) {
    return state.rotation?.id === unissued.rotationId
      ? rollbackRotation(state, unissued.rotationId, now)
      : null;
  }
  if (state.key.status === "active" && state.key.currentVersion === unissued.version) {
    return revokeKey(state, "never issued: storage failed while the key was created", now);
  }
  return null;
}
