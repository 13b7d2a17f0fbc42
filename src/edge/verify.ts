import type { Config } from "../config";
import type { Bindings } from "../env";
import { KeygateError } from "../errors";
import { parseSecret } from "../keys/key-format";
import { hashSecret } from "../keys/hash";
import { intersectScopes } from "../keys/scopes";
import { readSecretRecord } from "../store/kv-index";
import { earliest } from "../domain/key-state";
import { tombstoneRecord, type SecretRecord } from "../domain/secret-record";
import { blockedUntil, isKnownSecret, recordFailure, rememberKey } from "./ip-guard";
import { cacheRecord, cachedRecord } from "./record-cache";
import { coordinatorOf } from "../coordinator/client";
import { INVALID_KEY, judge, judgeRecord, type Verdict } from "../domain/verdict";
import { looksLikeJwt, verifyAccessToken } from "../tokens/access-token";
import { logError } from "../log";

export interface VerifyOptions {
  /** ask the consumer's coordinator instead of trusting KV and the isolate cache */
  strict?: boolean;
  now?: number;
  /** the client's address (`CF-Connecting-IP`): invalid credentials from it are counted */
  clientIp?: string | null;
}

/**
 * Verifies a presented secret: shape and checksum first (no I/O), then the isolate cache,
 * then one KV read; with `strict`, the consumer's coordinator has the last word. A storage
 * failure throws `unavailable`: never let a request through on a failed read.
 */
export async function verifySecret(
  env: Bindings,
  config: Config,
  presented: string,
  options: VerifyOptions = {},
): Promise<Verdict> {
  const now = options.now ?? Date.now();
  const ip = options.clientIp ?? null;
  const parsed = parseSecret(presented);
  if (parsed === null) {
    if (ip) recordFailure(ip, null, now);
    return INVALID_KEY;
  }
  const hash = hashSecret(parsed.secret);
  const cached = cachedRecord(hash, now, config.cacheTtlMs);
  // a cached record is known to storage: never counted against the address, whatever it says
  if (cached !== undefined && !options.strict) return judge(cached, hash, now);
  return verifyWithStorage(env, config, parsed.keyId, hash, cached, now, ip, options.strict);
}

async function verifyWithStorage(
  env: Bindings,
  config: Config,
  keyId: string,
  hash: string,
  cached: SecretRecord | null | undefined,
  now: number,
  ip: string | null,
  strict: boolean | undefined,
): Promise<Verdict> {
  let record = cached;
  if (record === undefined) {
    const until = ip ? blockedUntil(ip, keyId, hash, now) : null;
    if (until !== null) {
      throw new KeygateError("rate_limited", {
        detail: "Too many invalid credentials from this address; try again later.",
        headers: { "Retry-After": String(Math.ceil((until - now) / 1000)) },
      });
    }
    try {
      record = await readSecretRecord(env.KEYS, hash);
    } catch (error) {
      logError("kv_read_failed", { keyId, error });
      throw new KeygateError("unavailable", { detail: "The key index is unavailable; try again." });
    }
    if (record !== null && record.keyId !== keyId) record = null;
    // only hits are cached: a miss may be a secret whose projection has not landed yet, and
    // caching it would hide a freshly issued secret once KV holds it. A hit, a revoked
    // version's tombstone included, is stale use at worst: refused from memory from now on
    if (record !== null) {
      cacheRecord(hash, keyId, record, now, config.cacheTtlMs);
      rememberKey(keyId, now, hash);
    } else if (isKnownSecret(hash, now)) {
      // matched here once, and its record has gone since (a tombstone lost or aged out):
      // stale use, refused from memory like a tombstone, so it costs one read per cache life
      cacheRecord(hash, keyId, tombstoneRecord(keyId, "", 0), now, config.cacheTtlMs);
    } else if (ip) {
      // unknown to storage: what a client spraying made-up secrets presents
      recordFailure(ip, keyId, now);
    }
  }
  if (strict && record !== null) {
    try {
      record = await coordinatorOf(env, record.consumerId).checkSecret(keyId, hash);
    } catch (error) {
      logError("coordinator_failed", { keyId, error });
      throw new KeygateError("unavailable", {
        detail: "The key coordinator is unavailable; try again.",
      });
    }
  }
  return judge(record, hash, now);
}

/**
 * Verifies whatever credential was presented: a Keygate access token (JWT, no storage read;
 * on strict routes the key version behind it is checked with its coordinator, so revoking
 * the key stops its tokens at once there) or a secret.
 */
export async function verifyCredential(
  env: Bindings,
  config: Config,
  presented: string,
  options: VerifyOptions = {},
): Promise<Verdict> {
  if (!looksLikeJwt(presented)) return verifySecret(env, config, presented, options);
  const now = options.now ?? Date.now();
  const verdict = verifyAccessToken(env, config, presented, now);
  if (!options.strict) return verdict;
  return checkTokenWithCoordinator(env, verdict, now);
}

/** A strict route's check of a token: the key version behind it, asked of its coordinator. */
async function checkTokenWithCoordinator(
  env: Bindings,
  pending: Promise<Verdict>,
  now: number,
): Promise<Verdict> {
  const verdict = await pending;
  if (!verdict.ok) return verdict;
  const { record } = verdict;
  let current: SecretRecord | null;
  try {
    current = await coordinatorOf(env, record.consumerId).checkVersion(
      record.keyId,
      record.version,
    );
  } catch (error) {
    logError("coordinator_failed", { keyId: record.keyId, error });
    throw new KeygateError("unavailable", {
      detail: "The key coordinator is unavailable; try again.",
    });
  }
  const fresh = judgeRecord(current, now);
  if (!fresh.ok) return fresh;
  // the token's own claims still bound it (scopes it was narrowed to, its expiry), but never
  // beyond what the key holds now: scopes narrowed since it was issued apply at once, and so
  // do the key's current limits
  return {
    ok: true,
    record: {
      ...fresh.record,
      scopes: intersectScopes(record.scopes, fresh.record.scopes),
      expiresAt: earliest(record.expiresAt, fresh.record.expiresAt),
    },
    deprecation: fresh.deprecation,
  };
}
