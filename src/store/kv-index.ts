import type { SecretRecord, Projection } from "../domain/secret-record";

/**
 * The edge index in Workers KV: one record per secret, keyed by the secret's SHA-256
 * (layout in docs/storage.md). Keying by hash, not by key id, is what lets a freshly rotated
 * secret verify at once everywhere: its KV key has never been read before, so no cached read
 * of an older record (KV caches reads, negative ones too, for 60 s or more) can hide it.
 */
export const SECRET_KEY_PREFIX = "secret:v1:";

export function secretKey(hash: string): string {
  return SECRET_KEY_PREFIX + hash;
}

/**
 * The KV metadata a tombstone is written with, so that maintenance's walk over KV's listing
 * tells a tombstone from a record brought back to life without reading either.
 */
export const TOMBSTONE_METADATA = { tombstone: true } as const;

/** Whether a listed KV key's metadata marks a tombstone. */
export function isTombstoneListing(metadata: unknown): boolean {
  return (metadata as { tombstone?: unknown } | null | undefined)?.tombstone === true;
}

/** Reads the record of a secret hash; null when KV holds none. Throws when KV fails. */
export async function readSecretRecord(
  kv: KVNamespace,
  hash: string,
): Promise<SecretRecord | null> {
  return kv.get<SecretRecord>(secretKey(hash), "json");
}

/** Writes (or removes) the projection of one version. */
export async function writeProjection(
  kv: KVNamespace,
  hash: string,
  projection: Projection,
): Promise<void> {
  if (projection.record === null) {
    await kv.delete(secretKey(hash));
    return;
  }
  const options: KVNamespacePutOptions = {};
  if (projection.expiration !== null) options.expiration = projection.expiration;
  if (projection.record.status === "revoked") options.metadata = TOMBSTONE_METADATA;
  try {
    await kv.put(secretKey(hash), JSON.stringify(projection.record), options);
  } catch (error) {
    // a revocation must cut the secret even when KV refuses its tombstone. Without a record
    // the secret reads as unknown, refused just the same: the tombstone only tells stale use
    // from spraying, and maintenance reports it missing while KV keeps refusing it
    if (projection.record.status !== "revoked") throw error;
    await kv.delete(secretKey(hash));
  }
}
