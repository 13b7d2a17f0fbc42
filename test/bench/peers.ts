import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { bundleForWorkerd, COMPATIBILITY_DATE } from "../e2e/support/worker.js";
import {
  HONO_PREFIX,
  OAUTH_API_ROUTE,
  OAUTH_AUTHORIZE_PATH,
  OAUTH_PREFIX,
  OAUTH_REGISTER_PATH,
  OAUTH_SCOPE,
  OAUTH_TOKEN_PATH,
} from "./peers/shared.js";

/**
 * The two peers Keygate is compared with, as two Workers in one Miniflare (one workerd
 * process), each on its own route of the same socket:
 *
 * - `/hono/*`: `hono/bearer-auth` with a static token (peers/hono-bearer.ts);
 * - `/oauth/*`: `@cloudflare/workers-oauth-provider` with its `OAUTH_KV` namespace
 *   (peers/oauth-provider.ts).
 *
 * They get Keygate's compatibility date and flags (the OAuth peer one more, see below), so
 * the only difference in what workerd runs is the Worker itself.
 */

export interface Peers {
  url: string;
  /** A path of the Hono peer and the bearer token it accepts. */
  hono: { path: string; token: string };
  /** A path of the OAuth peer's protected route and an access token it issued. */
  oauth: { path: string; token: string };
  stop(): Promise<void>;
}

const HERE = fileURLToPath(new URL(".", import.meta.url));

const base64url = (bytes: Buffer) => bytes.toString("base64url");

async function expectOk(response: Response, what: string): Promise<Response> {
  if (!response.ok) {
    throw new Error(`${what}: ${response.status} ${(await response.text()).slice(0, 500)}`);
  }
  return response;
}

/**
 * The real OAuth 2.1 flow against the OAuth peer: dynamic client registration of a public
 * client, an authorization request with PKCE (S256) approved by the peer's default handler,
 * and the code exchanged at the token endpoint. Returns the access token.
 */
async function issueAccessToken(url: string): Promise<string> {
  const timeout = () => AbortSignal.timeout(15_000);
  const redirectUri = "http://127.0.0.1/callback";
  const resource = `${url}${OAUTH_API_ROUTE}`;

  const registered = (await (
    await expectOk(
      await fetch(`${url}${OAUTH_REGISTER_PATH}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          client_name: "keygate bench",
          redirect_uris: [redirectUri],
          token_endpoint_auth_method: "none",
          grant_types: ["authorization_code"],
          response_types: ["code"],
        }),
        signal: timeout(),
      }),
      "OAuth client registration",
    )
  ).json()) as { client_id?: string };
  const clientId = registered.client_id;
  if (!clientId) throw new Error("OAuth client registration returned no client_id");

  const verifier = base64url(randomBytes(32));
  const state = base64url(randomBytes(16));
  const authorize = new URL(`${url}${OAUTH_AUTHORIZE_PATH}`);
  for (const [name, value] of Object.entries({
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri,
    scope: OAUTH_SCOPE,
    state,
    code_challenge: base64url(createHash("sha256").update(verifier).digest()),
    code_challenge_method: "S256",
    resource,
  })) {
    authorize.searchParams.set(name, value);
  }
  const redirect = await fetch(authorize, { redirect: "manual", signal: timeout() });
  const location = redirect.headers.get("location");
  if (redirect.status !== 302 || location === null) {
    throw new Error(
      `OAuth authorization: ${redirect.status} ${(await redirect.text()).slice(0, 500)}`,
    );
  }
  const callback = new URL(location);
  const code = callback.searchParams.get("code");
  if (callback.searchParams.get("state") !== state || code === null) {
    throw new Error(`OAuth authorization redirected to an unexpected URL: ${location}`);
  }

  const tokens = (await (
    await expectOk(
      await fetch(`${url}${OAUTH_TOKEN_PATH}`, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code",
          code,
          redirect_uri: redirectUri,
          client_id: clientId,
          code_verifier: verifier,
          resource,
        }),
        signal: timeout(),
      }),
      "OAuth token exchange",
    )
  ).json()) as { access_token?: string; token_type?: string };
  if (!tokens.access_token) throw new Error("OAuth token exchange returned no access_token");
  return tokens.access_token;
}

/** Starts both peers on `127.0.0.1` (free port) and obtains their credentials. */
export async function startPeers(): Promise<Peers> {
  const dir = await mkdtemp(join(tmpdir(), "keygate-bench-peers-"));
  const honoToken = `bench_${base64url(randomBytes(24))}`;
  let mf: Miniflare | undefined;
  const stop = async () => {
    try {
      await mf?.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
  try {
    const [honoScript, oauthScript] = await Promise.all([
      bundleForWorkerd(join(HERE, "peers", "hono-bearer.ts"), join(dir, "hono-bearer.js")),
      bundleForWorkerd(join(HERE, "peers", "oauth-provider.ts"), join(dir, "oauth-provider.js")),
    ]);
    const common = {
      modules: true,
      modulesRoot: dir,
      compatibilityDate: COMPATIBILITY_DATE,
      compatibilityFlags: ["nodejs_compat"],
    };
    mf = new Miniflare({
      // The peers' console output (only on failures) goes to stderr, never into the report.
      handleRuntimeStdio(stdout: Readable, stderr: Readable) {
        stdout.pipe(process.stderr);
        stderr.pipe(process.stderr);
      },
      host: "127.0.0.1",
      port: 0,
      workers: [
        {
          ...common,
          name: "hono-bearer-auth",
          scriptPath: honoScript,
          bindings: { BEARER_TOKEN: honoToken },
          routes: [`*${HONO_PREFIX}*`],
        },
        {
          ...common,
          name: "oauth-provider",
          scriptPath: oauthScript,
          // The flag the library asks for (it guards its outbound metadata fetches, which this
          // peer never makes); without it the library warns at start-up.
          compatibilityFlags: [...common.compatibilityFlags, "global_fetch_strictly_public"],
          kvNamespaces: ["OAUTH_KV"],
          routes: [`*${OAUTH_PREFIX}*`],
        },
      ],
    });
    const url = (await mf.ready).origin;
    const oauthToken = await issueAccessToken(url);
    return {
      url,
      hono: { path: `${HONO_PREFIX}prices/eur`, token: honoToken },
      oauth: { path: `${OAUTH_API_ROUTE}/prices/eur`, token: oauthToken },
      stop,
    };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}
