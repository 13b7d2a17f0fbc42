import type { Context } from "hono";
import type { Result } from "../domain/result";
import { rememberKey } from "../edge/ip-guard";
import { forgetKey } from "../edge/record-cache";
import { coordinatorOf } from "../coordinator/client";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";
import type { AuditContext } from "../store/audit";
import { actorOf } from "./auth";
import { logError } from "../log";

/** The audit context of a management request: its principal and request id. */
export function auditOf(c: Context<AppEnv>): AuditContext {
  return { actor: actorOf(c.get("principal")), requestId: c.get("requestId") };
}

export function coordinator(c: Context<AppEnv>, consumerId: string) {
  return coordinatorOf(c.env, consumerId);
}

/**
 * Runs a coordinator call: a refusal becomes its problem, a thrown error (the Durable Object
 * or D1 failed) becomes 503 `unavailable`, and this isolate drops its cached copies of the
 * key so the change shows here at once. The key is one this isolate has now seen: a client
 * using it is not cut off by others spraying from its address (edge/ip-guard.ts), from its
 * first request on.
 */
export async function change<T>(
  call: () => Promise<Result<T>>,
  affectedKeyId?: string | ((value: T) => string | undefined),
): Promise<T> {
  let result: Result<T>;
  try {
    result = await call();
  } catch (error) {
    if (error instanceof KeygateError) throw error;
    logError("coordinator_call_failed", { error });
    throw new KeygateError("unavailable", {
      detail: "Storage is unavailable; retry with the same Idempotency-Key.",
    });
  }
  if (!result.ok) throw new KeygateError(result.code, { detail: result.detail });
  const keyId = typeof affectedKeyId === "function" ? affectedKeyId(result.value) : affectedKeyId;
  if (keyId) {
    forgetKey(keyId);
    rememberKey(keyId, Date.now());
  }
  return result.value;
}

/** Runs a D1 read; a failure becomes 503 `unavailable`. */
export async function read<T>(query: () => Promise<T>): Promise<T> {
  try {
    return await query();
  } catch (error) {
    logError("d1_read_failed", { error });
    throw new KeygateError("unavailable", { detail: "Storage is unavailable; try again." });
  }
}

/** A resource that must exist, else 404 `not_found`. */
export function found<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) {
    throw new KeygateError("not_found", { detail: `No ${what} with that id.` });
  }
  return value;
}

export function ms(iso: string | null | undefined): number | null {
  return iso === null || iso === undefined ? null : Date.parse(iso);
}
