import type { ErrorCode } from "../errors";

/** Query parameters that look like a credential: refused, never proxied (CONTRACT §3). */
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

/** Whether the URL carries a credential-looking query parameter (names compared case-blind). */
export function hasCredentialInUrl(url: URL): boolean {
  for (const name of url.searchParams.keys()) {
    if (CREDENTIAL_PARAMS.has(name.toLowerCase())) return true;
  }
  return false;
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
