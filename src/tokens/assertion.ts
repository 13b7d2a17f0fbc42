import type { Config } from "../config";
import type { Bindings } from "../env";
import type { SecretRecord } from "../store/kv-index";
import { ASSERTION_TYPE } from "./access-token";
import { signerOf } from "./token-signer";

/**
 * `X-Keygate-Assertion`: a short-lived JWT, signed by the signer, that tells the origin who
 * Keygate verified (audience: the origin). An isolate reuses an assertion for one identity for
 * `REUSE_MS` (it lives `TTL_SECONDS`), so the signer is asked about once a minute per key and
 * isolate, never per request.
 */
export const TTL_SECONDS = 120;
const REUSE_MS = 60_000;
const MAX_ENTRIES = 10_000;

const cache = new Map<string, { token: string; until: number }>();

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
  const id = `${record.keyId}:${record.version}:${record.scopes.join(" ")}`;
  const hit = cache.get(id);
  if (hit && hit.until > now) return hit.token;
  const token = await signerOf(env).sign({
    claims: {
      iss: config.tokens.issuer,
      aud: assertionAudience(originUrl),
      sub: record.keyId,
      cid: record.consumerId,
      ver: record.version,
      scope: record.scopes.join(" "),
    },
    typ: ASSERTION_TYPE,
    ttlSeconds: TTL_SECONDS,
  });
  if (cache.size >= MAX_ENTRIES) cache.delete(cache.keys().next().value!);
  cache.set(id, { token, until: now + REUSE_MS });
  return token;
}
