import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";

const DECIMAL = /^\d+$/;

/**
 * Why a request's body framing is ambiguous, or null when it is not: a Content-Length that is
 * not one decimal number (repeated fields arrive joined by ", "), Content-Length together with
 * Transfer-Encoding, or a Transfer-Encoding whose codings do not end with a single `chunked`.
 * Two hops that settle such a request differently can be made to read two requests from one
 * (request smuggling), so it is refused rather than guessed at.
 */
export function framingProblem(headers: Headers): string | null {
  const length = headers.get("content-length");
  const codings = headers.get("transfer-encoding");
  if (codings === null) {
    return length === null || DECIMAL.test(length) ? null : "Content-Length is not one length.";
  }
  if (length !== null) return "Content-Length and Transfer-Encoding are both present.";
  if (codings === "chunked") return null;
  const list = codings.toLowerCase().split(",");
  const chunked = list.findIndex((coding) => coding.trim() === "chunked");
  return chunked === list.length - 1
    ? null
    : "Transfer-Encoding must end with chunked, named once.";
}

/**
 * Refuses a request whose body framing is ambiguous with 400 `malformed_request`, before
 * anything else reads it or passes it on. Runs on every request: two header reads when
 * neither field is sent.
 */
export function requestFraming(): MiddlewareHandler<AppEnv> {
  return async function requestFraming(c, next) {
    const problem = framingProblem(c.req.raw.headers);
    if (problem !== null) {
      throw new KeygateError("malformed_request", {
        detail: problem,
        headers: { "Keygate-Error": "malformed_request" },
      });
    }
    return next();
  };
}
