import type { Context } from "hono";

/** The closed list of problem codes Keygate answers with (OpenAPI `Problem.code`). */
export const ERROR_STATUS = {
  missing_credentials: 401,
  invalid_key: 401,
  key_expired: 401,
  insufficient_scope: 403,
  rate_limited: 429,
  quota_exceeded: 429,
  credential_in_url: 400,
  ambiguous_credentials: 400,
  invalid_path: 400,
  malformed_request: 400,
  validation_failed: 400,
  not_found: 404,
  method_not_allowed: 405,
  rotation_in_progress: 409,
  conflict: 409,
  payload_too_large: 413,
  origin_unavailable: 502,
  unavailable: 503,
  internal_error: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

const TITLES: Record<ErrorCode, string> = {
  missing_credentials: "Missing credentials",
  invalid_key: "Invalid API key",
  key_expired: "API key expired",
  insufficient_scope: "Insufficient scope",
  rate_limited: "Rate limit exceeded",
  quota_exceeded: "Monthly quota exceeded",
  credential_in_url: "Credential in URL",
  ambiguous_credentials: "Ambiguous credentials",
  invalid_path: "Invalid path",
  malformed_request: "Malformed request",
  validation_failed: "Validation failed",
  not_found: "Not found",
  method_not_allowed: "Method not allowed",
  rotation_in_progress: "Rotation in progress",
  conflict: "Conflict",
  payload_too_large: "Payload too large",
  origin_unavailable: "Origin unavailable",
  unavailable: "Service unavailable",
  internal_error: "Internal error",
};

/** Details every client sees for codes whose bodies must not vary (no oracle for attackers). */
const FIXED_DETAIL: Partial<Record<ErrorCode, string>> = {
  invalid_key: "The API key is not valid.",
  missing_credentials:
    "Send the API key in the Authorization header (Bearer) or in the X-API-Key header.",
};

export interface ProblemOptions {
  detail?: string;
  headers?: Record<string, string>;
  /** extra members of the problem document, such as `errors` for validation failures */
  extensions?: Record<string, unknown>;
}

/** A failure that the error handler renders as problem+json. */
export class KeygateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly options: ProblemOptions;
  constructor(code: ErrorCode, options: ProblemOptions = {}) {
    super(options.detail ?? FIXED_DETAIL[code] ?? TITLES[code]);
    this.name = "KeygateError";
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.options = options;
  }
}

function problemMembers(code: ErrorCode) {
  return {
    type: `https://keygate.dev/problems/${code.replaceAll("_", "-")}`,
    title: TITLES[code],
    status: ERROR_STATUS[code],
    code,
  };
}

const heads = new Map<ErrorCode, string>();

/** `{"type":…,"title":…,"status":…,"code":…,` for `code`: the start of its problem document. */
function problemHead(code: ErrorCode): string {
  let head = heads.get(code);
  if (head === undefined) {
    head = JSON.stringify(problemMembers(code)).slice(0, -1) + ",";
    heads.set(code, head);
  }
  return head;
}

/** Renders an RFC 9457 problem document with the request id and `Cache-Control: no-store`. */
export function problemResponse(
  code: ErrorCode,
  requestId: string,
  options: ProblemOptions = {},
): Response {
  const status = ERROR_STATUS[code];
  const detail = FIXED_DETAIL[code] ?? options.detail ?? TITLES[code];
  // the members every problem of this code shares are serialised once per isolate
  const body =
    options.extensions === undefined
      ? `${problemHead(code)}"detail":${JSON.stringify(detail)},"requestId":${JSON.stringify(requestId)}}`
      : JSON.stringify({ ...problemMembers(code), detail, requestId, ...options.extensions });
  // a plain record, not a Headers object: this runs for every refused request
  const headers: Record<string, string> = {
    "Content-Type": "application/problem+json",
    "Cache-Control": "no-store",
    "X-Request-Id": requestId,
    // tells a client (and its library) that Keygate refused this: the origin never saw it
    "Keygate-Error": code,
  };
  if (status === 401) {
    headers["WWW-Authenticate"] = 'Bearer realm="keygate", error="invalid_token"';
  }
  // callers spell header names as above, so a same-named extra replaces the default
  if (options.headers) Object.assign(headers, options.headers);
  return new Response(body, { status, headers });
}

/** The problem response for a `KeygateError` inside a Hono handler. */
export function problem(c: Context, error: KeygateError): Response {
  const requestId = (c.get("requestId") as string | undefined) ?? "unknown";
  return problemResponse(error.code, requestId, error.options);
}
