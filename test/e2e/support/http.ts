import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createTcpServer, type AddressInfo } from "node:net";

/** HTTP helpers for the end-to-end suite and the benchmark: real sockets only. */

export interface Json {
  [name: string]: unknown;
}

export interface Reply {
  status: number;
  headers: Headers;
  body: Json;
}

async function reply(response: Response): Promise<Reply> {
  const text = await response.text();
  let body: Json;
  try {
    body = text === "" ? {} : (JSON.parse(text) as Json);
  } catch {
    body = { text };
  }
  return { status: response.status, headers: response.headers, body };
}

/** A request to `baseUrl + path`; the body (if any) is sent as JSON. */
export async function request(
  baseUrl: string,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers };
  const init: RequestInit = {
    method,
    headers,
    signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
  };
  if (options.body !== undefined) {
    headers["Content-Type"] ??= "application/json";
    init.body = JSON.stringify(options.body);
  }
  return reply(await fetch(baseUrl + path, init));
}

/** The management API of a running Keygate, authenticated with its admin token. */
export function managementApi(baseUrl: string, adminToken: string) {
  const auth = { Authorization: `Bearer ${adminToken}` };
  const call = (method: string, path: string, body?: unknown) =>
    request(baseUrl, method, `/_keygate/v1${path}`, { body, headers: auth });
  return {
    get: (path: string) => call("GET", path),
    post: (path: string, body: unknown = {}) => call("POST", path, body),
    patch: (path: string, body: unknown) => call("PATCH", path, body),
    delete: (path: string) => call("DELETE", path),
  };
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface Origin {
  url: string;
  seen: SeenRequest[];
  close(): Promise<void>;
}

/** A server listening on a free port of 127.0.0.1. */
export interface Listening {
  url: string;
  /** stops it, open connections too */
  close(): Promise<void>;
}

/** Starts `server` on a free port of 127.0.0.1. */
export async function listenOnLoopback(server: Server): Promise<Listening> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

/**
 * A real origin on `127.0.0.1` (free port) that records every request it receives and
 * answers `{ origin, method, url, keyVersion }` as JSON.
 */
export async function startOrigin(): Promise<Origin> {
  const seen: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        at: Date.now(),
      });
      const body = JSON.stringify({
        origin: "e2e",
        method: req.method,
        url: req.url,
        keyVersion: req.headers["x-keygate-key-version"] ?? null,
      });
      res.writeHead(200, {
        "Content-Type": "application/json",
        "Content-Length": Buffer.byteLength(body),
      });
      res.end(body);
    });
  });
  return { ...(await listenOnLoopback(server)), seen };
}

/**
 * A port on 127.0.0.1 that was free a moment ago (listened on, then closed): for a server to
 * bind, or as an address where nothing answers.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createTcpServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 15_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * A loopback port nothing listens on, for "server down" cases: privileged, so no test's
 * server can take it (a port `freePort` finds may be taken by another test before it is
 * used), and not one of fetch's blocked ports (9 is refused as a "bad port" before connecting).
 */
export const CLOSED_PORT = 2;
