import type { SecretRecord } from "../store/kv-index";

/** Headers never forwarded to the origin: credentials and hop-by-hop headers. */
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
]);

export interface Identity {
  record: SecretRecord;
}

/**
 * The request the origin receives: same method, path, query and body; credential headers and
 * every client-sent `X-Keygate-*` header removed; the verified identity added.
 */
export function upstreamRequest(
  request: Request,
  originUrl: string,
  identity: Identity | null,
  requestId: string,
): Request {
  const incoming = new URL(request.url);
  const target = new URL(originUrl);
  const base = target.pathname.endsWith("/") ? target.pathname.slice(0, -1) : target.pathname;
  target.pathname = base + incoming.pathname;
  target.search = incoming.search;
  const headers = new Headers();
  for (const [name, value] of request.headers) {
    const lower = name.toLowerCase();
    if (STRIPPED.has(lower) || lower.startsWith("x-keygate-")) continue;
    headers.append(name, value);
  }
  headers.set("X-Keygate-Request-Id", requestId);
  if (identity) {
    const { record } = identity;
    headers.set("X-Keygate-Consumer", record.consumerId);
    headers.set("X-Keygate-Key", record.keyId);
    headers.set("X-Keygate-Key-Version", String(record.version));
    headers.set("X-Keygate-Scopes", record.scopes.join(" "));
  }
  const hasBody = request.method !== "GET" && request.method !== "HEAD";
  return new Request(target.toString(), {
    method: request.method,
    headers,
    body: hasBody ? request.body : null,
    redirect: "manual",
  });
}

/** The built-in origin used when `ORIGIN_URL` is empty: the verified identity as JSON. */
export function echoOrigin(request: Request, identity: Identity | null): Response {
  const url = new URL(request.url);
  const record = identity?.record;
  return Response.json({
    origin: "keygate-echo",
    method: request.method,
    path: url.pathname,
    authenticated: record !== undefined,
    consumerId: record?.consumerId ?? null,
    keyId: record?.keyId ?? null,
    keyVersion: record?.version ?? null,
    scopes: record?.scopes ?? [],
  });
}

/**
 * Deprecation (RFC 9745) and Sunset (RFC 8594) headers for a response to a request made with a
 * version in grace. `Sunset` is left out while a first-use grace has not started.
 */
export function deprecationHeaders(deprecation: {
  rotatedAt: number | null;
  graceUntil: number | null;
}): Record<string, string> {
  const headers: Record<string, string> = {};
  const since = deprecation.rotatedAt ?? Date.now();
  headers["Deprecation"] = `@${Math.floor(since / 1000)}`;
  if (deprecation.graceUntil !== null)
    headers["Sunset"] = new Date(deprecation.graceUntil).toUTCString();
  return headers;
}
