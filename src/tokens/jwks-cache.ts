import { importJWK, type JWK } from "jose";
import type { Bindings } from "../env";
import { KeygateError } from "../errors";
import { JWKS_KV_KEY, signerOf } from "./token-signer";

/**
 * The public signing keys, cached in the isolate: one KV read per isolate per `TTL_MS`, not
 * one per token. A token naming a kid this isolate does not know triggers one early reload,
 * at most every `RELOAD_MIN_MS`.
 */
export const TTL_MS = 60_000;
const RELOAD_MIN_MS = 5_000;

interface Cache {
  jwks: { keys: JWK[] };
  keys: Map<string, { alg: string; key: CryptoKey | Uint8Array }>;
  loadedAt: number;
}

let cache: Cache | null = null;

async function load(env: Bindings, now: number): Promise<Cache> {
  let jwks: { keys: JWK[] } | null;
  try {
    jwks = await env.KEYS.get<{ keys: JWK[] }>(JWKS_KV_KEY, "json");
    // first use anywhere: the signer creates the ring and publishes it
    jwks ??= (await signerOf(env).jwks()) as { keys: JWK[] };
  } catch (error) {
    console.error(JSON.stringify({ event: "jwks_load_failed", error: String(error) }));
    throw new KeygateError("unavailable", { detail: "Signing keys are unavailable; try again." });
  }
  const keys = new Map<string, { alg: string; key: CryptoKey | Uint8Array }>();
  for (const jwk of jwks.keys) {
    if (typeof jwk.kid !== "string" || typeof jwk.alg !== "string") continue;
    keys.set(jwk.kid, { alg: jwk.alg, key: await importJWK(jwk, jwk.alg) });
  }
  cache = { jwks, keys, loadedAt: now };
  return cache;
}

/** The public JWKS as published. */
export async function currentJwks(env: Bindings, now = Date.now()): Promise<{ keys: JWK[] }> {
  if (!cache || now - cache.loadedAt >= TTL_MS) await load(env, now);
  return cache!.jwks;
}

/** The verification key for `kid`, or null when no published key has that id. */
export async function verificationKey(
  env: Bindings,
  kid: string,
  now = Date.now(),
): Promise<{ alg: string; key: CryptoKey | Uint8Array } | null> {
  let current = cache && now - cache.loadedAt < TTL_MS ? cache : await load(env, now);
  if (!current.keys.has(kid) && now - current.loadedAt >= RELOAD_MIN_MS) {
    current = await load(env, now);
  }
  return current.keys.get(kid) ?? null;
}

/** Drops the isolate's copy (this isolate rotated the keys). */
export function forgetJwks(): void {
  cache = null;
}
