import { Hono, type MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { HONO_PREFIX } from "./shared.js";

/**
 * Benchmark peer: the no-storage floor. A tiny Hono Worker that checks one static bearer token
 * with `hono/bearer-auth` (nothing read from storage; its timing-safe compare hashes the
 * presented and the expected token with SHA-256 through `crypto.subtle`, two digests per
 * request, and compares the digests and the tokens in constant time) and answers a
 * small JSON body shaped like Keygate's echo origin. It runs in workerd next to the OAuth peer;
 * every path it serves is under `/hono/` (its Miniflare route).
 */

interface Env {
  BEARER_TOKEN: string;
}

const app = new Hono<{ Bindings: Env }>();

/** Built once per isolate, on the first request, from the `BEARER_TOKEN` binding. */
let auth: MiddlewareHandler | undefined;

app.use(`${HONO_PREFIX}*`, (c, next) =>
  (auth ??= bearerAuth({ token: c.env.BEARER_TOKEN }))(c, next),
);

app.all(`${HONO_PREFIX}*`, (c) =>
  c.json({
    origin: "hono-bearer-auth",
    method: c.req.method,
    path: c.req.path,
    authenticated: true,
    consumerId: null,
    keyId: null,
    keyVersion: null,
    scopes: [],
  }),
);

export default app;
