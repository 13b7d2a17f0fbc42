import { importJWK, type JWK } from "jose";
import type { Bindings } from "../env";
import { KeygateError } from "../errors";
import { SIGNING_ALGORITHMS } from "../origin/assertion-format.js";
import { JWKS_CACHE_TTL_MS, JWKS_RELOAD_MIN_MS } from "./propagation";
import { JWKS_KV_KEY, signerOf } from "./token-signer";
import { logError } from "../log";

/**
 * The public signing keys, cached in the isolate: one KV read per isolate per
 * `JWKS_CACHE_TTL_MS`, not one per token. A token naming a kid this isolate does not know
 * triggers one early reload, at most every `JWKS_RELOAD_MIN_MS`, straight from the signer
 * (KV may still serve an older copy for a minute; the signer never does). Concurrent loads
 * share one read.
 */

export interface VerificationKey {
  alg: string;
  key: CryptoKey | Uint8Array;
}

interface Cache {
  jwks: { keys: JWK[] };
  keys: Map<string, VerificationKey>;
  loadedAt: number;
  /** changes with every load, so what was verified against one copy can tell it is stale */
  generation: number;
}

let cache: Cache | null = null;
let loading: Promise<Cache> | null = null;
let lastReloadAt = 0;
let loads = 0;

/** Imports every usable key; a key that cannot be imported is skipped and logged. */
async function importAll(jwks: { keys?: unknown }, now: number): Promise<Cache> {
  const keys = new Map<string, VerificationKey>();
  const published: JWK[] = [];
  for (const jwk of Array.isArray(jwks.keys) ? (jwks.keys as JWK[]) : []) {
    const kid = typeof jwk?.kid === "string" ? jwk.kid : null;
    try {
      if (kid === null || typeof jwk.alg !== "string" || !SIGNING_ALGORITHMS.includes(jwk.alg)) {
        throw new Error("no kid, or an algorithm Keygate does not sign with");
      }
      keys.set(kid, { alg: jwk.alg, key: await importJWK(jwk, jwk.alg) });
      published.push(jwk);
    } catch (error) {
      logError("jwks_key_skipped", { kid, error });
    }
  }
  return { jwks: { keys: published }, keys, loadedAt: now, generation: ++loads };
}

async function read(env: Bindings, fromSigner: boolean): Promise<{ keys?: unknown }> {
  if (!fromSigner) {
    const stored = await env.KEYS.get<{ keys?: unknown }>(JWKS_KV_KEY, "json");
    if (stored !== null) return stored;
    // first use anywhere, or KV has not caught up: the signer creates and publishes the ring
  }
  return signerOf(env).jwks();
}

function load(env: Bindings, now: number, fromSigner: boolean): Promise<Cache> {
  loading ??= (async () => {
    try {
      cache = await importAll(await read(env, fromSigner), now);
      return cache;
    } finally {
      loading = null;
    }
  })();
  return loading;
}

async function fresh(env: Bindings, now: number): Promise<Cache> {
  if (cache && now - cache.loadedAt < JWKS_CACHE_TTL_MS) return cache;
  try {
    return await load(env, now, false);
  } catch (error) {
    logError("jwks_load_failed", { error });
    throw new KeygateError("unavailable", { detail: "Signing keys are unavailable; try again." });
  }
}

/** The public JWKS as published (keys this isolate could not import left out). */
export async function currentJwks(env: Bindings, now = Date.now()): Promise<{ keys: JWK[] }> {
  return (await fresh(env, now)).jwks;
}

/** The verification key for `kid`, or null when no published key has that id. */
export async function verificationKey(
  env: Bindings,
  kid: string,
  now = Date.now(),
): Promise<VerificationKey | null> {
  let current = await fresh(env, now);
  if (
    !current.keys.has(kid) &&
    now - current.loadedAt >= JWKS_RELOAD_MIN_MS &&
    now - lastReloadAt >= JWKS_RELOAD_MIN_MS
  ) {
    lastReloadAt = now;
    try {
      current = await load(env, now, true);
    } catch (error) {
      // the copy in hand is still good for the kids it has
      logError("jwks_reload_failed", { kid, error });
    }
  }
  return current.keys.get(kid) ?? null;
}

/**
 * The generation of the isolate's copy while it is fresh, else null: a result verified
 * against a key of this copy stays trustworthy while the generation is unchanged.
 */
export function jwksGeneration(now = Date.now()): number | null {
  return cache && now - cache.loadedAt < JWKS_CACHE_TTL_MS ? cache.generation : null;
}

/** Drops the isolate's copy (this isolate rotated the keys, or a test travels in time). */
export function forgetJwks(): void {
  cache = null;
  lastReloadAt = 0;
}
