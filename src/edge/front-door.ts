import type { Context } from "hono";
import type { AppEnv } from "../env";
import { KeygateError, problemResponse, type ErrorCode, type ProblemOptions } from "../errors";
import { canonicalPath, loosePath } from "../rules/canonical-path";
import { authenticate, type Authentication } from "./authenticate";
import { extractCredential, pathHoldsSecret, queryProblem } from "./credentials";
import { echoOrigin, lifecycleHeaders, upstreamRequest, type Identity } from "./proxy";
import { matchRule } from "../rules/route-rules";
import { ASSERTION_HEADER } from "../origin/assertion-format.js";
import { assertionFor } from "../tokens/assertion";
import { logError } from "../log";

/** The detail of a 400 `credential_in_url`: where it was found, and what to do. */
const credentialInUrl = (where: string) =>
  `Credentials are never accepted in the ${where}; send them in the Authorization or X-API-Key header, and rotate a key that was sent in a URL.`;

/** The detail and headers of a refusal the pipeline decided. */
function refusal(auth: Exclude<Authentication, { ok: true }>): ProblemOptions | undefined {
  switch (auth.code) {
    case "insufficient_scope":
      return {
        detail: `This route needs the scope ${auth.scope}.`,
        headers: {
          "WWW-Authenticate": `Bearer realm="keygate", error="insufficient_scope", scope="${auth.scope}"`,
        },
      };
    case "quota_exceeded":
      return { detail: "This consumer's monthly quota is used up.", headers: auth.headers };
    case "rate_limited":
      return {
        detail: "This key's rate limit is used up; retry after the time in Retry-After.",
        headers: auth.headers,
      };
    default:
      return undefined;
  }
}

/**
 * Whether a canonical path is another spelling of Keygate's own namespace (`/_KEYGATE/v1`,
 * `/%5Fkeygate/…`, `/.Well-Known/…`) that the router, matching the raw path, did not send to
 * Keygate: never proxied, so no origin ever sees Keygate's paths.
 */
function isReservedSpelling(path: string): boolean {
  const second = path.charCodeAt(1);
  if (second !== 0x5f && second !== 0x2e) return false;
  const lower = loosePath(path);
  return (
    lower === "/_keygate" ||
    lower.startsWith("/_keygate/") ||
    lower === "/.well-known" ||
    lower.startsWith("/.well-known/")
  );
}

/**
 * The front door: every path outside `/_keygate/` and `/.well-known/`. Refuses credentials in
 * the URL and path spellings it cannot decide on, applies `ROUTE_RULES` to the canonical path,
 * verifies the key, checks scopes, and proxies that same path to the origin with the identity
 * headers (or answers from the echo origin).
 */
export async function frontDoor(c: Context<AppEnv>): Promise<Response> {
  const config = c.get("config");
  const requestId = c.get("requestId");
  // refusals are answered, not thrown: an Error's stack trace is the priciest part of a 401
  const refuse = (code: ErrorCode, options?: ProblemOptions) =>
    problemResponse(code, requestId, options);
  const request = c.req.raw;
  const url = new URL(request.url);
  const inQuery = queryProblem(url);
  if (inQuery === "credential_in_url") {
    return refuse("credential_in_url", { detail: credentialInUrl("query string") });
  }
  const path = canonicalPath(url.pathname);
  if (path === null || inQuery === "invalid_path") {
    return refuse("invalid_path", {
      detail:
        path === null
          ? "The path holds an encoded slash or backslash, a NUL, a ';' or a malformed escape."
          : "A _method query parameter is not accepted: send the request with its own method.",
    });
  }
  if (pathHoldsSecret(path)) {
    return refuse("credential_in_url", { detail: credentialInUrl("path") });
  }
  if (isReservedSpelling(path)) {
    return refuse("not_found", { detail: "No such Keygate endpoint." });
  }
  const method = request.method.toUpperCase();
  const rule = matchRule(config.routes, method, path);
  if (rule?.deny) return refuse("not_found", { detail: "No such resource." });
  let identity: Identity | null = null;
  let extraHeaders: Record<string, string> = {};
  if (!rule?.public) {
    const credential = extractCredential(request.headers);
    if (credential.kind === "none") return refuse("missing_credentials");
    if (credential.kind === "refused") return refuse(credential.code);
    const now = Date.now();
    const auth = await authenticate(c.env, c.executionCtx, config, {
      credential: credential.value,
      scopes: rule?.scopes,
      strict: rule?.strict,
      clientIp: request.headers.get("cf-connecting-ip"),
      now,
    });
    if (!auth.ok) return refuse(auth.code, refusal(auth));
    identity = { record: auth.record };
    const lifecycle = lifecycleHeaders(auth.record, auth.deprecation, now);
    // never changed in place: an unlimited key's admission headers are shared
    extraHeaders = lifecycle === null ? auth.headers : { ...auth.headers, ...lifecycle };
  }
  let response: Response;
  if (config.originUrl === null) {
    response = echoOrigin(path, method, identity);
  } else {
    let assertion: string | null = null;
    if (identity) {
      try {
        assertion = await assertionFor(
          c.env,
          config,
          config.originUrl,
          identity.record,
          Date.now(),
        );
      } catch (error) {
        logError("assertion_failed", { requestId, error });
        throw new KeygateError("unavailable", {
          detail: "Identity assertions are unavailable; try again.",
        });
      }
    }
    const upstream = upstreamRequest(
      request,
      url,
      config.originUrl,
      path,
      method,
      identity,
      requestId,
    );
    if (assertion) upstream.headers.set(ASSERTION_HEADER, assertion);
    try {
      response = await fetch(upstream);
    } catch (error) {
      logError("origin_failed", { requestId, error });
      throw new KeygateError("origin_unavailable");
    }
  }
  // the echo origin's response is ours to change; an origin's arrives with immutable headers
  const out = config.originUrl === null ? response : new Response(response.body, response);
  // only Keygate's own refusals say Keygate-Error: a client retries those with another secret
  // because the origin never saw them, so an origin's answer must never claim to be one
  // nor may it speak for the credential: only Keygate knows its state
  if (config.originUrl !== null) {
    out.headers.delete("Keygate-Error");
    out.headers.delete("Keygate-Credential");
  }
  for (const name in extraHeaders) out.headers.set(name, extraHeaders[name]!);
  out.headers.set("X-Request-Id", requestId);
  return out;
}
