import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";
import { hashSecret } from "../keys/hash";
import { actorOf, isVerifyRequest } from "./auth";
import { logError } from "../log";
import {
  claimIdempotency,
  finishIdempotency,
  readIdempotency,
  releaseIdempotency,
  PENDING_TIMEOUT_MS,
  type IdempotencyRecord,
} from "../store/idempotency";

/**
 * `Idempotency-Key` on every management POST that changes something. The first request with a
 * key runs and its successful response is kept for 24 hours, with the plaintext secret
 * removed; a replay with the same method, path and body gets that response and
 * `Idempotent-Replayed: true`, and creates nothing. The same key with another request, or
 * while the first is still running, is a 409 `conflict`. A failed request keeps nothing, so it
 * can be retried with the same key. A change whose response could not be kept is marked
 * applied: a retry answers 409 `conflict` instead of making the change twice.
 * `POST /verify` is a read: it is answered afresh every time, so a replay never serves a
 * verdict that a revocation has since made wrong.
 */
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;
/** Response fields holding a secret shown once: never kept for a replay. */
const SECRET_FIELDS = ["key", "webhookSecret"];

function unavailable(error: unknown): KeygateError {
  logError("idempotency_store_failed", { error });
  return new KeygateError("unavailable", {
    detail: "The idempotency store is unavailable; try again.",
  });
}

/** Runs one write of the record; a failure (thrown or rejected) is logged, never raised. */
async function attempt(event: string, write: () => Promise<unknown>): Promise<boolean> {
  try {
    await write();
    return true;
  } catch (error) {
    logError(event, { error });
    return false;
  }
}

export function idempotency(): MiddlewareHandler<AppEnv> {
  return async function idempotency(c, next) {
    const key = c.req.header("idempotency-key");
    if (c.req.method !== "POST" || key === undefined) return next();
    if (isVerifyRequest(c.req.method, c.req.path)) return next();
    if (!KEY_PATTERN.test(key)) {
      throw new KeygateError("validation_failed", {
        detail: "Idempotency-Key must be 1 to 255 visible ASCII characters.",
      });
    }
    const db = c.env.DB;
    const scope = actorOf(c.get("principal"));
    const body = await c.req.text();
    const fingerprint = hashSecret(`${c.req.method} ${c.req.path}\n${body}`);
    const now = Date.now();
    let existing: IdempotencyRecord | null;
    try {
      existing = await readIdempotency(db, scope, key, now);
    } catch (error) {
      throw unavailable(error);
    }
    if (existing) {
      if (existing.fingerprint !== fingerprint) {
        throw new KeygateError("conflict", {
          detail: "This Idempotency-Key was used with a different request; use a new key.",
        });
      }
      if (existing.state === "done" && existing.body === null) {
        throw new KeygateError("conflict", {
          detail:
            "The request with this Idempotency-Key was applied, but its response could not be kept; look the result up rather than retrying it.",
        });
      }
      if (existing.state === "done") {
        return new Response(existing.body, {
          status: existing.status ?? 200,
          headers: {
            "Content-Type": "application/json",
            "Idempotent-Replayed": "true",
            "X-Request-Id": c.get("requestId"),
          },
        });
      }
      if (existing.created_at > now - PENDING_TIMEOUT_MS) {
        throw new KeygateError("conflict", {
          detail: "A request with this Idempotency-Key is still in progress; retry shortly.",
        });
      }
    }
    try {
      if (!(await claimIdempotency(db, scope, key, fingerprint, now))) {
        throw new KeygateError("conflict", {
          detail: "A request with this Idempotency-Key is still in progress; retry shortly.",
        });
      }
    } catch (error) {
      if (error instanceof KeygateError) throw error;
      throw unavailable(error);
    }
    let completed = false;
    try {
      await next();
      const response = c.res;
      if (response.status >= 200 && response.status < 300) {
        const replay = await response.clone().text();
        let stored = replay;
        try {
          const parsed = JSON.parse(replay) as Record<string, unknown>;
          for (const field of SECRET_FIELDS) delete parsed[field];
          stored = JSON.stringify(parsed);
        } catch {
          // not JSON: stored as it is
        }
        completed = true;
        // the change is made: failing to keep the replay must not turn it into an error, and
        // must not let a retry make it again once the pending record times out
        const save = () => finishIdempotency(db, scope, key, response.status, stored);
        const markApplied = () => finishIdempotency(db, scope, key, response.status, null);
        const kept =
          (await attempt("idempotency_save_failed", save)) ||
          (await attempt("idempotency_save_failed", save)) ||
          (await attempt("idempotency_mark_failed", markApplied));
        if (!kept) {
          // still pending: retries answer 409 until it times out (PENDING_TIMEOUT_MS)
          logError("idempotency_record_left_pending", { scope });
        }
      }
    } finally {
      if (!completed) {
        await attempt("idempotency_release_failed", () => releaseIdempotency(db, scope, key));
      }
    }
  };
}
