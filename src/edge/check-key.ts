import type { Config } from "../config";
import type { Bindings } from "../env";
import { missingScope } from "../keys/scopes";
import { admitOrFailClosed } from "./front-door";
import type { KeyCheck } from "./key-check";
import { countUse, type WaitUntil } from "./usage-buffer";
import { verifyCredential } from "./verify";

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
  const verdict = await verifyCredential(env, config, key);
  if (!verdict.ok) {
    return {
      valid: false,
      code: verdict.code,
      keyId: null,
      consumerId: null,
      version: null,
      scopes: [],
      expiresAt: null,
      graceUntil: null,
    };
  }
  const { record } = verdict;
  const identity = {
    keyId: record.keyId,
    consumerId: record.consumerId,
    version: record.version,
    scopes: record.scopes,
    expiresAt: iso(record.expiresAt),
    graceUntil: iso(record.graceUntil),
  };
  if (missingScope(record.scopes, scopes) !== null) {
    return { valid: false, code: "insufficient_scope", ...identity };
  }
  const now = Date.now();
  const admission = await admitOrFailClosed(env, ctx, record, now);
  const limited =
    admission.headers.RateLimit !== undefined
      ? {
          ratelimit: {
            policy: admission.headers["RateLimit-Policy"]!,
            state: admission.headers.RateLimit,
          },
        }
      : {};
  if (!admission.ok) return { valid: false, code: admission.code, ...identity, ...limited };
  countUse(env, ctx, record, now);
  return { valid: true, ...identity, ...limited };
}
