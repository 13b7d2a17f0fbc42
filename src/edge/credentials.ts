import type { ErrorCode } from "../errors";

/** Query parameters that look like a credential by name: refused, never proxied. */
export const CREDENTIAL_PARAMS = new Set(["api_key", "apikey", "key", "access_token", "token"]);
/** The longest credential read at all; anything longer is refused before hashing. */
export const MAX_CREDENTIAL_LENGTH = 4096;

export type Extraction =
  | { kind: "none" }
  | { kind: "credential"; value: string }
  | {
      kind: "refused";
      code: Extract<ErrorCode, "credential_in_url" | "ambiguous_credentials" | "invalid_key">;
    };

/**
 * A Keygate secret's shape (any prefix, any case), wherever it sits: something glued to its
 * end (`…Z`, `.json`) does not hide it.
 */
const SECRET_SHAPE = /[A-Za-z0-9]_[0-9A-Za-z]{16}_[0-9A-Za-z]{38}/;

/**
 * Anything in a query string shaped like a Keygate secret (any prefix) or a compact JWS,
 * wherever it sits in a name or value (`?auth=Bearer%20kg_…`, `?x=eyJ….eyJ….sig`). A JWS is
 * looked for only where a base64url run starts, so a long run is scanned once (linear time).
 */
const CREDENTIAL_SHAPE = new RegExp(
  `${SECRET_SHAPE.source}|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]+\\.`,
);

/**
 * Whether a canonical path holds something shaped like a Keygate secret: it would reach the
 * origin and its logs. (A JWS is not looked for in a path: some APIs carry signed links there.)
 */
export function pathHoldsSecret(path: string): boolean {
  return path.length > 56 && path.includes("_") && SECRET_SHAPE.test(path);
}

/**
 * A query parameter's name as frameworks read it: lower case, an array suffix dropped
 * (`api_key[]`, `api_key[x]`), and `.`, a space or an unclosed `[` read as `_`, as PHP does
 * (`?api.key=`, `?[method=`).
 */
function bareName(name: string): string {
  let bare = name.toLowerCase().trim();
  const open = bare.indexOf("[");
  if (open >= 0 && bare.indexOf("]", open) > open) bare = bare.slice(0, open);
  return bare.replace(/[. []/g, "_");
}

/**
 * What is wrong with a query string, if anything: a credential in it by name (case-blind,
 * `api_key[]` too) or by shape is `credential_in_url`; a `_method` parameter, which some
 * frameworks let override the method a rule matched, is `invalid_path`.
 */
export function queryProblem(url: URL): "credential_in_url" | "invalid_path" | null {
  if (url.search.length <= 1) return null;
  let problem: "credential_in_url" | "invalid_path" | null = null;
  for (const [name, value] of url.searchParams) {
    const bare = bareName(name);
    if (
      CREDENTIAL_PARAMS.has(bare) ||
      CREDENTIAL_SHAPE.test(name) ||
      CREDENTIAL_SHAPE.test(value)
    ) {
      return "credential_in_url";
    }
    if (bare === "_method") problem = "invalid_path";
  }
  return problem;
}

function bearerToken(header: string): string | null {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match ? match[1]! : null;
}

/**
 * The credential of a request: `Authorization: Bearer <secret>` or `X-API-Key: <secret>`.
 * Both carrying different values is ambiguous; an `Authorization` header of another scheme
 * or a value over `MAX_CREDENTIAL_LENGTH` is an invalid credential. Pure: nothing is read.
 */
export function extractCredential(headers: Headers): Extraction {
  const authorization = headers.get("authorization");
  const apiKeyHeader = headers.get("x-api-key");
  const fromAuthorization =
    authorization === null || authorization.trim() === "" ? null : authorization;
  const fromApiKey =
    apiKeyHeader === null || apiKeyHeader.trim() === "" ? null : apiKeyHeader.trim();
  if (fromAuthorization === null && fromApiKey === null) return { kind: "none" };
  if (
    (fromAuthorization?.length ?? 0) > MAX_CREDENTIAL_LENGTH + 16 ||
    (fromApiKey?.length ?? 0) > MAX_CREDENTIAL_LENGTH
  ) {
    return { kind: "refused", code: "invalid_key" };
  }
  const bearer = fromAuthorization === null ? null : bearerToken(fromAuthorization);
  if (fromAuthorization !== null && fromApiKey !== null && bearer !== fromApiKey) {
    return { kind: "refused", code: "ambiguous_credentials" };
  }
  if (fromAuthorization !== null && bearer === null)
    return { kind: "refused", code: "invalid_key" };
  return { kind: "credential", value: (bearer ?? fromApiKey)! };
}
