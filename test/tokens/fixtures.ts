import {
  createExecutionContext,
  env,
  evictDurableObject,
  runInDurableObject,
  SELF,
  waitOnExecutionContext,
} from "cloudflare:test";
import { decodeJwt, decodeProtectedHeader, importJWK, SignJWT, type JWK } from "jose";
import worker from "../../src/index";
import { forgetJwks } from "../../src/tokens/jwks-cache";
import type { KeyRing } from "../../src/tokens/key-ring";
import { NEXT_KEY_MIN_AGE_MS } from "../../src/tokens/propagation";
import { admin, call, withKey, type Json } from "../support/api";

/** Helpers for the token suites: the signer's stub, its stored ring, and token exchange. */

export const BASE = "https://keygate.test";

export function signerStub() {
  return env.SIGNER.get(env.SIGNER.idFromName("signing-keys"));
}

/** The ring as the signer stored it (private keys included). */
export async function storedRing(): Promise<KeyRing> {
  await signerStub().summary(); // created on first use
  return runInDurableObject(signerStub(), async (_instance, state) => {
    const ring = await state.storage.get<KeyRing>("ring");
    if (!ring) throw new Error("no ring stored");
    return ring;
  });
}

/**
 * Time travel: rewrites the stored ring, then evicts the signer so it reads it again, and
 * drops this isolate's JWKS copy. Optionally sets the signer's alarm.
 */
export async function editRing(
  edit: (ring: KeyRing, now: number) => KeyRing | void,
  options: { alarmAt?: number } = {},
): Promise<KeyRing> {
  await signerStub().summary();
  const ring = await runInDurableObject(signerStub(), async (_instance, state) => {
    const stored = (await state.storage.get<KeyRing>("ring"))!;
    const edited = edit(stored, Date.now()) ?? stored;
    await state.storage.put("ring", edited);
    if (options.alarmAt !== undefined) await state.storage.setAlarm(options.alarmAt);
    return edited;
  });
  await evictDurableObject(signerStub());
  forgetJwks();
  return ring;
}

/** Makes `next` old enough to be promoted by a scheduled rotation. */
export function ageNext(): Promise<KeyRing> {
  return editRing((ring, now) => {
    ring.next.publishedAt = now - NEXT_KEY_MIN_AGE_MS - 1000;
  });
}

/** `POST /_keygate/v1/token` with `credential` as bearer. */
export function exchange(credential: string, body?: unknown, headers: Record<string, string> = {}) {
  return call("POST", "/_keygate/v1/token", body, {
    Authorization: `Bearer ${credential}`,
    ...headers,
  });
}

/** A token for `key`, failing the test when the exchange fails. */
export async function tokenFor(key: string, body?: unknown): Promise<string> {
  const res = await exchange(key, body);
  if (res.status !== 200) throw new Error(`token: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.access_token as string;
}

export async function rotateSigningKeys(emergency?: boolean) {
  return admin.post("/signing-keys/rotate", emergency === undefined ? {} : { emergency });
}

/** Promotes next now: ages it, then rotates through the management API. */
export async function rotateNow(): Promise<Json> {
  await ageNext();
  const res = await rotateSigningKeys();
  if (res.status !== 200) throw new Error(`rotate: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

export async function publishedKids(): Promise<string[]> {
  const res = await SELF.fetch(`${BASE}/.well-known/jwks.json`);
  const jwks = (await res.json()) as { keys: JWK[] };
  return jwks.keys.map((k) => k.kid!);
}

export const kidOf = (token: string) => decodeProtectedHeader(token).kid as string;
export const claimsOf = (token: string) => decodeJwt(token);

/** Signs any header and payload with the signer's real current private key. */
export async function signWithRealKey(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
): Promise<string> {
  const ring = await storedRing();
  const key = await importJWK(ring.current.privateJwk, ring.current.alg);
  return new SignJWT(payload)
    .setProtectedHeader({ alg: ring.current.alg, kid: ring.current.kid, ...header })
    .sign(key);
}

/** Claims of a genuine access token for `keyId`, with `exp` `ttl` seconds from now. */
export function accessClaims(
  issued: { id: string; consumerId: string },
  extra: Record<string, unknown> = {},
  ttl = 600,
): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: "keygate",
    aud: "keygate",
    sub: issued.id,
    cid: issued.consumerId,
    ver: 1,
    scope: "prices:read",
    iat: now,
    exp: now + ttl,
    ...extra,
  };
}

/** The front door's status for a request bearing `token` (an access token or a key). */
export async function status(token: string, path = "/prices/eur"): Promise<number> {
  return (await withKey(token, path)).status;
}

/**
 * The Worker's fetch with other vars or bindings. Background work (usage reports, batched
 * behind a 1 s timer) is not waited for unless `wait` is set.
 */
export async function fetchWith(
  vars: Partial<typeof env>,
  path: string,
  init: RequestInit = {},
  options: { wait?: boolean } = {},
): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`${BASE}${path}`, init),
    { ...env, ...vars } as typeof env,
    ctx,
  );
  if (options.wait) await waitOnExecutionContext(ctx);
  return res;
}
