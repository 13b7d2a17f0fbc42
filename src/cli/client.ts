import { ApiError, CliError, NetworkError, UsageError, type Problem } from "./errors.js";

/** Where a local `npm start` serves Keygate. */
export const DEFAULT_URL = "http://127.0.0.1:8787";
const MANAGEMENT = "/_keygate/v1";

export type Query = Record<string, string | number | undefined>;

export interface RequestOptions {
  body?: unknown;
  query?: Query;
  headers?: Record<string, string>;
}

/**
 * The base URL of a Keygate deployment from `--url`/`KEYGATE_URL`: http or https, no trailing
 * slash; a pasted management URL (`…/_keygate/v1/…`) is cut back to the deployment.
 */
export function baseUrlOf(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(raw)} is not a URL (e.g. ${DEFAULT_URL})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--url must be http or https, not ${url.protocol.replace(/:$/, "")}`);
  }
  const at = url.pathname.indexOf("/_keygate");
  const path = (at === -1 ? url.pathname : url.pathname.slice(0, at)).replace(/\/+$/, "");
  return `${url.origin}${path}`;
}

function reasonOf(error: unknown): string {
  if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return "no answer in time";
  }
  const cause =
    error instanceof Error ? (error.cause as { code?: string; message?: string }) : null;
  const code = cause?.code;
  const known: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ENOTFOUND: "host not found",
    EAI_AGAIN: "host name lookup failed",
    ECONNRESET: "connection reset",
    ETIMEDOUT: "connection timed out",
    EHOSTUNREACH: "host unreachable",
  };
  if (code) return `${known[code] ?? "network error"} (${code})`;
  return cause?.message ?? (error instanceof Error ? error.message : String(error));
}

/** A Keygate deployment: its management API (admin token) and its public endpoints. */
export class KeygateClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;

  constructor(baseUrl: string, token: string | undefined, timeoutMs = 30_000) {
    this.baseUrl = baseUrl;
    this.#token = token === "" ? undefined : token;
    this.#timeoutMs = timeoutMs;
  }

  /** A management API call (`/_keygate/v1…`) authenticated with the admin token. */
  async management<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    if (this.#token === undefined) {
      throw new UsageError("no admin token", [
        "Pass --token <token> or set KEYGATE_ADMIN_TOKEN.",
        "For a local Keygate, npm start prints it; it is ADMIN_TOKEN in .dev.vars.",
      ]);
    }
    return this.request<T>(method, MANAGEMENT + path, {
      ...options,
      headers: { Authorization: `Bearer ${this.#token}`, ...options.headers },
    });
  }

  /** A call to any path of the deployment; answers the parsed JSON of a 2xx response. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
    const init: RequestInit = { method, headers, signal: AbortSignal.timeout(this.#timeoutMs) };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, init);
      text = await response.text();
    } catch (error) {
      throw new NetworkError(
        method,
        url.href,
        reasonOf(error),
        `Is Keygate running at ${this.baseUrl}? Set --url or KEYGATE_URL.`,
      );
    }
    let body: unknown;
    try {
      body = text === "" ? {} : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (response.ok) {
      if (body === undefined) {
        throw new CliError(`${method} ${url.href}: HTTP ${response.status} but not JSON`);
      }
      return body as T;
    }
    throw new ApiError(problemOf(response.status, body), hintFor(response.status, path));
  }
}

function problemOf(status: number, body: unknown): Problem {
  const fields = typeof body === "object" && body !== null ? (body as Partial<Problem>) : {};
  if (fields.code !== undefined) return { ...fields, status };
  return { ...fields, status, detail: `unexpected HTTP ${status} (not a Keygate problem answer)` };
}

function hintFor(status: number, path: string): string | undefined {
  if (!path.startsWith(MANAGEMENT) || path === `${MANAGEMENT}/token`) return undefined;
  if (status === 401) {
    return "The management API refused the token: check --token or KEYGATE_ADMIN_TOKEN.";
  }
  if (status === 403) return "The token lacks the Keygate scope this command needs.";
  return undefined;
}
