import type { KeyState } from "../domain/key-state";
import type { Limits } from "../domain/limits";
import { projectVersion } from "../domain/secret-record";
import { readSecretRecord, secretKey } from "../store/kv-index";
import { recordDrift, upkeep, upkeepChanges, type Drift } from "../domain/key-upkeep";
import type { Transition } from "../domain/rotation-machine";
import type { Bindings } from "../env";
import type { AuditContext } from "../store/audit";
import { limitsOf } from "./changes";
import type { KeyWriter } from "./key-writer";
import { unconfirmedSecrets } from "./unconfirmed-secrets";
import { secretKnown } from "../store/keys";

/**
 * The coordinator's side of scheduled maintenance: what a run asks one consumer's
 * `KeyCoordinator.maintain` to do, what it answers, and the KV reads it makes under the
 * coordinator's lock (so no change of the key interleaves with a fix).
 */

/** A KV record whose secret D1 does not hold, with what the record says of itself. */
export interface Orphan {
  hash: string;
  keyId: string | null;
  version: number | null;
}

/** A KV record a run fixed: written (`missing`, `stale`) or removed (`retired`, `orphan`). */
export interface RecordFix {
  consumerId: string | null;
  keyId: string | null;
  version: number | null;
  drift: Drift | "orphan";
  /** KV refused the write: the coordinator's alarm retries it (docs/storage.md) */
  queued: boolean;
}

export interface MaintenanceRequest {
  /** keys to settle and expire by time and whose KV records to make match D1 */
  keyIds: string[];
  /** KV records naming this consumer whose secret D1 did not hold when the run looked */
  orphans: Orphan[];
}

export interface MaintenanceOutcome {
  rotationsCompleted: { keyId: string; rotationId: string }[];
  versionsExpired: { keyId: string; version: number }[];
  recordsFixed: Omit<RecordFix, "consumerId">[];
  failures: { keyId: string | null; error: string }[];
}

export function emptyOutcome(): MaintenanceOutcome {
  return { rotationsCompleted: [], versionsExpired: [], recordsFixed: [], failures: [] };
}

/** The versions of a key whose KV record differs from its projection at `now`, and how. */
export async function driftedVersions(
  kv: KVNamespace,
  state: KeyState,
  limits: Limits,
  now: number,
): Promise<{ version: number; drift: Drift }[]> {
  const drifted: { version: number; drift: Drift }[] = [];
  for (const version of state.versions) {
    const expected = projectVersion(state.key, version, state.rotation, now, limits).record;
    const actual = await readSecretRecord(kv, version.secretHash);
    const drift = recordDrift(actual, expected);
    if (drift) drifted.push({ version: version.version, drift });
  }
  return drifted;
}

/**
 * Removes an orphan's KV record unless D1 now holds its secret (issued since the run looked:
 * its key's reconciliation owns it) or `pending` (an issue of it is unconfirmed: the
 * coordinator's alarm settles it). Answers whether it removed the record.
 */
export async function removeOrphan(
  db: D1Database,
  kv: KVNamespace,
  orphan: Orphan,
  pending: boolean,
): Promise<boolean> {
  if (pending || (await secretKnown(db, orphan.hash))) return false;
  await kv.delete(secretKey(orphan.hash));
  return true;
}

/**
 * Scheduled maintenance of one consumer, under its coordinator's lock (see
 * `KeyCoordinator.maintain`): each of `request.keyIds` is read again from D1, settled and
 * expired by time (`upkeep`, audited like any change), and its KV records are made to match
 * their projection; each orphan record is removed unless D1 holds its secret after all or an
 * issue of it waits unconfirmed.
 */
export async function maintainConsumer(
  writer: KeyWriter,
  sql: SqlStorage,
  env: Bindings,
  request: MaintenanceRequest,
  audit: AuditContext,
): Promise<MaintenanceOutcome> {
  const outcome = emptyOutcome();
  for (const keyId of request.keyIds) {
    try {
      writer.forget(keyId);
      const decided: { transition: Transition | null } = { transition: null };
      const result = await writer.apply(keyId, audit, (s, now) => {
        decided.transition = upkeep(s, now);
        return decided.transition;
      });
      if (!result.ok) continue;
      if (decided.transition?.ok) {
        const changes = upkeepChanges(keyId, decided.transition.events);
        outcome.rotationsCompleted.push(...changes.rotationsCompleted);
        outcome.versionsExpired.push(...changes.versionsExpired);
      }
      await writer.serial(() => fixRecords(writer, env.KEYS, keyId, outcome));
    } catch (error) {
      outcome.failures.push({ keyId, error: String(error) });
    }
  }
  if (request.orphans.length > 0) {
    await writer.serial(async () => {
      for (const orphan of request.orphans) {
        try {
          const pending =
            orphan.keyId !== null &&
            unconfirmedSecrets(sql, { keyId: orphan.keyId }).some(
              (u) => u.secretHash === orphan.hash,
            );
          if (await removeOrphan(env.DB, env.KEYS, orphan, pending)) {
            const { keyId, version } = orphan;
            outcome.recordsFixed.push({ keyId, version, drift: "orphan", queued: false });
          }
        } catch (error) {
          outcome.failures.push({ keyId: orphan.keyId, error: String(error) });
        }
      }
    });
  }
  return outcome;
}

/** Makes the key's KV records match their projection, noting each fix in `outcome`. */
async function fixRecords(
  writer: KeyWriter,
  kv: KVNamespace,
  keyId: string,
  outcome: MaintenanceOutcome,
): Promise<void> {
  const state = await writer.load(keyId);
  if (!state) return;
  const now = Date.now();
  const limits = limitsOf(state, await writer.consumer());
  const drifted = await driftedVersions(kv, state, limits, now);
  if (drifted.length === 0) return;
  const failure = await writer.project(
    state,
    now,
    drifted.map((d) => d.version),
  );
  for (const { version, drift } of drifted) {
    outcome.recordsFixed.push({ keyId, version, drift, queued: failure !== null });
  }
  // queued for the alarm, but still failing after its retries: an operator must hear
  if (failure !== null) outcome.failures.push({ keyId, error: failure });
}
