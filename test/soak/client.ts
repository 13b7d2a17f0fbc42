import { Agent, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect } from "node:net";

/**
 * The soak's HTTP client: node:http with keep-alive, one connection pool per client address.
 *
 * Client addresses. Keygate reads the client's address from `CF-Connecting-IP`. Miniflare's
 * entry worker (and so `wrangler dev`, which serves through it) sets that header from the
 * socket's remote address when the request has none, and passes a client-sent one through
 * unchanged. So on loopback there are two ways to be many clients:
 *
 * - `socket`: bind each connection to its own 127.x.y.z (`localAddress`); the Worker sees that
 *   address, as it would see a real peer's. Linux routes all of 127.0.0.0/8 to loopback;
 *   macOS has only 127.0.0.1 unless aliases are added.
 * - `header`: connect from 127.0.0.1 and send `CF-Connecting-IP` (Cloudflare's edge would
 *   overwrite it; only the local runtime honours it).
 */
export type AddressMode = "socket" | "header";

export interface Answer {
  status: number;
  /** `Keygate-Error`, or the problem body's `code` */
  code: string | null;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown> | null;
}

export type Outcome = { ok: true; answer: Answer } | { ok: false; error: string };

export interface SendOptions {
  method: string;
  path: string;
  /** the client address this request comes from */
  address: string;
  headers?: Record<string, string>;
  body?: unknown;
  /** a connection of its own, closed after the answer (no pooled socket) */
  fresh?: boolean;
  timeoutMs?: number;
}

/** The traffic's address pool: `127.77.0.1`, `127.77.0.2`, … */
export function poolAddress(index: number): string {
  return `127.77.${Math.floor(index / 250)}.${(index % 250) + 1}`;
}

let sweepCounter = 0;

/** An address no other request of the run has used (sweeps: one per request, see main.ts). */
export function freshAddress(): string {
  const n = sweepCounter++;
  return `127.88.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
}

/** Whether this system lets a socket bind to 127.77.0.1 (Linux does, macOS not by default). */
export function canBindLoopbackAliases(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port), localAddress: poolAddress(0) });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * workerd closes a kept-alive connection after 5 s idle, saying nothing of it beforehand (no
 * `Keep-Alive: timeout`), so a request sent on such a connection just then meets ECONNRESET.
 * The pool drops its idle connections before that.
 */
const IDLE_CONNECTION_MS = 4_000;

export class Client {
  readonly #agent = new Agent({
    keepAlive: true,
    maxSockets: Infinity,
    timeout: IDLE_CONNECTION_MS,
  });
  readonly #host: string;
  readonly #port: number;

  constructor(
    baseUrl: string,
    readonly mode: AddressMode,
  ) {
    const url = new URL(baseUrl);
    this.#host = url.hostname;
    this.#port = Number(url.port);
  }

  send(options: SendOptions): Promise<Outcome> {
    const headers: Record<string, string> = { ...options.headers };
    let payload: string | undefined;
    if (options.body !== undefined) {
      payload = JSON.stringify(options.body);
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = String(Buffer.byteLength(payload));
    }
    if (this.mode === "header") headers["CF-Connecting-IP"] = options.address;
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const done = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        resolve(outcome);
      };
      const req = httpRequest(
        {
          host: this.#host,
          port: this.#port,
          method: options.method,
          path: options.path,
          headers,
          agent: options.fresh ? false : this.#agent,
          ...(this.mode === "socket" ? { localAddress: options.address } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", (error) => done({ ok: false, error: errorName(error) }));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let body: Record<string, unknown> | null = null;
            try {
              const parsed: unknown = text === "" ? null : JSON.parse(text);
              if (parsed !== null && typeof parsed === "object") {
                body = parsed as Record<string, unknown>;
              }
            } catch {
              body = null;
            }
            const header = res.headers["keygate-error"];
            const code =
              typeof header === "string"
                ? header
                : typeof body?.code === "string"
                  ? body.code
                  : null;
            done({
              ok: true,
              answer: { status: res.statusCode ?? 0, code, headers: res.headers, body },
            });
          });
        },
      );
      req.setTimeout(options.timeoutMs ?? 15_000, () => {
        req.destroy(new Error("timeout"));
      });
      req.on("error", (error) =>
        done({
          ok: false,
          error: `${errorName(error)}${req.reusedSocket ? " on a kept-alive connection" : ""}`,
        }),
      );
      req.end(payload);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

function errorName(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    return typeof code === "string" ? code : error.message;
  }
  return String(error);
}
