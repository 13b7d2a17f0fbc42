import type { Config } from "../config";
import type { SecretRecord } from "../domain/secret-record";
import type { Verdict } from "../domain/verdict";
import type { Bindings } from "../env";
import { KeygateError } from "../errors";
import { missingScope } from "../keys/scopes";
import { logError } from "../log";
import { looksLikeJwt } from "../tokens/access-token";
import { isLimited, limiter, UNLIMITED, type Admission } from "./limiter";
import { countUse, type WaitUntil } from "./usage-buffer";
import { verifyCredential } from "./verify";

/** What a caller presents to be authenticated, and what the route demands of it. */
export interface Presented {
  /** the key's secret or an access token, as extracted from the request */
  credential: string;
  /** scopes the route or caller demands; all of them must be held */
  scopes?: readonly string[] | undefined;
  /** ask the consumer's coordinator instead of trusting KV and the isolate cache */
  strict?: boolean | undefined;
  /** refuse access tokens: the token endpoint exchanges keys only */
  keysOnly?: boolean | undefined;
  /** the client's address: invalid credentials from it are counted (edge/ip-guard.ts) */
  clientIp?: string | null | undefined;
  /** one clock read serves verification, admission and usage */
  now: number;
}

type Valid = Extract<Verdict, { ok: true }>;

/** Who presented the credential, before any budget is spent. */
export type Identified =
  | Valid
  | { ok: false; code: "invalid_key" | "key_expired"; record: null }
  | { ok: false; code: "insufficient_scope"; record: SecretRecord; scope: string };

/** The pipeline's answer: admitted, or refused with the reason and what the client may see. */
export type Authentication =
  | (Valid & { headers: Record<string, string> })
  | Exclude<Identified, { ok: true }>
  | {
      ok: false;
      code: "rate_limited" | "quota_exceeded";
      record: SecretRecord;
      headers: Record<string, string>;
    };

/**
 * The one verification pipeline, for the front door, `POST /verify`, the RPC service and the
 * token endpoint: verify the credential, check scopes, then admit against the key's limits
 * and count the use. A storage failure throws `unavailable`, never lets a request through.
 */
export async function authenticate(
  env: Bindings,
  ctx: WaitUntil,
  config: Config,
  presented: Presented,
): Promise<Authentication> {
  const identified = await identify(env, config, presented);
  if (!identified.ok) return identified;
  const admission = await admit(env, ctx, identified.record, presented.now);
  if (!admission.ok) return { ...admission, record: identified.record };
  return { ...identified, headers: admission.headers };
}

/** Verification and scopes, spending nothing: the token endpoint charges only once it signed. */
export async function identify(
  env: Bindings,
  config: Config,
  presented: Presented,
): Promise<Identified> {
  const { credential, now } = presented;
  if (presented.keysOnly && looksLikeJwt(credential)) {
    return { ok: false, code: "invalid_key", record: null };
  }
  const verdict = await verifyCredential(env, config, credential, {
    strict: presented.strict === true,
    clientIp: presented.clientIp ?? null,
    now,
  });
  if (!verdict.ok) return { ok: false, code: verdict.code, record: null };
  const scope = missingScope(verdict.record.scopes, presented.scopes ?? []);
  if (scope !== null)
    return { ok: false, code: "insufficient_scope", record: verdict.record, scope };
  return verdict;
}

/**
 * Admission against the key's limits, and the use counted when admitted; a coordinator that
 * cannot be reached fails closed. An unlimited key needs no coordinator.
 */
export async function admit(
  env: Bindings,
  ctx: WaitUntil,
  record: SecretRecord,
  now: number,
): Promise<Admission> {
  let admission = UNLIMITED;
  if (isLimited(record)) {
    try {
      admission = await limiter.admit(env, ctx, record, now);
    } catch (error) {
      logError("lease_failed", { keyId: record.keyId, error });
      throw new KeygateError("unavailable", {
        detail: "Rate limiting is unavailable; try again.",
      });
    }
  }
  if (admission.ok) countUse(env, ctx, record, now);
  return admission;
}
