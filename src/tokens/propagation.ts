/**
 * How long a published signing key takes to reach every verifier: the bounds the rotation
 * schedule is built on. Pure constants; docs/tokens.md, "Signing keys: JWKS and rotation", explains them.
 */

/** How long an isolate trusts its copy of the JWKS before reading it again. */
export const JWKS_CACHE_TTL_MS = 60_000;

/** Earliest reload of the JWKS after the last one, when a token names an unknown `kid`. */
export const JWKS_RELOAD_MIN_MS = 5_000;

/** Cloudflare's bound for a KV write to be visible at every location (KV caches reads 60 s). */
export const KV_PROPAGATION_MS = 60_000;

/** `Cache-Control: max-age` of `GET /.well-known/jwks.json`, so origins' caches are bounded. */
export const JWKS_HTTP_MAX_AGE_SECONDS = 60;

/**
 * A `next` key is promoted to signer only once the JWKS holding it has been published this
 * long: every isolate's cached JWKS, KV's copies and any HTTP cache of the JWKS in front of
 * an origin have then been refreshed at least once since, so every verifier knows the key
 * before the first token it signs arrives.
 */
export const NEXT_KEY_MIN_AGE_MS =
  JWKS_CACHE_TTL_MS + KV_PROPAGATION_MS + JWKS_HTTP_MAX_AGE_SECONDS * 1000;
