/** Paths, scope and names the peer Workers and the benchmark agree on. */

/** Miniflare route of the Hono peer: every path under it. */
export const HONO_PREFIX = "/hono/";
/** Miniflare route of the OAuth peer: every path under it. */
export const OAUTH_PREFIX = "/oauth/";
/** The OAuth peer's protected route (its resource's path). */
export const OAUTH_API_ROUTE = "/oauth/api";
export const OAUTH_AUTHORIZE_PATH = "/oauth/authorize";
export const OAUTH_TOKEN_PATH = "/oauth/token";
export const OAUTH_REGISTER_PATH = "/oauth/register";
/** The one scope the OAuth peer grants. */
export const OAUTH_SCOPE = "echo:read";
