import type { Config } from "../config";
import type { Bindings } from "../env";
import { authenticate } from "./authenticate";
import type { KeyCheck } from "./key-check";
import type { WaitUntil } from "./usage-buffer";

export type { KeyCheck } from "./key-check";

const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString());

/**
 * Checks a key (or access token) for a service that asks instead of proxying: validity,
 * scopes, rate limit and quota (a valid answer is charged like a proxied request).
 */
export async function checkKey(
  env: Bindings,
  ctx: WaitUntil,
  config: Config,
  key: string,
  scopes: string[] = [],
): Promise<KeyCheck> {
  const auth = await authenticate(env, ctx, config, { credential: key, scopes, now: Date.now() });
  const { record } = auth;
  const identity = {
    keyId: record?.keyId ?? null,
    consumerId: record?.consumerId ?? null,
    version: record?.version ?? null,
    scopes: record?.scopes ?? [],
    expiresAt: iso(record?.expiresAt ?? null),
    graceUntil: iso(record?.graceUntil ?? null),
  };
  const headers = "headers" in auth ? auth.headers : {};
  const limited =
    headers.RateLimit !== undefined
      ? { ratelimit: { policy: headers["RateLimit-Policy"]!, state: headers.RateLimit } }
      : {};
  if (!auth.ok) return { valid: false, code: auth.code, ...identity, ...limited };
  return { valid: true, ...identity, ...limited };
}
