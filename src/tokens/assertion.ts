import type { Config } from "../config";
import type { Bindings } from "../env";
import { ASSERTION_TTL_SECONDS, ASSERTION_TYPE } from "../origin/assertion-format.js";
import type { SecretRecord } from "../domain/secret-record";
import { signerOf } from "./token-signer";

/**
 * `X-Keygate-Assertion`: a short-lived JWT, signed by the signer, that tells the origin who
 * Keygate verified (audience: the origin). An isolate reuses an assertion for one identity
 * and origin for `REUSE_MS` (it lives `ASSERTION_TTL_SECONDS`), so the signer is asked about
 * once a minute per key and isolate, never per request.
 */
const REUSE_MS = 60_000;
const MAX_ENTRIES = 10_000;

const cache = new Map<string, { token: string; kid: string; until: number }>();

/** The audience of assertions for an origin: its scheme, host and port. */
export function assertionAudience(originUrl: string): string {
  return new URL(originUrl).origin;
}

export async function assertionFor(
  env: Bindings,
  config: Config,
  originUrl: string,
  record: SecretRecord,
  now: number,
): Promise<string> {
  const audience = assertionAudience(originUrl);
  const scope = record.scopes.join(" ");
  const id = JSON.stringify([audience, record.keyId, record.version, record.consumerId, scope]);
  const hit = cache.get(id);
  if (hit && hit.until > now) return hit.token;
  const signed = await signerOf(env).sign({
    claims: {
      iss: config.tokens.issuer,
      aud: audience,
      sub: record.keyId,
      cid: record.consumerId,
      ver: record.version,
      scope,
    },
    typ: ASSERTION_TYPE,
    ttlSeconds: ASSERTION_TTL_SECONDS,
  });
  if (cache.size >= MAX_ENTRIES) cache.delete(cache.keys().next().value!);
  cache.set(id, { token: signed.token, kid: signed.kid, until: now + REUSE_MS });
  return signed.token;
}

/**
 * Drops this isolate's assertions signed by the given keys (an emergency rotation dropped
 * them), or every assertion when no kid is given.
 */
export function forgetAssertions(kids?: readonly string[]): void {
  if (kids === undefined) return cache.clear();
  for (const [id, entry] of cache) if (kids.includes(entry.kid)) cache.delete(id);
}
