import { earliest } from "../domain/key-state";
import type { SecretRecord } from "../domain/secret-record";

/**
 * Request headers never forwarded, compared lower-cased with `_` read as `-` (CGI and WSGI
 * servers read `X_Keygate_Consumer` as `X-Keygate-Consumer`): credentials, hop-by-hop
 * headers, every `X-Forwarded-*` (Keygate sets its own) and other client-address headers,
 * and headers with which some frameworks let a client replace the URL or the method that a
 * rule was matched on.
 */
const STRIPPED = new Set([
  "authorization",
  "x-api-key",
  "connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "forwarded",
  // client addresses, as some server or framework reads them
  "x-real-ip",
  "true-client-ip",
  "client-ip",
  "x-client-ip",
  "x-cluster-client-ip",
  "x-forwarded",
  "forwarded-for",
  "x-forward-for",
  "x-originating-ip",
  "x-remote-ip",
  "x-remote-addr",
  "remote-addr",
  "fastly-client-ip",
  "x-proxyuser-ip",
  "x-envoy-external-address",
  "cf-connecting-ipv6",
  "cf-pseudo-ipv4",
  // the URL, host, scheme or method a request claims to have had before a proxy
  "x-original-url",
  "x-original-uri",
  "x-original-path",
  "x-original-host",
  "x-original-method",
  "x-rewrite-url",
  "x-override-url",
  "x-http-destinationurl",
  "x-envoy-original-path",
  "x-host",
  "x-scheme",
  "x-url-scheme",
  "front-end-https",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
]);

/** Whether a client-sent header must not reach the origin; `named`: listed in `Connection`. */
function isStripped(name: string, named: ReadonlySet<string> | null): boolean {
  let lower = name.toLowerCase();
  if (lower.includes("_")) lower = lower.replaceAll("_", "-");
  return (
    STRIPPED.has(lower) ||
    lower.startsWith("x-keygate-") ||
    lower.startsWith("x-forwarded-") ||
    lower.startsWith("keygate-") ||
    (named !== null && named.has(lower))
  );
}

/** The headers a client names in `Connection` (RFC 9110 §7.6.1), in `isStripped`'s spelling. */
function connectionOptions(headers: Headers): Set<string> | null {
  const connection = headers.get("connection");
  if (connection === null) return null;
  const named = new Set<string>();
  for (const option of connection.split(",")) {
    const name = option.trim().toLowerCase().replaceAll("_", "-");
    if (name !== "") named.add(name);
  }
  return named;
}

export interface Identity {
  record: SecretRecord;
}

/**
 * The request the origin receives (`incoming`: the request's URL, as the front door parsed
 * it): the canonical `path` the rules were matched on, the same
 * query and body, the method as matched (upper case); credential, hop-by-hop and client-sent
 * `X-Keygate-*` headers removed; the verified identity and Keygate's own `X-Forwarded-*`
 * headers added.
 */
export function upstreamRequest(
  request: Request,
  incoming: URL,
  originUrl: string,
  path: string,
  method: string,
  identity: Identity | null,
  requestId: string,
): Request {
  const target = new URL(originUrl);
  const base = target.pathname.endsWith("/") ? target.pathname.slice(0, -1) : target.pathname;
  target.pathname = base + path;
  target.search = incoming.search;
  const headers = new Headers();
  const named = connectionOptions(request.headers);
  for (const [name, value] of request.headers) {
    if (!isStripped(name, named)) headers.append(name, value);
  }
  const clientIp = request.headers.get("cf-connecting-ip");
  if (clientIp !== null) headers.set("X-Forwarded-For", clientIp);
  headers.set("X-Forwarded-Proto", incoming.protocol.slice(0, -1));
  headers.set("X-Forwarded-Host", incoming.host);
  headers.set("X-Keygate-Request-Id", requestId);
  // the method the rule was matched for: Keygate never reads a body, so an origin that honours
  // a `_method` form or JSON field (Rails, Laravel, Symfony) must refuse one that differs
  headers.set("X-Keygate-Method", method);
  if (identity) {
    const { record } = identity;
    headers.set("X-Keygate-Consumer", record.consumerId);
    headers.set("X-Keygate-Key", record.keyId);
    headers.set("X-Keygate-Key-Version", String(record.version));
    headers.set("X-Keygate-Scopes", record.scopes.join(" "));
  }
  const hasBody = method !== "GET" && method !== "HEAD";
  return new Request(target.toString(), {
    method,
    headers,
    body: hasBody ? request.body : null,
    redirect: "manual",
  });
}

/** The built-in origin used when `ORIGIN_URL` is empty: the verified identity as JSON. */
export function echoOrigin(path: string, method: string, identity: Identity | null): Response {
  const record = identity?.record;
  return Response.json({
    origin: "keygate-echo",
    method,
    path,
    authenticated: record !== undefined,
    consumerId: record?.consumerId ?? null,
    keyId: record?.keyId ?? null,
    keyVersion: record?.version ?? null,
    scopes: record?.scopes ?? [],
  });
}

/** How far ahead of its expiry a version's responses say `state=expiring`. */
const EXPIRING_WITHIN_MS = 7 * 86_400_000;

/**
 * The headers that tell a client its secret has a deadline ahead, or null when it has none
 * (the usual answer, decided by one comparison).
 * - In grace: `Deprecation: @<rotation start>` (RFC 9745), and `Sunset: <graceUntil>`
 *   (RFC 8594) once the grace clock runs (a first-use grace may not have started).
 * - In grace or within 7 days of `expiresAt`: `Keygate-Credential`, an RFC 9651 dictionary
 *   (`state=grace|expiring, version=N, sunset=@<unix seconds>`; `sunset` is when the secret
 *   stops verifying, absent when nothing ends it yet). Deprecation and Sunset describe a URI;
 *   this header describes the credential, and it is what client libraries read.
 */
export function lifecycleHeaders(
  record: SecretRecord,
  deprecation: { rotatedAt: number | null; graceUntil: number | null } | null,
  now: number,
): Record<string, string> | null {
  const { expiresAt } = record;
  if (deprecation === null && (expiresAt === null || expiresAt - now > EXPIRING_WITHIN_MS))
    return null;
  const headers: Record<string, string> = {};
  if (deprecation !== null) {
    headers["Deprecation"] = `@${Math.floor((deprecation.rotatedAt ?? now) / 1000)}`;
    if (deprecation.graceUntil !== null)
      headers["Sunset"] = new Date(deprecation.graceUntil).toUTCString();
  }
  const sunset = earliest(record.graceUntil, expiresAt);
  headers["Keygate-Credential"] =
    `state=${deprecation !== null ? "grace" : "expiring"}, version=${record.version}` +
    (sunset === null ? "" : `, sunset=@${Math.floor(sunset / 1000)}`);
  return headers;
}
