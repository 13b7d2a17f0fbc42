import type { SecretRecord } from "../domain/secret-record";

/**
 * The isolate-level cache of KV records, by secret hash. A hot key costs no KV read; a
 * record is trusted for `ttlMs` at most, which bounds how long a change made elsewhere takes
 * to reach this isolate on non-strict routes. Changes made by this isolate drop its copies at
 * once (`forgetKey`, `forgetConsumer`).
 */
export const MAX_ENTRIES = 10_000;

interface Entry {
  record: SecretRecord;
  keyId: string;
  storedAt: number;
}

const entries = new Map<string, Entry>();

export function cachedRecord(hash: string, now: number, ttlMs: number): SecretRecord | undefined {
  const entry = entries.get(hash);
  if (entry === undefined) return undefined;
  if (now - entry.storedAt >= ttlMs) {
    entries.delete(hash);
    return undefined;
  }
  return entry.record;
}

export function cacheRecord(
  hash: string,
  keyId: string,
  record: SecretRecord,
  now: number,
  ttlMs: number,
): void {
  if (ttlMs <= 0) return;
  if (entries.size >= MAX_ENTRIES && !entries.has(hash)) {
    const oldest = entries.keys().next();
    if (!oldest.done) entries.delete(oldest.value);
  }
  entries.set(hash, { record, keyId, storedAt: now });
}

export function forgetKey(keyId: string): void {
  for (const [hash, entry] of entries) if (entry.keyId === keyId) entries.delete(hash);
}

export function forgetConsumer(consumerId: string): void {
  for (const [hash, entry] of entries)
    if (entry.record.consumerId === consumerId) entries.delete(hash);
}

export function forgetAll(): void {
  entries.clear();
}
