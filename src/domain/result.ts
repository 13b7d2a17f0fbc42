import type { ErrorCode } from "../errors";

/** What a coordinator call answers: a value, or a domain refusal the route turns into a problem. */
export type Result<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; detail: string };

export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

export function refuse<T = never>(code: ErrorCode, detail: string): Result<T> {
  return { ok: false, code, detail };
}
