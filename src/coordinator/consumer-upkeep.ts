import type { KeyState } from "../domain/key-state";
import type { Limits } from "../domain/limits";
import { projectVersion } from "../domain/secret-record";
import { readSecretRecord, secretKey } from "../store/kv-index";
import { recordDrift, type Drift } from "../domain/key-upkeep";
import { secretKnown } from "../store/keys";

export { upkeep, upkeepChanges } from "../domain/key-upkeep";

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
