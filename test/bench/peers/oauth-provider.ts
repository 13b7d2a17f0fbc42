import {
  OAuthProvider,
  type OAuthHelpers,
  type OAuthProviderOptions,
} from "@cloudflare/workers-oauth-provider";
import {
  OAUTH_API_ROUTE,
  OAUTH_AUTHORIZE_PATH,
  OAUTH_REGISTER_PATH,
  OAUTH_SCOPE,
  OAUTH_TOKEN_PATH,
} from "./shared.js";

/**
 * Benchmark peer: Cloudflare's `@cloudflare/workers-oauth-provider` protecting an API route
 * with access tokens it issued itself (stored, hashed, in the `OAUTH_KV` namespace; each API
 * request reads the token's record from KV and decrypts its props). Everything it serves is
 * under `/oauth/` (its Miniflare route):
 *
 * - `POST /oauth/register`: dynamic client registration (RFC 7591);
 * - `GET /oauth/authorize`: this Worker's default handler, which approves every request for
 *   the user `bench-user` through `env.OAUTH_PROVIDER.parseAuthRequest()` and
 *   `completeAuthorization()` (no sign-in page: the benchmark measures the API route, not the
 *   consent screen);
 * - `POST /oauth/token`: the provider's token endpoint;
 * - `/oauth/api/*`: the protected route, answering a small JSON body shaped like Keygate's
 *   echo origin.
 */

interface Env {
  OAUTH_KV: unknown;
  OAUTH_PROVIDER: OAuthHelpers;
}

interface Props {
  userId: string;
}

const USER_ID = "bench-user";

const apiHandler = {
  fetch(request: Request, _env: Env, ctx: { props?: Props }): Response {
    const url = new URL(request.url);
    return Response.json({
      origin: "oauth-provider",
      method: request.method,
      path: url.pathname,
      authenticated: true,
      consumerId: ctx.props?.userId ?? null,
      keyId: null,
      keyVersion: null,
      scopes: [OAUTH_SCOPE],
    });
  },
};

const defaultHandler = {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (new URL(request.url).pathname !== OAUTH_AUTHORIZE_PATH) {
      return new Response("not found", { status: 404 });
    }
    const authRequest = await env.OAUTH_PROVIDER.parseAuthRequest(request);
    const { redirectTo } = await env.OAUTH_PROVIDER.completeAuthorization({
      request: authRequest,
      userId: USER_ID,
      metadata: { label: "keygate bench" },
      scope: authRequest.scope,
      props: { userId: USER_ID } satisfies Props,
    });
    return Response.redirect(redirectTo, 302);
  },
};

/**
 * The provider's resource (every token's audience) must be the absolute URL clients use, and
 * Miniflare picks the port when it starts: the provider is built once per isolate, on the
 * first request, from that request's origin.
 */
let provider: OAuthProvider<Env> | undefined;

function providerFor(origin: string): OAuthProvider<Env> {
  const options: OAuthProviderOptions<Env> = {
    apiRoute: OAUTH_API_ROUTE,
    apiHandler,
    defaultHandler,
    authorizeEndpoint: OAUTH_AUTHORIZE_PATH,
    tokenEndpoint: OAUTH_TOKEN_PATH,
    clientRegistrationEndpoint: OAUTH_REGISTER_PATH,
    scopesSupported: [OAUTH_SCOPE],
    requiredScopes: [OAUTH_SCOPE],
    resourceMetadata: { resource: `${origin}${OAUTH_API_ROUTE}` },
  };
  return new OAuthProvider<Env>(options);
}

export default {
  fetch(request: Request, env: Env, ctx: unknown): Promise<Response> {
    provider ??= providerFor(new URL(request.url).origin);
    return provider.fetch(request, env, ctx as Parameters<OAuthProvider<Env>["fetch"]>[2]);
  },
};
