import { constantTimeEqual } from "../keys/hash";
import type { SecretRecord } from "./secret-record";

/** What the front door concludes about a presented secret. Pure. */
export type Verdict =
  | {
      ok: true;
      record: SecretRecord;
      /** set while the version is in grace: the client must switch */
      deprecation: { rotatedAt: number | null; graceUntil: number | null } | null;
    }
  | { ok: false; code: "invalid_key" | "key_expired" };

/** The verdicts that refuse, each one shared, frozen object (never changed). */
export const INVALID_KEY: Verdict = Object.freeze({ ok: false, code: "invalid_key" });
export const KEY_EXPIRED: Verdict = Object.freeze({ ok: false, code: "key_expired" });

/**
 * Judges a record read for `hash` at `now`: expiry and grace are checked by timestamp. A
 * revoked version's tombstone answers exactly as an unknown secret does.
 */
export function judge(record: SecretRecord | null, hash: string, now: number): Verdict {
  if (record === null || record.status === "revoked" || !constantTimeEqual(record.hash, hash)) {
    return INVALID_KEY;
  }
  return judgeRecord(record, now);
}

/** Judges a record known to be the right one (looked up by version, not by hash). */
export function judgeRecord(record: SecretRecord | null, now: number): Verdict {
  if (record === null || record.status === "revoked") return INVALID_KEY;
  if (record.status === "expired") return KEY_EXPIRED;
  if (record.expiresAt !== null && record.expiresAt <= now) return KEY_EXPIRED;
  if (record.status === "grace") {
    if (record.graceUntil !== null && record.graceUntil <= now) return KEY_EXPIRED;
    return {
      ok: true,
      record,
      deprecation: { rotatedAt: record.rotatedAt, graceUntil: record.graceUntil },
    };
  }
  return { ok: true, record, deprecation: null };
}
