import { env, SELF } from "cloudflare:test";
import type { JWK } from "jose";
import { beforeEach, describe, expect, it } from "vitest";
import { forgetJwks, verificationKey } from "../../src/tokens/jwks-cache";
import { JWKS_KV_KEY } from "../../src/tokens/token-signer";
import { newKey } from "../support/api";
import { counting } from "../support/faults";
import { BASE, fetchWith, rotateNow, signerStub, tokenFor } from "./fixtures";

async function jwks(): Promise<{ res: Response; keys: JWK[] }> {
  const res = await SELF.fetch(`${BASE}/.well-known/jwks.json`);
  return { res, keys: ((await res.clone().json()) as { keys: JWK[] }).keys };
}

beforeEach(() => forgetJwks());

describe("GET /.well-known/jwks.json", () => {
  it("publishes current, next and previous public keys, and nothing private", async () => {
    const before = await signerStub().summary();
    await rotateNow();
    forgetJwks();
    const ring = await signerStub().summary();
    expect(ring.current.kid).toBe(before.next.kid);
    expect(ring.previous.map((k) => k.kid)).toContain(before.current.kid);
    const { res, keys } = await jwks();
    expect(res.status).toBe(200);
    expect(res.headers.get("Cache-Control")).toBe("public, max-age=60");
    expect(keys.map((k) => k.kid).sort()).toEqual(
      [ring.current.kid, ring.next.kid, ...ring.previous.map((k) => k.kid)].sort(),
    );
    for (const key of keys) {
      expect(Object.keys(key).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
      expect(key).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
    }
    expect(JSON.stringify(keys)).not.toMatch(/"d"/);
    // the edge copy in KV is the same document
    const stored = await env.KEYS.get<{ keys: JWK[] }>(JWKS_KV_KEY, "json");
    expect(stored?.keys).toEqual(keys);
  });

  it("skips a published key that cannot be imported instead of failing every token", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key);
    const good = (await env.KEYS.get<{ keys: JWK[] }>(JWKS_KV_KEY, "json"))!;
    const broken = {
      kty: "EC",
      crv: "P-256",
      x: "AAAA",
      y: "AAAA",
      kid: "sk_broken",
      alg: "ES256",
    };
    await env.KEYS.put(JWKS_KV_KEY, JSON.stringify({ keys: [broken, ...good.keys] }));
    try {
      forgetJwks();
      const res = await SELF.fetch(`${BASE}/prices/eur`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(200);
      const { keys } = await jwks();
      expect(keys.map((k) => k.kid)).not.toContain("sk_broken");
    } finally {
      await env.KEYS.put(JWKS_KV_KEY, JSON.stringify(good));
    }
  });
});

describe("JWKS cache in the isolate", () => {
  it("JWT verification costs no KV read after the first", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key);
    forgetJwks();
    const kv = counting(env.KEYS);
    const request = () =>
      fetchWith({ KEYS: kv.binding }, "/prices/eur", {
        headers: { Authorization: `Bearer ${token}` },
      });
    expect((await request()).status).toBe(200);
    expect(kv.calls).toEqual({ get: 1 });
    for (let i = 0; i < 5; i++) expect((await request()).status).toBe(200);
    expect(kv.calls).toEqual({ get: 1 });
  });

  it("concurrent cold loads share one KV read", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key);
    forgetJwks();
    const kv = counting(env.KEYS);
    const responses = await Promise.all(
      Array.from({ length: 8 }, () =>
        fetchWith({ KEYS: kv.binding }, "/prices/eur", {
          headers: { Authorization: `Bearer ${token}` },
        }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(kv.calls).toEqual({ get: 1 });
  });

  it("an unknown kid reloads from the signer, at most once per 5 s, and the TTL reloads from KV", async () => {
    const { current } = await signerStub().summary();
    const kv = counting(env.KEYS);
    const signer = counting(env.SIGNER);
    const testEnv = { ...env, KEYS: kv.binding, SIGNER: signer.binding };
    const t0 = Date.now();
    expect(await verificationKey(testEnv, current.kid, t0)).not.toBeNull();
    expect(kv.calls.get).toBe(1);
    expect(signer.calls.get ?? 0).toBe(0);
    // just loaded: an unknown kid is not worth a reload
    expect(await verificationKey(testEnv, "sk_unknown", t0 + 1_000)).toBeNull();
    expect(signer.calls.get ?? 0).toBe(0);
    // 5 s later it is, from the signer (KV may lag a minute on Cloudflare)
    expect(await verificationKey(testEnv, "sk_unknown", t0 + 6_000)).toBeNull();
    expect(signer.calls.get).toBe(1);
    // and then not again for 5 s, whatever kids garbage tokens name
    expect(await verificationKey(testEnv, "sk_other", t0 + 7_000)).toBeNull();
    expect(await verificationKey(testEnv, "sk_third", t0 + 10_000)).toBeNull();
    expect(signer.calls.get).toBe(1);
    expect(kv.calls.get).toBe(1);
    // after the TTL the copy is read from KV again
    expect(await verificationKey(testEnv, current.kid, t0 + 6_000 + 60_000)).not.toBeNull();
    expect(kv.calls.get).toBe(2);
  });
});
